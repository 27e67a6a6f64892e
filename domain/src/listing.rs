//! Finding stages in a project with many: search by name or ID, filter by type and status,
//! sort, and pages addressed by an opaque cursor (keyset paging: a page never repeats or skips
//! a stage because others were created or deleted meanwhile).
//!
//! The REST API (`GET …/stages?q&type&status&sort&limit&cursor`), the project page (its search
//! form's fields have the same names) and the CLI (`pergola list stage`) read the same
//! parameters with [`StageQuery::parse`]; the store turns a query into one SQL statement.

use crate::{Error, Stage, StageStatus, StageType};
use serde::{Deserialize, Serialize};

/// The most stages one page holds.
pub const MAX_PAGE_SIZE: u32 = 500;
/// How many stage cards the project page shows at once.
pub const PROJECT_PAGE_SIZE: u32 = 48;
/// The longest search text, in characters.
pub const MAX_SEARCH_CHARS: usize = 100;

/// What a stage's name is searched and sorted by: the name in lower case, every letter of it
/// (Unicode's lower-case mapping, so "École" is found by "école" and "ÉCOLE"). Sorting by name
/// compares these keys character by character, by code point (accented letters after "z"), the
/// same on both databases. The store keeps the key beside the name: SQLite's `lower()` folds
/// ASCII letters only, and PostgreSQL's depends on the database's locale.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// The order of a stage listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageSort {
    /// Oldest first (the order stages were created in).
    #[default]
    Created,
    /// By display name, A to Z: by [`name_key`], character by character (the same on every
    /// database).
    Name,
    /// Most recently changed first.
    Updated,
}

impl StageSort {
    pub const ALL: [StageSort; 3] = [StageSort::Created, StageSort::Name, StageSort::Updated];

    /// The wire form: `created`, `name`, `updated`.
    pub fn as_str(self) -> &'static str {
        match self {
            StageSort::Created => "created",
            StageSort::Name => "name",
            StageSort::Updated => "updated",
        }
    }

    /// What the project page's sort menu says.
    pub fn label(self) -> &'static str {
        match self {
            StageSort::Created => "Oldest first",
            StageSort::Name => "Name (A–Z)",
            StageSort::Updated => "Recently changed",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        StageSort::ALL
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::malformed(format!("Unknown sort '{}'. Sort by created, name or updated.", shown(s))))
    }
}

/// Where the previous page ended: the last stage's sort key and ID. Opaque on the wire
/// ([`Cursor::encode`]); a cursor only continues a listing with the same sort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub sort: StageSort,
    /// The last stage's key in this sort: creation or change time in milliseconds, or its name.
    pub key: CursorKey,
    /// The last stage's ID (ties are ordered by ID).
    pub stage_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CursorKey {
    Millis(i64),
    Name(String),
}

impl Cursor {
    /// The cursor continuing after `stage` in `sort`.
    pub fn after(sort: StageSort, stage: &Stage) -> Self {
        let key = match sort {
            StageSort::Created => CursorKey::Millis(stage.created_at.timestamp_millis()),
            StageSort::Updated => CursorKey::Millis(stage.updated_at.timestamp_millis()),
            StageSort::Name => CursorKey::Name(stage.name.clone()),
        };
        Cursor { sort, key, stage_id: stage.id.clone() }
    }

