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
    ok(Command::new(env!("CARGO_BIN_EXE_diabetes"))
        .arg("--config")
        .arg(&study)
        .args(["--out", "binary"])
        .current_dir(dir.path())
        .output()
        .unwrap());
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
