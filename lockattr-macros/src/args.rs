//! Parsing the attribute's arguments: `name = value` pairs, every value kept with its span.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Lit, LitBool, LitInt, LitStr, Token};

use crate::duration::{format_millis, parse_duration, Millis};
use crate::errors::{did_you_mean, Errors};

/// Every option the attribute takes, in the order the docs list them.
pub const OPTIONS: &[&str] = &[
    "key",
    "ttl",
    "on_conflict",
    "wait",
    "retries",
    "backoff",
    "min_hold",
    "every",
    "at",
    "renew",
    "backend",
    "crate",
];

/// The accepted `on_conflict` values.
pub const POLICIES: &[&str] = &["skip", "error", "wait", "retry"];

/// A value and where it was written.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// What `on_conflict` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Skip,
    Error,
    Wait,
    Retry,
}

/// The parsed attribute. Options that failed to parse are `None` and their error is in
/// the [`Errors`] returned beside it.
#[derive(Default)]
pub struct Args {
    pub key: Option<LitStr>,
    pub ttl: Option<Spanned<Millis>>,
    pub on_conflict: Option<Spanned<Conflict>>,
    pub wait: Option<Spanned<Millis>>,
    pub retries: Option<Spanned<u32>>,
    pub backoff: Option<Spanned<Millis>>,
    pub min_hold: Option<Spanned<Millis>>,
    pub every: Option<Spanned<Millis>>,
    pub at: Option<Spanned<Millis>>,
    pub renew: Option<Spanned<bool>>,
    pub backend: Option<LitStr>,
    pub krate: Option<syn::Path>,
    /// Option names as written, for "given twice" and "without" messages.
    pub names: Vec<Ident>,
    /// The options suggested for unknown names ("did you mean `ttl`?").
    pub suggested: Vec<&'static str>,
}

impl Args {
    /// The span of the option `name` as written, if it was.
    pub fn name_span(&self, name: &str) -> Option<Span> {
        self.names.iter().find(|n| *n == name).map(Ident::span)
    }

    /// Whether `name` is missing and no error says so yet: an unknown option that is a
    /// near miss of it (`tll` for `ttl`) was reported with the suggestion, which is the fix.
    pub fn unreported_missing(&self, name: &str) -> bool {
        self.name_span(name).is_none() && !self.suggested.contains(&name)
    }
}

/// One `name = value` pair before its value is interpreted.
struct RawArg {
    name: Ident,
    value: Lit,
}

impl Parse for RawArg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        // `Ident::parse_any` also accepts the keyword `crate`.
        let name = Ident::parse_any(input).map_err(|e| {
            syn::Error::new(
                e.span(),
                format!(
                    "expected an option such as `key = \"job:<id>\"`; options are: {}",
                    list(OPTIONS)
                ),
            )
        })?;
        if !input.peek(Token![=]) {
            return Err(syn::Error::new(
                name.span(),
                format!("expected `{name} = …`: every option takes a value"),
            ));
        }
        input.parse::<Token![=]>()?;
        let value = input.parse::<Lit>().map_err(|e| {
            syn::Error::new(
                e.span(),
                format!(
                    "the value of `{name}` must be a literal, such as `\"30s\"`, `3` or `true`"
                ),
            )
        })?;
        Ok(RawArg { name, value })
    }
}

