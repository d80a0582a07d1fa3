//! A small, forgiving parser for the OpenMetrics / Prometheus text format: the subset
//! prometheus-client emits (and what most exporters do).
//!
//! Lines are `# HELP`, `# TYPE`, `# UNIT` and `# EOF` comments (ignored; nothing after `# EOF` is
//! read), and samples `name{label="value",...} value [timestamp] [# exemplar]`. Label values
//! may hold escaped quotes, backslashes and newlines (`\"`, `\\`, `\n`). Values may be
//! integers, floats, `+Inf`, `-Inf` or `NaN`.
//!
//! The parser never panics and never fails as a whole: a malformed line is skipped and
//! counted, so one bad family from a proxy does not blind the control plane to the rest.
//!
//! ```
//! use mesh_viz::metrics::openmetrics;
//!
//! let parsed = openmetrics::parse(concat!(
//!     "# TYPE request counter\n",
//!     "request_total{direction=\"inbound\",authority=\"say \\\"hi\\\"\"} 3\n",
//!     "garbage{\n",
//!     "# EOF\n",
//! ));
//! assert_eq!(parsed.samples.len(), 1);
//! assert_eq!(parsed.samples[0].label("authority"), Some("say \"hi\""));
//! assert_eq!(parsed.samples[0].value, 3.0);
//! assert_eq!(parsed.skipped, 1);
//! ```

/// One sample: a metric name, its labels in the order written, and a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's name (`request_total`, `response_latency_ms_bucket`, ...).
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of a label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What [`parse`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    /// The samples, in the order written.
    pub samples: Vec<Sample>,
    /// How many non-empty, non-comment lines could not be parsed.
    pub skipped: usize,
}

/// Parses exposition text; see the [module docs](self).
pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if comment.trim() == "EOF" {
                break;
            }
            continue;
        }
        match parse_sample(line) {
            Some(s) => out.samples.push(s),
            None => out.skipped += 1,
        }
    }
    out
}

