//! Stage IDs and project IDs: the one place their rules are defined.
//!
//! # Rules (a DNS label, since IDs end up in URLs and host names)
//! - 1 to [`MAX_ID_LEN`] (63) characters;
//! - only lowercase `a`–`z`, digits `0`–`9` and `-`;
//! - starts with a letter, does not end with `-`, never two `-` in a row;
//! - not one of the [`RESERVED_IDS`], which clash with the dashboard's routes.
//!
//! # Derivation from a display name ([`derive_id`])
//! Letters are lowercased and transliterated to ASCII (`Übersicht Café` → `ubersicht-cafe`);
//! every run of other characters becomes one `-`; leading and trailing `-` are trimmed; an ID
//! that would start with a digit gets the kind as prefix (`2024 Launch` → `stage-2024-launch`);
//! a reserved result gets the kind as suffix (`New` → `new-stage`); an over-long one is cut at
//! a word boundary where possible. A name with nothing usable (`!!!`, `日本`) yields the kind
//! plus a short hash of the name (`stage-5d1e0c`), so different names still differ.
//! Every derived ID passes [`validate_id`].

use crate::Error;

/// The longest ID, as for a DNS label.
pub const MAX_ID_LEN: usize = 63;

/// IDs that would clash with the dashboard's own routes (`/projects/new`, `…/settings`) or
/// with host names the platform uses.
pub const RESERVED_IDS: &[&str] =
    &["admin", "api", "archived", "assets", "builds", "new", "pkg", "projects", "settings", "stages", "static", "www"];

/// What an ID identifies: decides the wording of messages and the derivation's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Project,
    Stage,
    /// A component of a build: its name ends up in share-link host names too.
    Component,
}

impl IdKind {
    /// The word used as prefix/suffix in derived IDs.
    pub fn word(self) -> &'static str {
        match self {
            IdKind::Project => "project",
            IdKind::Stage => "stage",
            IdKind::Component => "component",
        }
    }

    /// How the ID is called in the UI and in messages.
    pub fn label(self) -> &'static str {
        match self {
            IdKind::Project => "Project ID",
            IdKind::Stage => "Stage ID",
            IdKind::Component => "Component name",
        }
    }

    /// The name of the input field that carries the ID.
    pub fn field(self) -> &'static str {
        match self {
            IdKind::Project => "project_id",
            IdKind::Stage => "stage_id",
            IdKind::Component => "component",
        }
    }
}

/// An ID override as typed in a form (the "+ NEW STAGE" popup, the new-project form): blank
/// means "derive it from the name", and surrounding spaces are not part of it. The services
/// take an ID given through the API exactly as it is.
pub fn typed_id(typed: &str) -> Option<&str> {
    Some(typed.trim()).filter(|id| !id.is_empty())
}

/// Checks `id` against the rules above; the error explains the first rule it breaks.
pub fn validate_id(kind: IdKind, id: &str) -> Result<(), Error> {
    let label = kind.label();
    let invalid = |msg: String| Err(Error::validation(kind.field(), msg));
    if id.is_empty() {
        return invalid(format!("{label} is required."));
    }
    if let Some(bad) = id.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-')) {
        let shown = if bad.is_control() { format!("U+{:04X}", bad as u32) } else { bad.to_string() };
        return invalid(format!(
            "{label} may only contain lowercase letters a-z, digits 0-9 and hyphens (found '{shown}')."
        ));
    }
    if id.len() > MAX_ID_LEN {
        return invalid(format!("{label} must be at most {MAX_ID_LEN} characters (it has {}).", id.len()));
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return invalid(format!("{label} must start with a letter."));
    }
    if id.ends_with('-') {
        return invalid(format!("{label} must not end with a hyphen."));
    }
    if id.contains("--") {
        return invalid(format!("{label} must not contain two hyphens in a row."));
    }
    if RESERVED_IDS.contains(&id) {
        return invalid(format!("'{id}' is reserved; please choose another {label}."));
    }
    Ok(())
}

