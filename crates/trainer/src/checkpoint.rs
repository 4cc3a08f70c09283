//! Checkpoints: what [`fit`](crate::fit::fit()) needs to continue a training after the process
//! died, written atomically at epoch ends, at most once per interval.
//!
//! A checkpoint holds the weights, the optimizer's state, the best weights kept for early
//! stopping, the positions of the shuffle and dropout generators, the current sample order,
//! the callbacks' counters, the learning rate and the history so far. Tensors go through
//! Burn's own records: the weights as a Burnpack module snapshot (which keeps each
//! parameter's id) and the optimizer as Burn's `OptimizerRecord` (keyed by those ids), so a
//! restored optimizer finds its moments. burn-train's `FileCheckpointer` is not used: it
//! saves a module and an optimizer in separate files per epoch, which cannot be replaced
//! together in one atomic step, and it has no place for the loop's own state (generators,
//! sample order, Keras callbacks' counters) that this trainer keeps. So the pieces are
//! framed in one file here, written to `<file>.tmp` and renamed over the old checkpoint:
//! a process killed at any point leaves either the previous checkpoint or the new one.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::callbacks::{EarlyStoppingState, PlateauState};
use crate::fit::EpochRecord;

/// Where and how often `fit` saves a checkpoint, and which training it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpointing {
    /// The checkpoint file.
    pub path: PathBuf,
    /// Least time between two checkpoints (zero: at every epoch end).
    pub interval: Duration,
    /// What identifies the training (e.g. its result key): a checkpoint made for another
    /// identity is not resumed.
    pub identity: String,
    /// The training in words (e.g. the table row it answers), kept in the file for tools
    /// that list checkpoints without loading them ([`progress`]).
    pub label: String,
}

/// What a checkpoint says about its training, read without its tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// [`Checkpointing::identity`] of the training that wrote it.
    pub identity: String,
    /// [`Checkpointing::label`] (empty in checkpoints written before labels were kept).
    pub label: String,
    /// Epochs finished.
    pub epochs_done: usize,
    /// Epochs the training was configured for (0 where the checkpoint does not say).
    pub epochs: usize,
}

/// Environment variable, for the interruption test only: milliseconds to wait between
/// writing the temporary file and renaming it, announced on stderr, so a test can kill the
/// process inside that window.
pub const RENAME_DELAY_VAR: &str = "BURN_REPORTS_CHECKPOINT_RENAME_DELAY_MS";

/// The format of the file; a checkpoint of another format is not resumed.
pub(crate) const FORMAT: u32 = 1;
const MAGIC: &[u8] = b"burn-reports checkpoint\n";

/// The training loop's own state at an epoch end (the tensors travel beside it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoopState {
    pub format: u32,
    pub identity: String,
    /// [`Checkpointing::label`]; absent from checkpoints made before it was kept.
    #[serde(default)]
    pub label: String,
    /// The configured number of epochs; absent (0) from checkpoints made before it was kept.
    #[serde(default)]
    pub epochs: usize,
    /// Epochs finished so far, with their figures.
    pub records: Vec<EpochRecord>,
    /// The learning rate of the next epoch.
    pub lr: f64,
    /// Word positions of the shuffle and dropout generators (decimal `u128`).
    pub shuffle_position: String,
    pub dropout_position: String,
    /// The sample order after the last shuffle (the next epoch shuffles it again).
    pub order: Vec<usize>,
    pub stopping: EarlyStoppingState,
    pub plateau: PlateauState,
}

/// A whole checkpoint: the loop's state and Burn's serialised records.
pub(crate) struct Saved {
    pub state: LoopState,
    /// Burnpack bytes of the network being trained.
    pub model: Vec<u8>,
    /// Burnpack bytes of the optimizer's record.
    pub optimizer: Vec<u8>,
    /// Burnpack bytes of the best network so far, when early stopping keeps one.
    pub best: Option<Vec<u8>>,
}

/// Why a checkpoint could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint {path}: {why}")]
pub struct CheckpointError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub why: String,
}

impl Checkpointing {
    fn error(&self, why: impl std::fmt::Display) -> CheckpointError {
        CheckpointError {
            path: self.path.display().to_string(),
            why: why.to_string(),
        }
    }