    /// The wire form: lower-case hex of `sort \n key \n id` (URL-safe, no meaning to rely on).
    pub fn encode(&self) -> String {
        let key = match &self.key {
            CursorKey::Millis(ms) => ms.to_string(),
            CursorKey::Name(name) => name.clone(),
        };
        let plain = format!("{}\n{}\n{}", self.sort.as_str(), key, self.stage_id);
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads a cursor made by [`Cursor::encode`]; anything else is a malformed request.
    pub fn decode(s: &str) -> Result<Self, Error> {
        let bad = || Error::malformed("The cursor is not one this server handed out; start again from the first page.");
        // A cursor holds a sort, a name of at most a few hundred bytes and an ID.
        if s.is_empty() || s.len() > 2048 || !s.len().is_multiple_of(2) {
            return Err(bad());
        }
        let bytes = (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        let plain = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = plain.splitn(3, '\n');
        let (Some(sort), Some(key), Some(stage_id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let sort = StageSort::parse(sort).map_err(|_| bad())?;
        crate::validate_id(crate::IdKind::Stage, stage_id).map_err(|_| bad())?;
        let key = match sort {
            StageSort::Created | StageSort::Updated => CursorKey::Millis(key.parse().map_err(|_| bad())?),
            StageSort::Name => {
                if key.chars().count() > crate::MAX_NAME_CHARS || key.contains('\n') {
                    return Err(bad());
                }
                CursorKey::Name(key.to_owned())
            }
        };
        Ok(Cursor { sort, key, stage_id: stage_id.to_owned() })
    }
}

/// Which live stages to list, in which order, how many.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageQuery {
    /// Case-insensitive text the name or the ID contains (trimmed; empty means none).
    pub search: Option<String>,
    /// Only these types (empty: all).
    pub types: Vec<StageType>,
    /// Only these statuses (empty: all).
    pub statuses: Vec<StageStatus>,
    pub sort: StageSort,
    /// At most this many (`None`: all of them).
    pub limit: Option<u32>,
    /// Continue after this stage.
    pub cursor: Option<Cursor>,
}

/// The raw parameters as they come from a URL (`?q&type&status&sort&limit&cursor`): each may
/// be absent or empty; `type` and `status` are comma-separated lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct StageQueryParams {
    /// Only stages whose name or ID contains this text (case-insensitive, at most 100 characters).
    #[serde(default)]
    pub q: Option<String>,
    /// Only stages of these types: `dev`, `qa`, `prod`, comma-separated.
    #[serde(default, rename = "type")]
    pub stage_type: Option<String>,
    /// Only stages in these statuses: `running`, `suspending`, `suspended`, comma-separated.
    #[serde(default)]
    pub status: Option<String>,
    /// `created` (oldest first, the default), `name` (A to Z) or `updated` (most recently changed first).
    #[serde(default)]
    pub sort: Option<String>,
    /// At most this many stages (1 to 500); without it, every matching stage. With a limit, a
    /// further page is announced in the `Link` header (`rel="next"`).
    #[serde(default)]
    pub limit: Option<String>,
    /// Where to continue: the cursor of the previous page's `Link: <…>; rel="next"`.
    #[serde(default)]
    pub cursor: Option<String>,
}

impl StageQueryParams {
    /// Whether any parameter is given (listing archived stages takes none).
    pub fn is_empty(&self) -> bool {
        let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        !(given(&self.q)
            || given(&self.stage_type)
            || given(&self.status)
            || given(&self.sort)
            || given(&self.limit)
            || given(&self.cursor))
    }

    /// The parameters but the cursor, as a query string without a leading `?` (empty
    /// parameters left out): the first page of the same listing.
    pub fn query_string(&self) -> String {
        [
            ("q", &self.q),
            ("type", &self.stage_type),
            ("status", &self.status),
            ("sort", &self.sort),
            ("limit", &self.limit),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            value.as_deref().filter(|v| !v.trim().is_empty()).map(|v| format!("{name}={}", percent_encode(v)))
        })
        .collect::<Vec<_>>()
        .join("&")
    }

    /// The same parameters for the page after `cursor` (for a `Link` header or a "Next page"
    /// link), as a query string without a leading `?`.
    pub fn with_cursor(&self, cursor: &str) -> String {
        let first = self.query_string();
        let cursor = format!("cursor={}", percent_encode(cursor));
        if first.is_empty() {
            cursor
        } else {
            format!("{first}&{cursor}")
        }
    }
}

impl StageQuery {
    /// Reads the URL parameters; a bad value is a malformed request saying which and why.
    pub fn parse(p: &StageQueryParams) -> Result<Self, Error> {
        let present = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let search = present(&p.q);
        if let Some(q) = &search {
            if q.chars().count() > MAX_SEARCH_CHARS {
                return Err(Error::malformed(format!("The search text is longer than {MAX_SEARCH_CHARS} characters.")));
            }
            if q.chars().any(char::is_control) {
                return Err(Error::malformed("The search text contains control characters."));
            }
        }
        let list = |v: &Option<String>| -> Vec<String> {
            present(v)
                .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let mut types = Vec::new();
        for t in list(&p.stage_type) {
            let t = StageType::parse(&t)
                .map_err(|_| Error::malformed(format!("Unknown stage type '{}'. Use dev, qa or prod.", shown(&t))))?;
            if !types.contains(&t) {
                types.push(t);
            }
        }
        let mut statuses = Vec::new();
        for s in list(&p.status) {
            let s = StageStatus::parse(&s.to_ascii_lowercase()).map_err(|_| {
                Error::malformed(format!("Unknown stage status '{}'. Use running, suspending or suspended.", shown(&s)))
            })?;
            if !statuses.contains(&s) {
                statuses.push(s);
            }
        }
        let sort = present(&p.sort).map(|s| StageSort::parse(&s)).transpose()?.unwrap_or_default();
        let limit = present(&p.limit)
            .map(|l| match l.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
                _ => Err(Error::malformed(format!("The limit must be a number from 1 to {MAX_PAGE_SIZE}."))),
            })
            .transpose()?;
        let cursor = present(&p.cursor).map(|c| Cursor::decode(&c)).transpose()?;
        if let Some(c) = &cursor {
            if c.sort != sort {
                return Err(Error::malformed(format!(
                    "The cursor continues a listing sorted by {}, not by {}; start again from the first page.",
                    c.sort.as_str(),
                    sort.as_str()
                )));
            }
        }
        Ok(StageQuery { search, types, statuses, sort, limit, cursor })
    }

