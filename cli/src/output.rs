//! How answers are printed: a sentence or a table for people, JSON for scripts.
//!
//! Whatever the server sends is printed with its control characters escaped (names, messages,
//! settings and versions are anyone's text: a terminal escape in a stage name or a setting's
//! value must not rewrite the reader's screen, set their clipboard or reorder what is shown),
//! here and in [`table::render`], once for every command.

use crate::args::Output;
use crate::client::Failure;
use crate::table;
use pergola_domain::logs::{escape_controls, escape_json};
use pergola_domain::Stage;

pub struct Printer {
    pub format: Output,
}

impl Printer {
    /// One record: `text` for people (escaped line by line: its line breaks are the command's
    /// own), the record itself as JSON.
    pub fn one<T: serde::Serialize>(&self, value: &T, text: impl FnOnce() -> String) -> Result<(), Failure> {
        match self.format {
            Output::Json => println!("{}", json(value)),
            Output::Table | Output::Kubernetes => println!("{}", escape_lines(&text())),
        }
        Ok(())
    }

    /// Records as a table with `header`, one `row` each; or as a JSON array.
    pub fn many<T: serde::Serialize>(
        &self,
        values: &[T],
        header: &[&str],
        row: impl Fn(&T) -> Vec<String>,
    ) -> Result<(), Failure> {
        match self.format {
            Output::Json => println!("{}", json(values)),
            Output::Table | Output::Kubernetes => {
                print!("{}", table::render(header, &values.iter().map(row).collect::<Vec<_>>()))
            }
        }
        Ok(())
    }
}

/// `value` as indented JSON with the characters JSON leaves as they are but a terminal acts on
/// (DEL, the C1 controls, the direction-changing marks) written as `\uXXXX` escapes too — it
/// reads back the same. Line by line: the line breaks are the indentation's (a line break inside
/// a string is already `\n`).
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let text = serde_json::to_string_pretty(value).expect("serializable");
    text.split('\n').map(escape_json).collect::<Vec<_>>().join("\n")
}

/// `text` with the control characters of each of its lines escaped, its line breaks kept: for
/// output whose lines are meant (a record's fields, a multi-line setting, YAML).
pub fn escape_lines(text: &str) -> String {
    text.split('\n').map(escape_controls).collect::<Vec<_>>().join("\n")
}

/// A value printed whole, as data (`config get`, `-o kubernetes`): escaped for a terminal,
/// where a control character would act, but as it is for a pipe or a file, where a script
/// (`$(pergola config get KEY)`, `| kubectl apply -f -`) wants the value's own bytes.
pub fn for_stdout(text: &str) -> std::borrow::Cow<'_, str> {
    use std::io::IsTerminal;
    match std::io::stdout().is_terminal() {
        true => escape_lines(text).into(),
        false => text.into(),
    }
}

/// `'name' (id)` when they differ, else `'id'`.
pub fn quoted_label(s: &Stage) -> String {
    if s.name == s.id {
        format!("'{}'", s.id)
    } else {
        format!("'{}' ({})", s.name, s.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_line_by_line_and_json_reads_back_the_same() {
        assert_eq!(escape_lines("name: a\u{1b}[2Jb\nid:   c\u{202e}d\n"), "name: a\\u{1b}[2Jb\nid:   c\\u{202e}d\n");
        let value = serde_json::json!({ "name": "x\u{1b}]52;c;AAAA\u{7}\u{9b}\u{7f}\u{202e}y", "n": [1, 2] });
        let text = json(&value);
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(!text.contains('\u{202e}'), "{text:?}");
        assert_eq!(text.lines().count(), serde_json::to_string_pretty(&value).unwrap().lines().count());
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), value);
    }
}