    /// The checkpoint saved for this identity, or `None` when there is no file. A file of
    /// another identity or format, or one that cannot be read whole, is an error (the
    /// caller decides whether to start over).
    pub(crate) fn load(&self) -> Result<Option<Saved>, CheckpointError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let saved = decode(&bytes).map_err(|why| self.error(why))?;
        if saved.state.format != FORMAT {
            return Err(self.error(format!(
                "format {} (this build reads {FORMAT})",
                saved.state.format
            )));
        }
        if saved.state.identity != self.identity {
            return Err(self.error(format!(
                "made for training {}, not {}",
                saved.state.identity, self.identity
            )));
        }
        Ok(Some(saved))
    }

    /// Writes `saved` atomically: a temporary file beside the checkpoint, synced, then
    /// renamed over it.
    pub(crate) fn store(&self, saved: &Saved) -> Result<(), CheckpointError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        }
        let temp = temp_path(&self.path);
        let bytes = encode(saved).map_err(|e| self.error(e))?;
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()
        };
        write().map_err(|e| self.error(format!("{}: {e}", temp.display())))?;
        pause_before_rename(&temp);
        std::fs::rename(&temp, &self.path).map_err(|e| self.error(e))
    }

    /// Removes the checkpoint (and a temporary file a killed run left), once its training
    /// has ended and its result is stored.
    pub fn remove(&self) -> Result<(), CheckpointError> {
        for path in [temp_path(&self.path), self.path.clone()] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(())
    }
}

