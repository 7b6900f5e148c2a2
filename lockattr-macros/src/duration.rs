//! Durations as the attribute writes them: `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`, or
//! several joined (`"1m30s"`).

/// A duration in whole milliseconds, at most [`MAX`].
pub type Millis = u64;

/// The longest duration: 30 days (Memcached reads longer relative ttls as dates).
pub const MAX: Millis = 30 * 24 * 60 * 60 * 1000;

const UNITS: &[(&str, Millis)] = &[
    ("ms", 1),
    ("s", 1000),
    ("m", 60 * 1000),
    ("h", 60 * 60 * 1000),
    ("d", 24 * 60 * 60 * 1000),
];

/// Parses a duration, or says in words what is wrong with it. Zero parses: each option
/// has its own floor.
pub fn parse_duration(text: &str) -> Result<Millis, String> {
    const EXPECTED: &str = "write a whole number and a unit (`ms`, `s`, `m`, `h`, `d`), such as \"250ms\", \"30s\", \"5m\" or \"1m30s\"";
    if text.is_empty() {
        return Err(format!("it is empty; {EXPECTED}"));
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`; {EXPECTED}"));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let factor = match UNITS.iter().find(|(u, _)| *u == unit) {
            Some((_, f)) => *f,
            None if unit.is_empty() => return Err(format!("`{number}` has no unit; {EXPECTED}")),
            None => return Err(format!("unknown unit `{unit}`; {EXPECTED}")),
        };
        let n: u128 = number
            .parse()
            .map_err(|_| format!("`{number}` is too large"))?;
        total = total.saturating_add(n.saturating_mul(u128::from(factor)));
        rest = after;
    }
    if total > u128::from(MAX) {
        return Err("it is out of range: the longest is 30 days (\"30d\")".into());
    }
    Ok(total as Millis)
}

/// `ms` milliseconds as the shortest text that [`parse_duration`] reads back to it.
pub fn format_millis(ms: Millis) -> String {
    let mut out = String::new();
    let mut rest = ms;
    for (unit, factor) in UNITS.iter().rev() {
        if rest >= *factor {
            out.push_str(&format!("{}{unit}", rest / factor));
            rest %= factor;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_duration("30d"), Ok(MAX));
    }

    #[test]
    fn rejects_bad_and_out_of_range() {
        for bad in ["", "30", "s", "3 s", "1.5s", "10us", "-1s", "1s2"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("0s"), Ok(0));
        assert!(parse_duration("31d").unwrap_err().contains("out of range"));
        assert!(parse_duration("99999999999999999999999999999999999999999d")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_millis(90_500), "1m30s500ms");
        assert_eq!(parse_duration(&format_millis(90_500)), Ok(90_500));
    }
}
