//! Display names of projects and stages.
//!
//! Any script is welcome (`Übersicht`, `日本`, emoji); the name is trimmed and must then have 1
//! to [`MAX_NAME_CHARS`] characters. Control characters and invisible direction overrides
//! (which make a name display differently from what it is) are refused. Markup and quotes are
//! allowed and always rendered as text.

use crate::Error;

pub const MAX_NAME_CHARS: usize = 100;

/// Returns the trimmed name, or an error for the `name` field.
pub fn validate_name(what: &str, name: &str) -> Result<String, Error> {
    let trimmed = name.trim();
    let err = |msg: String| Err(Error::validation("name", msg));
    if trimmed.is_empty() {
        return err(format!("{what} name is required."));
    }
    let count = trimmed.chars().count();
    if count > MAX_NAME_CHARS {
        return err(format!("{what} name must be at most {MAX_NAME_CHARS} characters (it has {count})."));
    }
    if let Some(c) = trimmed.chars().find(|c| c.is_control() || is_bidi_control(*c)) {
        return err(format!("{what} name must not contain control characters (found U+{:04X}).", c as u32));
    }
    Ok(trimmed.to_owned())
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_trims() {
        assert_eq!(validate_name("Stage", "  QA  ").unwrap(), "QA");
        assert_eq!(validate_name("Stage", "日本 🤔").unwrap(), "日本 🤔");
        assert_eq!(validate_name("Stage", "<script>alert(1)</script>").unwrap(), "<script>alert(1)</script>");
        assert_eq!(validate_name("Stage", "Bob's; DROP TABLE x;--").unwrap(), "Bob's; DROP TABLE x;--");
        let hundred = "é".repeat(100);
        assert_eq!(validate_name("Stage", &hundred).unwrap(), hundred);
    }

    #[test]
    fn refuses_bad_names_with_clear_messages() {
        let cases: &[(&str, &str)] = &[
            ("", "Stage name is required."),
            ("   \t ", "Stage name is required."),
            ("a\u{0}b", "control characters (found U+0000)"),
            ("line\nbreak", "control characters (found U+000A)"),
            ("evil\u{202E}txt", "U+202E"),
        ];
        for (name, want) in cases {
            let e = validate_name("Stage", name).unwrap_err();
            assert!(e.is_for("name"));
            assert!(e.message.contains(want), "{name:?}: {}", e.message);
        }
        let e = validate_name("Project", &"x".repeat(101)).unwrap_err();
        assert_eq!(e.message, "Project name must be at most 100 characters (it has 101).");
    }
}
