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
    pub fn open(path: &Path) -> Result<Self, SearchError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| SearchError::io(parent, e))?;
        }
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(SearchError::io(path, e)),
        };
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
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| SearchError::io(path, e))?;
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

/// Joins results files (from shards) into `out`, keeping the first record of each trial.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<usize, SearchError> {
    let mut merged = ResultsFile::open(out)?;
    for input in inputs {
        let part = ResultsFile::open(input)?;
        for record in part.records {
            if !merged.contains(&record.key) {
                merged.append(record)?;
            }
        }
    }
    Ok(merged.records.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str) -> TrialRecord {
        TrialRecord {
            key: key.into(),
            index: 0,
            params: Map::new(),
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

    #[test]
    fn merge_joins_shards_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
        let mut fa = ResultsFile::open(&a).unwrap();
        fa.append(record("x")).unwrap();
        fa.append(record("y")).unwrap();
        let mut fb = ResultsFile::open(&b).unwrap();
        fb.append(record("y")).unwrap();
        fb.append(record("z")).unwrap();
        drop((fa, fb));
        assert_eq!(merge(&[a, b], &dir.path().join("all.jsonl")).unwrap(), 3);
    }
}
