//! Telling a re-serialized JSON body apart from a wrong secret, when a signature does not match.
//!
//! Frameworks that parse a JSON body and encode it again change its bytes (white space,
//! separators, `\u` escapes) while keeping the key order. When the signature fails, we rebuild
//! the likely originals of the body we were given and try each: if one verifies, the body was
//! provably re-serialized, and the reason is `parsed_body` rather than `hmac_mismatch`.
//! This runs only on the failure path and only for bodies up to [`MAX_BODY`].

/// Bodies larger than this are not re-tried: it bounds the work an invalid delivery can cause
/// (at most a dozen re-encodings and HMACs of 64 KiB). Webhook JSON bodies are far smaller.
pub(crate) const MAX_BODY: usize = 64 * 1024;

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
pub(crate) fn find_original(
    body: &[u8],
    mut verifies: impl FnMut(&[u8]) -> bool,
) -> Option<String> {
    if body.len() > MAX_BODY || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
        return None;
    }
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
        for &chars in &char_modes {
            let candidate = reformat(body, layout, chars);
            if candidate != body && verifies(&candidate) {
                return Some(describe(layout, chars));
            }
        }
    }
    None
}

fn newline(out: &mut Vec<u8>, layout: Layout, depth: usize) {
    if let Layout::Indent(n) = layout {
        out.push(b'\n');
        out.resize(out.len() + n * depth, b' ');
    }
}

fn skip_ws(src: &[u8], mut i: usize) -> usize {
    while i < src.len() && matches!(src[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Re-emits valid JSON with another layout; strings and numbers are copied byte for byte.
fn reformat(src: &[u8], layout: Layout, chars: Chars) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() + src.len() / 4);
    let mut depth = 0usize;
    let mut i = 0;
    while i < src.len() {
        match src[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let end = string_end(src, i);
                copy_string(&src[i..end], chars, &mut out);
                i = end;
            }
            open @ (b'{' | b'[') => {
                out.push(open);
                let j = skip_ws(src, i + 1);
                if matches!(src.get(j), Some(b'}' | b']')) {
                    out.push(src[j]);
                    i = j + 1;
                } else {
                    depth += 1;
                    newline(&mut out, layout, depth);
                    i += 1;
                }
            }
            close @ (b'}' | b']') => {
                depth = depth.saturating_sub(1);
                newline(&mut out, layout, depth);
                out.push(close);
                i += 1;
            }
            b',' => {
                out.push(b',');
                match layout {
                    Layout::Indent(_) => newline(&mut out, layout, depth),
                    Layout::Spaced => out.push(b' '),
                    Layout::Compact => {}
                }
                i += 1;
            }
            b':' => {
                out.push(b':');
                if layout != Layout::Compact {
                    out.push(b' ');
                }
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    out
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

fn copy_string(s: &[u8], chars: Chars, out: &mut Vec<u8>) {
    match chars {
        Chars::Keep => out.extend_from_slice(s),
        Chars::EscapeNonAscii => match std::str::from_utf8(s) {
            Ok(text) => {
                for c in text.chars() {
                    if c.is_ascii() {
                        out.push(c as u8);
                    } else {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                        }
                    }
                }
            }
            Err(_) => out.extend_from_slice(s),
        },
        Chars::UnescapeNonAscii => unescape_non_ascii(s, out),
    }
}

fn hex4(s: &[u8], at: usize) -> Option<u16> {
    let digits = std::str::from_utf8(s.get(at..at + 4)?).ok()?;
    u16::from_str_radix(digits, 16).ok()
}

fn unescape_non_ascii(s: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
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
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += used;
                continue;
            }
        }
        // Any other escape is copied as is, two bytes at a time, so `\\u` stays literal.
        out.extend_from_slice(&s[i..(i + 2).min(s.len())]);
        i += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRETTY: &str = "{\n  \"id\": \"evt_1\",\n  \"data\": {\n    \"list\": [\n      1,\n      2\n    ],\n    \"empty\": {},\n    \"none\": []\n  }\n}";

    #[test]
    fn layouts() {
        let compact = reformat(PRETTY.as_bytes(), Layout::Compact, Chars::Keep);
        assert_eq!(
            std::str::from_utf8(&compact).unwrap(),
            r#"{"id":"evt_1","data":{"list":[1,2],"empty":{},"none":[]}}"#
        );
        let spaced = reformat(&compact, Layout::Spaced, Chars::Keep);
        assert_eq!(
            std::str::from_utf8(&spaced).unwrap(),
            r#"{"id": "evt_1", "data": {"list": [1, 2], "empty": {}, "none": []}}"#
        );
        assert_eq!(
            reformat(&compact, Layout::Indent(2), Chars::Keep),
            PRETTY.as_bytes()
        );
    }

    #[test]
    fn strings_keep_their_bytes_including_escaped_quotes() {
        let src = br#"{ "a" : "x, y: {\"z\"} \\" }"#;
        assert_eq!(
            reformat(src, Layout::Compact, Chars::Keep),
            br#"{"a":"x, y: {\"z\"} \\"}"#
        );
    }

    #[test]
    fn non_ascii_escapes_both_ways() {
        let raw = "{\"n\":\"café 😀\"}";
        let escaped = reformat(raw.as_bytes(), Layout::Compact, Chars::EscapeNonAscii);
        assert_eq!(
            std::str::from_utf8(&escaped).unwrap(),
            r#"{"n":"caf\u00e9 \ud83d\ude00"}"#
        );
        let back = reformat(&escaped, Layout::Compact, Chars::UnescapeNonAscii);
        assert_eq!(back, raw.as_bytes());
        // An escaped backslash before `u` is not an escape to undo.
        let literal = br#"{"p":"C:\\u00e9"}"#;
        assert_eq!(
            reformat(literal, Layout::Compact, Chars::UnescapeNonAscii),
            literal
        );
    }

    #[test]
    fn finds_the_original_only_when_the_predicate_says_so() {
        let original = PRETTY.as_bytes();
        let received = reformat(original, Layout::Spaced, Chars::Keep);
        let found = find_original(&received, |b| b == original);
        assert_eq!(found.as_deref(), Some("2-space indentation"));
        assert_eq!(find_original(&received, |_| false), None);
        assert_eq!(find_original(b"not json", |_| true), None);
        assert_eq!(find_original(&vec![b' '; MAX_BODY + 1], |_| true), None);
    }
}
