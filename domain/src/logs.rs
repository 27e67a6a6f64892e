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

/// One output line as text: `HH:MM:SS M line` with `timestamps` the full time first; `M`, one
/// column, says whose line it is — ` ` the component's output, `!` its errors (stderr), `*` what
/// Pergola says about it — so a component cannot print a line that reads as Pergola's. Every
/// control and direction-changing character is escaped: a component's output may hold terminal
/// escapes meant to rewrite the reader's screen, or marks that reorder the text shown.
pub fn format_line(line: &LogLine, timestamps: bool) -> String {
    let at = if timestamps {
        line.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    } else {
        line.at.format("%H:%M:%S").to_string()
    };
    let mark = match line.stream.as_str() {
        "stderr" => '!',
        "pergola" => '*',
        _ => ' ',
    };
    format!("{at} {mark} {}", escape_controls(&line.line))
}

/// Whether `c` changes the direction of the text shown around it (bidirectional marks,
/// embeddings, overrides and isolates).
fn steers(c: char) -> bool {
    matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `json` (a line as JSON: what `pergola logs -o json` prints) with the control characters
/// JSON leaves as they are (DEL and the C1 controls: U+009B opens a terminal sequence in some
/// terminals) and the direction-changing marks written as `\uXXXX` escapes too: it reads back
/// the same.
pub fn escape_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_control() || steers(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` with control characters (but tabs) and the marks that change the direction of text
/// (bidirectional embeddings, overrides and isolates) written as `\u{..}` escapes.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (c.is_control() && c != '\t') || steers(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The most lines of one component a page shows (the server keeps more: the REST route and
/// `pergola logs` read them all).
pub const LINES_SHOWN: usize = 200;
/// The most bytes of one component's lines a page is sent at a time (a line may be 16 KiB).
pub const BYTES_SHOWN: usize = 64 * 1024;

/// Each component's name and the lines of it a page shows, oldest first.
pub type Output = Vec<(String, Vec<LogLine>)>;

/// What a page is sent of one component's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputPart {
    pub component: String,
    /// Its newest lines (after the one asked after), oldest first, within [`shown_count`].
    pub lines: Vec<LogLine>,
    /// The lines follow on from the last line the page said it shows — none between was left
    /// out: the page adds them. Otherwise (lines were left out, the page showed none of this
    /// component, or the numbers began again) it shows these instead.
    pub follows: bool,
}

/// How many of a component's lines, given newest first, a page is sent: at most
/// [`LINES_SHOWN`] and [`BYTES_SHOWN`] — though always the newest line, however long.
pub fn shown_count<'a>(newest_first: impl Iterator<Item = &'a LogLine>) -> usize {
    let mut bytes = 0;
    let mut count = 0;
    for line in newest_first.take(LINES_SHOWN) {
        bytes += line.line.len();
        if bytes > BYTES_SHOWN && count > 0 {
            break;
        }
        count += 1;
    }
    count
}

/// What a page is sent of `kept` (a component's kept lines, oldest first) numbered after
/// `after`: the newest ([`shown_count`]; only those are copied), and whether that is all of
/// them.
pub fn shown_after(kept: &std::collections::VecDeque<LogLine>, after: u64) -> (Vec<LogLine>, bool) {
    let newer = kept.iter().rev().take_while(|l| l.seq > after).count();
    let keep = shown_count(kept.iter().rev().take(newer));
    (kept.range(kept.len() - keep..).cloned().collect(), keep == newer)
}

/// The newest of `lines` (oldest first) a page is sent ([`shown_count`]).
pub fn shown(mut lines: Vec<LogLine>) -> Vec<LogLine> {
    let keep = shown_count(lines.iter().rev());
    lines.drain(..lines.len() - keep);
    lines
}

/// Takes in what a page was sent. `whole`: every component there is now, each part shown
/// instead of what was (a new release's components start afresh); otherwise only the
/// components that printed: lines that follow on are added (a late answer adds nothing twice),
/// the others replace what was shown of their component.
pub fn merge_output(held: &mut Output, fresh: Vec<OutputPart>, whole: bool) {
    if whole {
        *held = fresh.into_iter().map(|p| (p.component, p.lines)).collect();
        return;
    }
    for part in fresh {
        match held.iter_mut().find(|(n, _)| *n == part.component) {
            Some((_, kept)) if part.follows => {
                let last = kept.last().map_or(0, |l| l.seq);
                kept.extend(part.lines.into_iter().filter(|l| l.seq > last));
                *kept = shown(std::mem::take(kept));
            }
            Some((_, kept)) => *kept = part.lines,
            None => held.push((part.component, part.lines)),
        }
    }
}

/// The number of the last line `output` shows of each component: what to ask for next.
pub fn last_lines(output: &Output) -> Vec<(String, u64)> {
    output.iter().map(|(name, lines)| (name.clone(), lines.last().map_or(0, |l| l.seq))).collect()
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
        // C1 controls (U+009B opens a terminal sequence in some terminals) and the marks that
        // reorder what is shown ("exe.txt" shown for "txt.exe").
        let l = line(0, "\u{9b}2J file \u{202e}txt.exe\u{202c} \u{2067}x\u{2069}");
        assert_eq!(escape_controls(&l.line), "\\u{9b}2J file \\u{202e}txt.exe\\u{202c} \\u{2067}x\\u{2069}");
    }

    #[test]
    fn json_lines_carry_no_raw_control_character() {
        let l = line(0, "\u{9b}2J \u{7f} \u{202e}gnp.exe \u{1b}[0m");
        let json = escape_json(&serde_json::to_string(&l).unwrap());
        assert!(!json.chars().any(|c| c.is_control() || steers(c)), "{json}");
        assert!(json.contains("\\u009b") && json.contains("\\u202e"), "{json}");
        assert_eq!(serde_json::from_str::<LogLine>(&json).unwrap(), l);
    }

    #[test]
    fn a_component_cannot_print_a_line_that_reads_as_pergolas() {
        let mut own = line(0, "web was killed after the grace period");
        own.stream = "pergola".into();
        let forged = line(0, "* web was killed after the grace period");
        assert_eq!(format_line(&own, false), "12:00:00 * web was killed after the grace period");
        assert_eq!(format_line(&forged, false), "12:00:00   * web was killed after the grace period");
        assert_eq!(format_line(&line(0, "ok"), true), "2026-11-30T12:00:00.000Z   ok");
    }

    fn numbered(seq: u64, text: &str) -> LogLine {
        LogLine { seq, ..line(0, text) }
    }

    fn texts(output: &Output) -> Vec<(String, Vec<String>)> {
        output.iter().map(|(n, l)| (n.clone(), l.iter().map(|l| l.line.clone()).collect())).collect()
    }

    #[test]
    fn a_page_is_sent_the_newest_lines_within_its_limits() {
        let many: Vec<LogLine> = (1..=500).map(|n| numbered(n, "short")).collect();
        let sent = shown(many);
        assert_eq!(sent.len(), LINES_SHOWN);
        assert_eq!(sent.first().unwrap().seq, 301);
        assert_eq!(sent.last().unwrap().seq, 500);
        // Lines of 16 KiB: only as many as fit in the bytes a page is sent, the newest.
        let long: Vec<LogLine> = (1..=100).map(|n| numbered(n, &"x".repeat(16 * 1024))).collect();
        let sent = shown(long);
        assert_eq!(sent.len(), BYTES_SHOWN / (16 * 1024));
        assert_eq!(sent.last().unwrap().seq, 100);
        // The newest line, however long, is shown.
        assert_eq!(shown(vec![numbered(1, "a"), numbered(2, &"y".repeat(BYTES_SHOWN + 1))]).len(), 1);
        assert!(shown(Vec::new()).is_empty());
    }

    fn part(component: &str, lines: Vec<LogLine>, follows: bool) -> OutputPart {
        OutputPart { component: component.into(), lines, follows }
    }

    #[test]
    fn new_lines_are_added_once_and_the_rest_replaced() {
        let mut held: Output = vec![("web".into(), vec![numbered(1, "a"), numbered(2, "b")])];
        // New lines of web, a late answer repeating b, and a first line of worker.
        let fresh = vec![
            part("web", vec![numbered(2, "b"), numbered(3, "c")], true),
            part("worker", vec![numbered(4, "w")], false),
        ];
        merge_output(&mut held, fresh, false);
        assert_eq!(
            texts(&held),
            [("web".into(), vec!["a".into(), "b".into(), "c".into()]), ("worker".into(), vec!["w".into()])]
        );
        assert_eq!(last_lines(&held), [("web".into(), 3), ("worker".into(), 4)]);
        // An answer older than what is shown adds nothing.
        merge_output(&mut held, vec![part("web", vec![numbered(2, "b")], true)], false);
        assert_eq!(texts(&held)[0].1, ["a", "b", "c"]);
        // Lines were left out between (long lines beyond a page's bytes, or numbers that began
        // again): what is sent is shown instead, with no gap that reads as continuous.
        merge_output(&mut held, vec![part("web", vec![numbered(9, "i")], false)], false);
        assert_eq!(texts(&held)[0].1, ["i"]);
        // A whole answer: worker is gone, web starts afresh (a new release).
        merge_output(&mut held, vec![part("web", vec![numbered(10, "new")], false)], true);
        assert_eq!(texts(&held), [("web".into(), vec!["new".into()])]);
        // What is held stays within a page's limits.
        merge_output(&mut held, vec![part("web", (11..=400).map(|n| numbered(n, "more")).collect(), true)], false);
        assert_eq!(held[0].1.len(), LINES_SHOWN);
        assert_eq!(held[0].1.last().unwrap().seq, 400);
    }
}