/// `a`, `b`, `c` as "`a`, `b`, `c`".
pub fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn expect_str(lit: &Lit, option: &str, example: &str) -> syn::Result<LitStr> {
    match lit {
        Lit::Str(s) => Ok(s.clone()),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{option}` takes a string, such as `{option} = {example}`"),
        )),
    }
}

/// The shortest `ttl`. The runtime refuses a grant that arrives after its lease ran out,
/// and a lease shorter than this can run out before any backend's answer is back.
pub const MIN_TTL: Millis = 10;

fn duration(lit: &Lit, option: &str) -> syn::Result<Spanned<Millis>> {
    let s = expect_str(lit, option, "\"30s\"")?;
    let value = parse_duration(&s.value())
        .and_then(|ms| at_least_floor(option, ms))
        .map_err(|msg| {
            syn::Error::new(
                s.span(),
                format!("invalid `{option}` duration `{}`: {msg}", s.value()),
            )
        })?;
    Ok(Spanned {
        value,
        span: s.span(),
    })
}

/// `ms` if `option` may be that short: a `ttl` or an `every` no shorter than
/// [`MIN_TTL`], any other duration not zero.
fn at_least_floor(option: &str, ms: Millis) -> Result<Millis, String> {
    if option == "ttl" && ms < MIN_TTL {
        return Err(format!(
            "a ttl must be at least {}; a shorter lease can run out before the backend's grant arrives, and a late grant is refused",
            format_millis(MIN_TTL)
        ));
    }
    if option == "every" && ms < MIN_TTL {
        return Err(format!(
            "a period must be at least {}",
            format_millis(MIN_TTL)
        ));
    }
    if ms == 0 {
        return Err("it is zero; a lock duration must be at least 1ms".into());
    }
    Ok(ms)
}

impl Args {
    /// Parses the attribute's tokens. Each mistake is collected; the result holds what
    /// could be read.
    pub fn parse(tokens: proc_macro2::TokenStream, errors: &mut Errors) -> Args {
        let mut args = Args::default();
        let raw = match syn::parse::Parser::parse2(
            Punctuated::<RawArg, Token![,]>::parse_terminated,
            tokens,
        ) {
            Ok(raw) => raw,
            Err(e) => {
                errors.push(e);
                return args;
            }
        };
        for RawArg { name, value } in raw {
            let text = name.to_string();
            if !OPTIONS.contains(&text.as_str()) {
                let suggestion = did_you_mean(&text, OPTIONS);
                args.suggested.extend(suggestion);
                let hint = suggestion
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                errors.push(syn::Error::new(
                    name.span(),
                    format!(
                        "unknown option `{text}`; {hint}expected one of: {}",
                        list(OPTIONS)
                    ),
                ));
                continue;
            }
            if args.names.iter().any(|n| *n == text) {
                errors.push(syn::Error::new(
                    name.span(),
                    format!("`{text}` is given twice; keep one"),
                ));
                continue;
            }
            args.names.push(name.clone());
            if let Err(e) = args.set(&text, &value) {
                errors.push(e);
            }
        }
        args
    }

    fn set(&mut self, name: &str, value: &Lit) -> syn::Result<()> {
        match name {
            "key" => self.key = Some(expect_str(value, name, "\"job:<id>\"")?),
            "ttl" => self.ttl = Some(duration(value, name)?),
            "wait" => self.wait = Some(duration(value, name)?),
            "backoff" => self.backoff = Some(duration(value, name)?),
            "min_hold" => self.min_hold = Some(duration(value, name)?),
            "every" => self.every = Some(duration(value, name)?),
            "at" => self.at = Some(duration(value, name)?),
            "on_conflict" => {
                let s = expect_str(value, name, "\"skip\"")?;
                let policy = match s.value().as_str() {
                    "skip" => Conflict::Skip,
                    "error" => Conflict::Error,
                    "wait" => Conflict::Wait,
                    "retry" => Conflict::Retry,
                    other => {
                        let hint = did_you_mean(other, POLICIES)
                            .map(|s| format!("did you mean `{s}`? "))
                            .unwrap_or_default();
                        return Err(syn::Error::new(
                            s.span(),
                            format!(
                                "unknown `on_conflict` value `{other}`; {hint}expected one of: {}",
                                list(POLICIES)
                            ),
                        ));
                    }
                };
                self.on_conflict = Some(Spanned {
                    value: policy,
                    span: s.span(),
                });
            }
            "retries" => {
                let n = match value {
                    Lit::Int(n) => n,
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            "`retries` takes a whole number, such as `retries = 3`",
                        ))
                    }
                };
                self.retries = Some(retries(n)?);
            }
            "renew" => match value {
                Lit::Bool(LitBool { value, span }) => {
                    self.renew = Some(Spanned {
                        value: *value,
                        span: *span,
                    })
                }
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "`renew` takes `true` or `false`",
                    ))
                }
            },
            "backend" => {
                let s = expect_str(value, name, "\"pg\"")?;
                let v = s.value();
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                {
                    return Err(syn::Error::new(
                        s.span(),
                        "a backend name is a non-empty word of `[A-Za-z0-9_.-]`, as given to `lockattr::init_named`",
                    ));
                }
                self.backend = Some(s);
            }
            "crate" => {
                let s = expect_str(value, name, "\"lockattr\"")?;
                self.krate = Some(s.parse::<syn::Path>().map_err(|_| {
                    syn::Error::new(s.span(), "`crate` takes the path of the lockattr crate, such as `crate = \"my_locks\"`")
                })?);
            }
            _ => unreachable!("`{name}` is in OPTIONS but has no parser"),
        }
        Ok(())
    }
}

/// The largest `retries`: more than this is a busy loop, not a policy.
const MAX_RETRIES: u32 = 10_000;

fn retries(n: &LitInt) -> syn::Result<Spanned<u32>> {
    let value: u32 = n.base10_parse().map_err(|_| {
        syn::Error::new(
            n.span(),
            format!("`retries` must be a whole number from 1 to {MAX_RETRIES}"),
        )
    })?;
    if value == 0 {
        return Err(syn::Error::new(
            n.span(),
            "`retries = 0` never retries: use `on_conflict = \"skip\"` instead",
        ));
    }
    if value > MAX_RETRIES {
        return Err(syn::Error::new(
            n.span(),
            format!("`retries` must be a whole number from 1 to {MAX_RETRIES}; for a long wait use `on_conflict = \"wait\"`"),
        ));
    }
    Ok(Spanned {
        value,
        span: n.span(),
    })
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn parse(tokens: proc_macro2::TokenStream) -> (Args, Result<(), String>) {
        let mut errors = Errors::default();
        let args = Args::parse(tokens, &mut errors);
        (args, errors.finish().map_err(|e| e.to_string()))
    }

    #[test]
    fn ttl_has_a_floor_and_other_durations_do_not() {
        let (args, ok) = parse(quote!(ttl = "10ms", wait = "1ms", backoff = "1ms"));
        assert_eq!(ok, Ok(()));
        assert_eq!(args.ttl.map(|t| t.value), Some(MIN_TTL));
        for short in ["9ms", "1ms", "0s"] {
            let (args, err) = parse(quote!(ttl = #short));
            let err = err.unwrap_err();
            assert!(err.contains("at least 10ms"), "{short}: {err}");
            assert!(args.ttl.is_none());
        }
        let (_, err) = parse(quote!(wait = "0s"));
        assert!(err.unwrap_err().contains("zero"));
    }
}
