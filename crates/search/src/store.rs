//! The results file: one JSON line per finished trial, appended and synced to disk the
//! moment the trial finishes. Reopening it tells which trials are done; a last line torn by
//! a kill is reported, cut off and ignored.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::SearchError;

/// How a trial ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Trained for all its epochs.
    Finished,
    /// Stopped by early stopping.
    EarlyStopped,
    /// The loss became NaN or infinite.
    Diverged,
    /// An error (or a panic) stopped it.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// Everything recorded about one trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// The trial's identity ([`crate::Trial::key`]).
    pub key: String,
    /// Position in the grid.
    pub index: usize,
    /// Hyperparameters.
    pub params: Map<String, Value>,
    /// The rest of what determined the result (dataset, split, seed, defaults, ...): the
    /// trial's [`crate::Trial::config`]. Null in records written before keys covered it.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub config: Value,
    /// The commit of the program that made the record ([`crate::key::commit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// How it ended.
    #[serde(flatten)]
    pub status: Status,
    /// Epochs run.
    pub epochs: usize,
    /// Training score (accuracy or R²).
    pub train_score: Option<f64>,
    /// Training loss.
    pub train_loss: Option<f64>,
    /// Validation score.
    pub val_score: Option<f64>,
    /// Validation loss.
    pub val_loss: Option<f64>,
    /// Test score.
    pub test_score: Option<f64>,
    /// Test loss.
    pub test_loss: Option<f64>,
    /// Learning rate at the end (after any ReduceLROnPlateau), as Talos' `lr` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_lr: Option<f64>,
    /// Wall seconds.
    pub seconds: f64,
}

/// An open results file.
#[derive(Debug)]
pub struct ResultsFile {
    path: PathBuf,
    file: File,
    /// Records already in the file when it was opened, and those appended since.
    pub records: Vec<TrialRecord>,
    /// A description of a torn or unreadable line that was dropped, if any.
    pub dropped: Option<String>,
}

impl ResultsFile {
    /// Opens (or creates) `path`, reading the records already there. A last line without
    /// its newline, or that does not parse, is what a kill leaves: it is cut off and
    /// reported in [`ResultsFile::dropped`]. An unreadable line elsewhere is an error.
    ///
    /// The file stays locked (an exclusive `flock`) while it is open, so a second process
    /// opening it, a second run started by mistake or a resume while the first lives, waits
    /// until the first is done and then sees its records: two processes never interleave
    /// lines or train a trial twice. Across machines each shard writes its own file and
    /// [`merge`] joins them (locks over network file systems are not reliable).
    pub fn open(path: &Path) -> Result<Self, SearchError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| SearchError::io(parent, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| SearchError::io(path, e))?;
        lock(&file, path)?;
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => return Err(SearchError::io(path, e)),
        };
        let (records, good_len, dropped) = parse(&text, path)?;
        if good_len < text.len() {
            file.set_len(good_len as u64)
                .map_err(|e| SearchError::io(path, e))?;
        }
        let mut results = ResultsFile {
            path: path.to_path_buf(),
            file,
            records,
            dropped,
        };
        results.seek_end()?;
        Ok(results)
    }

    /// Reads an existing results file without changing it: a missing or unreadable file is
    /// an error naming it. A torn last line is left out and reported in `dropped`.
    pub fn read(path: &Path) -> Result<(Vec<TrialRecord>, Option<String>), SearchError> {
        let bytes = std::fs::read(path).map_err(|e| SearchError::io(path, e))?;
        let text = String::from_utf8_lossy(&bytes);
        let (records, _, dropped) = parse(&text, path)?;
        Ok((records, dropped))
    }
}

/// Takes `file`'s exclusive lock, saying so when another process holds it and waiting.
fn lock(file: &File, path: &Path) -> Result<(), SearchError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!(
                "{} is in use by another run: waiting for it to finish (Ctrl-C to stop)",
                path.display()
            );
            file.lock().map_err(|e| SearchError::io(path, e))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(SearchError::io(path, e)),
    }
}

