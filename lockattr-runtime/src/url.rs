//! Backend URLs: which backend a URL names, its options, and the redacted form used in
//! every message.

use std::collections::BTreeMap;

use crate::error::LockError;
use crate::key::DEFAULT_PREFIX;

/// A backend URL split into the parts lockattr needs; the backend's client gets the rest.
#[derive(Debug, Clone)]
pub struct BackendUrl {
    /// The scheme, lower-cased: `memory`, `redis`, …
    pub scheme: String,
    /// Everything between `://` and the `?`.
    pub rest: String,
    /// The query parameters, in order of their names.
    pub params: BTreeMap<String, String>,
    /// The URL with the password replaced by `***`: safe for logs and error messages.
    pub redacted: String,
}

impl BackendUrl {
    /// Splits `url`. Fails (naming the redacted URL) if it has no `scheme://`.
    pub fn parse(url: &str) -> Result<Self, LockError> {
        let redacted = redact(url);
        let invalid = |reason: &str| LockError::InvalidUrl {
            url: redacted.clone(),
            reason: reason.to_owned(),
        };
        let (scheme, after) = url.split_once("://").ok_or_else(|| {
            invalid("expected `scheme://…`, for example `memory://` or `redis://127.0.0.1:6379`")
        })?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(invalid("the scheme is not a word"));
        }
        let (rest, query) = match after.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (after, None),
        };
        let mut params = BTreeMap::new();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v).ok_or_else(|| invalid("a query value has a bad %-escape"))?;
            params.insert(k.to_owned(), v);
        }
        Ok(BackendUrl {
            scheme: scheme.to_ascii_lowercase(),
            rest: rest.to_owned(),
            params,
            redacted,
        })
    }

    /// The key prefix: `?prefix=…`, else [`DEFAULT_PREFIX`].
    pub fn prefix(&self) -> &str {
        self.params
            .get("prefix")
            .map_or(DEFAULT_PREFIX, String::as_str)
    }

    /// An [`LockError::InvalidUrl`] about this URL.
    pub fn invalid(&self, reason: impl Into<String>) -> LockError {
        LockError::InvalidUrl {
            url: self.redacted.clone(),
            reason: reason.into(),
        }
    }

    /// Fails if the query has a parameter outside `known` (a typo must not be ignored).
    pub fn check_params(&self, known: &[&str]) -> Result<(), LockError> {
        match self.params.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(self.invalid(format!(
                "unknown parameter `{k}`; this backend takes: {}",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

impl BackendUrl {
    /// The URL for a backend's client library: `scheme://rest` with the query parameters
    /// other than lockattr's own (`own`), percent-encoded again. A parameter that is in
    /// neither `own` nor `client` (those the client reads) is [`LockError::InvalidUrl`].
    pub fn client_url(
        &self,
        scheme: &str,
        own: &[&str],
        client: &[&str],
    ) -> Result<String, LockError> {
        let known: Vec<&str> = own.iter().chain(client).copied().collect();
        self.check_params(&known)?;
        let mut out = format!("{scheme}://{}", self.rest);
        let mut sep = '?';
        for (k, v) in self
            .params
            .iter()
            .filter(|(k, _)| !own.contains(&k.as_str()))
        {
            out.push(sep);
            sep = '&';
            out.push_str(k);
            out.push('=');
            for b in v.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        Ok(out)
    }
}

/// `url` with the password of its `user:password@` part, and the value of any
/// `password=` query parameter, replaced by `***`.
///
/// ```
/// use lockattr::url::redact;
/// assert_eq!(redact("redis://app:s3cret@cache:6379/0"), "redis://app:***@cache:6379/0");
/// assert_eq!(redact("postgres://db/app?password=x&sslmode=require"),
///            "postgres://db/app?password=***&sslmode=require");
/// assert_eq!(redact("memory://"), "memory://");
/// ```
pub fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    // Without `scheme://`, the whole head is treated as an authority: a password must not
    // escape redaction just because the URL is malformed.
    let rest = match head.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            rest
        }
        None => head,
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pass") =>
                {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scheme_rest_and_params() {
        let u = BackendUrl::parse("Memory://jobs?prefix=app%3A&x=1").unwrap();
        assert_eq!(u.scheme, "memory");
        assert_eq!(u.rest, "jobs");
        assert_eq!(u.prefix(), "app:");
        assert_eq!(u.params["x"], "1");
    }

    #[test]
    fn rejects_urls_without_scheme_and_never_prints_the_password() {
        let e = BackendUrl::parse("app:hunter2@localhost").unwrap_err();
        assert!(matches!(e, LockError::InvalidUrl { .. }));
        let e = BackendUrl::parse("redis://u:hunter2@h?prefix=%zz").unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("redis://u:***@h"), "{msg}");
    }

    #[test]
    fn redacts_passwords_with_at_signs_and_query_passwords() {
        assert_eq!(redact("redis://:p@ss@h:1"), "redis://:***@h:1");
        assert_eq!(redact("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(redact("x://h?Password=1"), "x://h?Password=***");
    }

    #[test]
    fn client_urls_drop_own_params_and_reencode() {
        let u = BackendUrl::parse(
            "postgres://u@h/db?mode=table&prefix=a%3A&sslmode=require&application_name=a%20b",
        )
        .unwrap();
        let client = u
            .client_url(
                "postgres",
                &["mode", "prefix"],
                &["sslmode", "application_name"],
            )
            .unwrap();
        assert_eq!(
            client,
            "postgres://u@h/db?application_name=a%20b&sslmode=require"
        );
        assert!(u
            .client_url("postgres", &["mode", "prefix"], &["sslmode"])
            .is_err());
    }

    #[test]
    fn unknown_params_are_errors() {
        let u = BackendUrl::parse("memory://?prefx=a").unwrap();
        let msg = u.check_params(&["prefix"]).unwrap_err().to_string();
        assert!(msg.contains("unknown parameter `prefx`"), "{msg}");
    }
}
