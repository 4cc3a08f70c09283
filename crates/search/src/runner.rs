//! Runs trials on N worker threads with one progress bar for the whole search, appending
//! each finished trial (or group of trials trained together) to the results file at once.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::SearchError;
use crate::grid::Trial;
use crate::rank::{RankBy, best};
use crate::store::{ResultsFile, Status, TrialRecord};

/// What running one trial produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialOutcome {
    /// How it ended.
    pub status: Status,
    /// Epochs run.
    pub epochs: usize,
    /// Training score and loss.
    pub train: Option<(f64, f64)>,
    /// Validation score and loss.
    pub validation: Option<(f64, f64)>,
    /// Test score and loss.
    pub test: Option<(f64, f64)>,
    /// Learning rate at the end, when training changed it.
    pub final_lr: Option<f64>,
    /// Seconds the trial trained before this process, in a run resumed from a checkpoint
    /// (added to the time this process measured, so a record holds the whole training).
    pub earlier_seconds: f64,
}

impl TrialOutcome {
    /// The outcome of a trial that failed with `error`.
    pub fn failed(error: impl Into<String>) -> Self {
        TrialOutcome {
            status: Status::Failed {
                error: error.into(),
            },
            epochs: 0,
            train: None,
            validation: None,
            test: None,
            final_lr: None,
            earlier_seconds: 0.0,
        }
    }

    fn into_record(self, trial: &Trial, seconds: f64) -> TrialRecord {
        TrialRecord {
            key: trial.key(),
            index: trial.index,
            params: trial.params.clone(),
            config: trial.config.clone(),
            commit: Some(crate::key::commit().to_string()),
            status: self.status,
            epochs: self.epochs,
            train_score: self.train.map(|t| t.0),
            train_loss: self.train.map(|t| t.1),
            val_score: self.validation.map(|t| t.0),
            val_loss: self.validation.map(|t| t.1),
            test_score: self.test.map(|t| t.0),
            test_loss: self.test.map(|t| t.1),
            final_lr: self.final_lr,
            seconds: seconds + self.earlier_seconds,
        }
    }
}

/// How to run a search.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Worker threads (each runs one trial or group at a time).
    pub workers: usize,
    /// Show the progress bar.
    pub progress: bool,
    /// What "best so far" means on the bar.
    pub rank: RankBy,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            progress: true,
            rank: RankBy::Test,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSummary {
    /// Trials run now.
    pub ran: usize,
    /// Trials skipped because the results file had them.
    pub skipped: usize,
    /// Wall seconds of this run.
    pub seconds: f64,
}

/// Runs every trial not yet in `results`, one at a time per worker.
pub fn run_search<F>(
    trials: &[Trial],
    results: &mut ResultsFile,
    options: &SearchOptions,
    run_trial: F,
) -> Result<SearchSummary, SearchError>
where
    F: Fn(&Trial) -> TrialOutcome + Sync,
{
    run_search_recorded(trials, results, options, run_trial, |_| {})
}

/// As [`run_search`], calling `recorded` with each record once it is safely in `results`
/// (to drop what a finished trial no longer needs, such as its checkpoint).
pub fn run_search_recorded<F, R>(
    trials: &[Trial],
    results: &mut ResultsFile,
    options: &SearchOptions,
    run_trial: F,
    recorded: R,
) -> Result<SearchSummary, SearchError>
where
    F: Fn(&Trial) -> TrialOutcome + Sync,
    R: FnMut(&TrialRecord),
{
    run_grouped_recorded(
        trials,
        results,
        options,
        |t| t.index.to_string(),
        |group| group.iter().map(&run_trial).collect(),
        recorded,
    )
}

/// Runs every trial not yet in `results`, trials with the same `group_key` together (so
/// that a caller can train them as one batched model); `run_group` returns one outcome per
/// trial, in order. A panic in a group fails its trials and the search goes on.
pub fn run_grouped<K, F>(
    trials: &[Trial],
    results: &mut ResultsFile,
    options: &SearchOptions,
    group_key: K,
    run_group: F,
) -> Result<SearchSummary, SearchError>
where
    K: Fn(&Trial) -> String,
    F: Fn(&[Trial]) -> Vec<TrialOutcome> + Sync,
{
    run_grouped_recorded(trials, results, options, group_key, run_group, |_| {})
}