/// Reads what the checkpoint at `path` says about its training: only its loop state, not
/// the weights after it (a checkpoint of a large model is hundreds of megabytes).
pub fn progress(path: &Path) -> Result<Progress, CheckpointError> {
    let error = |why: String| CheckpointError {
        path: path.display().to_string(),
        why,
    };
    let mut file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    let mut head = vec![0u8; MAGIC.len() + 8];
    file.read_exact(&mut head)
        .map_err(|_| error("truncated before its state".into()))?;
    let len = head
        .strip_prefix(MAGIC)
        .and_then(|rest| rest.first_chunk::<8>())
        .ok_or_else(|| error("not a checkpoint of this project".into()))?;
    let len = u64::from_le_bytes(*len);
    let mut state = Vec::new();
    file.take(len)
        .read_to_end(&mut state)
        .map_err(|e| error(e.to_string()))?;
    if state.len() as u64 != len {
        return Err(error("truncated in its state".into()));
    }
    let state: LoopState =
        serde_json::from_slice(&state).map_err(|e| error(format!("unreadable state: {e}")))?;
    Ok(Progress {
        identity: state.identity,
        label: state.label,
        epochs_done: state.records.len(),
        epochs: state.epochs,
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The interruption test's window between the temporary file and the rename.
fn pause_before_rename(temp: &Path) {
    let Some(ms) = std::env::var(RENAME_DELAY_VAR)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    eprintln!("checkpoint: wrote {}, renaming in {ms} ms", temp.display());
    std::thread::sleep(Duration::from_millis(ms));
}

/// The file: the magic line, then four length-prefixed parts (little-endian `u64`
/// lengths): the loop state as JSON, the model, the optimizer, the best model (empty when
/// there is none).
fn encode(saved: &Saved) -> Result<Vec<u8>, serde_json::Error> {
    let state = serde_json::to_vec(&saved.state)?;
    let best = saved.best.as_deref().unwrap_or(&[]);
    let mut out = MAGIC.to_vec();
    for part in [&state[..], &saved.model, &saved.optimizer, best] {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        out.extend_from_slice(part);
    }
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<Saved, String> {
    let mut rest = bytes
        .strip_prefix(MAGIC)
        .ok_or("not a checkpoint of this project")?;
    let mut parts = Vec::with_capacity(4);
    for name in ["state", "model", "optimizer", "best model"] {
        let (len, tail) = rest
            .split_first_chunk::<8>()
            .ok_or(format!("truncated before its {name}"))?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|e| e.to_string())?;
        if tail.len() < len {
            return Err(format!("truncated in its {name}"));
        }
        let (part, tail) = tail.split_at(len);
        parts.push(part.to_vec());
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!("{} unexpected bytes at the end", rest.len()));
    }
    let best = parts.pop().filter(|b| !b.is_empty());
    let optimizer = parts.pop().unwrap_or_default();
    let model = parts.pop().unwrap_or_default();
    let state = parts.pop().unwrap_or_default();
    let state: LoopState =
        serde_json::from_slice(&state).map_err(|e| format!("unreadable state: {e}"))?;
    Ok(Saved {
        state,
        model,
        optimizer,
        best,
    })
}

/// When to save: at an epoch end once `interval` has passed since the last save (or the
/// start).
pub(crate) struct Schedule {
    last: Instant,
    interval: Duration,
}

impl Schedule {
    pub(crate) fn new(interval: Duration) -> Self {
        Schedule {
            last: Instant::now(),
            interval,
        }
    }

    /// Whether a checkpoint is due now; if so, the clock restarts.
    pub(crate) fn due(&mut self) -> bool {
        if self.last.elapsed() >= self.interval {
            self.last = Instant::now();
            true
        } else {
            false
        }
    }
}

/// A generator position, stored as decimal text (JSON numbers stop at 64 bits).
pub(crate) fn position_from(text: &str) -> Result<u128, String> {
    text.parse()
        .map_err(|e| format!("bad generator position {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> Saved {
        Saved {
            state: LoopState {
                format: FORMAT,
                identity: "abc".into(),
                label: "Table 1 / model 2".into(),
                epochs: 150,
                records: Vec::new(),
                lr: 0.001,
                shuffle_position: u128::MAX.to_string(),
                dropout_position: 7u128.to_string(),
                order: vec![2, 0, 1],
                stopping: EarlyStoppingState::default(),
                plateau: PlateauState::default(),
            },
            model: vec![1, 2, 3],
            optimizer: vec![4; 100],
            best: None,
        }
    }

    #[test]
    fn a_checkpoint_reads_back_and_a_truncated_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = Checkpointing {
            path: dir.path().join("a/b.ckpt"),
            interval: Duration::ZERO,
            identity: "abc".into(),
            label: "Table 1 / model 2".into(),
        };
        assert!(ckpt.load().unwrap().is_none());
        ckpt.store(&saved()).unwrap();
        let told = progress(&ckpt.path).unwrap();
        assert_eq!(told.label, "Table 1 / model 2");
        assert_eq!(
            (told.identity.as_str(), told.epochs_done, told.epochs),
            ("abc", 0, 150)
        );
        let back = ckpt.load().unwrap().unwrap();
        assert_eq!(back.model, vec![1, 2, 3]);
        assert_eq!(back.optimizer.len(), 100);
        assert!(back.best.is_none());
        assert_eq!(position_from(&back.state.shuffle_position), Ok(u128::MAX));
        assert_eq!(back.state.order, vec![2, 0, 1]);

        let other = Checkpointing {
            identity: "xyz".into(),
            ..ckpt.clone()
        };
        let err = other.load().err().unwrap().to_string();
        assert!(err.contains("made for training abc"), "{err}");

        let bytes = std::fs::read(&ckpt.path).unwrap();
        std::fs::write(&ckpt.path, &bytes[..bytes.len() - 10]).unwrap();
        let err = ckpt.load().err().unwrap().to_string();
        assert!(err.contains("truncated in its optimizer"), "{err}");
        std::fs::write(&ckpt.path, &bytes[..MAGIC.len() + 20]).unwrap();
        let err = progress(&ckpt.path).err().unwrap().to_string();
        assert!(err.contains("truncated in its state"), "{err}");

        ckpt.remove().unwrap();
        assert!(!ckpt.path.exists());
        ckpt.remove().unwrap();
    }

    #[test]
    fn a_checkpoint_from_before_labels_still_reads() {
        let mut json = serde_json::to_value(saved().state).unwrap();
        let map = json.as_object_mut().unwrap();
        map.remove("label");
        map.remove("epochs");
        let state: LoopState = serde_json::from_value(json).unwrap();
        assert_eq!((state.label.as_str(), state.epochs), ("", 0));
        assert_eq!(state.order, vec![2, 0, 1]);
    }
}
