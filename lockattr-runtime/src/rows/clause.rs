//! The lock clause each server takes for a mode, `OF` tables and a policy, and the
//! statement's label in messages.

use std::fmt::Write as _;

use super::scan::is_word_start;
use super::server::{Flavor, Policy, Server};
use super::Mode;

/// A table name for `OF`: one or two plain identifiers joined by `.`.
pub(crate) fn is_table_name(name: &str) -> bool {
    let part = |p: &str| {
        let b = p.as_bytes();
        !b.is_empty()
            && is_word_start(b[0])
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
    };
    let mut parts = name.split('.');
    let first = parts.next().is_some_and(part);
    let rest: Vec<&str> = parts.collect();
    first && rest.len() <= 1 && rest.iter().all(|p| part(p))
}

/// The lock clause `server` takes for `mode`, `of` and `policy`, or what it lacks.
pub(crate) fn lock_clause(
    server: &Server,
    mode: Mode,
    of: &[String],
    policy: &Policy,
) -> Result<String, String> {
    let (major, minor, patch) = server.version;
    let at_least = |v: (u32, u32, u32)| (major, minor, patch) >= v;
    let mode_sql = mode.sql();
    let mut out = String::new();
    match server.flavor {
        Flavor::Sqlite => {
            return Err(
                "row locks (SQLite locks the whole database file, never rows; for a lock \
                        between processes use the lease table, `sqlite://PATH`)"
                    .to_owned(),
            )
        }
        Flavor::Postgres => {
            if matches!(mode, Mode::NoKeyUpdate | Mode::KeyShare) && !at_least((9, 3, 0)) {
                return Err(mode_sql.to_owned());
            }
            if matches!(policy, Policy::Skip) && !at_least((9, 5, 0)) {
                return Err("SKIP LOCKED".to_owned());
            }
            out.push_str(mode_sql);
        }
        Flavor::MariaDb | Flavor::MySql => {
            let mysql8 = server.flavor == Flavor::MySql && at_least((8, 0, 1));
            match mode {
                Mode::Update => out.push_str("FOR UPDATE"),
                Mode::Share if mysql8 => out.push_str("FOR SHARE"),
                Mode::Share => out.push_str("LOCK IN SHARE MODE"),
                Mode::NoKeyUpdate | Mode::KeyShare => return Err(mode_sql.to_owned()),
            }
            if !of.is_empty() && !mysql8 {
                return Err(format!("`OF {}`", of.join(", ")));
            }
            let (word, since_mariadb) = match policy {
                Policy::Skip => ("SKIP LOCKED", (10, 6, 0)),
                Policy::Error => ("NOWAIT", (10, 3, 0)),
                Policy::Wait(_) => ("", (0, 0, 0)),
            };
            let has = match server.flavor {
                Flavor::MariaDb => at_least(since_mariadb),
                _ => mysql8,
            };
            if !word.is_empty() && !has {
                return Err(word.to_owned());
            }
        }
    }
    if !of.is_empty() {
        let _ = write!(out, " OF {}", of.join(", "));
    }
    match policy {
        Policy::Skip => out.push_str(" SKIP LOCKED"),
        Policy::Error => out.push_str(" NOWAIT"),
        Policy::Wait(_) => {}
    }
    Ok(out)
}

/// `sql` shortened for messages: whitespace runs as one space, at most 120 characters.
pub(crate) fn label(sql: &str) -> String {
    let collapsed = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(120) {
        Some((at, _)) => format!("{}…", &collapsed[..at]),
        None => collapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        assert!(is_table_name("jobs"));
        assert!(is_table_name("app.jobs_2"));
        for bad in [
            "",
            "1jobs",
            "jobs; drop",
            "a.b.c",
            "\"jobs\"",
            "jobs,x",
            "a.",
        ] {
            assert!(!is_table_name(bad), "{bad}");
        }
    }

    fn server(flavor: Flavor, version: (u32, u32, u32)) -> Server {
        Server {
            flavor,
            version,
            name: "test".into(),
            lock_wait_timeout: None,
        }
    }

    #[test]
    fn each_server_gets_its_own_syntax() {
        let wait = Policy::Wait(std::time::Duration::from_secs(1));
        let pg = server(Flavor::Postgres, (16, 4, 0));
        let of = ["jobs".to_owned()];
        assert_eq!(
            lock_clause(&pg, Mode::Update, &[], &Policy::Skip).unwrap(),
            "FOR UPDATE SKIP LOCKED"
        );
        assert_eq!(
            lock_clause(&pg, Mode::NoKeyUpdate, &of, &Policy::Error).unwrap(),
            "FOR NO KEY UPDATE OF jobs NOWAIT"
        );
        assert_eq!(
            lock_clause(&pg, Mode::KeyShare, &[], &wait).unwrap(),
            "FOR KEY SHARE"
        );

        let maria = server(Flavor::MariaDb, (10, 11, 6));
        assert_eq!(
            lock_clause(&maria, Mode::Update, &[], &Policy::Skip).unwrap(),
            "FOR UPDATE SKIP LOCKED"
        );
        assert_eq!(
            lock_clause(&maria, Mode::Share, &[], &Policy::Error).unwrap(),
            "LOCK IN SHARE MODE NOWAIT"
        );
        assert_eq!(
            lock_clause(&maria, Mode::Update, &of, &Policy::Skip).unwrap_err(),
            "`OF jobs`"
        );
        assert_eq!(
            lock_clause(&maria, Mode::NoKeyUpdate, &[], &wait).unwrap_err(),
            "FOR NO KEY UPDATE"
        );
        let old_maria = server(Flavor::MariaDb, (10, 5, 20));
        assert_eq!(
            lock_clause(&old_maria, Mode::Update, &[], &Policy::Skip).unwrap_err(),
            "SKIP LOCKED"
        );
        assert_eq!(
            lock_clause(&old_maria, Mode::Update, &[], &Policy::Error).unwrap(),
            "FOR UPDATE NOWAIT"
        );

        let mysql = server(Flavor::MySql, (8, 0, 36));
        assert_eq!(
            lock_clause(&mysql, Mode::Share, &of, &Policy::Skip).unwrap(),
            "FOR SHARE OF jobs SKIP LOCKED"
        );
        assert_eq!(
            lock_clause(&mysql, Mode::KeyShare, &[], &Policy::Skip).unwrap_err(),
            "FOR KEY SHARE"
        );
        let mysql57 = server(Flavor::MySql, (5, 7, 44));
        assert_eq!(
            lock_clause(&mysql57, Mode::Update, &[], &Policy::Error).unwrap_err(),
            "NOWAIT"
        );
        assert_eq!(
            lock_clause(&mysql57, Mode::Share, &[], &wait).unwrap(),
            "LOCK IN SHARE MODE"
        );

        let sqlite = server(Flavor::Sqlite, (3, 40, 1));
        assert!(lock_clause(&sqlite, Mode::Update, &[], &Policy::Skip)
            .unwrap_err()
            .contains("sqlite://"));
    }

    #[test]
    fn labels_are_short_and_on_one_line() {
        assert_eq!(
            label("SELECT id\n  FROM jobs\tLIMIT 1"),
            "SELECT id FROM jobs LIMIT 1"
        );
        let long = label(&"x ".repeat(200));
        assert_eq!(long.chars().count(), 121);
        assert!(long.ends_with('…'));
    }
}