/// The trials not yet in `results`, grouped by `group_key` in the order each group first
/// appears, and how many were skipped as stored.
fn pending_groups<K: Fn(&Trial) -> String>(
    trials: &[Trial],
    results: &ResultsFile,
    group_key: K,
) -> (Vec<Vec<Trial>>, usize) {
    let pending: Vec<Trial> = trials
        .iter()
        .filter(|t| !results.contains(&t.key()))
        .cloned()
        .collect();
    let skipped = trials.len() - pending.len();
    let mut groups: BTreeMap<String, Vec<Trial>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for trial in pending {
        let key = group_key(&trial);
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(trial);
    }
    let groups = order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .collect();
    (groups, skipped)
}

/// The search's progress bar over `total` trials (hidden unless `options.progress`), having
/// said how many were `skipped` as already in `results`.
fn trials_bar(
    options: &SearchOptions,
    total: usize,
    skipped: usize,
    results: &ResultsFile,
) -> ProgressBar {
    if !options.progress || total == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "trials [{bar:30}] {pos}/{len} {msg} elapsed {elapsed} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    if skipped > 0 {
        bar.println(format!(
            "{skipped} trials already in {}: skipped",
            results.path().display()
        ));
    }
    bar
}

/// The shortest time between two progress lines in a log.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Progress as lines, where the bar draws nothing (stderr is not a terminal: a log file, a
/// scheduler's output): the trials done, the best score, elapsed time and an estimate of
/// what is left, after a group finishes, at most once per [`LOG_EVERY`] and for the last.
struct LogLines {
    on: bool,
    total: usize,
    done: usize,
    started: Instant,
    last: Option<Instant>,
}

impl LogLines {
    /// Lines when `on`, for `total` trials.
    fn new(on: bool, total: usize) -> Self {
        LogLines {
            on: on && total > 0,
            total,
            done: 0,
            started: Instant::now(),
            last: None,
        }
    }

    /// `count` more trials are done; `best` is the best score so far. The line to print,
    /// if one is due.
    fn finished(&mut self, count: usize, best: Option<f64>) -> Option<String> {
        self.done += count;
        let now = Instant::now();
        let recent = self.last.is_some_and(|t| now - t < LOG_EVERY);
        if !self.on || (recent && self.done < self.total) {
            return None;
        }
        self.last = Some(now);
        let elapsed = (now - self.started).as_secs_f64();
        let left =
            elapsed / self.done.max(1) as f64 * (self.total - self.done.min(self.total)) as f64;
        let best = best.map_or(String::new(), |b| format!(" - best {b:.4}"));
        Some(format!(
            "trials {}/{}{best} - elapsed {} - eta {}",
            self.done,
            self.total,
            trainer::fit::clock(elapsed),
            trainer::fit::clock(left)
        ))
    }
}

/// Runs one group and makes a record per trial, each with its share of the group's time; a
/// panic fails the group's trials, and a missing outcome fails its trial.
fn run_one_group<F>(group: &[Trial], run_group: &F) -> Vec<TrialRecord>
where
    F: Fn(&[Trial]) -> Vec<TrialOutcome>,
{
    let started = Instant::now();
    let outcomes = catch_unwind(AssertUnwindSafe(|| run_group(group))).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into());
        vec![TrialOutcome::failed(format!("panic: {message}")); group.len()]
    });
    let seconds = started.elapsed().as_secs_f64() / group.len().max(1) as f64;
    let mut outcomes = outcomes.into_iter();
    group
        .iter()
        .map(|t| {
            outcomes
                .next()
                .unwrap_or_else(|| TrialOutcome::failed("no outcome returned"))
                .into_record(t, seconds)
        })
        .collect()
}

