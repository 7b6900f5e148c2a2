//! Code generation: the checked [`Lock`] and the user's function become the wrapper.

use std::collections::HashMap;

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt as _;
use syn::spanned::Spanned as _;
use syn::{AttrStyle, Ident, ItemFn, LitStr, ReturnType};

use crate::args::Args;
use crate::errors::Errors;
use crate::template::{Placeholder, Segment};
use crate::validate::{validate, Lock, Policy};

/// The whole pipeline: parse, validate, expand. On any error the user's function is
/// emitted unchanged next to the errors, so that rustc reports only ours and the IDE keeps
/// working.
pub fn distributed_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "#[distributed_lock] goes on an `async fn` (a free function or a method)",
            );
            return fallback(error, item);
        }
    };
    let mut errors = Errors::default();
    let args = Args::parse(args, &mut errors);
    let lock = validate(args, &func, &mut errors);
    match (errors.finish(), lock) {
        (Ok(()), Some(lock)) => expand(&lock, func),
        (Err(e), _) => fallback(e, item),
        (Ok(()), None) => unreachable!("validation returned no lock without an error"),
    }
}

fn fallback(error: syn::Error, item: TokenStream) -> TokenStream {
    let mut out = error.to_compile_error();
    out.extend(item);
    out
}

/// Generates the wrapper around a checked function.
pub fn expand(lock: &Lock, func: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    // syn keeps the body's inner attributes (`#![allow(unused)]`) in `attrs`, after the
    // outer ones. They go back at the top of the body, where they apply to the whole
    // function as the user wrote them to (tracing-attributes does the same).
    let (outer, inner): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Outer));
    let krate = &lock.krate;
    let private = quote!(#krate::__private);

    let template = lock.key.value();
    let ttl = lock.ttl;
    let min_hold = lock.min_hold;
    let schedule = match lock.schedule {
        Some((every, at)) => quote!(::core::option::Option::Some(
            #private::Schedule::every(::core::time::Duration::from_millis(#every))
                .at(::core::time::Duration::from_millis(#at))
        )),
        None => quote!(::core::option::Option::None),
    };
    let renew = lock.renew;
    let policy = match lock.policy {
        Policy::Skip => quote!(#private::Policy::Skip),
        Policy::Error => quote!(#private::Policy::Error),
        Policy::Wait(wait) => {
            quote!(#private::Policy::Wait(::core::time::Duration::from_millis(#wait)))
        }
        Policy::Retry { retries, backoff } => quote!(#private::Policy::Retry {
            retries: #retries,
            backoff: ::core::time::Duration::from_millis(#backoff),
        }),
    };
    let backend = match &lock.backend {
        Some(name) => quote!(::core::option::Option::Some(#name)),
        None => quote!(::core::option::Option::None),
    };
    let key = key_expr(lock, &private);
    let fn_name = sig.ident.unraw().to_string();

    let (ret_ty, ret_span) = match &sig.output {
        ReturnType::Default => (quote!(()), sig.ident.span()),
        ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
    };
    // tracing's trick: an unreachable `return` of the declared type keeps rustc's type
    // errors on the user's signature and lets `?` in the body infer its target.
    // `impl Trait` cannot be named in a `let`, so such functions go without it.
    let fake_return = if contains_impl(ret_ty.clone()) {
        quote!()
    } else {
        quote! {
            #[allow(
                unknown_lints, unreachable_code, clippy::diverging_sub_expression,
                clippy::let_unit_value, clippy::unreachable, clippy::empty_loop,
                clippy::needless_return
            )]
            if false {
                let __lockattr_return: #ret_ty = loop {};
                return __lockattr_return;
            }
        }
    };
    // The bound on the return type (`Skippable` or `Fallible`) is reported on the
    // return type, with the traits' `on_unimplemented` text.
    let run_fn = if lock.policy.skips() {
        quote!(run_skippable)
    } else {
        quote!(run_fallible)
    };
    // The body's statements go into braces of our own that carry the span of the user's
    // braces: the user's block inside ours would be "unnecessary braces" (`unused_braces`)
    // when it is one expression, and a body of the wrong type is still reported on it.
    let stmts = &block.stmts;
    let mut braces = Group::new(Delimiter::Brace, quote!(#fake_return #(#stmts)*));
    braces.set_span(block.brace_token.span.join());
    let body = quote!(async move #braces);
    let run_path = respan(quote!(#private::#run_fn), ret_span);
    let run = quote_spanned! {ret_span=>
        #run_path(&__LOCKATTR_SITE, __lockattr_key, #body).await
    };

    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            // The site's options, and its entry in `lockattr::sites()` (a linker section).
            #[#private::linkme::distributed_slice(#private::SITES)]
            #[linkme(crate = #private::linkme)]
            static __LOCKATTR_SITE: #private::LockSite = #private::LockSite {
                template: #template,
                ttl: ::core::time::Duration::from_millis(#ttl),
                policy: #policy,
                min_hold: ::core::time::Duration::from_millis(#min_hold),
                renew: #renew,
                schedule: #schedule,
                backend: #backend,
                function: ::core::concat!(::core::module_path!(), "::", #fn_name),
                file: ::core::file!(),
                line: ::core::line!(),
            };
            let __lockattr_key = #key;
            #run
        }
    }
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut t| {
            if let TokenTree::Group(g) = &t {
                let mut group = Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                t = TokenTree::Group(group);
            }
            t.set_span(span);
            t
        })
        .collect()
}

fn contains_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Group(g) => contains_impl(g.stream()),
        _ => false,
    })
}

/// The expression that builds the key, borrowing the arguments.
///
/// The template `flush:<tenant>` becomes `format_args!(...)` over a format string in which
/// `<tenant>` is `{tenant}`, with `tenant` bound to an escaping wrapper of the argument.
/// The format string is a raw string literal carrying the key literal's span, laid out so
/// that each `{name}` sits where its `<path>` sits in the user's source: rustc then points
/// a missing `Display` impl at the placeholder inside the string. (rustc maps a raw
/// string's offsets into the source one character later than a plain string's, so the
/// format string starts one character short: the key's first character is passed apart,
/// or, when the key starts with a placeholder, that placeholder's name is one shorter.)
fn key_expr(lock: &Lock, private: &TokenStream) -> TokenStream {
    let layout = Layout::of(lock);
    let mut format = String::new();
    let mut bindings: Vec<Ident> = Vec::new();
    let mut values = Vec::new();
    let mut head = String::new();
    for (n, segment) in lock.template.segments.iter().enumerate() {
        match segment {
            Segment::Static(text) if n == 0 && layout.aligned => {
                let mut chars = text.chars();
                head.extend(chars.next());
                format.push_str(chars.as_str());
            }
            Segment::Static(text) => format.push_str(text),
            Segment::Placeholder(p) => {
                let name = &layout.names[&p.path];
                format.push('{');
                format.push_str(name);
                format.push('}');
                let ident = Ident::new(name, Span::call_site());
                if !bindings.contains(&ident) {
                    let path = value_path(p);
                    values.push(quote!(#private::KeyValue(&#path)));
                    bindings.push(ident);
                }
            }
        }
    }
    let format = if layout.aligned {
        let raw: TokenStream = format!("r\"{format}\"")
            .parse()
            .expect("static text has no quotes");
        raw.into_iter()
            .map(|mut t| {
                t.set_span(lock.key.span());
                t
            })
            .collect()
    } else {
        LitStr::new(&format, lock.key.span()).into_token_stream()
    };
    let template = lock.key.value();
    let build = quote!(#private::build_key(#template, #head, ::core::format_args!(#format)));
    if bindings.is_empty() {
        return build;
    }
    quote! {
        {
            let (#(#bindings,)*) = (#(#values,)*);
            #build
        }
    }
}

/// The capture name of each placeholder path, and whether the format string lines up
/// with the key literal (see [`key_expr`]).
struct Layout {
    names: HashMap<Vec<String>, String>,
    aligned: bool,
}

impl Layout {
    fn of(lock: &Lock) -> Layout {
        let mut names: HashMap<Vec<String>, String> = HashMap::new();
        let mut taken: Vec<String> = Vec::new();
        let mut aligned = is_plain_literal(&lock.key);
        for (n, segment) in lock.template.segments.iter().enumerate() {
            let Segment::Placeholder(p) = segment else {
                continue;
            };
            if names.contains_key(&p.path) {
                continue;
            }
            let joined = p.path.join("_");
            // A key that starts with a placeholder: its name is one character short.
            let len = if n == 0 {
                joined.len() - 1
            } else {
                joined.len()
            };
            let name = match fit_name(&joined, len, &taken) {
                Some(name) => name,
                None => {
                    aligned = false;
                    format!("__lockattr_{}", taken.len())
                }
            };
            taken.push(name.clone());
            names.insert(p.path.clone(), name);
        }
        Layout { names, aligned }
    }
}

/// True if the literal's source text is its value in plain quotes (no escapes, not raw),
/// so that offsets in the value are offsets in the source.
fn is_plain_literal(lit: &LitStr) -> bool {
    lit.token().to_string() == format!("\"{}\"", lit.value())
}

/// An identifier of exactly `len` characters made from the end of `joined`, that is no
/// keyword and not `taken`: `job_id` stays `job_id`; `self` becomes `_elf`; a second
/// `job_id` becomes `_ob_id`.
fn fit_name(joined: &str, len: usize, taken: &[String]) -> Option<String> {
    let base = &joined[joined.len().checked_sub(len)?..];
    (0..len)
        .map(|n| format!("{}{}", "_".repeat(n), &base[n..]))
        .find(|c| {
            c.chars().any(|ch| ch != '_')
                && !c.starts_with(|ch: char| ch.is_ascii_digit())
                && !is_keyword(c)
                && !taken.contains(c)
        })
}

fn is_keyword(word: &str) -> bool {
    syn::parse_str::<Ident>(word).is_err()
}

/// `tenant`, `job.id`, `self.shard`, `pair.0` as an expression.
fn value_path(p: &Placeholder) -> TokenStream {
    let mut parts = p.path.iter();
    let root = parts.next().map(String::as_str).unwrap_or_default();
    let mut out = name(root).into_token_stream();
    for field in parts {
        match field.parse::<usize>() {
            Ok(index) => {
                let index = syn::Index::from(index);
                out = quote!(#out.#index);
            }
            Err(_) => {
                let field = name(field);
                out = quote!(#out.#field);
            }
        }
    }
    out
}

/// A parameter or field name as an identifier: raw (`r#type`) if it is a keyword, as the
/// placeholder `<type>` names the parameter `r#type`.
fn name(word: &str) -> Ident {
    if is_keyword(word) && !matches!(word, "self" | "Self" | "super" | "crate") {
        Ident::new_raw(word, Span::call_site())
    } else {
        Ident::new(word, Span::call_site())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(args: TokenStream, item: TokenStream) -> String {
        let out = distributed_lock(args, item);
        let file: syn::File = syn::parse2(out).expect("expansion parses as a file");
        prettyplease::unparse(&file)
    }

    #[test]
    fn expands_a_skip_lock() {
        let out = expand_str(
            quote!(key = "flush:<tenant>", ttl = "30s", on_conflict = "skip"),
            quote!(
                async fn flush(tenant: &str) -> Result<(), AppError> {
                    do_flush(tenant).await
                }
            ),
        );
        expect_test::expect_file!["../tests/expand/skip.rs"].assert_eq(&out);
    }

    #[test]
    fn expands_a_scheduled_lock() {
        let out = expand_str(
            quote!(
                key = "report",
                ttl = "10m",
                on_conflict = "skip",
                every = "1h",
                at = "30m"
            ),
            quote!(
                async fn report() {
                    build_report().await
                }
            ),
        );
        expect_test::expect_file!["../tests/expand/scheduled.rs"].assert_eq(&out);
    }

    #[test]
    fn expands_a_method_with_fields_and_every_option() {
        let out = expand_str(
            quote!(
                key = "shard:<self.shard>/<job.id>/<job_id>",
                ttl = "1m",
                on_conflict = "retry",
                retries = 3,
                backoff = "200ms",
                min_hold = "10s",
                renew = true,
                backend = "pg",
                crate = "my_lockattr"
            ),
            quote!(
                pub async fn run(&self, job: &Job, job_id: u64) -> Option<u32> {
                    Some(1)
                }
            ),
        );
        expect_test::expect_file!["../tests/expand/method.rs"].assert_eq(&out);
    }

    #[test]
    fn expands_keys_from_destructured_parameters() {
        let out = expand_str(
            quote!(
                key = "job:<id>/<tenant>",
                ttl = "30s",
                on_conflict = "error"
            ),
            quote!(
                async fn handle(
                    Path(id): Path<u64>,
                    Json(Job { tenant, .. }): Json<Job>,
                ) -> Result<String, LockError> {
                    Ok(format!("{id}{tenant}"))
                }
            ),
        );
        expect_test::expect_file!["../tests/expand/destructured.rs"].assert_eq(&out);
    }

    #[test]
    fn puts_inner_attributes_back_in_the_body() {
        let out = expand_str(
            quote!(key = "quiet", ttl = "30s", on_conflict = "error"),
            quote!(
                #[doc = "outer"]
                async fn quiet() -> Result<(), LockError> {
                    #![allow(unused)]
                    let x = 1;
                    Ok(())
                }
            ),
        );
        expect_test::expect_file!["../tests/expand/inner_attribute.rs"].assert_eq(&out);
    }

    #[test]
    fn expands_wait_without_fake_return_for_impl_trait() {
        let out = expand_str(
            quote!(key = "<id>", ttl = "5s", on_conflict = "wait", wait = "2s"),
            quote!(
                async fn get(id: u32) -> impl Sized {
                    id
                }
            ),
        );
        assert!(out.contains("run_fallible"), "{out}");
        assert!(!out.contains("__lockattr_return"), "{out}");
    }

    #[test]
    fn on_error_emits_the_function_unchanged() {
        let out = distributed_lock(
            quote!(ttl = "30s"),
            quote!(
                async fn f() {}
            ),
        )
        .to_string();
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("missing `key`"), "{out}");
        assert!(out.contains("missing `on_conflict`"), "{out}");
        assert!(out.ends_with("async fn f () { }"), "{out}");
    }

    #[test]
    fn names_keep_the_layout() {
        assert_eq!(fit_name("self", 4, &[]).as_deref(), Some("_elf"));
        assert_eq!(
            fit_name("job_id", 6, &["job_id".into()]).as_deref(),
            Some("_ob_id")
        );
        assert_eq!(fit_name("tenant", 5, &[]).as_deref(), Some("enant"));
        assert_eq!(fit_name("pair_0", 6, &[]).as_deref(), Some("pair_0"));
        assert_eq!(fit_name("a", 0, &[]), None);
    }
}