/// The records of a results file's text, the length of its whole lines, and a note on a
/// torn last line (what a kill leaves), which is left out.
fn parse(
    text: &str,
    path: &Path,
) -> Result<(Vec<TrialRecord>, usize, Option<String>), SearchError> {
    let mut records = Vec::new();
    let mut good_len = 0usize;
    let mut dropped = None;
    let mut offset = 0usize;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        let complete = line.ends_with('\n');
        let body = line.trim_end();
        if body.is_empty() {
            offset += line.len();
            if complete {
                good_len = offset;
            }
            continue;
        }
        match serde_json::from_str::<TrialRecord>(body) {
            Ok(record) if complete => {
                records.push(record);
                offset += line.len();
                good_len = offset;
            }
            result if last => {
                let why = match result {
                    Ok(_) => "no final newline".to_string(),
                    Err(e) => e.to_string(),
                };
                dropped = Some(format!(
                    "{}, line {}: torn last line dropped ({why}); its trial will run again",
                    path.display(),
                    i + 1
                ));
            }
            Err(e) => {
                return Err(SearchError::File {
                    path: path.display().to_string(),
                    message: format!("line {} is not a trial record: {e}", i + 1),
                });
            }
            Ok(_) => unreachable!("an incomplete line is always the last"),
        }
    }
    Ok((records, good_len, dropped))
}

impl ResultsFile {
    fn seek_end(&mut self) -> Result<(), SearchError> {
        use std::io::Seek;
        self.file
            .seek(std::io::SeekFrom::End(0))
            .map_err(|e| SearchError::io(&self.path, e))?;
        Ok(())
    }

    /// Whether a trial with this key is recorded.
    pub fn contains(&self, key: &str) -> bool {
        self.records.iter().any(|r| r.key == key)
    }

    /// The records of `trials` (those recorded), in file order: one search's share of a
    /// file that may hold others (earlier rungs, other grids).
    pub fn records_of(&self, trials: &[crate::grid::Trial]) -> Vec<TrialRecord> {
        let keys: std::collections::HashSet<String> = trials.iter().map(|t| t.key()).collect();
        self.records
            .iter()
            .filter(|r| keys.contains(&r.key))
            .cloned()
            .collect()
    }

