//! The `lockattr` command line for operators (cargo feature `cli`): list the locks held on
//! a backend, inspect one, and release one by force.
//!
//! ```text
//! cargo install lockattr --features cli,redis,postgres,mysql
//! lockattr held redis://127.0.0.1:6379
//! lockattr inspect 'sqlite://locks.db' flush:acme --json
//! lockattr release 'postgres://app@db/app?mode=table' flush:acme --force
//! ```
//!
//! It is a thin layer over [`Locks::held`](crate::Locks::held),
//! [`Locks::inspect`](crate::Locks::inspect) and
//! [`Locks::force_release`](crate::Locks::force_release); what each backend can show is
//! in [`backend::admin`](crate::backend::admin). The URL is never printed with its
//! password.
//!
//! Exit codes ([`exit`]): 0 done; 1 the key is not held (`inspect`), or nothing was
//! released (`release`); 2 usage error, including `release` without `--force`; 3 the
//! backend failed (unreachable, refused, a bad URL); 4 this backend cannot list, inspect
//! or release its locks.

mod render;

use std::io::Write;

use crate::{LockError, Locks};

pub use render::{format_time_left, held_json, held_table, lock_json, lock_lines};

/// The exit codes of `lockattr`.
pub mod exit {
    /// Done: the locks were listed, the key is held (`inspect`), or it was released.
    pub const OK: i32 = 0;
    /// The key is not held (`inspect`), or nothing was released (`release`).
    pub const NOT_FOUND: i32 = 1;
    /// The command line is wrong, or `release` was asked without `--force`.
    pub const USAGE: i32 = 2;
    /// The backend failed: unreachable, refused the statement, or a bad URL.
    pub const BACKEND: i32 = 3;
    /// This backend cannot list, inspect or release its locks.
    pub const UNSUPPORTED: i32 = 4;
}

/// `lockattr --help`.
pub const HELP: &str = "\
lockattr: see and break the locks of a lockattr backend

USAGE:
    lockattr held URL [--json]
    lockattr inspect URL KEY [--json]
    lockattr release URL KEY --force [--json]

COMMANDS:
    held       list the locks held now under the URL's prefix: key, fencing token,
               time left, and owner (host, pid) where the backend records it
    inspect    show one lock; KEY is the key as the program names it, without the
               prefix (flush:acme, not lockattr:flush:acme)
    release    break-glass: end the lease on KEY whoever holds it. The next holder's
               fencing token is still greater, and the forced-out holder gets `Lost`
               at its next renewal, extend or release. Refused without --force.
               On postgres:// and mysql:// session locks it ends the holder's
               database session: every other lock on that session is lost too.

OPTIONS:
    --json     print JSON for scripts instead of a table
    --force    (release) really release a lock somebody else holds
    -h, --help print this help
    --version  print the version

URL is a lockattr backend URL, with its ?prefix= if the programs use one:
    sqlite://PATH, postgres://…?mode=table, mysql://…?mode=table (lease tables: exact
    token, time left, host and pid); redis://[user:pass@]host[:port][/db] (token shown
    as <=N, the key's fencing counter); postgres://… (advisory locks: listed by hash,
    host and pid of the holder); mysql://… (GET_LOCK: listed only if performance_schema
    records metadata locks; inspect works everywhere); memcached://host[:port] (token
    shown as <=N, time left in whole seconds; held walks the whole cache with
    lru_crawler metadump, refused by servers run with -o no_lru_crawler); memory://
    (this process only).
Unknown values print as `?`. Backends that cannot list say so (exit code 4).
Passwords are never printed.

EXAMPLES:
    lockattr held redis://127.0.0.1:6379
    lockattr held 'sqlite://locks.db?prefix=app:' --json
    lockattr inspect 'postgres://app@db/app?mode=table' flush:acme
    lockattr release redis://127.0.0.1:6379 flush:acme --force

EXIT CODES:
    0  done (listed; the key is held; the lock was released)
    1  the key is not held (inspect), or nothing was released (release)
    2  usage error, or release without --force
    3  the backend failed (unreachable, refused, bad URL)
    4  this backend cannot list, inspect or release its locks
