//! The boxed table of the seed's `pergola list stage` output, with padded columns:
//!
//! ```text
//! ┌─────────────────────────────────────────────┐
//! | stage                    | type | status    |
//! | ─────────────────────────────────────────── |
//! | my-new-stage (stage1)    | prod | running   |
//! └─────────────────────────────────────────────┘
//! ```

use pergola_domain::logs::escape_controls;

/// The table of `rows` under `header`. Every cell is printed with its control characters and
/// direction-changing marks escaped: cells are the server's text (names, messages, settings),
/// and one holding a terminal escape must not rewrite the screen, nor a line break or a
/// right-to-left override break the table.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> =
        rows.iter().map(|row| row.iter().map(|cell| escape_controls(cell)).collect()).collect();
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - width(c)))).collect();
        format!("| {} |", padded.join(" | "))
    };
    let head = line(header.to_vec());
    let total = width(&head);
    let mut out = vec![format!("┌{}┐", "─".repeat(total - 2)), head, format!("| {} |", "─".repeat(total - 4))];
    out.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    out.push(format!("└{}┘", "─".repeat(total - 2)));
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_are_padded_inside_the_box() {
        let rows = vec![
            vec!["my-new-stage (stage1)".to_owned(), "prod".into(), "running".into()],
            vec!["integration-tests (test)".to_owned(), "qa".into(), "suspended".into()],
        ];
        let want = "\
┌─────────────────────────────────────────────┐
| stage                    | type | status    |
| ─────────────────────────────────────────── |
| my-new-stage (stage1)    | prod | running   |
| integration-tests (test) | qa   | suspended |
└─────────────────────────────────────────────┘
";
        assert_eq!(super::render(&["stage", "type", "status"], &rows), want);
    }

    #[test]
    fn cells_are_escaped_and_stay_on_their_line() {
        let rows = vec![vec!["\u{1b}[2J".to_owned(), "a\nb\u{202e}c\u{9b}".to_owned()]];
        let table = super::render(&["name", "message"], &rows);
        assert!(!table.contains('\x1b') && !table.contains('\u{202e}') && !table.contains('\u{9b}'), "{table:?}");
        assert_eq!(table.lines().count(), 5, "{table}");
        assert!(table.contains("| \\u{1b}[2J | a\\u{a}b\\u{202e}c\\u{9b} |"), "{table}");
    }
}
