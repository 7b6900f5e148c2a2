//! Where a query can take a lock clause: a `const fn` scan of its SQL for the statement's
//! top level (outside parentheses, strings and comments), usable at compile time through
//! [`sql!`](super::sql).

/// How a server spells strings and comments: enough to find the statement's top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `'…'` with `''`, `E'…'` with backslashes, `"ident"`, `$tag$…$tag$`, nested `/* */`.
    Postgres,
    /// `'…'` and `"…"` with backslashes, `` `ident` ``, `#` and `-- ` comments.
    MySql,
}

/// Why a lock clause cannot be appended to a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The query is not a `SELECT` (or a `WITH … SELECT`).
    NotASelect,
    /// A top-level `UNION`, `INTERSECT`, `EXCEPT` or `MINUS`: the clause would lock one side.
    SetOperation,
    /// The query already has a lock clause (`FOR …`, `LOCK IN SHARE MODE`).
    HasLockClause,
    /// A `;`: a second statement, or a trailing `;` the clause would land after.
    Semicolon,
    /// A top-level `INTO`: the clause would not apply to the rows returned.
    Into,
    /// PostgreSQL refuses a lock clause with `DISTINCT`, `GROUP BY`, `HAVING` or `WINDOW`.
    Grouping,
    /// A string, quoted name or comment that is never closed, or unbalanced parentheses.
    Unterminated,
    /// A MySQL executable comment (`/*! … */`), whose content the server runs.
    ExecutableComment,
}

impl Refusal {
    /// A sentence for error messages.
    pub const fn message(self) -> &'static str {
        match self {
            Refusal::NotASelect => "a lock clause can only be appended to a SELECT (or WITH … SELECT)",
            Refusal::SetOperation => "the query has a top-level UNION, INTERSECT or EXCEPT, whose rows a lock clause cannot lock; lock each SELECT on its own",
            Refusal::HasLockClause => "the query already has a lock clause (FOR …, LOCK IN SHARE MODE): leave it out, lockattr::rows appends the one its mode and policy ask for",
            Refusal::Semicolon => "the query has a `;` (a trailing one, or a second statement): remove it",
            Refusal::Into => "the query has a top-level INTO: a lock clause cannot follow it",
            Refusal::Grouping => "PostgreSQL refuses a lock clause with DISTINCT, GROUP BY, HAVING or WINDOW",
            Refusal::Unterminated => "the query has an unterminated string, quoted name or comment, or unbalanced parentheses",
            Refusal::ExecutableComment => "the query has a MySQL executable comment (/*! … */), which lockattr::rows cannot see into",
        }
    }
}

/// What the scan learnt of a query a clause can be appended to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// The last thing in the query is a `--` or `#` comment: the clause goes on a new line.
    pub ends_in_line_comment: bool,
}

pub(crate) const fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

const fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// `sql[start..end]` equals `word` (upper case) ignoring ASCII case.
const fn word_is(sql: &[u8], start: usize, end: usize, word: &str) -> bool {
    let word = word.as_bytes();
    if end - start != word.len() {
        return false;
    }
    let mut i = 0;
    while i < word.len() {
        if sql[start + i].to_ascii_uppercase() != word[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The end of a quoted run that started at `start` (the quote), or `None` if unterminated.
/// A doubled quote is part of the run; so is a backslash-escaped one when `backslashes`.
const fn quoted_end(sql: &[u8], start: usize, quote: u8, backslashes: bool) -> Option<usize> {
    let mut i = start + 1;
    while i < sql.len() {
        let b = sql[i];
        if backslashes && b == b'\\' {
            i += 2;
        } else if b == quote {
            if i + 1 < sql.len() && sql[i + 1] == quote {
                i += 2;
            } else {
                return Some(i + 1);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// The end of a PostgreSQL dollar-quoted string starting at `start` (`$tag$`), `Ok(None)`
/// when `$` does not open one (a `$1` parameter), `Err` when it is never closed.
const fn dollar_end(sql: &[u8], start: usize) -> Result<Option<usize>, Refusal> {
    let mut tag_end = start + 1;
    while tag_end < sql.len() && sql[tag_end] != b'$' {
        let b = sql[tag_end];
        let ok = if tag_end == start + 1 {
            is_word_start(b)
        } else {
            b.is_ascii_alphanumeric() || b == b'_'
        };
        if !ok {
            return Ok(None);
        }
        tag_end += 1;
    }
    if tag_end >= sql.len() {
        return Ok(None);
    }
    let tag_len = tag_end + 1 - start;
    let mut i = tag_end + 1;
    while i + tag_len <= sql.len() {
        let mut same = true;
        let mut k = 0;
        while k < tag_len {
            if sql[i + k] != sql[start + k] {
                same = false;
                break;
            }
            k += 1;
        }
        if same {
            return Ok(Some(i + tag_len));
        }
        i += 1;
    }
    Err(Refusal::Unterminated)
}

/// Checks that a lock clause can be appended to `sql` as the server reads it: a `SELECT`
/// whose top level (outside parentheses, strings and comments) has no set operation, lock
/// clause, `INTO` or `;`.
pub(crate) const fn scan(sql: &str, dialect: Dialect) -> Result<Scan, Refusal> {
    let pg = matches!(dialect, Dialect::Postgres);
    let sql = sql.as_bytes();
    let mut i = 0;
    let mut depth: usize = 0;
    let mut words = 0;
    let mut first_is_with = false;
    let mut selects = false;
    let mut line_comment_last = false;
    while i < sql.len() {
        let b = sql[i];
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        line_comment_last = false;
        let next = if i + 1 < sql.len() { sql[i + 1] } else { 0 };
        let dash_comment = b == b'-'
            && next == b'-'
            && (pg || i + 2 >= sql.len() || sql[i + 2].is_ascii_whitespace());
        if dash_comment || (!pg && b == b'#') {
            while i < sql.len() && sql[i] != b'\n' {
                i += 1;
            }
            line_comment_last = true;
            continue;
        }
        if b == b'/' && next == b'*' {
            if !pg && i + 2 < sql.len() && (sql[i + 2] == b'!' || sql[i + 2] == b'M') {
                return Err(Refusal::ExecutableComment);
            }
            let mut nest = 1;
            i += 2;
            while nest > 0 {
                if i + 1 >= sql.len() {
                    return Err(Refusal::Unterminated);
                }
                if sql[i] == b'*' && sql[i + 1] == b'/' {
                    nest -= 1;
                    i += 2;
                } else if pg && sql[i] == b'/' && sql[i + 1] == b'*' {
                    nest += 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
            continue;
        }
        if b == b'\'' || b == b'"' || (!pg && b == b'`') {
            let backslashes = !pg && b != b'`';
            match quoted_end(sql, i, b, backslashes) {
                Some(end) => i = end,
                None => return Err(Refusal::Unterminated),
            }
            continue;
        }
        if pg && b == b'$' {
            match dollar_end(sql, i) {
                Ok(Some(end)) => {
                    i = end;
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
        if b == b'(' {
            depth += 1;
            i += 1;
            continue;
        }
        if b == b')' {
            if depth == 0 {
                return Err(Refusal::Unterminated);
            }
            depth -= 1;
            i += 1;
            continue;
        }
        if b == b';' {
            return Err(Refusal::Semicolon);
        }
        if b.is_ascii_digit() {
            while i < sql.len() && (is_word(sql[i]) || sql[i] == b'.') {
                i += 1;
            }
            continue;
        }
        if !is_word_start(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < sql.len() && is_word(sql[i]) {
            i += 1;
        }
        // PostgreSQL's escape strings: E'…' reads backslashes.
        if pg && i - start == 1 && (b == b'E' || b == b'e') && i < sql.len() && sql[i] == b'\'' {
            match quoted_end(sql, i, b'\'', true) {
                Some(end) => i = end,
                None => return Err(Refusal::Unterminated),
            }
            continue;
        }
        if depth > 0 {
            continue;
        }
        words += 1;
        if words == 1 {
            if word_is(sql, start, i, "WITH") {
                first_is_with = true;
            } else if !word_is(sql, start, i, "SELECT") {
                return Err(Refusal::NotASelect);
            }
        }
        if word_is(sql, start, i, "SELECT") {
            selects = true;
        } else if word_is(sql, start, i, "UNION")
            || word_is(sql, start, i, "INTERSECT")
            || word_is(sql, start, i, "EXCEPT")
            || word_is(sql, start, i, "MINUS")
        {
            return Err(Refusal::SetOperation);
        } else if word_is(sql, start, i, "FOR") || word_is(sql, start, i, "LOCK") {
            return Err(Refusal::HasLockClause);
        } else if word_is(sql, start, i, "INTO") {
            return Err(Refusal::Into);
        } else if pg
            && (word_is(sql, start, i, "DISTINCT")
                || word_is(sql, start, i, "GROUP")
                || word_is(sql, start, i, "HAVING")
                || word_is(sql, start, i, "WINDOW"))
        {
            return Err(Refusal::Grouping);
        }
    }
    if depth > 0 {
        return Err(Refusal::Unterminated);
    }
    if words == 0 || (first_is_with && !selects) {
        return Err(Refusal::NotASelect);
    }
    Ok(Scan {
        ends_in_line_comment: line_comment_last,
    })
}

/// Whether a lock clause can be appended to `sql` read as PostgreSQL and as MySQL both would
/// read it: the check [`sql!`](super::sql) makes at compile time, for a literal whose server
/// is not known then (at run time the server's own dialect is checked).
pub const fn check_literal(sql: &str) -> Result<(), Refusal> {
    if let Err(e) = scan(sql, Dialect::Postgres) {
        return Err(e);
    }
    match scan(sql, Dialect::MySql) {
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(sql: &str) -> Result<Scan, Refusal> {
        scan(sql, Dialect::Postgres)
    }

    fn my(sql: &str) -> Result<Scan, Refusal> {
        scan(sql, Dialect::MySql)
    }

    #[test]
    fn plain_selects_take_a_clause() {
        for sql in [
            "SELECT id FROM jobs WHERE state = 'pending' ORDER BY id LIMIT 10",
            "with p as (select id from jobs) select * from p",
            "SELECT (SELECT 1 UNION SELECT 2) AS x FROM t",
            "SELECT substring(name FROM 1 FOR 3) FROM t",
            "SELECT 'for update; union' AS s, \"FOR\" FROM t",
            "SELECT 1 /* for update */ FROM t",
        ] {
            assert!(pg(sql).is_ok(), "{sql}");
            assert!(my(sql).is_ok(), "{sql}");
        }
        assert!(pg("SELECT $$ ; FOR $$, $tag$ union $tag$, $1 FROM t").is_ok());
        assert!(pg("SELECT E'it\\'s ; for' FROM t").is_ok());
        assert!(my("SELECT 'it\\'s ; for', `for` FROM t").is_ok());
        assert!(pg("SELECT 1 FROM t /* a /* nested */ ; */").is_ok());
    }

    #[test]
    fn what_cannot_take_a_clause_is_refused() {
        let cases = [
            (
                "SELECT 1 FROM a UNION SELECT 1 FROM b",
                Refusal::SetOperation,
            ),
            (
                "SELECT 1 FROM a EXCEPT SELECT 1 FROM b",
                Refusal::SetOperation,
            ),
            ("SELECT id FROM jobs FOR UPDATE", Refusal::HasLockClause),
            (
                "SELECT id FROM jobs for share skip locked",
                Refusal::HasLockClause,
            ),
            (
                "SELECT id FROM jobs LOCK IN SHARE MODE",
                Refusal::HasLockClause,
            ),
            ("SELECT id FROM jobs;", Refusal::Semicolon),
            ("SELECT 1; DELETE FROM jobs", Refusal::Semicolon),
            ("UPDATE jobs SET state = 'x'", Refusal::NotASelect),
            (
                "WITH d AS (DELETE FROM jobs RETURNING id) DELETE FROM x",
                Refusal::NotASelect,
            ),
            ("", Refusal::NotASelect),
            ("SELECT id INTO x FROM jobs", Refusal::Into),
            ("SELECT 'unterminated FROM jobs", Refusal::Unterminated),
            ("SELECT (1 FROM jobs", Refusal::Unterminated),
            ("SELECT 1 FROM jobs /* open", Refusal::Unterminated),
        ];
        for (sql, refusal) in cases {
            assert_eq!(pg(sql), Err(refusal), "{sql}");
            assert_eq!(my(sql), Err(refusal), "{sql}");
        }
        assert_eq!(pg("SELECT DISTINCT a FROM t"), Err(Refusal::Grouping));
        assert_eq!(pg("SELECT a FROM t GROUP BY a"), Err(Refusal::Grouping));
        assert!(my("SELECT a FROM t GROUP BY a").is_ok());
        assert_eq!(
            my("SELECT 1 /*! FOR UPDATE */ FROM t"),
            Err(Refusal::ExecutableComment)
        );
        // A backslash ends nothing in a PostgreSQL string, and escapes the quote in MySQL.
        assert!(pg("SELECT 'a\\' FROM t").is_ok());
        assert_eq!(my("SELECT 'a\\' FROM t"), Err(Refusal::Unterminated));
    }

    #[test]
    fn a_trailing_line_comment_is_noticed() {
        assert_eq!(
            pg("SELECT 1 FROM t -- the jobs"),
            Ok(Scan {
                ends_in_line_comment: true
            })
        );
        assert_eq!(
            my("SELECT 1 FROM t # the jobs"),
            Ok(Scan {
                ends_in_line_comment: true
            })
        );
        assert_eq!(
            my("SELECT 1 FROM t -- x\n"),
            Ok(Scan {
                ends_in_line_comment: true
            })
        );
        assert_eq!(
            pg("SELECT 1 -- x\nFROM t"),
            Ok(Scan {
                ends_in_line_comment: false
            })
        );
        // MySQL reads `--1` as minus minus one.
        assert_eq!(
            my("SELECT 1--1 FROM t"),
            Ok(Scan {
                ends_in_line_comment: false
            })
        );
    }
}
