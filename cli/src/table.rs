//! Human output: aligned columns, times as UTC minutes.

use domain::time::UnixMillis;

/// Rows under a header, each column as wide as its widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text; `empty` when it has no rows.
    pub fn render(&self, empty: &str) -> String {
        if self.rows.is_empty() {
            return format!("{empty}\n");
        }
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (n, cell) in row.iter().enumerate().take(columns) {
                widths[n] = widths[n].max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| -> String {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(n, cell)| {
                    let pad = widths[n].saturating_sub(cell.chars().count());
                    if n + 1 == columns {
                        (*cell).to_owned()
                    } else {
                        format!("{cell}{}", " ".repeat(pad))
                    }
                })
                .collect();
            padded.join("  ").trim_end().to_owned() + "\n"
        };
        let mut out = line(self.header.clone());
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        out
    }
}

/// A statement's lines (billing, a provider's payments), newest first.
pub fn statement(lines: &[domain::ledger::StatementLine], empty: &str) -> String {
    let mut table = Table::new(&["WHEN", "KIND", "AMOUNT", "ASSET", "MEMO"]);
    for line in lines {
        table.row(vec![
            when(Some(line.at_ms)),
            line.kind.as_str().to_owned(),
            domain::ledger::decimal(line.amount),
            line.asset.as_str().to_owned(),
            line.memo.clone(),
        ]);
    }
    table.render(empty)
}

/// A moment as `2026-12-07 17:55 UTC`; `-` for none.
pub fn when(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) => {
            let text = UnixMillis(ms).to_rfc3339();
            // 2026-12-07T17:55:03Z → 2026-12-07 17:55 UTC
            match text.get(..16) {
                Some(minute) => format!("{} UTC", minute.replace('T', " ")),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_an_empty_table_says_so() {
        let mut table = Table::new(&["ID", "NAME", "STATUS"]);
        table.row(vec!["cl-1".into(), "a long name".into(), "running".into()]);
        table.row(vec!["cl-22".into(), "x".into(), "failed".into()]);
        assert_eq!(
            table.render("none"),
            "ID     NAME         STATUS\ncl-1   a long name  running\ncl-22  x            failed\n"
        );
        assert_eq!(Table::new(&["ID"]).render("no clusters"), "no clusters\n");
        assert_eq!(when(None), "-");
        assert_eq!(when(Some(0)), "1970-01-01 00:00 UTC");
    }
}
