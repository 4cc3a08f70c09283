//! The `grid` command as a user runs it: shards on two "machines" merged into the full
//! grid, successive halving, the best model saved, and bad input refused with a message.

use std::path::Path;
use std::process::{Command, Output};

use search::ResultsFile;

const GRID: &str = r#"
hidden_layer = [[8], [6, 4]]
eta = [0.01, 0.1]
mu = [0.0, 0.5]
epoch = [40]
batch_size = [16]
"#;

fn grid(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grid"))
        .args(args)
        .arg("--data-dir")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets"))
        .current_dir(dir)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn shards_merge_into_the_whole_grid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.toml"), GRID).unwrap();
    for shard in ["0/2", "1/2"] {
        let results = format!("shard-{}.jsonl", &shard[..1]);
        ok(&grid(
            dir.path(),
            &[
                "run",
                "--dataset",
                "iris",
                "--grid",
                "g.toml",
                "--results",
                &results,
                "--shard",
                shard,
                "--quiet",
            ],
        ));
    }
    let csv = std::fs::read_to_string(dir.path().join("shard-0.top.csv")).unwrap();
    assert!(csv.starts_with("hidden_layer,"), "{csv}");
    assert_eq!(
        csv.lines().count(),
        5,
        "header and the shard's 4 trials: {csv}"
    );
    assert!(dir.path().join("shard-0.top.md").exists());
    let a = ResultsFile::open(&dir.path().join("shard-0.jsonl")).unwrap();
    let b = ResultsFile::open(&dir.path().join("shard-1.jsonl")).unwrap();
    assert_eq!(a.records.len() + b.records.len(), 8);
    assert!(
        a.records.iter().all(|r| !b.contains(&r.key)),
        "shards overlap"
    );
    let merged = Command::new(env!("CARGO_BIN_EXE_grid"))
        .args([
            "merge",
            "shard-0.jsonl",
            "shard-1.jsonl",
            "--out",
            "all.jsonl",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(ok(&merged).contains("8 trials"));
    let table = Command::new(env!("CARGO_BIN_EXE_grid"))
        .args(["table", "all.jsonl", "--top", "3"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        ok(&table).lines().filter(|l| l.starts_with("| [")).count(),
        3
    );
}

#[test]
fn halving_and_the_saved_best_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.toml"), GRID).unwrap();
    let stdout = ok(&grid(
        dir.path(),
        &[
            "run",
            "--dataset",
            "iris",
            "--grid",
            "g.toml",
            "--results",
            "h.jsonl",
            "--halving",
            "10:2",
            "--save-best",
            "best",
            "--quiet",
        ],
    ));
    let rungs: Vec<&str> = stdout.lines().filter(|l| l.starts_with("rung:")).collect();
    assert_eq!(rungs.len(), 3, "{stdout}");
    assert!(
        rungs[0].starts_with("rung: 8 trials x 10 epochs, kept 4"),
        "{stdout}"
    );
    assert!(rungs[2].contains("x 40 epochs"), "{stdout}");
    assert!(stdout.contains("retrained: test score"), "{stdout}");
    assert!(dir.path().join("best/model.json").exists());
    assert!(dir.path().join("best/weights.safetensors").exists());
    assert!(dir.path().join("best/history.csv").exists());
}

#[test]
fn bad_input_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.toml"), GRID).unwrap();
    std::fs::write(dir.path().join("typo.toml"), "hiden_layer = [[8]]\n").unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--grid", "typo.toml"],
            "unknown MLP parameter \"hiden_layer\"",
        ),
        (&["--grid", "g.toml", "--shard", "3/2"], "shard"),
        (&["--grid", "missing.toml"], "missing.toml"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["run", "--dataset", "iris", "--results", "r.jsonl"];
        args.extend_from_slice(extra);
        let out = grid(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
