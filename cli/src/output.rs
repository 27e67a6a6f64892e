//! How answers are printed: a sentence or a table for people, JSON for scripts.

use crate::args::Output;
use crate::client::Failure;
use crate::table;
use pergola_domain::Stage;

pub struct Printer {
    pub format: Output,
}

impl Printer {
    /// One record: `text` for people, the record itself as JSON.
    pub fn one<T: serde::Serialize>(&self, value: &T, text: impl FnOnce() -> String) -> Result<(), Failure> {
        match self.format {
            Output::Json => println!("{}", serde_json::to_string_pretty(value).expect("serializable")),
            Output::Table | Output::Kubernetes => println!("{}", text()),
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
            Output::Json => println!("{}", serde_json::to_string_pretty(values).expect("serializable")),
            Output::Table | Output::Kubernetes => {
                print!("{}", table::render(header, &values.iter().map(row).collect::<Vec<_>>()))
            }
        }
        Ok(())
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