/// Derives a valid ID from a display name (see the module documentation).
pub fn derive_id(kind: IdKind, name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    let mut pending_sep = false;
    for c in name.chars() {
        match ascii_fold(c) {
            Some(folded) => {
                if pending_sep && !slug.is_empty() {
                    slug.push('-');
                }
                pending_sep = false;
                slug.push_str(folded);
            }
            None => pending_sep = true,
        }
        if slug.len() > 2 * MAX_ID_LEN {
            break; // enough material; the rest would be truncated anyway
        }
    }
    if slug.is_empty() {
        return format!("{}-{:06x}", kind.word(), fnv1a(name.trim()) & 0xff_ffff);
    }
    if slug.starts_with(|c: char| c.is_ascii_digit()) {
        slug = format!("{}-{slug}", kind.word());
    }
    let mut id = truncate_id(&slug, MAX_ID_LEN).to_owned();
    if RESERVED_IDS.contains(&id.as_str()) {
        id = format!("{id}-{}", kind.word());
    }
    id
}

/// `base` with `-n` appended, shortened so that the result still fits in [`MAX_ID_LEN`].
/// Used to suggest a free ID when `base` is taken (`my-stage` → `my-stage-2`).
pub fn numbered_id(base: &str, n: u32) -> String {
    let suffix = format!("-{n}");
    let room = MAX_ID_LEN - suffix.len();
    let head = if base.len() > room { truncate_id(base, room) } else { base };
    format!("{head}{suffix}")
}

/// Splits a numbered ID into its stem and the first number to try for a free alternative:
/// `my-stage` → (`my-stage`, 2), `my-stage-2` → (`my-stage`, 3), so a suggestion for a taken
/// `my-stage-2` is `my-stage-3`, never `my-stage-2-2`.
pub fn suggestion_stem(id: &str) -> (&str, u32) {
    if let Some((stem, digits)) = id.rsplit_once('-') {
        // `factory-01` keeps its zero-padded number as part of the stem.
        if !stem.is_empty() && !digits.starts_with('0') {
            if let Ok(n) = digits.parse::<u32>() {
                return (stem, n.saturating_add(1).max(2));
            }
        }
    }
    (id, 2)
}

/// Cuts a valid-charset slug to at most `max` bytes, at a hyphen when that keeps at least half
/// of the room, and never leaves a trailing hyphen.
fn truncate_id(slug: &str, max: usize) -> &str {
    if slug.len() <= max {
        return slug;
    }
    let cut = &slug[..max];
    if slug.as_bytes()[max] == b'-' {
        return cut.trim_end_matches('-'); // the cut falls on a word boundary already
    }
    let cut = match cut.rfind('-') {
        Some(pos) if pos >= max / 2 => &cut[..pos],
        _ => cut,
    };
    cut.trim_end_matches('-')
}

