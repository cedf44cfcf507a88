//! Text a member controls (object keys, details quoting them) made safe to
//! show and to carry: escaped for terminals and log lines, percent-encoded
//! for S3 metadata, decoded from S3's `encoding-type=url` listings.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal or a log line as is: C0 and C1
/// control characters (newline, carriage return, ESC, DEL, CSI ...) and the
/// invisible Unicode format characters that reorder or hide text (bidi
/// overrides and isolates, zero-width characters).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// `text` with every [`is_unsafe_char`] written as an escape (`\n`, `\r`,
/// `\t`, `\x1b`, `\u{202e}`): a key with a newline cannot forge a log line,
/// one with ESC cannot drive the terminal. Borrowed when nothing needed it.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_char(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `text` holds a control character (C0, DEL or C1): such a key is
/// not archived under its own name.
pub fn has_control_chars(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// `text` percent-encoded: every byte but `A-Z a-z 0-9 - _ . ~ /` as `%XX`.
/// The result is printable ASCII, legal as an HTTP header (S3 metadata)
/// value, and [`decode_url_encoded`] gives `text` back.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Decodes S3's `encoding-type=url` (form encoding: `%XX` escapes, `+` for a
/// space) and [`percent_encode`]'s output. An error for a malformed escape or
/// bytes that are not UTF-8 (S3 keys are UTF-8).
pub fn decode_url_encoded(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|pair| std::str::from_utf8(pair).ok())
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| format!("malformed escape at byte {index}"))?;
                out.push(hex);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            other => {
                out.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "decodes to bytes that are not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_borrowed() {
        for (raw, shown) in [
            ("plain/key.json.gz", "plain/key.json.gz"),
            ("a\nb", "a\\nb"),
            ("a\r\nforged INFO line", "a\\r\\nforged INFO line"),
            ("\u{1b}[31mred", "\\x1b[31mred"),
            ("tab\there", "tab\\there"),
            ("del\u{7f}", "del\\x7f"),
            ("csi\u{9b}", "csi\\x9b"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("zero\u{200b}width", "zero\\u{200b}width"),
            ("ünïcode ok", "ünïcode ok"),
        ] {
            assert_eq!(escape_control(raw), shown, "{raw:?}");
        }
        assert!(matches!(escape_control("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn percent_encoding_is_header_safe() {
        let encoded = percent_encode("a b/c\n\u{1b}+%é");
        assert_eq!(encoded, "a%20b/c%0A%1B%2B%25%C3%A9");
        assert!(encoded.bytes().all(|b| (0x21..0x7f).contains(&b)));
    }

    #[test]
    fn s3_url_encoded_listings_decode() {
        assert_eq!(decode_url_encoded("a/b%1Bc%0Ad").unwrap(), "a/b\u{1b}c\nd");
        assert_eq!(decode_url_encoded("f%2520+x/").unwrap(), "f%20 x/");
        assert!(decode_url_encoded("bad%2").is_err());
        assert!(decode_url_encoded("bad%zz").is_err());
        assert!(decode_url_encoded("%FF").is_err());
    }

    proptest! {
        #[test]
        fn percent_encoding_round_trips(text in "\\PC*|[\\x00-\\x1f\\x7f+% ]*") {
            prop_assert_eq!(decode_url_encoded(&percent_encode(&text)).unwrap(), text);
        }

        #[test]
        fn escaped_text_has_no_unsafe_characters(text in any::<String>()) {
            let escaped = escape_control(&text);
            prop_assert!(!escaped.chars().any(is_unsafe_char));
        }
    }
}
