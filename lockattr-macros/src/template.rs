//! The key template: static text and `<path>` placeholders.

use syn::LitStr;

use crate::errors::Errors;

/// A parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub segments: Vec<Segment>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text that goes into the key as it is.
    Static(String),
    /// `<a.b.c>`: a parameter and, optionally, fields of it.
    Placeholder(Placeholder),
}

/// A `<path>` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The path's parts: `["job", "id"]` for `<job.id>`.
    pub path: Vec<String>,
    /// Byte offset of the `<` in the template.
    pub start: usize,
}

impl Placeholder {
    /// The parameter the path starts at.
    pub fn root(&self) -> &str {
        &self.path[0]
    }

    /// The path as written between `<` and `>`.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }
}

/// Characters allowed in static text.
pub fn is_static_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-')
}

/// The characters that separate two placeholders so that keys stay injective: escaped
/// values never contain them.
const SEPARATORS: &[char] = &[':', '/'];

fn err(lit: &LitStr, msg: String) -> syn::Error {
    syn::Error::new(lit.span(), msg)
}

/// Parses the template in `lit`; each mistake is pushed to `errors`.
pub fn parse(lit: &LitStr, errors: &mut Errors) -> Template {
    let text = lit.value();
    let mut segments = Vec::new();
    if text.is_empty() {
        errors.push(err(
            lit,
            "the key is empty; write static text and `<param>` placeholders, such as \"flush:<tenant>\"".into(),
        ));
        return Template { segments };
    }
    let mut static_text = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '<' {
            let Some(end) = text[i + 1..].find('>').map(|e| i + 1 + e) else {
                errors.push(err(
                    lit,
                    format!("unterminated `<` at position {i} of the key: close the placeholder with `>`"),
                ));
                break;
            };
            let inner = &text[i + 1..end];
            if let Some(bad) = inner.find('<') {
                errors.push(err(
                    lit,
                    format!("unterminated `<` at position {i} of the key: another `<` follows at position {} before the `>`", i + 1 + bad),
                ));
            } else if inner.is_empty() {
                errors.push(err(
                    lit,
                    format!("empty placeholder `<>` at position {i} of the key: name a parameter, such as `<tenant>`"),
                ));
            } else {
                match parse_path(inner) {
                    Ok(path) => {
                        if !static_text.is_empty() {
                            segments.push(Segment::Static(std::mem::take(&mut static_text)));
                        }
                        segments.push(Segment::Placeholder(Placeholder { path, start: i }));
                    }
                    Err(msg) => errors.push(err(lit, format!("placeholder `<{inner}>`: {msg}"))),
                }
            }
            while chars.peek().is_some_and(|(j, _)| *j <= end) {
                chars.next();
            }
        } else if is_static_char(c) {
            static_text.push(c);
        } else {
            let what = if c == '>' {
                "`>` without an opening `<`".to_string()
            } else {
                format!("character {c:?}")
            };
            errors.push(err(
                lit,
                format!("{what} at position {i} of the key is not allowed in its static text: use only `A-Z a-z 0-9 . _ : / -` there, and `<param>` for values"),
            ));
        }
    }
    if !static_text.is_empty() {
        segments.push(Segment::Static(static_text));
    }
    let template = Template { segments };
    check_separators(lit, &template, errors);
    template
}

/// Two placeholders need `:` or `/` between them: `<a>-<b>` would give `x-y-z` for both
/// (`x-y`, `z`) and (`x`, `y-z`).
fn check_separators(lit: &LitStr, template: &Template, errors: &mut Errors) {
    let mut previous: Option<&Placeholder> = None;
    let mut separated = true;
    for segment in &template.segments {
        match segment {
            Segment::Static(s) => separated |= s.contains(SEPARATORS),
            Segment::Placeholder(p) => {
                if let (Some(prev), false) = (previous, separated) {
                    errors.push(err(
                        lit,
                        format!(
                            "placeholders `<{}>` and `<{}>` need a `:` or `/` between them, so that different values always give different keys (for example `<{}>:<{}>`)",
                            prev.dotted(), p.dotted(), prev.dotted(), p.dotted()
                        ),
                    ));
                }
                previous = Some(p);
                separated = false;
            }
        }
    }
}

fn parse_path(inner: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = inner.split('.').collect();
    for (n, part) in parts.iter().enumerate() {
        let ident = !part.is_empty()
            && part
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let index = n > 0 && !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !(ident || index) || *part == "_" {
            return Err(format!(
                "`{part}` is not a field name; write a parameter name followed by fields, such as `<job.id>` or `<self.shard>`"
            ));
        }
    }
    Ok(parts.into_iter().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Template, String> {
        let lit = LitStr::new(s, proc_macro2::Span::call_site());
        let mut errors = Errors::default();
        let t = parse(&lit, &mut errors);
        errors.finish().map(|()| t).map_err(|e| e.to_string())
    }

    #[test]
    fn splits_static_text_and_placeholders() {
        let t = parse_str("flush:<tenant>/<job.id>:x").unwrap();
        assert_eq!(
            t.segments,
            vec![
                Segment::Static("flush:".into()),
                Segment::Placeholder(Placeholder {
                    path: vec!["tenant".into()],
                    start: 6
                }),
                Segment::Static("/".into()),
                Segment::Placeholder(Placeholder {
                    path: vec!["job".into(), "id".into()],
                    start: 15
                }),
                Segment::Static(":x".into()),
            ]
        );
        assert!(parse_str("pair:<p.0>").is_ok());
    }

    #[test]
    fn reports_each_mistake() {
        assert!(parse_str("").unwrap_err().contains("empty"));
        assert!(parse_str("a:<b").unwrap_err().contains("unterminated"));
        assert!(parse_str("a:<>").unwrap_err().contains("empty placeholder"));
        assert!(parse_str("a b").unwrap_err().contains("' '"));
        assert!(parse_str("a>").unwrap_err().contains("without an opening"));
        assert!(parse_str("<a>-<b>")
            .unwrap_err()
            .contains("need a `:` or `/`"));
        assert!(parse_str("<a><b>")
            .unwrap_err()
            .contains("need a `:` or `/`"));
        assert!(parse_str("<a.>").unwrap_err().contains("not a field name"));
        assert!(parse_str("<1a>").unwrap_err().contains("not a field name"));
        assert!(parse_str("<a<b>").unwrap_err().contains("unterminated"));
    }
}