/// 32-bit FNV-1a: a tiny, stable hash so the browser and the server derive the same fallback.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// Lowercase ASCII for letters and digits, transliterating Latin letters with diacritics;
/// `None` for everything else (which becomes a separator).
fn ascii_fold(c: char) -> Option<&'static str> {
    const ALNUM: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
    if c.is_ascii_alphanumeric() {
        let lower = c.to_ascii_lowercase() as u8;
        let pos = ALNUM.bytes().position(|b| b == lower)?;
        return Some(&ALNUM[pos..pos + 1]);
    }
    let s = match c {
        'À'..='Å' | 'à'..='å' | 'Ā'..='ą' => "a",
        'Æ' | 'æ' => "ae",
        'Ç' | 'ç' | 'Ć'..='č' => "c",
        'Ð' | 'ð' | 'Ď'..='đ' => "d",
        'È'..='Ë' | 'è'..='ë' | 'Ē'..='ě' => "e",
        'Ĝ'..='ģ' => "g",
        'Ĥ'..='ħ' => "h",
        'Ì'..='Ï' | 'ì'..='ï' | 'Ĩ'..='ı' => "i",
        'Ĳ' | 'ĳ' => "ij",
        'Ĵ' | 'ĵ' => "j",
        'Ķ' | 'ķ' => "k",
        'Ĺ'..='ł' => "l",
        'Ñ' | 'ñ' | 'Ń'..='ŉ' => "n",
        'Ŋ' | 'ŋ' => "ng",
        'Ò'..='Ö' | 'Ø' | 'ò'..='ö' | 'ø' | 'Ō'..='ő' => "o",
        'Œ' | 'œ' => "oe",
        'Ŕ'..='ř' => "r",
        'Ś'..='š' | 'ſ' => "s",
        'ß' => "ss",
        'Ţ'..='ŧ' => "t",
        'Þ' | 'þ' => "th",
        'Ù'..='Ü' | 'ù'..='ü' | 'Ũ'..='ų' => "u",
        'Ŵ' | 'ŵ' => "w",
        'Ý' | 'ý' | 'ÿ' | 'Ŷ' | 'ŷ' | 'Ÿ' => "y",
        'Ź'..='ž' => "z",
        _ => return None,
    };
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_override_is_trimmed_and_blank_means_derive() {
        assert_eq!(typed_id("  uat "), Some("uat"));
        assert_eq!(typed_id(""), None);
        assert_eq!(typed_id(" \t "), None);
        assert_eq!(typed_id("Bad ID"), Some("Bad ID"));
    }
    use proptest::prelude::*;

    const S: IdKind = IdKind::Stage;

    #[test]
    fn derivation_table() {
        let long = "a".repeat(100);
        let words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu";
        let cases: &[(&str, &str)] = &[
            ("My New Stage", "my-new-stage"),
            ("dev", "dev"),
            ("DEV", "dev"),
            ("QA", "qa"),
            ("prod", "prod"),
            ("  padded  ", "padded"),
            ("Übersicht Café", "ubersicht-cafe"),
            ("Straße", "strasse"),
            ("Ærø Øst", "aero-ost"),
            ("Œuvre", "oeuvre"),
            ("Łódź", "lodz"),
            ("Žluťoučký kůň", "zlutoucky-kun"),
            ("crème brûlée", "creme-brulee"),
            ("Þór", "thor"),
            ("integration-tests", "integration-tests"),
            ("integration_tests", "integration-tests"),
            ("a -- b __ c", "a-b-c"),
            ("--edge--", "edge"),
            ("A/B Testing 🤔", "a-b-testing"),
            ("Market: EU (north)", "market-eu-north"),
            ("Stage #2", "stage-2"),
            ("2024 Launch", "stage-2024-launch"),
            ("42", "stage-42"),
            ("New", "new-stage"),
            ("settings", "settings-stage"),
            ("Robert'); DROP TABLE stages;--", "robert-drop-table-stages"),
            ("<script>alert(1)</script>", "script-alert-1-script"),
            ("tab\tand\nnewline", "tab-and-newline"),
            ("Ünïcödé Ñame", "unicode-name"),
            ("factory-01 / line 3", "factory-01-line-3"),
            (&long, &long[..63]),
        ];
        for (name, want) in cases {
            assert_eq!(derive_id(S, name), *want, "derive_id({name:?})");
            assert!(validate_id(S, want).is_ok(), "{want} should be valid");
        }
        // Truncation at a word boundary, never a trailing hyphen.
        let id = derive_id(S, words);
        assert!(id.len() <= MAX_ID_LEN, "{id}");
        assert_eq!(id, "alpha-beta-gamma-delta-epsilon-zeta-eta-theta-iota-kappa-lambda");
        assert!(!id.ends_with('-'));
    }

    #[test]
    fn names_without_usable_characters_still_yield_distinct_valid_ids() {
        let a = derive_id(S, "!!!");
        let b = derive_id(S, "日本");
        let c = derive_id(IdKind::Project, "日本");
        for id in [&a, &b, &c] {
            assert!(validate_id(S, id).is_ok(), "{id}");
        }
        assert!(a.starts_with("stage-") && b.starts_with("stage-"));
        assert!(c.starts_with("project-"));
        assert_ne!(a, b);
        assert_eq!(b, derive_id(S, " 日本 "), "surrounding blanks do not change the hash");
    }

    #[test]
    fn validation_table() {
        let ok = ["a", "dev", "my-new-stage", "a1", "x-1-y", &"a".repeat(63)];
        for id in ok {
            assert_eq!(validate_id(S, id), Ok(()), "{id}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "required"),
            ("My-Stage", "lowercase"),
            ("my stage", "lowercase"),
            ("my_stage", "found '_'"),
            ("ümlaut", "found 'ü'"),
            ("1abc", "start with a letter"),
            ("-abc", "start with a letter"),
            ("abc-", "end with a hyphen"),
            ("a--b", "two hyphens"),
            ("new", "reserved"),
            ("settings", "reserved"),
            ("a'; drop table stages;--", "found '''"),
            ("<script>", "found '<'"),
            ("nul\0byte", "U+0000"),
        ];
        for (id, why) in bad {
            let err = validate_id(S, id).expect_err(id);
            assert_eq!(err.kind, crate::ErrorKind::Validation);
            assert_eq!(err.field.as_deref(), Some("stage_id"));
            assert!(err.message.contains(why), "{id:?}: {} lacks {why:?}", err.message);
        }
        let long = "a".repeat(64);
        assert!(validate_id(S, &long).unwrap_err().message.contains("at most 63"));
        assert!(validate_id(IdKind::Project, "").unwrap_err().message.starts_with("Project ID"));
    }

    #[test]
    fn numbered_ids_fit_and_are_valid() {
        assert_eq!(numbered_id("my-stage", 2), "my-stage-2");
        let long = "b".repeat(63);
        let n = numbered_id(&long, 12);
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("-12"));
        let hyphenated = format!("{}-{}", "c".repeat(40), "d".repeat(22));
        let n = numbered_id(&hyphenated, 3);
        assert_eq!(n, format!("{}-3", "c".repeat(40)));
        assert!(validate_id(S, &n).is_ok());
    }

    #[test]
    fn suggestion_stems_continue_numbering() {
        assert_eq!(suggestion_stem("my-stage"), ("my-stage", 2));
        assert_eq!(suggestion_stem("my-stage-2"), ("my-stage", 3));
        assert_eq!(suggestion_stem("stage-41"), ("stage", 42));
        assert_eq!(suggestion_stem("factory-01"), ("factory-01", 2));
        assert_eq!(suggestion_stem("v2"), ("v2", 2));
    }

    proptest! {
        #[test]
        fn every_derived_id_is_valid(name in any::<String>()) {
            let id = derive_id(S, &name);
            prop_assert!(validate_id(S, &id).is_ok(), "{:?} -> {:?}", name, id);
            prop_assert!(validate_id(IdKind::Project, &derive_id(IdKind::Project, &name)).is_ok());
        }

        #[test]
        fn derived_ids_from_latin_text_are_valid(name in "[ -~À-ſ]{0,200}") {
            let id = derive_id(S, &name);
            prop_assert!(validate_id(S, &id).is_ok(), "{:?} -> {:?}", name, id);
        }

        #[test]
        fn numbered_ids_of_valid_ids_are_valid(name in "[a-z][a-z0-9 -]{0,90}", n in 2u32..100_000) {
            let base = derive_id(S, &name);
            let id = numbered_id(&base, n);
            prop_assert!(validate_id(S, &id).is_ok(), "{:?} -> {:?}", base, id);
        }

        #[test]
        fn derivation_is_idempotent_on_valid_ids(name in any::<String>()) {
            let id = derive_id(S, &name);
            prop_assert_eq!(derive_id(S, &id), id);
        }
    }
}
