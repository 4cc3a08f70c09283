//! Successive halving: every trial trains on a small budget of epochs, the best
//! `1 / factor` of them train again on `factor` times the budget, and so on until the full
//! budget. Training is deterministic for a seed, so a trial retrained for more epochs passes
//! through exactly the state it had at the smaller budget: retraining from scratch (as
//! scikit-learn's `HalvingGridSearchCV` does) gives the same results as continuing, and
//! keeps each rung an ordinary, resumable set of trials in the results file.

use serde_json::Value;

use crate::error::SearchError;
use crate::grid::Trial;
use crate::rank::ranked;
use crate::runner::{SearchOptions, SearchSummary, TrialOutcome, run_grouped};
use crate::store::{ResultsFile, TrialRecord};

/// The halving schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Halving {
    /// Epochs of the first rung.
    pub min_epochs: usize,
    /// Epochs of the last rung (the full budget).
    pub max_epochs: usize,
    /// Each rung keeps `1 / factor` of the trials and multiplies the epochs by `factor`.
    pub factor: usize,
}

impl Halving {
    /// Checks the schedule.
    pub fn validate(&self) -> Result<(), SearchError> {
        if self.min_epochs == 0 || self.max_epochs < self.min_epochs || self.factor < 2 {
            return Err(SearchError::Grid(format!(
                "successive halving needs 1 <= min_epochs <= max_epochs and factor >= 2 \
                 (got {} .. {}, factor {})",
                self.min_epochs, self.max_epochs, self.factor
            )));
        }
        Ok(())
    }
}

/// What one rung did.
#[derive(Debug, Clone, PartialEq)]
pub struct Rung {
    /// Epochs each trial trained for.
    pub epochs: usize,
    /// Trials in the rung.
    pub trials: usize,
    /// Trials promoted to the next rung (or the survivors of the last).
    pub kept: usize,
    /// The run of this rung.
    pub summary: SearchSummary,
}

/// `trial` with its `epoch` parameter set to `epochs`.
pub fn with_epochs(trial: &Trial, epochs: usize) -> Trial {
    let mut t = trial.clone();
    t.params.insert("epoch".into(), Value::from(epochs));
    t
}

/// Runs successive halving over `trials` (their own `epoch` values are replaced by the
/// rungs' budgets), ranking each rung by `options.rank`. Every rung's trials are appended to
/// `results` like any others, so a rerun skips the rungs already done. Returns the rungs
/// and the records of the last rung's trials, best first.
pub fn successive_halving<K, F>(
    trials: &[Trial],
    halving: &Halving,
    results: &mut ResultsFile,
    options: &SearchOptions,
    group_key: K,
    run_group: F,
) -> Result<(Vec<Rung>, Vec<TrialRecord>), SearchError>
where
    K: Fn(&Trial) -> String,
    F: Fn(&[Trial]) -> Vec<TrialOutcome> + Sync,
{
    halving.validate()?;
    let mut survivors: Vec<Trial> = trials.to_vec();
    let mut epochs = halving.min_epochs;
    let mut rungs = Vec::new();
    loop {
        let rung: Vec<Trial> = survivors.iter().map(|t| with_epochs(t, epochs)).collect();
        let summary = run_grouped(&rung, results, options, &group_key, &run_group)?;
        let records = results.records_of(&rung);
        let order = ranked(&records, options.rank);
        let last = epochs >= halving.max_epochs || survivors.len() <= 1;
        let keep = if last {
            order.len()
        } else {
            survivors.len().div_ceil(halving.factor).max(1)
        };
        rungs.push(Rung {
            epochs,
            trials: rung.len(),
            kept: keep.min(order.len()),
            summary,
        });
        if last {
            let best: Vec<TrialRecord> = order.into_iter().cloned().collect();
            return Ok((rungs, best));
        }
        survivors = order
            .into_iter()
            .take(keep)
            .map(|r| Trial::new(r.index, r.params.clone()).with_config(r.config.clone()))
            .collect();
        // A lone survivor goes straight to the full budget.
        epochs = if survivors.len() <= 1 {
            halving.max_epochs
        } else {
            (epochs * halving.factor).min(halving.max_epochs)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;
    use crate::rank::RankBy;
    use crate::store::Status;
    use std::sync::Mutex;

    /// A fake trial whose score grows with epochs and with its `q` parameter, so the
    /// best `q` values must survive.
    fn fake(t: &Trial) -> TrialOutcome {
        let q: f64 = t.get("q").unwrap();
        let epochs: usize = t.get("epoch").unwrap();
        let score = q / 10.0 * (1.0 - 1.0 / (epochs as f64 + 1.0));
        TrialOutcome {
            status: Status::Finished,
            epochs,
            train: None,
            validation: Some((score, 1.0 - score)),
            test: None,
            final_lr: None,
            earlier_seconds: 0.0,
        }
    }

    #[test]
    fn keeps_the_best_fraction_and_multiplies_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let grid = Grid::new().with("q", [3.0, 1.0, 4.0, 1.5, 9.0, 2.0, 6.0, 5.0, 8.0]);
        let options = SearchOptions {
            workers: 2,
            progress: false,
            rank: RankBy::Validation,
        };
        let halving = Halving {
            min_epochs: 2,
            max_epochs: 20,
            factor: 3,
        };
        let budgets = Mutex::new(Vec::new());
        let mut results = ResultsFile::open(&path).unwrap();
        let (rungs, best) = successive_halving(
            &grid.trials(),
            &halving,
            &mut results,
            &options,
            |t| t.index.to_string(),
            |g| {
                budgets
                    .lock()
                    .unwrap()
                    .push(g[0].get::<usize>("epoch").unwrap());
                g.iter().map(fake).collect()
            },
        )
        .unwrap();
        let shape: Vec<(usize, usize, usize)> =
            rungs.iter().map(|r| (r.epochs, r.trials, r.kept)).collect();
        assert_eq!(shape, [(2, 9, 3), (6, 3, 1), (20, 1, 1)]);
        assert_eq!(best[0].params["q"], 9.0);
        assert_eq!(results.records.len(), 13);
        let mut seen = budgets.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen.iter().filter(|&&e| e == 2).count(), 9);

        // Everything is in the file: a rerun trains nothing and ends the same.
        drop(results);
        let mut results = ResultsFile::open(&path).unwrap();
        let (again, best_again) = successive_halving(
            &grid.trials(),
            &halving,
            &mut results,
            &options,
            |t| t.index.to_string(),
            |_| panic!("must not train"),
        )
        .unwrap();
        assert!(again.iter().all(|r| r.summary.ran == 0));
        assert_eq!(best_again[0].key, best[0].key);
    }

    #[test]
    fn bad_schedules_are_refused() {
        for (min, max, factor) in [(0, 10, 2), (5, 4, 2), (1, 10, 1)] {
            let h = Halving {
                min_epochs: min,
                max_epochs: max,
                factor,
            };
            assert!(h.validate().is_err(), "{h:?}");
        }
    }
}
