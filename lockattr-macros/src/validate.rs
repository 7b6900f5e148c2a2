//! Cross-option and signature checks: turns parsed [`Args`] into a [`Lock`] that expands.

use proc_macro2::Span;
use syn::ext::IdentExt as _;
use syn::{FnArg, ItemFn, LitStr, Pat};

use crate::args::{Args, Conflict, Spanned};
use crate::duration::{format_millis, Millis};
use crate::errors::{did_you_mean, Errors};
use crate::template::{self, Segment, Template};

/// A lock configuration that passed every check.
pub struct Lock {
    pub key: LitStr,
    pub template: Template,
    pub ttl: Millis,
    pub policy: Policy,
    pub min_hold: Millis,
    /// `every` and `at` (zero when not given).
    pub schedule: Option<(Millis, Millis)>,
    pub renew: bool,
    pub backend: Option<String>,
    pub krate: syn::Path,
}

/// `on_conflict` with the options it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Skip,
    Error,
    Wait(Millis),
    Retry { retries: u32, backoff: Millis },
}

impl Policy {
    /// Whether the return type must have a "skipped" value (else: an error channel).
    pub fn skips(self) -> bool {
        matches!(self, Policy::Skip | Policy::Retry { .. })
    }
}

fn missing(option: &str, why: &str) -> syn::Error {
    syn::Error::new(Span::call_site(), format!("missing `{option}`: {why}"))
}

/// Checks `args` against each other and against `func`. Returns the lock when every
/// check passed; every failure is pushed to `errors`.
pub fn validate(args: Args, func: &ItemFn, errors: &mut Errors) -> Option<Lock> {
    if func.sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            func.sig.fn_token,
            "#[distributed_lock] needs an `async fn`: taking the lock waits on the backend. \
             Write `async fn`, or, in code that cannot be async, take the lock by hand with \
             `lockattr::lock(key).ttl(ttl).try_acquire()` on a runtime",
        ));
    }
    if args.unreported_missing("key") {
        errors.push(missing(
            "key",
            "name the lock, with `<param>` for values, e.g. `key = \"flush:<tenant>\"`",
        ));
    }
    if args.unreported_missing("ttl") {
        errors.push(missing(
            "ttl",
            "how long may a holder keep the lock if it crashes or stalls? e.g. `ttl = \"30s\"`",
        ));
    }
    if args.unreported_missing("on_conflict") {
        errors.push(missing(
            "on_conflict",
            "what happens when another holder has the key? `on_conflict = \"skip\"`, `\"error\"`, \
             `\"wait\"` (with `wait = \"5s\"`) or `\"retry\"` (with `retries = 3, backoff = \"200ms\"`)",
        ));
    }

    let template = args.key.as_ref().map(|key| {
        let template = template::parse(key, errors);
        check_placeholders(key, &template, func, errors);
        template
    });

    if let (Some(ttl), Some(min_hold)) = (&args.ttl, &args.min_hold) {
        if min_hold.value >= ttl.value {
            errors.push(syn::Error::new(
                min_hold.span,
                format!(
                    "`min_hold` ({}) must be shorter than `ttl` ({}): the lease cannot outlast its ttl",
                    format_millis(min_hold.value),
                    format_millis(ttl.value)
                ),
            ));
        }
    }

    let policy = args
        .on_conflict
        .as_ref()
        .and_then(|c| policy(c, &args, errors));
    let schedule = schedule(&args, errors);

    Some(Lock {
        key: args.key?,
        template: template?,
        ttl: args.ttl?.value,
        policy: policy?,
        min_hold: args.min_hold.map_or(0, |m| m.value),
        schedule: schedule?,
        renew: args.renew.is_some_and(|r| r.value),
        backend: args.backend.map(|b| b.value()),
        krate: args.krate.unwrap_or_else(|| syn::parse_quote!(::lockattr)),
    })
}

/// Checks `every` and `at` against the other options: `Some(None)` without a schedule,
/// `None` after an error.
fn schedule(args: &Args, errors: &mut Errors) -> Option<Option<(Millis, Millis)>> {
    let Some(every) = &args.every else {
        if let Some(at) = &args.at {
            errors.push(syn::Error::new(
                at.span,
                "`at` places the periods of `every`: add `every = \"…\"`, or remove `at`",
            ));
            return None;
        }
        return Some(None);
    };
    let mut ok = true;
    if let Some(c) = &args.on_conflict {
        if c.value != Conflict::Skip {
            errors.push(syn::Error::new(
                c.span,
                "with `every`, the instances' other ticks of a period that has had its run are \
                 skipped: use `on_conflict = \"skip\"`",
            ));
            ok = false;
        }
    }
    if let Some(min_hold) = &args.min_hold {
        errors.push(syn::Error::new(
            min_hold.span,
            "`every` already keeps the key taken until the end of the period: remove `min_hold`",
        ));
        ok = false;
    }
    let at = args.at.as_ref().map_or(0, |at| at.value);
    if let Some(at_arg) = args.at.as_ref().filter(|_| at >= every.value) {
        errors.push(syn::Error::new(
            at_arg.span,
            format!(
                "`at` ({}) must be shorter than the period `every` ({})",
                format_millis(at),
                format_millis(every.value)
            ),
        ));
        ok = false;
    }
    ok.then_some(Some((every.value, at)))
}

