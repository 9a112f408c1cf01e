//! Telling a re-serialized JSON body apart from a wrong secret, when a signature does not match.
//!
//! Frameworks that parse a JSON body and encode it again change its bytes (white space,
//! separators, `\u` escapes) while keeping the key order. When the signature fails, we rebuild
//! the likely originals of the body we were given and try each: if one verifies, the body was
//! provably re-serialized, and the reason is `parsed_body` rather than `hmac_mismatch`.
//!
//! This runs on the failure path of unauthenticated requests, so its cost is bounded by
//! construction, whatever the body: only bodies up to [`MAX_BODY`] are tried, indented layouts
//! only up to [`MAX_INDENT_DEPTH`] levels of nesting, and a candidate that would grow past
//! twice the body (plus [`SLACK`]) is abandoned as it is written. The worst case is a dozen
//! candidates of at most 128 KiB each, and their HMACs.

/// Bodies larger than this are not re-tried. Webhook JSON bodies are far smaller.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Indented layouts are tried only for documents nested at most this deep: each level costs
/// its indentation on every line below it, which grows with the square of the depth.
/// Pretty-printed webhook payloads are a handful of levels deep.
pub(crate) const MAX_INDENT_DEPTH: usize = 32;

/// What a candidate may add to twice the body's length before it is abandoned.
pub(crate) const SLACK: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `{"a":1,"b":[1,2]}`
    Compact,
    /// `{"a": 1, "b": [1, 2]}` (Python's `json.dumps` default)
    Spaced,
    /// Pretty printed with this many spaces per level.
    Indent(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chars {
    Keep,
    /// Non-ASCII characters written as `\uXXXX` (Python's `ensure_ascii`).
    EscapeNonAscii,
    /// `\uXXXX` escapes of non-ASCII characters written as UTF-8.
    UnescapeNonAscii,
}

fn describe(layout: Layout, chars: Chars) -> String {
    let layout = match layout {
        Layout::Compact => "compact separators".to_owned(),
        Layout::Spaced => "`, ` and `: ` separators".to_owned(),
        Layout::Indent(n) => format!("{n}-space indentation"),
    };
    match chars {
        Chars::Keep => layout,
        Chars::EscapeNonAscii => format!("{layout} and non-ASCII written as \\u escapes"),
        Chars::UnescapeNonAscii => format!("{layout} and \\u escapes written as UTF-8"),
    }
}

/// If some re-encoding of `body` satisfies `verifies`, describes that encoding.
///
/// `verifies` sees at most a dozen candidates, each at most `2 * body.len() + SLACK` bytes.
pub(crate) fn find_original(
    body: &[u8],
    mut verifies: impl FnMut(&[u8]) -> bool,
) -> Option<String> {
    if body.len() > MAX_BODY || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
        return None;
    }
    let limit = 2 * body.len() + SLACK;
    let depth = max_depth(body);
    let mut char_modes = vec![Chars::Keep];
    if !body.is_ascii() {
        char_modes.push(Chars::EscapeNonAscii);
    }
    if body.windows(2).any(|w| w == b"\\u") {
        char_modes.push(Chars::UnescapeNonAscii);
    }
    for layout in [
        Layout::Compact,
        Layout::Spaced,
        Layout::Indent(2),
        Layout::Indent(4),
    ] {
        if matches!(layout, Layout::Indent(_)) && depth > MAX_INDENT_DEPTH {
            continue;
        }
        for &chars in &char_modes {
            let Some(candidate) = reformat(body, layout, chars, limit) else {
                continue;
            };
            if candidate != body && verifies(&candidate) {
                return Some(describe(layout, chars));
            }
        }
    }
    None
}

