//! What text the platform accepts from outside (issue 19). Two rules:
//!
//! - **Any text** (a workload's command, an env value, a JSON body as a whole, a query string):
//!   no NUL (PostgreSQL cannot store it, and C strings end at it), no other control character
//!   but tab, line feed and carriage return, and no bidirectional embedding, override or
//!   isolate (U+202A–U+202E, U+2066–U+2069: "Trojan Source" text that reads differently from
//!   what it is).
//! - **Names** (of devices, clusters, hardware, versions, and ids): the same, and no line
//!   breaks or tabs either, since a name is shown on one line.
//!
//! Lengths are each field's own rule; what is checked here is which characters may appear.

/// Why a character is refused, in words for an error message.
fn kind_of(c: char) -> &'static str {
    match c {
        '\0' => "a NUL character",
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => "a bidirectional-override character",
        _ => "a control character",
    }
}

/// Whether `c` is refused in any text.
fn refused_anywhere(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` is refused in a name.
fn refused_in_name(c: char) -> bool {
    c.is_control() || refused_anywhere(c)
}

/// A refused character, described with its code point, e.g. "a NUL character (U+0000)".
pub fn describe(c: char) -> String {
    format!("{} (U+{:04X})", kind_of(c), u32::from(c))
}

/// The first character of `text` that no text may hold.
pub fn refused_char(text: &str) -> Option<char> {
    text.chars().find(|&c| refused_anywhere(c))
}

/// The first character of `text` that no name may hold.
pub fn refused_name_char(text: &str) -> Option<char> {
    text.chars().find(|&c| refused_in_name(c))
}

/// `Ok` if `text` may be stored as any text; else what to fix, naming `field`.
pub fn check_text(field: &str, text: &str) -> Result<(), String> {
    match refused_char(text) {
        None => Ok(()),
        Some(c) => Err(format!("{field} must not contain {}", describe(c))),
    }
}

/// The characters no text may hold, as the body of a regular-expression character class
/// (ECMAScript's and Python's `\uXXXX` escapes): what the OpenAPI document states as each
/// string's `pattern`.
pub const REFUSED_IN_TEXT_CLASS: &str =
    r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069";
/// [`REFUSED_IN_TEXT_CLASS`] for names, which hold no tab or line break either.
pub const REFUSED_IN_NAME_CLASS: &str = r"\u0000-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069";

/// `Ok` if `text` may be stored as a name; else what to fix, naming `field`.
pub fn check_name(field: &str, text: &str) -> Result<(), String> {
    match refused_name_char(text) {
        None => Ok(()),
        Some(c) => Err(format!("{field} must not contain {}", describe(c))),
    }
}

/// The first refused character in any string of a JSON document, raw or written as a `\u`
/// escape, without parsing the document into values (the agents' messages pass through here
/// on the hot path). `None` also for text that is not JSON at all: parsing it says what is
/// wrong with it. A lone surrogate escape is left to the parser too.
pub fn refused_in_json(json: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(json).ok()?;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            // Raw control characters are not valid JSON inside strings and are harmless
            // whitespace outside them; refusing any here is simpler and just as safe.
            if refused_anywhere(c) {
                return Some(c);
            }
            continue;
        }
        match chars.next() {
            Some('u') => {}
            // JSON's short escapes for two control characters.
            Some('b') => return Some('\u{8}'),
            Some('f') => return Some('\u{c}'),
            _ => continue,
        }
        let hex: String = chars.by_ref().take(4).collect();
        let escaped = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
        if let Some(c) = escaped.filter(|&c| refused_anywhere(c)) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The code points a character class body of `\uXXXX` escapes and ranges names.
    fn class_ranges(class: &str) -> Vec<(u32, u32)> {
        let points: Vec<String> = class.split("\\u").skip(1).map(str::to_owned).collect();
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < points.len() {
            let start = u32::from_str_radix(&points[i][..4], 16).unwrap();
            if points[i].ends_with('-') {
                let end = u32::from_str_radix(&points[i + 1][..4], 16).unwrap();
                ranges.push((start, end));
                i += 2;
            } else {
                ranges.push((start, start));
                i += 1;
            }
        }
        ranges
    }

    #[test]
    fn the_documented_classes_are_the_rules() {
        let text = class_ranges(REFUSED_IN_TEXT_CLASS);
        let name = class_ranges(REFUSED_IN_NAME_CLASS);
        let within = |ranges: &[(u32, u32)], c: char| {
            ranges.iter().any(|&(a, b)| (a..=b).contains(&u32::from(c)))
        };
        for c in (0..0x3000u32).filter_map(char::from_u32) {
            assert_eq!(within(&text, c), refused_anywhere(c), "{c:?} in any text");
            assert_eq!(within(&name, c), refused_in_name(c), "{c:?} in a name");
        }
    }

    #[test]
    fn text_takes_line_breaks_and_tabs_but_no_other_control() {
        assert_eq!(refused_char("python train.py\n\tdone\r\n"), None);
        assert_eq!(refused_char("a\0b"), Some('\0'));
        assert_eq!(refused_char("bell\u{7}"), Some('\u{7}'));
        assert_eq!(refused_char("del\u{7f}"), Some('\u{7f}'));
        assert_eq!(refused_char("c1\u{85}"), Some('\u{85}'));
        assert_eq!(refused_char("user\u{202E}gnp.exe"), Some('\u{202E}'));
        assert_eq!(refused_char("\u{2067}isolate"), Some('\u{2067}'));
        // Letters of any script are welcome, right-to-left ones included.
        assert_eq!(refused_char("عقدة-٣ · узел · ノード"), None);
    }

    #[test]
    fn names_take_no_line_breaks() {
        assert_eq!(refused_name_char("rack-3 node 7"), None);
        assert_eq!(refused_name_char("two\nlines"), Some('\n'));
        assert_eq!(refused_name_char("tab\tbed"), Some('\t'));
        assert_eq!(
            check_name("cpu_model", "AMD\u{202E}"),
            Err("cpu_model must not contain a bidirectional-override character (U+202E)".into())
        );
        assert_eq!(
            check_text("command", "x\0"),
            Err("command must not contain a NUL character (U+0000)".into())
        );
    }

    #[test]
    fn json_is_scanned_raw_and_escaped() {
        assert_eq!(
            refused_in_json(br#"{"a":"plain","b":"line\nbreak\t"}"#),
            None
        );
        assert_eq!(refused_in_json(br#"{"id":"dev-\u0000"}"#), Some('\0'));
        assert_eq!(
            refused_in_json(br#"{"id":"dev-\u001B[31m"}"#),
            Some('\u{1b}')
        );
        assert_eq!(refused_in_json(br#"{"n":"\u202e"}"#), Some('\u{202E}'));
        assert_eq!(refused_in_json(br#"{"n":"form\ffeed"}"#), Some('\u{c}'));
        assert_eq!(refused_in_json(br#"{"n":"\b"}"#), Some('\u{8}'));
        assert_eq!(
            refused_in_json("{\"n\":\"\u{2066}\"}".as_bytes()),
            Some('\u{2066}')
        );
        // An escaped backslash followed by "u0000" is the text \u0000, not a NUL.
        assert_eq!(refused_in_json(br#"{"a":"\\u0000"}"#), None);
        // Escapes of line breaks spelled out are still line breaks.
        assert_eq!(refused_in_json(br#"{"a":"\u000a"}"#), None);
    }

    proptest! {
        /// Whatever a string holds, the scan of its JSON encoding finds a refused character
        /// exactly when the string has one.
        #[test]
        fn json_scan_agrees_with_the_text_rule(text in "\\PC*|[\\x00-\\x20\\u{7f}-\\u{a0}\\u{2060}-\\u{2070}\\u{2020}-\\u{2030}a-z\\\\\"]{0,40}") {
            let json = serde_json::to_vec(&serde_json::json!({ "field": text })).unwrap();
            prop_assert_eq!(refused_in_json(&json).is_some(), refused_char(&text).is_some());
        }
    }
}