/// As [`run_grouped`], calling `recorded` with each record once it is in `results`.
pub fn run_grouped_recorded<K, F, R>(
    trials: &[Trial],
    results: &mut ResultsFile,
    options: &SearchOptions,
    group_key: K,
    run_group: F,
    mut recorded: R,
) -> Result<SearchSummary, SearchError>
where
    K: Fn(&Trial) -> String,
    F: Fn(&[Trial]) -> Vec<TrialOutcome> + Sync,
    R: FnMut(&TrialRecord),
{
    let start = Instant::now();
    let (groups, skipped) = pending_groups(trials, results, group_key);
    let total: usize = groups.iter().map(Vec::len).sum();
    let bar = trials_bar(options, total, skipped, results);
    let mut lines = LogLines::new(options.progress && !std::io::stderr().is_terminal(), total);
    let next = AtomicUsize::new(0);
    let groups = &groups;
    let run_group = &run_group;
    let (sender, receiver) = mpsc::channel::<Vec<TrialRecord>>();
    let mut write_error: Option<SearchError> = None;
    let workers = options.workers.max(1).min(groups.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || {
                if workers > 1 {
                    // Side by side, each worker trains on its own thread (see the function).
                    models::threads::stay_on_this_thread();
                }
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(group) = groups.get(i) else { break };
                    if sender.send(run_one_group(group, run_group)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for records in receiver {
            let count = records.len();
            for record in records {
                match results.append(record) {
                    Ok(()) => {
                        if let Some(stored) = results.records.last() {
                            recorded(stored);
                        }
                    }
                    Err(e) => {
                        write_error = Some(e);
                        // Stop handing out work: what is not written must not be lost
                        // silently.
                        next.store(usize::MAX / 2, Ordering::SeqCst);
                    }
                }
                bar.inc(1);
            }
            let best_score =
                best(&results.records, options.rank).and_then(|b| b.score(options.rank));
            if let Some(b) = best_score {
                bar.set_message(format!("best {b:.4}"));
            }
            if let Some(line) = lines.finished(count, best_score) {
                eprintln!("{line}");
            }
        }
    });
    bar.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e);
    }
    Ok(SearchSummary {
        ran: total,
        skipped,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;
    use std::sync::Mutex;

    #[test]
    fn a_log_gets_a_line_for_the_first_group_and_the_last_none_between() {
        let mut lines = LogLines::new(true, 30);
        let first = lines.finished(10, Some(0.9)).unwrap();
        assert!(
            first.starts_with("trials 10/30 - best 0.9000 - elapsed "),
            "{first}"
        );
        assert!(first.contains(" - eta "), "{first}");
        // Within ten seconds of the first: none, but always the last.
        assert_eq!(lines.finished(10, Some(0.95)), None);
        let last = lines.finished(10, None).unwrap();
        assert!(last.starts_with("trials 30/30 - elapsed"), "{last}");
        // A terminal has the bar instead.
        assert_eq!(LogLines::new(false, 30).finished(30, Some(1.0)), None);
    }

    fn outcome(score: f64) -> TrialOutcome {
        TrialOutcome {
            status: Status::Finished,
            epochs: 1,
            train: Some((score, 1.0 - score)),
            validation: None,
            test: Some((score, 1.0 - score)),
            final_lr: None,
            earlier_seconds: 0.0,
        }
    }

    #[test]
    fn runs_in_parallel_records_all_and_skips_on_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let grid = Grid::new().with("a", [1, 2, 3, 4]).with("b", [10, 20]);
        let options = SearchOptions {
            workers: 3,
            progress: false,
            rank: RankBy::Test,
        };
        let run = |t: &Trial| {
            let a: f64 = t.get("a").unwrap();
            let b: f64 = t.get("b").unwrap();
            if a == 2.0 && b == 20.0 {
                panic!("boom");
            }
            outcome((a * b) / 100.0)
        };
        let mut results = ResultsFile::open(&path).unwrap();
        let summary = run_search(&grid.trials(), &mut results, &options, run).unwrap();
        assert_eq!((summary.ran, summary.skipped), (8, 0));
        assert_eq!(results.records.len(), 8);
        let failed: Vec<_> = results
            .records
            .iter()
            .filter(|r| matches!(&r.status, Status::Failed { error } if error.contains("boom")))
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(
            best(&results.records, RankBy::Test).unwrap().test_score,
            Some(0.8)
        );
        drop(results);

        let mut results = ResultsFile::open(&path).unwrap();
        let summary = run_search(&grid.trials(), &mut results, &options, |_| {
            panic!("must not run")
        })
        .unwrap();
        assert_eq!((summary.ran, summary.skipped), (0, 8));
    }

    #[test]
    fn groups_run_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut results = ResultsFile::open(&dir.path().join("r.jsonl")).unwrap();
        let grid = Grid::new().with("arch", ["x", "y"]).with("lr", [1, 2, 3]);
        let sizes = Mutex::new(Vec::new());
        let options = SearchOptions {
            workers: 2,
            progress: false,
            rank: RankBy::Test,
        };
        run_grouped(
            &grid.trials(),
            &mut results,
            &options,
            |t| t.get::<String>("arch").unwrap(),
            |group| {
                sizes.lock().unwrap().push(group.len());
                group.iter().map(|_| outcome(0.5)).collect()
            },
        )
        .unwrap();
        assert_eq!(sizes.into_inner().unwrap(), [3, 3]);
        assert_eq!(results.records.len(), 6);
    }
}
