//! The boxed table of the seed's `pergola list stage` output, with padded columns:
//!
//! ```text
//! ┌─────────────────────────────────────────────┐
//! | stage                    | type | status    |
//! | ─────────────────────────────────────────── |
//! | my-new-stage (stage1)    | prod | running   |
//! └─────────────────────────────────────────────┘
//! ```

pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
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
}
