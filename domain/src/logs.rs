//! Reading a component's output: which lines (`?since`, `?tail`), whether to follow it, and how
//! a line is printed as text — the same for the REST route, the dashboard's download and
//! `pergola logs`.

use crate::runtime::LogLine;
use crate::Error;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// At most this many lines are asked for with `tail` (what a component keeps).
pub const MAX_TAIL: u32 = 10_000;

/// The raw parameters of the logs route, as they come from a URL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct LogParams {
    /// Only lines printed since then: an age (`30s`, `10m`, `2h`, `1d`) or a time (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// Only the last this many lines (1 to 10000).
    #[serde(default)]
    pub tail: Option<String>,
    /// `true`: after the lines kept, go on sending new lines as they are printed
    /// (`application/x-ndjson`, one line object per line; text with `format=text`) until the
    /// component is gone for a few seconds or the server stops.
    #[serde(default)]
    pub follow: Option<String>,
    /// Only lines numbered after this (`seq` of the last line a client saw, to go on after a
    /// reconnection).
    #[serde(default)]
    pub after: Option<String>,
    /// `json` (the default) or `text`: one printed line per output line, control characters
    /// escaped.
    #[serde(default)]
    pub format: Option<String>,
}

/// How the lines are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// Which lines of a component's output, read from [`LogParams`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub since: Option<DateTime<Utc>>,
    pub tail: Option<u32>,
    pub follow: bool,
    pub format: LogFormat,
    /// Only lines numbered after this (0: from the first kept).
    pub after: u64,
}

impl LogQuery {
    /// Reads the parameters; `now` turns an age into a time.
    pub fn parse(p: &LogParams, now: DateTime<Utc>) -> Result<Self, Error> {
        let present = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let since = present(&p.since).map(|s| parse_since(&s, now)).transpose()?;
        let tail = present(&p.tail)
            .map(|t| match t.parse::<u32>() {
                Ok(n) if (1..=MAX_TAIL).contains(&n) => Ok(n),
                _ => Err(Error::malformed(format!("tail must be a number of lines from 1 to {MAX_TAIL}."))),
            })
            .transpose()?;
        let follow = match present(&p.follow).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(Error::malformed("follow must be true or false.")),
        };
        let format = match present(&p.format).as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(_) => return Err(Error::malformed("format must be json or text.")),
        };
        let after = present(&p.after)
            .map(|a| a.parse::<u64>().map_err(|_| Error::malformed("after must be the number of a line (its seq).")))
            .transpose()?
            .unwrap_or(0);
        Ok(LogQuery { since, tail, follow, format, after })
    }

    /// The lines of `lines` (oldest first) this query asks for.
    pub fn select(&self, lines: Vec<LogLine>) -> Vec<LogLine> {
        let mut lines: Vec<LogLine> = match self.since {
            Some(since) => lines.into_iter().filter(|l| l.at >= since).collect(),
            None => lines,
        };
        if let Some(tail) = self.tail {
            let skip = lines.len().saturating_sub(tail as usize);
            lines.drain(..skip);
        }
        lines
    }
}

/// `30s`, `10m`, `2h`, `1d` ago, or an RFC 3339 time.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
    let bad =
        || Error::malformed("since must be an age such as 30s, 10m, 2h or 1d, or a time such as 2026-11-30T09:00:00Z.");
    if let Ok(at) = DateTime::parse_from_rfc3339(s) {
        return Ok(at.with_timezone(&Utc));
    }
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let age = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        _ => None,
    }
    .filter(|d| *d <= Duration::days(3650))
    .ok_or_else(bad)?;
    Ok(now - age)
}

/// One output line as text: `HH:MM:SS stream line` with `timestamps` the full time first, and
/// every control character escaped — a component's output may hold terminal escapes meant to
/// rewrite the reader's screen.
pub fn format_line(line: &LogLine, timestamps: bool) -> String {
    let at = if timestamps {
        line.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    } else {
        line.at.format("%H:%M:%S").to_string()
    };
    let mark = match line.stream.as_str() {
        "stderr" => " !",
        "pergola" => " *",
        _ => "",
    };
    format!("{at}{mark} {}", escape_controls(&line.line))
}

/// `s` with control characters (but tabs) written as `\u{..}` escapes.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    fn params(since: &str, tail: &str, follow: &str, format: &str) -> LogParams {
        let v = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        LogParams { since: v(since), tail: v(tail), follow: v(follow), format: v(format), after: None }
    }

    fn line(seconds_ago: i64, text: &str) -> LogLine {
        LogLine { at: now() - Duration::seconds(seconds_ago), stream: "stdout".into(), line: text.into(), seq: 0 }
    }

    #[test]
    fn ages_and_times_are_read_and_nonsense_refused() {
        assert_eq!(parse_since("10m", now()).unwrap(), now() - Duration::minutes(10));
        assert_eq!(parse_since("2h", now()).unwrap(), now() - Duration::hours(2));
        assert_eq!(parse_since("1d", now()).unwrap(), now() - Duration::days(1));
        assert_eq!(parse_since("2026-11-30T11:00:00Z", now()).unwrap(), now() - Duration::hours(1));
        for bad in ["10", "m", "10y", "-5m", "99999999999999999999m", "5000000d", "ten minutes"] {
            assert!(parse_since(bad, now()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_query_picks_the_lines_since_and_the_tail() {
        let lines = vec![line(600, "a"), line(300, "b"), line(60, "c"), line(1, "d")];
        let q = LogQuery::parse(&params("5m", "", "", ""), now()).unwrap();
        assert_eq!(q.select(lines.clone()).iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["b", "c", "d"]);
        let q = LogQuery::parse(&params("", "2", "true", "text"), now()).unwrap();
        assert!(q.follow);
        assert_eq!(q.format, LogFormat::Text);
        assert_eq!(q.select(lines.clone()).iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["c", "d"]);
        assert_eq!(LogQuery::parse(&LogParams::default(), now()).unwrap().select(lines.clone()), lines);
    }

    #[test]
    fn bad_parameters_are_refused_with_what_to_write() {
        for p in
            [params("", "0", "", ""), params("", "10001", "", ""), params("", "", "yes", ""), params("", "", "", "xml")]
        {
            let e = LogQuery::parse(&p, now()).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::MalformedRequest, "{p:?}");
        }
    }

    #[test]
    fn printed_lines_cannot_drive_the_readers_terminal() {
        let mut l = line(0, "\u{1b}[2J\u{1b}]0;pwned\u{7}\tcleared\r");
        l.stream = "stderr".into();
        let text = format_line(&l, false);
        assert_eq!(text, "12:00:00 ! \\u{1b}[2J\\u{1b}]0;pwned\\u{7}\tcleared\\u{d}");
        assert!(!text.chars().any(|c| c.is_control() && c != '\t'));
    }
}
