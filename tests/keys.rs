//! Property tests for keys (`docs/design.md` semantic 7): distinct argument tuples never
//! map to one key, and safe values go in as they are.

use std::collections::HashMap;

use proptest::prelude::*;

use lockattr::distributed_lock;

mod suite;
use suite::block_on;

fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        block_on(async { lockattr::init("memory://keys").await.unwrap() });
    });
}

/// The key the attribute builds for `(a, b, n)`, read from inside the body.
#[distributed_lock(key = "k:<a>:<b>/<n>", ttl = "10s", on_conflict = "skip")]
async fn key_of(a: &str, b: &str, n: i64) -> Option<String> {
    lockattr::current().map(|c| c.key().to_owned())
}

/// Strings rich in the characters that could blur the boundaries between values.
fn tricky() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a:/%._\\-é 0-9]{0,6}").unwrap()
}

/// Inverts the escaping for the check below.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Distinct tuples give distinct keys through the generated code.
    #[test]
    fn distinct_tuples_never_share_a_key(tuples in proptest::collection::vec((tricky(), tricky(), any::<i64>()), 1..24)) {
        init();
        let mut seen: HashMap<String, (String, String, i64)> = HashMap::new();
        for (a, b, n) in tuples {
            let key = block_on(key_of(&a, &b, n)).expect("an uncontended key is taken");
            if let Some(previous) = seen.insert(key.clone(), (a.clone(), b.clone(), n)) {
                prop_assert_eq!(&previous, &(a, b, n), "two tuples share the key {}", key);
            }
        }
    }

    /// The boundary between two values moved across a separator (`docs/design.md`'s
    /// `"a:b","c"` against `"a","b:c"`) always changes the key.
    #[test]
    fn moving_a_boundary_changes_the_key(
        x in tricky(), y in tricky(), z in tricky(), n in any::<i64>(),
        sep in prop_oneof![Just(":"), Just("/"), Just("%3A"), Just("%"), Just(":/")],
    ) {
        init();
        let left = block_on(key_of(&format!("{x}{sep}{y}"), &z, n)).unwrap();
        let right = block_on(key_of(&x, &format!("{y}{sep}{z}"), n)).unwrap();
        prop_assert_ne!(left, right);
    }

    /// Escaping is reversible, and what it outputs never contains a separator.
    #[test]
    fn escaping_is_reversible_and_separator_free(value in any::<String>()) {
        let escaped = lockattr::key::escape(&value);
        prop_assert!(escaped.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_%".contains(&b)));
        prop_assert_eq!(unescape(&escaped), value);
    }

    /// Safe values go in unchanged, so hand-written keys match the attribute's.
    #[test]
    fn safe_values_are_unchanged(value in "[A-Za-z0-9._-]{0,40}") {
        prop_assert_eq!(lockattr::key::escape(&value), value.as_str());
    }
}
