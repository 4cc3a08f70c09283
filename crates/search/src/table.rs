//! Tables of trials in the reports' layout: chosen parameter columns and figures, as
//! Markdown and CSV.

use crate::rank::{RankBy, ranked};
use crate::store::{Status, TrialRecord};

/// A table: a header and rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

fn cell(record: &TrialRecord, column: &str) -> String {
    let figure = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    match column {
        "train_score" => figure(record.train_score),
        "train_loss" => figure(record.train_loss),
        "val_score" => figure(record.val_score),
        "val_loss" => figure(record.val_loss),
        "test_score" => figure(record.test_score),
        "test_loss" => figure(record.test_loss),
        "epochs" => record.epochs.to_string(),
        "seconds" => format!("{:.1}", record.seconds),
        "final_lr" => record.final_lr.map_or("-".to_string(), |v| v.to_string()),
        "status" => match &record.status {
            Status::Finished => "finished".into(),
            Status::EarlyStopped => "early-stopped".into(),
            Status::Diverged => "diverged".into(),
            Status::Failed { error } => format!("failed: {error}"),
        },
        name => match record.params.get(name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "-".into(),
        },
    }
}

/// Report 002's Talos columns: the record field each shows, and Talos' name for it.
const TALOS_COLUMNS: [(&str, &str); 6] = [
    ("epochs", "round_epochs"),
    ("train_loss", "loss"),
    ("train_score", "accuracy"),
    ("val_loss", "val_loss"),
    ("val_score", "val_accuracy"),
    ("final_lr", "lr"),
];

impl Table {
    /// The best `k` trials, ranked by `rank`, with `columns` (parameter names or
    /// `train_score`, `train_loss`, `val_score`, `val_loss`, `test_score`, `test_loss`,
    /// `epochs`, `seconds`, `status`).
    pub fn top(records: &[TrialRecord], k: usize, columns: &[&str], rank: RankBy) -> Table {
        Table {
            header: columns.iter().map(|c| c.to_string()).collect(),
            rows: ranked(records, rank)
                .into_iter()
                .take(k)
                .map(|r| columns.iter().map(|c| cell(r, c)).collect())
                .collect(),
        }
    }

    /// The best `k` trials by validation score in the layout of report 002's Talos tables:
    /// `round_epochs, loss, accuracy, val_loss, val_accuracy, lr`, then `params` (parameter
    /// names, or other columns [`Table::top`] knows, such as `test_score`).
    pub fn talos(records: &[TrialRecord], k: usize, params: &[&str]) -> Table {
        let columns: Vec<&str> = TALOS_COLUMNS
            .iter()
            .map(|(ours, _)| *ours)
            .chain(params.iter().copied())
            .collect();
        let mut table = Table::top(records, k, &columns, RankBy::Validation);
        for (name, (_, talos)) in table.header.iter_mut().zip(TALOS_COLUMNS) {
            *name = talos.to_string();
        }
        table
    }

    /// GitHub-flavoured Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("| {} |\n", self.header.join(" | "));
        out.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ").replace('\n', " ")));
        }
        out
    }

    /// CSV, quoting cells that need it.
    pub fn to_csv(&self) -> String {
        let quote = |c: &String| {
            if c.contains([',', '"', '\n']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        };
        let mut out = self.header.iter().map(quote).collect::<Vec<_>>().join(",") + "\n";
        for row in &self.rows {
            out.push_str(&(row.iter().map(quote).collect::<Vec<_>>().join(",") + "\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    #[test]
    fn talos_layout_ranks_by_validation() {
        let record = |i: usize, val: f64| TrialRecord {
            key: i.to_string(),
            index: i,
            params: Map::from_iter([("dropout".to_string(), json!(0.3))]),
            config: serde_json::Value::Null,
            commit: None,
            status: Status::EarlyStopped,
            epochs: 45,
            train_score: Some(0.95),
            train_loss: Some(0.13),
            val_score: Some(val),
            val_loss: Some(0.3),
            test_score: Some(0.99 - val),
            test_loss: None,
            final_lr: Some(1e-5),
            seconds: 1.0,
        };
        let t = Table::talos(&[record(0, 0.90), record(1, 0.91)], 5, &["dropout"]);
        assert_eq!(
            t.header,
            [
                "round_epochs",
                "loss",
                "accuracy",
                "val_loss",
                "val_accuracy",
                "lr",
                "dropout"
            ]
        );
        assert_eq!(t.rows[0][4], "0.9100");
        assert_eq!(t.rows[0][5], "0.00001");
        assert_eq!(t.rows[0][0], "45");
    }

    #[test]
    fn top_k_in_report_layout() {
        let mut params = Map::new();
        params.insert("hidden_layer".into(), json!([10, 10, 5]));
        params.insert("activation".into(), json!("relu"));
        let record = |i: usize, score: f64| TrialRecord {
            key: i.to_string(),
            index: i,
            params: params.clone(),
            config: serde_json::Value::Null,
            commit: None,
            status: Status::Finished,
            epochs: 300,
            train_score: Some(0.97),
            train_loss: Some(0.1),
            val_score: None,
            val_loss: None,
            test_score: Some(score),
            test_loss: Some(0.2),
            final_lr: Some(1e-4),
            seconds: 0.5,
        };
        let records = vec![record(0, 0.9), record(1, 1.0), record(2, 0.95)];
        let t = Table::top(
            &records,
            2,
            &["hidden_layer", "activation", "test_score"],
            RankBy::Test,
        );
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0], ["[10,10,5]", "relu", "1.0000"]);
        let md = t.to_markdown();
        assert!(
            md.starts_with("| hidden_layer | activation | test_score |\n|---|---|---|\n"),
            "{md}"
        );
        assert!(t.to_csv().contains("\"[10,10,5]\",relu,1.0000"));
    }
}
