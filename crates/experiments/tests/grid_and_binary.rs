//! One study file through both front ends: the report binary (`diabetes --config`) and
//! `grid run --grid` train the same trials with the same `[defaults]` and `[split]`, so they
//! print the same figures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use search::ResultsFile;

const STUDY: &str = r#"
title = "diabetes, small"
report = "test"
dataset = "diabetes"

[split]
kind = "random"
test_fraction = 0.2

[quick]
epochs = 5
train_items = 100
test_items = 30

[grid]
hidden_layer = [[8], [8, 4]]
activation = ["relu"]
epoch = [30]
eta = [0.01, 0.001]
mu = [0.9]
batch_size = [16]

[defaults]
beta = 0.1
alpha = 0.001
"#;

/// The `grid` binary, built beside this package's binaries by a workspace build.
fn grid_binary() -> PathBuf {
    let here = Path::new(env!("CARGO_BIN_EXE_diabetes"));
    let grid = here.with_file_name(format!("grid{}", std::env::consts::EXE_SUFFIX));
    assert!(
        grid.exists(),
        "{} is missing: run the tests with --workspace (or build -p search first)",
        grid.display()
    );
    grid
}

/// Runs the `diabetes` binary on `study` in `dir` with `extra` flags; it must succeed.
fn diabetes(dir: &Path, study: &Path, extra: &[&str]) -> String {
    ok(Command::new(env!("CARGO_BIN_EXE_diabetes"))
        .arg("--config")
        .arg(study)
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap())
}

fn ok(out: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn grid_and_the_report_binary_agree_on_one_study() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("study.toml");
    std::fs::write(&study, STUDY).unwrap();
    diabetes(dir.path(), &study, &["--out", "binary"]);
    ok(Command::new(grid_binary())
        .args(["run", "--dataset", "diabetes", "--grid"])
        .arg(&study)
        .args(["--results", "grid.jsonl", "--quiet"])
        .current_dir(dir.path())
        .output()
        .unwrap());
    let (binary, _) = ResultsFile::read(&dir.path().join("binary/trials.jsonl")).unwrap();
    let (grid, _) = ResultsFile::read(&dir.path().join("grid.jsonl")).unwrap();
    assert_eq!((binary.len(), grid.len()), (4, 4));
    for b in &binary {
        let g = grid
            .iter()
            .find(|g| g.params == b.params)
            .unwrap_or_else(|| panic!("grid has no trial {:?}", b.params));
        assert_eq!(g.config["defaults"], b.config["defaults"], "{:?}", b.params);
        assert_eq!(g.config["data"]["split"], b.config["data"]["split"]);
        assert!(b.test_score.is_some(), "{b:?}");
        assert_eq!(g.test_score, b.test_score, "{:?}", b.params);
        assert_eq!(g.train_loss, b.train_loss, "{:?}", b.params);
    }
    assert_eq!(binary[0].config["defaults"]["init_scale"], 0.1);
    assert_eq!(binary[0].config["defaults"]["l2"], 0.001);
}

/// `--quick` writes split.json too: the rows of the dataset's file in each shrunk part.
#[test]
fn quick_runs_write_their_split() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("study.toml");
    std::fs::write(&study, STUDY).unwrap();
    diabetes(
        dir.path(),
        &study,
        &["--out", "quick", "--quick", "--limit", "1"],
    );
    let split: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("quick/split.json")).unwrap(),
    )
    .unwrap();
    let rows = |k: &str| -> Vec<u64> {
        split[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    let (train, test) = (rows("train"), rows("test"));
    assert_eq!((train.len(), test.len()), (100, 30));
    assert!(train.iter().chain(&test).all(|&r| r < 442));
    assert!(train.iter().all(|r| !test.contains(r)), "the parts overlap");
}

/// A study file needs only what it uses: no title, report or [quick], and it runs (its
/// table titled by the file's name), `--quick` included.
#[test]
fn a_minimal_study_file_runs() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("minimal.toml");
    let text = STUDY
        .lines()
        .filter(|l| !l.starts_with("title") && !l.starts_with("report"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = text.replace(
        "[quick]\nepochs = 5\ntrain_items = 100\ntest_items = 30\n",
        "",
    );
    assert!(!text.contains("[quick]"));
    std::fs::write(&study, text).unwrap();
    for extra in [&["--limit", "1"][..], &["--limit", "1", "--quick"]] {
        diabetes(dir.path(), &study, extra);
    }
    let table = std::fs::read_to_string(dir.path().join("out/minimal/table.md")).unwrap();
    assert!(table.starts_with("# minimal\n"), "{table}");
    assert!(dir.path().join("out/minimal-quick/table.md").exists());
}

/// A study that keeps a report's test ranking says so, and shows the trial a validation
/// split would have picked (the same trials trained on the rest of the training part); one
/// ranked on validation (the default) carves that part and picks on it.
#[test]
fn the_ranking_rule_is_stated_and_the_validation_pick_shown() {
    let dir = tempfile::tempdir().unwrap();
    let by_test = dir.path().join("by-test.toml");
    std::fs::write(
        &by_test,
        STUDY.replace(
            "dataset = \"diabetes\"\n",
            "dataset = \"diabetes\"\nrank = \"test\"\n",
        ),
    )
    .unwrap();
    let by_validation = dir.path().join("by-validation.toml");
    std::fs::write(&by_validation, STUDY).unwrap();
    for study in [&by_test, &by_validation] {
        diabetes(dir.path(), study, &[]);
    }
    let table = std::fs::read_to_string(dir.path().join("out/by-test/table.md")).unwrap();
    assert!(
        table.contains("ranked by test score (the report's own rule"),
        "{table}"
    );
    assert!(
        table.contains("A validation split (0.2 of the training part"),
        "{table}"
    );
    let (records, _) = ResultsFile::read(&dir.path().join("out/by-test/trials.jsonl")).unwrap();
    assert_eq!(
        records.len(),
        8,
        "the 4 trials, and again with a validation split"
    );
    assert_eq!(records.iter().filter(|r| r.val_score.is_some()).count(), 4);
    let table = std::fs::read_to_string(dir.path().join("out/by-validation/table.md")).unwrap();
    assert!(table.contains("ranked by validation score"), "{table}");
    let (records, _) =
        ResultsFile::read(&dir.path().join("out/by-validation/trials.jsonl")).unwrap();
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| r.val_score.is_some()));
    assert_eq!(records[0].config["data"]["validation_fraction"], 0.2);
}

/// A final model that diverges is not saved and the run fails, but the table is still
/// written with every trial's figures (nothing already computed is lost).
#[test]
fn a_diverged_final_model_fails_the_run_but_keeps_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("final.toml");
    std::fs::write(
        &study,
        format!("{STUDY}\n[final]\nparams = {{ hidden_layer = [8], eta = 1e30, epoch = 30 }}\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_diabetes"))
        .arg("--config")
        .arg(&study)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("diverged"), "{stderr}");
    let table = std::fs::read_to_string(dir.path().join("out/final/table.md")).unwrap();
    assert!(
        table.contains("diverged") && table.contains("best trials"),
        "{table}"
    );
    assert!(!dir.path().join("out/final/final/model.json").exists());
}