/// Parses `name{labels} value [timestamp] [# exemplar]`.
fn parse_sample(line: &str) -> Option<Sample> {
    let mut cur = Cursor { s: line, pos: 0 };
    cur.skip_spaces();
    let name = cur.take_while(|b, first| {
        b.is_ascii_alphabetic() || b == b'_' || b == b':' || (!first && b.is_ascii_digit())
    })?;
    let mut labels = Vec::new();
    let after_name = cur.pos;
    cur.skip_spaces();
    if !cur.eat(b'{') {
        cur.pos = after_name;
    } else {
        loop {
            cur.skip_spaces();
            if cur.eat(b'}') {
                break;
            }
            let key = cur.take_while(|b, first| {
                b.is_ascii_alphabetic() || b == b'_' || (!first && b.is_ascii_digit())
            })?;
            cur.skip_spaces();
            if !cur.eat(b'=') {
                return None;
            }
            cur.skip_spaces();
            let value = cur.quoted()?;
            labels.push((key.to_string(), value));
            cur.skip_spaces();
            if cur.eat(b',') {
                continue;
            }
            if cur.eat(b'}') {
                break;
            }
            return None;
        }
    }
    // At least one space between the name (or labels) and the value.
    let before = cur.pos;
    cur.skip_spaces();
    if cur.pos == before {
        return None;
    }
    let value = cur.take_while(|b, _| b != b' ' && b != b'\t')?;
    let value = parse_value(value)?;
    // A timestamp and an exemplar may follow; neither is needed.
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses a sample value: a float, `+Inf`, `-Inf` or `NaN`.
pub(crate) fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => {
            // Rust also accepts "infinity" and friends; keep to the format's spelling.
            if s.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
            {
                s.parse().ok()
            } else {
                None
            }
        }
    }
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// A non-empty run of ASCII bytes accepted by `ok(byte, is_first)`.
    fn take_while(&mut self, ok: impl Fn(u8, bool) -> bool) -> Option<&'a str> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if !b.is_ascii() || !ok(b, self.pos == start) {
                break;
            }
            self.pos += 1;
        }
        // Only ASCII bytes were taken, so both ends are char boundaries.
        (self.pos > start)
            .then(|| self.s.get(start..self.pos))
            .flatten()
    }

    /// A double-quoted string with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = String::new();
        loop {
            let rest = self.s.get(self.pos..)?;
            // Quotes and backslashes are ASCII, so they never sit inside a UTF-8 sequence.
            let stop = rest.find(['"', '\\'])?;
            out.push_str(&rest[..stop]);
            self.pos += stop;
            if self.eat(b'"') {
                return Some(out);
            }
            self.pos += 1; // the backslash
            match self.peek()? {
                b'n' => out.push('\n'),
                b'\\' => out.push('\\'),
                b'"' => out.push('"'),
                // An unknown escape: keep it as written.
                other => {
                    out.push('\\');
                    if !other.is_ascii() {
                        continue;
                    }
                    out.push(other as char);
                }
            }
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Option<Sample> {
        let p = parse(line);
        assert!(p.samples.len() + p.skipped <= 1, "{line:?}");
        p.samples.into_iter().next()
    }

    #[test]
    fn parses_the_shapes_prometheus_client_writes() {
        let text = concat!(
            "# HELP request Requests received.\n",
            "# TYPE request counter\n",
            "request_total{direction=\"inbound\",tls=\"true\"} 12\n",
            "# TYPE response_latency_ms histogram\n",
            "response_latency_ms_sum{direction=\"inbound\"} 1.5\n",
            "response_latency_ms_bucket{le=\"1.0\",direction=\"inbound\"} 3\n",
            "response_latency_ms_bucket{le=\"+Inf\",direction=\"inbound\"} 4\n",
            "# TYPE proxy_ready gauge\n",
            "proxy_ready 1\n",
            "# EOF\n",
            "after_eof 1\n",
        );
        let p = parse(text);
        assert_eq!(p.skipped, 0);
        let names: Vec<_> = p.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "request_total",
                "response_latency_ms_sum",
                "response_latency_ms_bucket",
                "response_latency_ms_bucket",
                "proxy_ready"
            ]
        );
        assert_eq!(p.samples[0].labels.len(), 2);
        assert_eq!(p.samples[3].label("le"), Some("+Inf"));
        assert_eq!(p.samples[4].labels, []);
        assert_eq!(p.samples[4].value, 1.0);
    }

    #[test]
    fn values_timestamps_exemplars_and_odd_spacing() {
        assert_eq!(one("a 1.5e3").map(|s| s.value), Some(1500.0));
        assert_eq!(one("a -2").map(|s| s.value), Some(-2.0));
        assert_eq!(one("a +Inf").map(|s| s.value), Some(f64::INFINITY));
        assert_eq!(one("a -Inf").map(|s| s.value), Some(f64::NEG_INFINITY));
        assert!(one("a NaN").is_some_and(|s| s.value.is_nan()));
        assert_eq!(one("a 7 1712345678").map(|s| s.value), Some(7.0));
        assert_eq!(
            one("a_bucket{le=\"1\"} 7 # {trace_id=\"x\"} 0.5 1").map(|s| s.value),
            Some(7.0)
        );
        assert_eq!(one("a{x=\"1\",} 2").map(|s| s.labels.len()), Some(1));
        assert_eq!(one("a{} 2").map(|s| s.labels.len()), Some(0));
        assert_eq!(one("a { x = \"1\" } 2").map(|s| s.value), Some(2.0));
        assert_eq!(one("a 3\r").map(|s| s.value), Some(3.0));
    }

    #[test]
    fn escapes_and_unicode_in_label_values() {
        let s = one(r#"m{a="q\"uote",b="back\\slash",c="new\nline",d="é}{,=\"",e="\x"} 1"#)
            .expect("parses");
        assert_eq!(s.label("a"), Some("q\"uote"));
        assert_eq!(s.label("b"), Some("back\\slash"));
        assert_eq!(s.label("c"), Some("new\nline"));
        assert_eq!(s.label("d"), Some("é}{,=\""));
        assert_eq!(s.label("e"), Some("\\x"));
    }

    #[test]
    fn rejects_malformed_lines_without_panicking() {
        for bad in [
            "{a=\"b\"} 1",
            "1abc 1",
            "a{b=\"c\" 1",
            "a{b=c} 1",
            "a{b=\"c} 1",
            "a{=\"c\"} 1",
            "a{b=\"c\"}1",
            "a",
            "a{b=\"c\"}",
            "a one",
            "a infinity",
            "a{b=\"c\\",
            "é 1",
            "a{é=\"1\"} 1",
        ] {
            let p = parse(bad);
            assert!(p.samples.is_empty(), "{bad:?} parsed as {:?}", p.samples);
            assert_eq!(p.skipped, 1, "{bad:?}");
        }
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        // A deterministic fuzz: mutate a real exposition byte by byte (truncations, flips to
        // the format's special characters, multi-byte characters), and parse every variant.
        let base = concat!(
            "# TYPE response counter\n",
            "response_total{direction=\"inbound\",authority=\"a\\\"b\",classification=\"success\"} 3\n",
            "response_latency_ms_bucket{le=\"+Inf\",status_code=\"200\"} 4 123 # {x=\"y\"} 1\n",
            "# EOF\n"
        );
        let specials = [
            '"',
            '\\',
            '{',
            '}',
            '=',
            ',',
            ' ',
            '\n',
            '#',
            'é',
            '\u{1F600}',
            '\0',
        ];
        let chars: Vec<char> = base.chars().collect();
        let mut seed = 0x2545_f491_u64;
        let mut total = 0;
        for i in 0..chars.len() {
            let truncated: String = chars[..i].iter().collect();
            total += parse(&truncated).samples.len();
            for (j, special) in specials.iter().enumerate() {
                let mut v = chars.clone();
                v[i] = *special;
                // And a pseudo-random second mutation elsewhere.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let k = (seed as usize) % v.len();
                v[k] = specials[(j + k) % specials.len()];
                let text: String = v.into_iter().collect();
                total += parse(&text).samples.len();
            }
        }
        assert!(total > 0);
    }
}
