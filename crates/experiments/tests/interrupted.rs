//! A table run killed with SIGKILL at random points, and once between writing a checkpoint's
//! temporary file and renaming it, then started again with the same command each time, ends
//! with the same histories (byte for byte, times aside) and figures as a run that was never
//! interrupted: models in training continue from their checkpoints, finished models come
//! from trials.jsonl, and no checkpoint is left behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Three models on iris (committed data), long enough (a few seconds in all) to be killed
/// in the middle of each; dropout, early stopping with restored weights and a plateau
/// schedule, so every piece of loop state matters.
const STUDY: &str = r#"
dataset = "iris"

[split]
kind = "stratified"
test_fraction = 0.2

[training]
optimizer = "adam"
learning_rate = 0.005
batch_size = 4
epochs = 250
inputs = "standard"
validation = 0.25
early_stopping = { monitor = "val_loss", patience = 1000, restore_best_weights = true }
reduce_lr = { monitor = "val_loss", factor = 0.5, patience = 10, min_lr = 0.0001 }

[[section]]
name = "Models"

[[section.model]]
name = "wide"
layers = "dense(64, relu); dropout(0.3); dense(64, relu); dense(3, softmax)"

[[section.model]]
name = "nadam"
layers = "dense(32, tanh); dropout(0.2); dense(3, softmax)"
training = { optimizer = "nadam" }

[[section.model]]
name = "momentum"
layers = "dense(32, relu); dense(3, softmax)"
training = { optimizer = "sgd", momentum = 0.9, nesterov = true, learning_rate = 0.01 }
"#;

fn command(config: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fashion-baselines"));
    cmd.arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(["--checkpoint-every", "0"])
        .env_remove(trainer::checkpoint::RENAME_DELAY_VAR)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Every history CSV of `out`, the `seconds` column cut off.
fn histories(out: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out.join("histories"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let timeless: Vec<&str> = text
                .lines()
                .map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head))
                .collect();
            (path.file_name().unwrap().into(), timeless.join("\n"))
        })
        .collect()
}

/// Every history CSV of `out` with the sum of its `seconds` column.
/// (The CSV rounds each epoch's seconds to 3 decimals: the sum is off by up to 0.5 ms an
/// epoch.)
fn histories_with_seconds(out: &Path) -> Vec<(PathBuf, f64, usize)> {
    std::fs::read_dir(out.join("histories"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let seconds: Vec<f64> = text
                .lines()
                .skip(1)
                .filter_map(|l| l.rsplit_once(',').and_then(|(_, s)| s.parse::<f64>().ok()))
                .collect();
            (
                path.file_name().unwrap().into(),
                seconds.iter().sum(),
                seconds.len(),
            )
        })
        .collect()
}

/// A model name as file names write it (`one hidden layer` -> `one-hidden-layer`).
fn slug(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// The test accuracy column of table.csv.
fn table(out: &Path) -> String {
    std::fs::read_to_string(out.join("table.csv")).unwrap()
}

fn finished(child: &mut Child) -> bool {
    let status = child.wait().unwrap();
    status.success()
}

#[test]
fn killed_runs_resume_to_the_same_histories() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("study.toml");
    std::fs::write(&config, STUDY).unwrap();

    let straight = dir.path().join("straight");
    let started = Instant::now();
    let output = command(&config, &straight).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let full = started.elapsed();
    let expected = histories(&straight);
    assert_eq!(expected.len(), 3);

    let killed = dir.path().join("killed");
    // First: killed between a checkpoint's temporary file and its rename.
    let mut child = command(&config, &killed)
        .env(trainer::checkpoint::RENAME_DELAY_VAR, "2000")
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let announced = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("checkpoint: wrote"));
    assert!(announced.is_some(), "no checkpoint was written");
    child.kill().unwrap();
    child.wait().unwrap();
    let checkpoints = killed.join("checkpoints");
    let left: Vec<String> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter().any(|f| f.ends_with(".ckpt.tmp")),
        "the kill should leave a temporary file: {left:?}"
    );

    // Then: killed at random points until a run gets to the end.
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let mut kills = 1;
    loop {
        let mut child = command(&config, &killed).spawn().unwrap();
        let wait = full.mul_f64(rng.random_range(0.05..0.4));
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_some() {
            assert!(finished(&mut child), "a resumed run failed");
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        assert!(kills < 60, "never finished");
    }
    assert!(
        kills >= 3,
        "only {kills} kills: the runs are too short to test"
    );

    let got = histories(&killed);
    assert_eq!(got.len(), expected.len());
    for ((name, a), (_, b)) in got.iter().zip(&expected) {
        assert_eq!(a, b, "{name:?} differs after {kills} kills");
    }
    assert_eq!(table(&killed), table(&straight));
    // Each record holds the model's whole training time, the time before a resume included:
    // at least the sum of its epochs' recorded seconds.
    let records = std::fs::read_to_string(killed.join("trials.jsonl")).unwrap();
    for line in records.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let seconds = record["seconds"].as_f64().unwrap();
        let label = record["params"]["model"].as_str().unwrap_or("").to_string();
        let (history, epochs) = histories_with_seconds(&killed)
            .into_iter()
            .find(|(file, _, _)| file.to_string_lossy().contains(&slug(&label)))
            .map_or((0.0, 0), |(_, s, n)| (s, n));
        assert!(
            seconds + 0.0005 * epochs as f64 >= history,
            "{label}: the record says {seconds:.3} s, its epochs took {history:.3} s"
        );
    }
    let remaining = std::fs::read_dir(&checkpoints).map_or(0, |d| d.count());
    assert_eq!(remaining, 0, "checkpoints of finished models are removed");
}

/// A row whose training has started and was stopped shows in the results book as queued
/// with the epoch its checkpoint holds (the label `fit` keeps in the file names the row).
#[test]
fn the_book_names_a_started_rows_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (studies, results) = (dir.path().join("studies"), dir.path().join("results"));
    std::fs::create_dir_all(&studies).unwrap();
    let study = STUDY.replace(
        "name = \"wide\"\n",
        "name = \"wide\"\npublished = { test_accuracy = 0.9 }\n",
    );
    let config = studies.join("t.toml");
    std::fs::write(&config, study).unwrap();

    let mut child = command(&config, &results.join("t"))
        .env(trainer::checkpoint::RENAME_DELAY_VAR, "0")
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // The second announcement comes after the first checkpoint's rename.
    let announced = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with("checkpoint: wrote"))
        .nth(1);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(announced.is_some(), "no checkpoint was written");

    let text = experiments::book::book(&studies, &results).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("| Models | wide |"))
        .unwrap_or_else(|| panic!("no row for the model: {text}"));
    let (_, after) = line
        .split_once("; checkpoint after epoch ")
        .unwrap_or_else(|| panic!("no checkpoint named: {line}"));
    let (epoch, total) = after.trim_end_matches(" |").split_once(" of ").unwrap();
    assert!(epoch.parse::<usize>().unwrap() >= 1, "{line}");
    assert_eq!(total, "250", "{line}");
    assert!(line.contains("| queued"), "{line}");
    assert!(
        text.starts_with("rows with a current figure of ours: 0 / 3\n"),
        "{text}"
    );
}