    /// Whether `stage` is one this query lists (ignoring the cursor and the limit): the same
    /// rule the store applies in SQL, for tests and for what the page keeps while live.
    pub fn matches(&self, stage: &Stage) -> bool {
        let text = self.search.as_deref().map(name_key);
        text.is_none_or(|t| name_key(&stage.name).contains(&t) || stage.id.contains(&t))
            && (self.types.is_empty() || self.types.contains(&stage.stage_type))
            && (self.statuses.is_empty() || self.statuses.contains(&stage.status))
    }

    /// Whether the query narrows the stages down (a search or a filter).
    pub fn is_filtered(&self) -> bool {
        self.search.is_some() || !self.types.is_empty() || !self.statuses.is_empty()
    }
}

/// One page of a stage listing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagePage {
    pub stages: Vec<Stage>,
    /// How many live stages match the search and filters (on every page).
    pub matching: u64,
    /// The cursor of the next page, if there are more.
    pub next: Option<String>,
}

/// `s` for a message: at most 40 characters, control characters left out.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn params(pairs: &[(&str, &str)]) -> StageQueryParams {
        let mut p = StageQueryParams::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "q" => p.q = v,
                "type" => p.stage_type = v,
                "status" => p.status = v,
                "sort" => p.sort = v,
                "limit" => p.limit = v,
                "cursor" => p.cursor = v,
                _ => unreachable!(),
            }
        }
        p
    }

    fn stage(id: &str, name: &str, t: StageType, status: StageStatus) -> Stage {
        let at = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        Stage {
            project_id: "p".into(),
            id: id.into(),
            name: name.into(),
            stage_type: t,
            status,
            grace_secs: 10,
            created_at: at,
            updated_at: at,
            archived_at: None,
            purge_due_at: None,
        }
    }

    #[test]
    fn empty_parameters_list_everything_oldest_first() {
        let q = StageQuery::parse(&params(&[("q", "  "), ("type", ""), ("limit", "")])).unwrap();
        assert_eq!(q, StageQuery::default());
        assert!(!q.is_filtered());
        assert!(params(&[("q", " ")]).is_empty());
        assert!(!params(&[("sort", "name")]).is_empty());
    }

    #[test]
    fn lists_are_comma_separated_case_insensitive_and_deduplicated() {
        let q = StageQuery::parse(&params(&[("type", "DEV, qa,dev"), ("status", "Suspended,running")])).unwrap();
        assert_eq!(q.types, vec![StageType::Dev, StageType::Qa]);
        assert_eq!(q.statuses, vec![StageStatus::Suspended, StageStatus::Running]);
    }

    #[test]
    fn bad_values_are_malformed_requests_that_say_which() {
        let cases = [
            (("type", "staging"), "Unknown stage type 'staging'"),
            (("status", "archived"), "Unknown stage status 'archived'"),
            (("sort", "size"), "Unknown sort 'size'"),
            (("limit", "0"), "from 1 to 500"),
            (("limit", "501"), "from 1 to 500"),
            (("limit", "-3"), "from 1 to 500"),
            (("cursor", "zz"), "not one this server handed out"),
            (("q", "a\u{7}b"), "control characters"),
        ];
        for ((k, v), expected) in cases {
            let e = StageQuery::parse(&params(&[(k, v)])).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::MalformedRequest, "{k}={v}");
            assert!(e.message.contains(expected), "{k}={v}: {}", e.message);
        }
        let long = "x".repeat(MAX_SEARCH_CHARS + 1);
        assert!(StageQuery::parse(&params(&[("q", &long)])).is_err());
        assert!(StageQuery::parse(&params(&[("q", &long[1..])])).is_ok());
        // A hostile value is cut short in the message.
        let e = StageQuery::parse(&params(&[("type", &"y".repeat(5000))])).unwrap_err();
        assert!(e.message.len() < 200, "{}", e.message);
    }

    #[test]
    fn cursors_round_trip_and_belong_to_their_sort() {
        let s = stage("web-2", "Web: two\u{e9}", StageType::Qa, StageStatus::Running);
        for sort in StageSort::ALL {
            let c = Cursor::after(sort, &s);
            let wire = c.encode();
            assert!(wire.bytes().all(|b| b.is_ascii_hexdigit()), "{wire}");
            assert_eq!(Cursor::decode(&wire).unwrap(), c);
            let q = StageQuery::parse(&params(&[("sort", sort.as_str()), ("cursor", &wire)])).unwrap();
            assert_eq!(q.cursor, Some(c.clone()));
            // The same cursor with another sort is refused rather than skipping stages.
            let other = StageSort::ALL.into_iter().find(|o| *o != sort).unwrap();
            let e = StageQuery::parse(&params(&[("sort", other.as_str()), ("cursor", &wire)])).unwrap_err();
            assert!(e.message.contains("start again"), "{}", e.message);
        }
    }

    #[test]
    fn forged_cursors_are_refused() {
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        for forged in [
            hex("created\nnot-a-number\nweb"),
            hex("created\n12\n../etc"),
            hex("created\n12"),
            hex("bogus\n12\nweb"),
            hex(&format!("name\n{}\nweb", "n".repeat(200))),
            "0".repeat(4096),
            "abc".into(),
            "ff".into(),
        ] {
            assert!(Cursor::decode(&forged).is_err(), "{forged}");
        }
    }

    #[test]
    fn matches_applies_search_type_and_status() {
        let s = stage("checkout-qa", "Checkout QA", StageType::Qa, StageStatus::Suspended);
        let q = |pairs: &[(&str, &str)]| StageQuery::parse(&params(pairs)).unwrap();
        assert!(q(&[]).matches(&s));
        assert!(q(&[("q", "CHECKOUT")]).matches(&s));
        assert!(q(&[("q", "kout-q")]).matches(&s));
        assert!(!q(&[("q", "billing")]).matches(&s));
        assert!(q(&[("type", "qa,prod")]).matches(&s));
        assert!(!q(&[("type", "dev")]).matches(&s));
        assert!(q(&[("status", "suspended")]).matches(&s));
        assert!(!q(&[("status", "running")]).matches(&s));
    }

    #[test]
    fn next_page_parameters_keep_the_filters_and_encode_them() {
        let p = params(&[("q", "a&b c"), ("type", "dev"), ("limit", "10"), ("cursor", "old")]);
        assert_eq!(p.with_cursor("abc"), "q=a%26b%20c&type=dev&limit=10&cursor=abc");
        assert_eq!(p.query_string(), "q=a%26b%20c&type=dev&limit=10");
        assert_eq!(StageQueryParams::default().with_cursor("ab"), "cursor=ab");
    }
}