    /// Appends one record and syncs it to disk.
    pub fn append(&mut self, record: TrialRecord) -> Result<(), SearchError> {
        let mut line = serde_json::to_string(&record).map_err(|e| SearchError::File {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| SearchError::io(&self.path, e))?;
        self.records.push(record);
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSummary {
    /// Records in the joined file.
    pub records: usize,
    /// Records found in more than one input (identical, so kept once).
    pub duplicates: usize,
    /// Torn last lines left out of the inputs (from shards that were killed).
    pub dropped: Vec<String>,
}

impl TrialRecord {
    /// The figures and settings two copies of one trial must agree on: everything but the
    /// position, the wall time and the commit.
    fn same_result(&self, other: &TrialRecord) -> bool {
        let strip = |r: &TrialRecord| TrialRecord {
            index: 0,
            seconds: 0.0,
            commit: None,
            ..r.clone()
        };
        strip(self) == strip(other)
    }

    /// The dataset and task the record was made on, from its configuration.
    fn data_identity(&self) -> Option<(String, String)> {
        let data = self.config.get("data")?;
        let text = |k: &str| data.get(k).map(|v| v.to_string());
        Some((text("dataset")?, text("task").unwrap_or_else(|| "-".into())))
    }
}

/// Joins results files (from shards) into `out` (whose records, if it exists, are kept).
///
/// Every input must exist and every record must carry its configuration; a trial found in
/// several files with different figures or settings is a conflict, and records of different
/// datasets or tasks are not mixed: both are errors naming the files, and then nothing is
/// written. The joined file is written whole and renamed into place.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<MergeSummary, SearchError> {
    let mut sources: Vec<(PathBuf, TrialRecord)> = Vec::new();
    let mut dropped = Vec::new();
    let existing = out.exists().then(|| out.to_path_buf());
    for input in existing.iter().chain(inputs) {
        let (records, torn) = ResultsFile::read(input)?;
        dropped.extend(torn);
        sources.extend(records.into_iter().map(|r| (input.clone(), r)));
    }
    let mut merged: Vec<(PathBuf, TrialRecord)> = Vec::new();
    let mut duplicates = 0;
    let mut identity: Option<(PathBuf, (String, String))> = None;
    for (path, record) in sources {
        let Some(data) = record.data_identity() else {
            return Err(SearchError::File {
                path: path.display().to_string(),
                message: format!(
                    "trial {} has no recorded configuration (written before results were keyed                      by their whole configuration): rerun it rather than merge it",
                    record.index
                ),
            });
        };
        match &identity {
            None => identity = Some((path.clone(), data)),
            Some((first, seen)) if *seen != data => {
                return Err(SearchError::File {
                    path: path.display().to_string(),
                    message: format!(
                        "trial {} is on dataset {} ({}), but {} holds dataset {} ({}):                          results of different datasets or tasks are not merged",
                        record.index,
                        data.0,
                        data.1,
                        first.display(),
                        seen.0,
                        seen.1
                    ),
                });
            }
            Some(_) => {}
        }
        match merged.iter().find(|(_, r)| r.key == record.key) {
            Some((other, kept)) if !kept.same_result(&record) => {
                return Err(SearchError::File {
                    path: path.display().to_string(),
                    message: format!(
                        "trial {} (key {}) differs from its copy in {}: test score {:?} vs                          {:?}, status {:?} vs {:?}; remove one of them and merge again",
                        record.index,
                        record.key,
                        other.display(),
                        record.test_score,
                        kept.test_score,
                        record.status,
                        kept.status
                    ),
                });
            }
            Some(_) => duplicates += 1,
            None => merged.push((path, record)),
        }
    }
    let mut text = String::new();
    for (_, record) in &merged {
        let line = serde_json::to_string(record).map_err(|e| SearchError::File {
            path: out.display().to_string(),
            message: e.to_string(),
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    write_atomically(out, &text)?;
    Ok(MergeSummary {
        records: merged.len(),
        duplicates,
        dropped,
    })
}

/// Writes `text` to a temporary file beside `path`, syncs it and renames it into place.
fn write_atomically(path: &Path, text: &str) -> Result<(), SearchError> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| SearchError::io(parent, e))?;
    }
    let name = path
        .file_name()
        .map_or("results".into(), |n| n.to_string_lossy().into_owned());
    let temp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = File::create(&temp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&temp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        SearchError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str) -> TrialRecord {
        TrialRecord {
            key: key.into(),
            index: 0,
            params: Map::new(),
            config: serde_json::json!({"data": {"dataset": "iris", "task": "classification"}}),
            commit: None,
            status: Status::Finished,
            epochs: 3,
            train_score: Some(0.9),
            train_loss: Some(0.1),
            val_score: None,
            val_loss: None,
            test_score: Some(0.8),
            test_loss: Some(0.2),
            final_lr: None,
            seconds: 1.0,
        }
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut f = ResultsFile::open(&path).unwrap();
        f.append(record("a")).unwrap();
        f.append(record("b")).unwrap();
        drop(f);
        let f = ResultsFile::open(&path).unwrap();
        assert_eq!(f.records.len(), 2);
        assert!(f.contains("b") && !f.contains("c"));
        assert!(f.dropped.is_none());
    }

    #[test]
    fn torn_last_line_is_reported_cut_and_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut f = ResultsFile::open(&path).unwrap();
        f.append(record("a")).unwrap();
        drop(f);
        let mut bytes = std::fs::read(&path).unwrap();
        let whole = serde_json::to_string(&record("b")).unwrap();
        bytes.extend_from_slice(&whole.as_bytes()[..whole.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();

        let mut f = ResultsFile::open(&path).unwrap();
        assert_eq!(f.records.len(), 1);
        let note = f.dropped.clone().unwrap();
        assert!(note.contains("line 2") && note.contains("torn"), "{note}");
        f.append(record("c")).unwrap();
        drop(f);
        let f = ResultsFile::open(&path).unwrap();
        assert_eq!(
            f.records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert!(f.dropped.is_none());
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let good = serde_json::to_string(&record("a")).unwrap();
        std::fs::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
        let err = ResultsFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    fn write(path: &Path, records: &[TrialRecord]) {
        let mut f = ResultsFile::open(path).unwrap();
        for r in records {
            f.append(r.clone()).unwrap();
        }
    }

    #[test]
    fn merge_joins_shards_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
        write(&a, &[record("x"), record("y")]);
        // The same trial from another shard: same figures, other wall time and commit.
        let mut y = record("y");
        y.seconds = 7.0;
        y.commit = Some("abc".into());
        write(&b, &[y, record("z")]);
        let summary = merge(&[a, b], &dir.path().join("all.jsonl")).unwrap();
        assert_eq!((summary.records, summary.duplicates), (3, 1));
    }

    #[test]
    fn merge_refuses_conflicts_other_datasets_and_missing_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, out) = (
            dir.path().join("a.jsonl"),
            dir.path().join("b.jsonl"),
            dir.path().join("all.jsonl"),
        );
        write(&a, &[record("x")]);
        let mut other = record("x");
        other.test_score = Some(0.5);
        write(&b, &[other]);
        let err = merge(&[a.clone(), b.clone()], &out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("differs") && err.contains("a.jsonl"), "{err}");
        assert!(!out.exists(), "a failed merge writes nothing");

        let mut statlog = record("s");
        statlog.config =
            serde_json::json!({"data": {"dataset": "statlog", "task": "classification"}});
        write(&b, &[]);
        std::fs::remove_file(&b).unwrap();
        write(&b, &[statlog]);
        let err = merge(&[a.clone(), b.clone()], &out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("statlog") && err.contains("iris"), "{err}");
        assert!(!out.exists());

        let missing = dir.path().join("missing.jsonl");
        let err = merge(&[a.clone(), missing.clone()], &out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.jsonl"), "{err}");
        assert!(!out.exists() && !missing.exists(), "nothing is created");

        let mut old = record("o");
        old.config = Value::Null;
        std::fs::remove_file(&b).unwrap();
        write(&b, &[old]);
        let err = merge(&[a, b], &out).unwrap_err().to_string();
        assert!(err.contains("no recorded configuration"), "{err}");
    }

    #[test]
    fn reading_a_missing_file_is_an_error_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.jsonl");
        let err = ResultsFile::read(&path).unwrap_err().to_string();
        assert!(err.contains("none.jsonl"), "{err}");
        assert!(!path.exists());
    }

    /// Two writers on one file at once (two threads hold separate open files, as two
    /// processes would): the second waits for the first, sees its records, and every line
    /// of the file is a whole record, each trial once.
    #[test]
    fn two_writers_at_once_never_interleave_or_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let writer = |keys: Vec<String>, path: PathBuf| {
            move || {
                let mut f = ResultsFile::open(&path).unwrap();
                let mut wrote = 0;
                for k in &keys {
                    if !f.contains(k) {
                        f.append(record(k)).unwrap();
                        wrote += 1;
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                }
                wrote
            }
        };
        let first = std::thread::spawn(writer(keys.clone(), path.clone()));
        std::thread::sleep(std::time::Duration::from_millis(10));
        let second = std::thread::spawn(writer(keys.clone(), path.clone()));
        let wrote = first.join().unwrap() + second.join().unwrap();
        assert_eq!(wrote, keys.len(), "each trial written once");
        let (records, dropped) = ResultsFile::read(&path).unwrap();
        assert!(dropped.is_none());
        let mut seen: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), keys.len());
        assert_eq!(records.len(), keys.len());
    }
}
