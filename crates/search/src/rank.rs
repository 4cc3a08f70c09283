//! Ranking trials: the highest score wins, ties broken by the lower loss (report 001's
//! `best_model` rule); failed and diverged trials never win.

use crate::store::TrialRecord;

/// Which score ranks trials. Written `rank = "validation"` or `rank = "test"` in a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// Test score, then test loss: only where a report ranked so (report 001's
    /// `best_model` rule), to reproduce its table.
    Test,
    /// Validation score, then validation loss, on a part carved from the training data (the
    /// default; Talos' scans in report 002).
    #[default]
    Validation,
}

impl RankBy {
    /// The rule in words, for tables.
    pub fn describe(self) -> &'static str {
        match self {
            RankBy::Test => {
                "ranked by test score (the report's own rule, kept to reproduce its table)"
            }
            RankBy::Validation => {
                "ranked by validation score (a part carved from the training data); test figures only reported"
            }
        }
    }
}

impl TrialRecord {
    /// The score `rank` looks at.
    pub fn score(&self, rank: RankBy) -> Option<f64> {
        match rank {
            RankBy::Test => self.test_score,
            RankBy::Validation => self.val_score,
        }
        .filter(|s| s.is_finite())
    }

    /// The loss that breaks ties.
    pub fn loss(&self, rank: RankBy) -> f64 {
        match rank {
            RankBy::Test => self.test_loss,
            RankBy::Validation => self.val_loss,
        }
        .filter(|l| l.is_finite())
        .unwrap_or(f64::INFINITY)
    }
}

/// Records sorted best first (those without a finite score last, in grid order).
pub fn ranked(records: &[TrialRecord], rank: RankBy) -> Vec<&TrialRecord> {
    let mut sorted: Vec<&TrialRecord> = records.iter().collect();
    sorted.sort_by(|a, b| match (a.score(rank), b.score(rank)) {
        (Some(x), Some(y)) => y
            .total_cmp(&x)
            .then(a.loss(rank).total_cmp(&b.loss(rank)))
            .then(a.index.cmp(&b.index)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.index.cmp(&b.index),
    });
    sorted
}

/// The best record, if any has a score.
pub fn best(records: &[TrialRecord], rank: RankBy) -> Option<&TrialRecord> {
    ranked(records, rank)
        .into_iter()
        .next()
        .filter(|r| r.score(rank).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Status;
    use serde_json::{Map, Value};

    fn rec(index: usize, score: Option<f64>, loss: f64) -> TrialRecord {
        TrialRecord {
            key: index.to_string(),
            index,
            params: Map::new(),
            config: Value::Null,
            commit: None,
            status: if score.is_some() {
                Status::Finished
            } else {
                Status::Diverged
            },
            epochs: 1,
            train_score: None,
            train_loss: None,
            val_score: None,
            val_loss: None,
            test_score: score,
            test_loss: Some(loss),
            final_lr: None,
            seconds: 0.0,
        }
    }

    #[test]
    fn highest_score_then_lowest_loss() {
        let records = vec![
            rec(0, Some(0.9), 0.5),
            rec(1, None, 0.0),
            rec(2, Some(0.97), 0.9),
            rec(3, Some(0.97), 0.4),
            rec(4, Some(f64::NAN), 0.1),
        ];
        let order: Vec<usize> = ranked(&records, RankBy::Test)
            .iter()
            .map(|r| r.index)
            .collect();
        assert_eq!(order, [3, 2, 0, 1, 4]);
        assert_eq!(best(&records, RankBy::Test).unwrap().index, 3);
        assert!(best(&records[1..2], RankBy::Test).is_none());
    }
}
