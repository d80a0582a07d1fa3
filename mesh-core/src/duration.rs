//! Durations as the mesh's flags and files write them: Go/Kubernetes style, `500ms`, `10s`,
//! `1m30s`, `2h`. One parser for every flag, catalog field and query parameter, so they all
//! accept the same text.
//!
//! ```
//! use mesh_core::duration;
//! use std::time::Duration;
//!
//! assert_eq!(duration::parse("1m30s")?, Duration::from_secs(90));
//! let err = duration::parse("10").unwrap_err();
//! assert!(err.to_string().contains("a number needs a unit"));
//! # Ok::<(), duration::InvalidDuration>(())
//! ```

use std::fmt;
use std::time::Duration;

/// A duration that could not be parsed; its text says why and how to write one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidDuration {
    input: String,
    why: &'static str,
}

impl fmt::Display for InvalidDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: {}; write e.g. 500ms, 10s, 1m30s or 2h",
            self.input, self.why
        )
    }
}

impl std::error::Error for InvalidDuration {}

/// Parses a duration: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`; the number
/// may have a fraction (`1.5s`). `0` alone is zero.
pub fn parse(input: &str) -> Result<Duration, InvalidDuration> {
    let s = input.trim();
    let bad = |why: &'static str| InvalidDuration {
        input: input.to_owned(),
        why,
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number needs a unit"))?;
        if num_len == 0 {
            return Err(bad("expected a number"));
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad("not a number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad("unknown unit (use ms, s, m or h)")),
        };
        rest = &rest[unit_len..];
        let part = Duration::try_from_secs_f64(value * scale).map_err(|_| bad("out of range"))?;
        total = total.checked_add(part).ok_or_else(|| bad("out of range"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        for bad in ["", "10", "s", "10x", "-1s", "1.2.3s"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("500ms"), "{bad}: {err}");
        }
    }
}