";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `lockattr held URL`.
    Held {
        /// The backend URL.
        url: String,
        /// `--json`.
        json: bool,
    },
    /// `lockattr inspect URL KEY`.
    Inspect {
        /// The backend URL.
        url: String,
        /// The key, without the prefix.
        key: String,
        /// `--json`.
        json: bool,
    },
    /// `lockattr release URL KEY --force`.
    Release {
        /// The backend URL.
        url: String,
        /// The key, without the prefix.
        key: String,
        /// `--force`: without it the release is refused.
        force: bool,
        /// `--json`.
        json: bool,
    },
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// Parses the arguments after the program's name; `Err` is the usage message.
///
/// ```
/// use lockattr::cli::{parse, Command};
/// let args = ["held", "redis://127.0.0.1", "--json"].map(String::from);
/// assert_eq!(
///     parse(&args),
///     Ok(Command::Held { url: "redis://127.0.0.1".into(), json: true })
/// );
/// assert!(parse(&["held".to_owned()]).is_err());
/// ```
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut json = false;
    let mut force = false;
    let mut words = Vec::new();
    for arg in args {
        match arg.as_str() {
            "-h" | "--help" | "help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--json" => json = true,
            "--force" => force = true,
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option `{flag}`"))
            }
            word => words.push(word.to_owned()),
        }
    }
    let mut words = words.into_iter();
    let command = words
        .next()
        .ok_or_else(|| "missing a command: held, inspect or release".to_owned())?;
    let url = words
        .next()
        .ok_or_else(|| format!("`{command}` needs a backend URL"))?;
    let mut key = || {
        words
            .next()
            .ok_or_else(|| format!("`{command}` needs a URL and a KEY"))
    };
    let parsed = match command.as_str() {
        "held" => Command::Held { url, json },
        "inspect" => Command::Inspect {
            url,
            key: key()?,
            json,
        },
        "release" => Command::Release {
            url,
            key: key()?,
            force,
            json,
        },
        other => {
            return Err(format!(
                "unknown command `{other}`: expected held, inspect or release"
            ))
        }
    };
    if let Some(extra) = words.next() {
        return Err(format!("unexpected argument `{extra}`"));
    }
    if force && !matches!(parsed, Command::Release { .. }) {
        return Err("`--force` only goes with `release`".into());
    }
    Ok(parsed)
}

/// The `lockattr` program: parses `std::env::args`, runs the command on a tokio runtime,
/// prints to stdout (results) and stderr (errors), and returns the exit code ([`exit`]).
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(command) => command,
        Err(usage) => {
            eprintln!("lockattr: {usage}\n\nRun `lockattr --help` for usage and examples.");
            return exit::USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lockattr: cannot start the async runtime: {e}");
            return exit::BACKEND;
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    runtime.block_on(run(command, &mut stdout.lock(), &mut stderr.lock()))
}

/// Runs one command, writing its result to `out` and its errors to `err`; returns the
/// exit code ([`exit`]).
pub async fn run(command: Command, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    // A failed write (a closed pipe) leaves nothing else to tell.
    match execute(command, out, err).await {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "lockattr: {e}");
            match e {
                LockError::Unsupported { .. } => exit::UNSUPPORTED,
                _ => exit::BACKEND,
            }
        }
    }
}