/// Checks that `wait`, `retries` and `backoff` go with their policy.
fn policy(conflict: &Spanned<Conflict>, args: &Args, errors: &mut Errors) -> Option<Policy> {
    let only_with = |option: &str, policy: &str, errors: &mut Errors| {
        if let Some(span) = args.name_span(option) {
            errors.push(syn::Error::new(
                span,
                format!("`{option}` only applies to `on_conflict = \"{policy}\"`; remove it or change the policy"),
            ));
        }
    };
    let needs = |option: &str, what: &str, example: &str, errors: &mut Errors| {
        if args.unreported_missing(option) {
            let policy = if conflict.value == Conflict::Wait {
                "wait"
            } else {
                "retry"
            };
            errors.push(syn::Error::new(
                conflict.span,
                format!("`on_conflict = \"{policy}\"` needs `{option}` ({what}), e.g. `{option} = {example}`"),
            ));
        }
    };
    if conflict.value != Conflict::Wait {
        only_with("wait", "wait", errors);
    }
    if conflict.value != Conflict::Retry {
        only_with("retries", "retry", errors);
        only_with("backoff", "retry", errors);
    }
    match conflict.value {
        Conflict::Skip => Some(Policy::Skip),
        Conflict::Error => Some(Policy::Error),
        Conflict::Wait => {
            needs("wait", "the longest to wait", "\"10s\"", errors);
            Some(Policy::Wait(args.wait.as_ref()?.value))
        }
        Conflict::Retry => {
            needs("retries", "how many more tries", "3", errors);
            needs("backoff", "the pause between tries", "\"200ms\"", errors);
            Some(Policy::Retry {
                retries: args.retries.as_ref()?.value,
                backoff: args.backoff.as_ref()?.value,
            })
        }
    }
}

/// The names a placeholder may start with: `self`, the plain identifier parameters, and
/// the names bound inside destructured ones (`id` in `Path(id): Path<u64>`, `id` in
/// `Json(Job { id, .. }): Json<Job>`, `a` and `b` in `(a, b): (u32, u32)`). Each is a
/// local of the function, in scope where the key is built.
fn parameter_names(func: &ItemFn) -> Vec<String> {
    let mut names = Vec::new();
    for input in &func.sig.inputs {
        match input {
            FnArg::Receiver(_) => names.push("self".to_owned()),
            FnArg::Typed(t) => bindings(&t.pat, &mut names),
        }
    }
    names
}

/// Pushes the names `pat` binds, in the order written.
fn bindings(pat: &Pat, names: &mut Vec<String>) {
    match pat {
        Pat::Ident(p) => {
            names.push(p.ident.unraw().to_string());
            if let Some((_, sub)) = &p.subpat {
                bindings(sub, names);
            }
        }
        Pat::Tuple(t) => t.elems.iter().for_each(|p| bindings(p, names)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| bindings(p, names)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| bindings(&f.pat, names)),
        Pat::Slice(s) => s.elems.iter().for_each(|p| bindings(p, names)),
        Pat::Reference(r) => bindings(&r.pat, names),
        Pat::Paren(p) => bindings(&p.pat, names),
        Pat::Type(t) => bindings(&t.pat, names),
        // Or-patterns bind the same names in each case.
        Pat::Or(o) => o.cases.iter().take(1).for_each(|p| bindings(p, names)),
        _ => {}
    }
}

fn check_placeholders(key: &LitStr, template: &Template, func: &ItemFn, errors: &mut Errors) {
    let params = parameter_names(func);
    let destructured = func.sig.inputs.iter().any(|input| {
        matches!(input, FnArg::Typed(t) if !matches!(&*t.pat, Pat::Ident(p) if p.subpat.is_none()))
    });
    let refs: Vec<&str> = params.iter().map(String::as_str).collect();
    for segment in &template.segments {
        let Segment::Placeholder(p) = segment else {
            continue;
        };
        if refs.contains(&p.root()) {
            continue;
        }
        let hint = did_you_mean(p.root(), &refs)
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        let known = if refs.is_empty() {
            format!(
                "`{}` has no parameter a placeholder can name",
                func.sig.ident
            )
        } else {
            let what = if destructured {
                "the parameters and the names bound in them are"
            } else {
                "the parameters are"
            };
            format!("{what} {}", crate::args::list(&refs))
        };
        errors.push(syn::Error::new(
            key.span(),
            format!(
                "placeholder `<{}>` at position {} of the key names no parameter of `{}`; {hint}{known}",
                p.dotted(),
                p.start,
                func.sig.ident
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_parameters_and_their_bindings() {
        let func: ItemFn = syn::parse_quote! {
            async fn f(
                &self,
                plain: u32,
                Path(id): Path<u64>,
                Json(Job { id: job_id, ref tenant, .. }): Json<Job>,
                (a, mut b): (u32, u32),
                &[first, _]: &[u8; 2],
                whole @ Wrap(inner): Wrap,
                r#type: u8,
            ) {}
        };
        assert_eq!(
            parameter_names(&func),
            [
                "self", "plain", "id", "job_id", "tenant", "a", "b", "first", "whole", "inner",
                "type"
            ]
        );
    }
}