/// The deepest nesting of objects and arrays in valid JSON (strings are skipped).
fn max_depth(src: &[u8]) -> usize {
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0);
    while i < src.len() {
        match src[i] {
            b'"' => {
                i = string_end(src, i);
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// A candidate being written, abandoned once it passes its limit.
struct Out {
    buf: Vec<u8>,
    limit: usize,
}

/// The candidate outgrew its limit.
struct TooLong;

impl Out {
    fn push(&mut self, b: u8) -> Result<(), TooLong> {
        self.extend(&[b])
    }

    fn extend(&mut self, bytes: &[u8]) -> Result<(), TooLong> {
        if self.buf.len() + bytes.len() > self.limit {
            return Err(TooLong);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn spaces(&mut self, n: usize) -> Result<(), TooLong> {
        if self.buf.len() + n > self.limit {
            return Err(TooLong);
        }
        self.buf.resize(self.buf.len() + n, b' ');
        Ok(())
    }
}

fn newline(out: &mut Out, layout: Layout, depth: usize) -> Result<(), TooLong> {
    if let Layout::Indent(n) = layout {
        out.push(b'\n')?;
        out.spaces(n * depth)?;
    }
    Ok(())
}

fn skip_ws(src: &[u8], mut i: usize) -> usize {
    while i < src.len() && matches!(src[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Re-emits valid JSON with another layout (strings and numbers copied byte for byte), or
/// `None` once the output would pass `limit` bytes.
fn reformat(src: &[u8], layout: Layout, chars: Chars, limit: usize) -> Option<Vec<u8>> {
    // All of the limit at once: the buffer never grows (a doubling could pass the limit).
    let mut out = Out {
        buf: Vec::with_capacity(limit),
        limit,
    };
    write_layout(src, layout, chars, &mut out).ok()?;
    Some(out.buf)
}

fn write_layout(src: &[u8], layout: Layout, chars: Chars, out: &mut Out) -> Result<(), TooLong> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < src.len() {
        match src[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let end = string_end(src, i);
                copy_string(&src[i..end], chars, out)?;
                i = end;
            }
            open @ (b'{' | b'[') => {
                out.push(open)?;
                let j = skip_ws(src, i + 1);
                if matches!(src.get(j), Some(b'}' | b']')) {
                    out.push(src[j])?;
                    i = j + 1;
                } else {
                    depth += 1;
                    newline(out, layout, depth)?;
                    i += 1;
                }
            }
            close @ (b'}' | b']') => {
                depth = depth.saturating_sub(1);
                newline(out, layout, depth)?;
                out.push(close)?;
                i += 1;
            }
            b',' => {
                out.push(b',')?;
                match layout {
                    Layout::Indent(_) => newline(out, layout, depth)?,
                    Layout::Spaced => out.push(b' ')?,
                    Layout::Compact => {}
                }
                i += 1;
            }
            b':' => {
                out.push(b':')?;
                if layout != Layout::Compact {
                    out.push(b' ')?;
                }
                i += 1;
            }
            other => {
                out.push(other)?;
                i += 1;
            }
        }
    }
    Ok(())
}

/// Index one past the closing quote of the string that opens at `start`.
fn string_end(src: &[u8], start: usize) -> usize {
    let mut j = start + 1;
    while j < src.len() {
        match src[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    src.len()
}

fn copy_string(s: &[u8], chars: Chars, out: &mut Out) -> Result<(), TooLong> {
    match chars {
        Chars::Keep => out.extend(s),
        Chars::EscapeNonAscii => match std::str::from_utf8(s) {
            Ok(text) => {
                for c in text.chars() {
                    if c.is_ascii() {
                        out.push(c as u8)?;
                    } else {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            out.extend(&escape(*unit))?;
                        }
                    }
                }
                Ok(())
            }
            Err(_) => out.extend(s),
        },
        Chars::UnescapeNonAscii => unescape_non_ascii(s, out),
    }
}

/// `\uXXXX` with lowercase hex digits, as Python writes it.
fn escape(unit: u16) -> [u8; 6] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let nibble = |shift: u16| HEX[usize::from((unit >> shift) & 0xf)];
    [b'\\', b'u', nibble(12), nibble(8), nibble(4), nibble(0)]
}

fn hex4(s: &[u8], at: usize) -> Option<u16> {
    let digits = std::str::from_utf8(s.get(at..at + 4)?).ok()?;
    u16::from_str_radix(digits, 16).ok()
}

fn unescape_non_ascii(s: &[u8], out: &mut Out) -> Result<(), TooLong> {
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i])?;
            i += 1;
            continue;
        }
        if s.get(i + 1) == Some(&b'u')
            && let Some(unit) = hex4(s, i + 2)
            && unit >= 0x80
        {
            let (c, used) = if (0xD800..0xDC00).contains(&unit) {
                let low = (s.get(i + 6..i + 8) == Some(b"\\u"))
                    .then(|| hex4(s, i + 8))
                    .flatten();
                match low {
                    Some(low) => (
                        char::decode_utf16([unit, low]).next().and_then(Result::ok),
                        12,
                    ),
                    None => (None, 6),
                }
            } else {
                (char::from_u32(u32::from(unit)), 6)
            };
            if let Some(c) = c {
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).as_bytes())?;
                i += used;
                continue;
            }
        }
        // Any other escape is copied as is, two bytes at a time, so `\\u` stays literal.
        out.extend(&s[i..(i + 2).min(s.len())])?;
        i += 2;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `reformat` with a limit no test input reaches.
    fn fmt(src: &[u8], layout: Layout, chars: Chars) -> Vec<u8> {
        reformat(src, layout, chars, 64 * src.len() + 1024).unwrap()
    }

    const PRETTY: &str = "{\n  \"id\": \"evt_1\",\n  \"data\": {\n    \"list\": [\n      1,\n      2\n    ],\n    \"empty\": {},\n    \"none\": []\n  }\n}";

    #[test]
    fn layouts() {
        let compact = fmt(PRETTY.as_bytes(), Layout::Compact, Chars::Keep);
        assert_eq!(
            std::str::from_utf8(&compact).unwrap(),
            r#"{"id":"evt_1","data":{"list":[1,2],"empty":{},"none":[]}}"#
        );
        let spaced = fmt(&compact, Layout::Spaced, Chars::Keep);
        assert_eq!(
            std::str::from_utf8(&spaced).unwrap(),
            r#"{"id": "evt_1", "data": {"list": [1, 2], "empty": {}, "none": []}}"#
        );
        assert_eq!(
            fmt(&compact, Layout::Indent(2), Chars::Keep),
            PRETTY.as_bytes()
        );
    }

    #[test]
    fn strings_keep_their_bytes_including_escaped_quotes() {
        let src = br#"{ "a" : "x, y: {\"z\"} \\" }"#;
        assert_eq!(
            fmt(src, Layout::Compact, Chars::Keep),
            br#"{"a":"x, y: {\"z\"} \\"}"#
        );
    }

    #[test]
    fn non_ascii_escapes_both_ways() {
        let raw = "{\"n\":\"café 😀\"}";
        let escaped = fmt(raw.as_bytes(), Layout::Compact, Chars::EscapeNonAscii);
        assert_eq!(
            std::str::from_utf8(&escaped).unwrap(),
            r#"{"n":"caf\u00e9 \ud83d\ude00"}"#
        );
        let back = fmt(&escaped, Layout::Compact, Chars::UnescapeNonAscii);
        assert_eq!(back, raw.as_bytes());
        // An escaped backslash before `u` is not an escape to undo.
        let literal = br#"{"p":"C:\\u00e9"}"#;
        assert_eq!(
            fmt(literal, Layout::Compact, Chars::UnescapeNonAscii),
            literal
        );
    }

    #[test]
    fn finds_the_original_only_when_the_predicate_says_so() {
        let original = PRETTY.as_bytes();
        let received = fmt(original, Layout::Spaced, Chars::Keep);
        let found = find_original(&received, |b| b == original);
        assert_eq!(found.as_deref(), Some("2-space indentation"));
        assert_eq!(find_original(&received, |_| false), None);
        assert_eq!(find_original(b"not json", |_| true), None);
        assert_eq!(find_original(&vec![b' '; MAX_BODY + 1], |_| true), None);
    }

    /// The body of the review's finding: `[` × 32,767 then `]` × 32,767, 64 KiB in all.
    fn nested(depth: usize) -> Vec<u8> {
        let mut body = vec![b'['; depth];
        body.resize(2 * depth, b']');
        body
    }

    fn largest_candidate(body: &[u8]) -> (usize, usize) {
        let (mut largest, mut tried) = (0, 0);
        find_original(body, |c| {
            largest = largest.max(c.len());
            tried += 1;
            false
        });
        (largest, tried)
    }

    #[test]
    fn deeply_nested_bodies_stay_within_twice_their_size() {
        let body = nested(32_767);
        assert_eq!(body.len(), 65_534);
        let (largest, tried) = largest_candidate(&body);
        assert!(
            largest <= 2 * body.len() + SLACK,
            "a candidate of {largest} bytes for a body of {}",
            body.len()
        );
        assert!(tried <= 12, "{tried} candidates");
        // Just inside the indentation depth, indented candidates are still tried, and bounded.
        let body = nested(MAX_INDENT_DEPTH);
        let (largest, _) = largest_candidate(&body);
        assert!(largest <= 2 * body.len() + SLACK);
    }

    #[test]
    fn no_candidate_outgrows_its_limit_whatever_the_body() {
        // Wide and shallow, many short strings of 4-byte characters, and many escapes: each
        // grows under some layout, and each must give up at the limit.
        let wide = format!("[{}0]", "0,".repeat(20_000));
        let emoji = format!("[{}\"\"]", "\"😀\",".repeat(5_000));
        let escaped = format!("[\"{}\"]", "\\u00e9".repeat(8_000));
        let deep_objects = format!("{}1{}", "{\"a\":".repeat(30), "}".repeat(30));
        for body in [wide, emoji, escaped, deep_objects] {
            let (largest, _) = largest_candidate(body.as_bytes());
            assert!(
                largest <= 2 * body.len() + SLACK,
                "{largest} for {}",
                body.len()
            );
        }
    }

    #[test]
    fn a_candidate_past_its_limit_is_abandoned() {
        assert_eq!(reformat(b"[1,2]", Layout::Indent(4), Chars::Keep, 8), None);
        assert_eq!(
            reformat(b"[1,2]", Layout::Spaced, Chars::Keep, 6).as_deref(),
            Some(&b"[1, 2]"[..])
        );
        assert_eq!(max_depth(br#"{"a":[1,{"b":"[[[["}]}"#), 3);
    }
}