async fn execute(
    command: Command,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, LockError> {
    let print = |out: &mut dyn Write, text: String| {
        let _ = out.write_all(text.as_bytes());
    };
    match command {
        Command::Help => {
            print(out, HELP.to_owned());
            Ok(exit::OK)
        }
        Command::Version => {
            print(out, format!("lockattr {}\n", env!("CARGO_PKG_VERSION")));
            Ok(exit::OK)
        }
        Command::Held { url, json } => {
            let locks = crate::connect(&url).await?;
            let held = locks.held().await?;
            let text = if json {
                held_json(&locks, &held)
            } else {
                held_table(&locks, &held)
            };
            print(out, text);
            Ok(exit::OK)
        }
        Command::Inspect { url, key, json } => {
            let locks = crate::connect(&url).await?;
            let held = locks.inspect(&key).await?;
            let code = if held.is_some() {
                exit::OK
            } else {
                exit::NOT_FOUND
            };
            let text = match (&held, json) {
                (_, true) => lock_json(&locks, &key, held.as_ref()),
                (Some(lock), false) => lock_lines(lock),
                (None, false) => not_held(&locks, &key),
            };
            print(out, text);
            Ok(code)
        }
        Command::Release {
            url, force: false, ..
        } => {
            let _ = writeln!(
                err,
                "lockattr: refusing to release a lock somebody else holds without --force.\n\
                 A forced release is break-glass: the holder keeps running until its next \
                 renewal, extend or release, which then fails with `Lost`; the next holder's \
                 fencing token is greater, so storage that checks tokens refuses the old \
                 holder's late writes. Check first with `lockattr inspect {} KEY`, then add \
                 --force.",
                redacted(&url)
            );
            Ok(exit::USAGE)
        }
        Command::Release {
            url,
            key,
            force: true,
            json,
        } => {
            let locks = crate::connect(&url).await?;
            let released = locks.force_release(&key).await?;
            let text = if json {
                format!(
                    "{}\n",
                    serde_json::json!({
                        "backend": locks.backend_name(),
                        "key": key,
                        "released": released,
                    })
                )
            } else if released {
                format!(
                    "released `{key}` on {} by force: its holder gets `Lost` at its next \
                     renewal, extend or release; the next holder's token is greater\n",
                    locks.backend_name()
                )
            } else {
                not_held(&locks, &key)
            };
            print(out, text);
            Ok(if released { exit::OK } else { exit::NOT_FOUND })
        }
    }
}

fn not_held(locks: &Locks, key: &str) -> String {
    format!("`{key}` is not held on {}\n", locks.backend_name())
}

/// The URL as messages show it, its password as `***` (the URL as typed if it does not
/// parse: then it has no password lockattr could tell apart).
fn redacted(url: &str) -> String {
    crate::url::BackendUrl::parse(url)
        .map(|u| u.redacted)
        .unwrap_or_else(|_| "URL".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn commands_parse_with_flags_anywhere() {
        assert_eq!(
            parse(&args(&["release", "--force", "redis://h", "k"])),
            Ok(Command::Release {
                url: "redis://h".into(),
                key: "k".into(),
                force: true,
                json: false
            })
        );
        assert_eq!(
            parse(&args(&["inspect", "sqlite://x.db", "a:b", "--json"])),
            Ok(Command::Inspect {
                url: "sqlite://x.db".into(),
                key: "a:b".into(),
                json: true
            })
        );
        assert_eq!(parse(&args(&["--help"])), Ok(Command::Help));
        assert_eq!(parse(&args(&["held", "u", "-h"])), Ok(Command::Help));
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert!(parse(&args(&[])).unwrap_err().contains("missing a command"));
        assert!(parse(&args(&["held"])).unwrap_err().contains("URL"));
        assert!(parse(&args(&["inspect", "u"])).unwrap_err().contains("KEY"));
        assert!(parse(&args(&["held", "u", "x"]))
            .unwrap_err()
            .contains("unexpected"));
        assert!(parse(&args(&["held", "u", "--all"]))
            .unwrap_err()
            .contains("`--all`"));
        assert!(parse(&args(&["held", "u", "--force"]))
            .unwrap_err()
            .contains("release"));
        assert!(parse(&args(&["drop", "u"]))
            .unwrap_err()
            .contains("unknown command"));
    }

    #[test]
    fn the_refusal_never_shows_the_password() {
        assert_eq!(redacted("redis://u:hunter2@h:6379"), "redis://u:***@h:6379");
    }

    #[test]
    fn help_documents_every_exit_code() {
        for code in [
            exit::OK,
            exit::NOT_FOUND,
            exit::USAGE,
            exit::BACKEND,
            exit::UNSUPPORTED,
        ] {
            assert!(HELP.contains(&format!("\n    {code}  ")), "{code}");
        }
    }
}
