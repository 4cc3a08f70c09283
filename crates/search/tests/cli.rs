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

/// `grid` with `args` in `dir`, without a data folder (`merge`, `table`).
fn grid_at(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grid"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// A run that failed with `expected` in its message.
fn fails_with(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(expected),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
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
    assert!(csv.starts_with("hidden_layers,"), "{csv}");
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
    let merged = grid_at(
        dir.path(),
        &[
            "merge",
            "shard-0.jsonl",
            "shard-1.jsonl",
            "--out",
            "all.jsonl",
        ],
    );
    assert!(ok(&merged).contains("8 trials"));
    let table = grid_at(dir.path(), &["table", "all.jsonl", "--top", "3"]);
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
    let files = [
        ("g.toml", GRID),
        ("typo.toml", "hiden_layer = [[8]]\n"),
        ("nan.toml", "hidden_layer = [[8]]\neta = [0.01, nan]\n"),
        ("inf.toml", "[grid]\neta = [0.1]\n[defaults]\nmu = inf\n"),
        ("huge.toml", "hidden_layer = [[2000000000]]\n"),
        // One parameter in both vocabularies (the project's and report 001's).
        ("both.toml", "eta = [0.1]\nlearning_rate = [0.01]\n"),
        (
            "twice.toml",
            "[grid]\neta = [0.1]\n[defaults]\nmomentum = 0.5\nmu = 0.5\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let cases: [(&[&str], &str); 10] = [
        (
            &["--grid", "typo.toml"],
            "unknown MLP parameter \"hiden_layer\"",
        ),
        (&["--grid", "g.toml", "--shard", "3/2"], "shard"),
        (&["--grid", "missing.toml"], "missing.toml"),
        (&["--grid", "g.toml", "--sample", "0"], "--sample"),
        (&["--grid", "g.toml", "--jobs", "0"], "--jobs"),
        (&["--grid", "nan.toml"], "eta[1]: nan and inf"),
        (&["--grid", "inf.toml"], "defaults.mu: nan and inf"),
        (&["--grid", "huge.toml"], "GiB"),
        (
            &["--grid", "both.toml"],
            "both.toml: the grid: learning_rate and eta name the same parameter",
        ),
        (
            &["--grid", "twice.toml"],
            "twice.toml: [defaults]: momentum and mu name the same parameter",
        ),
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
    assert!(
        !dir.path().join("r.jsonl").exists(),
        "a refused run writes no results file"
    );
}

fn run_iris(dir: &Path, results: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "run",
        "--dataset",
        "iris",
        "--grid",
        "g.toml",
        "--results",
        results,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    ok(&grid(dir, &args))
}

/// A finished trial is reused only under the same configuration: the seed, the split or a
/// study file's defaults changed train anew.
#[test]
fn results_are_reused_only_for_the_same_configuration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.toml"), GRID).unwrap();
    let first = run_iris(dir.path(), "r.jsonl", &[]);
    assert!(first.contains("8 trials run"), "{first}");
    let again = run_iris(dir.path(), "r.jsonl", &[]);
    assert!(
        again.contains("0 trials run") && again.contains("8 already"),
        "{again}"
    );
    for extra in [
        &["--seed", "1"][..],
        &["--test-fraction", "0.3"],
        &["--validation-fraction", "0.3"],
    ] {
        let out = run_iris(dir.path(), "r.jsonl", extra);
        assert!(out.contains("8 trials run"), "{extra:?}: {out}");
    }
    // The same grid as a study file whose [defaults] change beta.
    std::fs::write(
        dir.path().join("study.toml"),
        format!("[grid]\n{GRID}\n[defaults]\nbeta = 0.5\n"),
    )
    .unwrap();
    let out = ok(&grid(
        dir.path(),
        &[
            "run",
            "--dataset",
            "iris",
            "--grid",
            "study.toml",
            "--results",
            "r.jsonl",
            "--quiet",
        ],
    ));
    assert!(out.contains("8 trials run"), "{out}");
    let (records, _) = ResultsFile::read(&dir.path().join("r.jsonl")).unwrap();
    assert_eq!(records.len(), 5 * 8);
    let first = &records[0];
    assert_eq!(first.config["data"]["dataset"], "iris");
    assert_eq!(first.config["data"]["split_seed"], 0);
    assert_eq!(first.config["data"]["split"]["kind"], "stratified");
    assert!(first.commit.is_some());
    assert_eq!(
        records.last().unwrap().config["defaults"]["init_scale"],
        0.5
    );
}

/// A grid may be written in the project's vocabulary (`learning_rate`, `momentum`,
/// `epochs`, ...) or the report's (`eta`, `mu`, `epoch`, ...): the same trials, under the
/// same keys, so one spelling's results serve the other; the table is headed in the
/// project's names (naming one parameter both ways: `bad_input_is_refused_with_a_message`).
#[test]
fn a_grid_in_either_vocabulary_makes_the_same_trials() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.toml"), GRID).unwrap();
    let project = GRID
        .replace("hidden_layer", "hidden_layers")
        .replace("eta", "learning_rate")
        .replace("mu", "momentum")
        .replace("epoch", "epochs");
    std::fs::write(dir.path().join("project.toml"), &project).unwrap();
    let first = ok(&grid(
        dir.path(),
        &[
            "run",
            "--dataset",
            "iris",
            "--grid",
            "project.toml",
            "--results",
            "r.jsonl",
        ],
    ));
    assert!(first.contains("8 trials run"), "{first}");
    assert!(
        first.contains("| hidden_layers | epochs | learning_rate | momentum |"),
        "{first}"
    );
    let again = run_iris(dir.path(), "r.jsonl", &[]);
    assert!(
        again.contains("0 trials run") && again.contains("8 already"),
        "{again}"
    );
}

/// Two runs on one results file at once (a second started by mistake): the second waits
/// for the first, then finds every trial done; the file holds each trial once, whole.
#[test]
fn two_runs_on_one_results_file_train_each_trial_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.toml"), GRID).unwrap();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_grid"))
            .args([
                "run",
                "--dataset",
                "iris",
                "--grid",
                "g.toml",
                "--results",
                "r.jsonl",
            ])
            .args(["--quiet", "--jobs", "1", "--one-by-one", "--data-dir"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets"))
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (a, b) = (ok(&a), ok(&b));
    let ran: usize = [&a, &b]
        .iter()
        .map(|out| {
            let line = out
                .lines()
                .find(|l| l.contains("trials run in"))
                .unwrap_or("");
            line.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(99)
        })
        .sum();
    assert_eq!(
        ran, 8,
        "each trial trained once between the two runs:\n{a}\n{b}"
    );
    let (records, dropped) = ResultsFile::read(&dir.path().join("r.jsonl")).unwrap();
    assert!(dropped.is_none());
    let mut keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!((records.len(), keys.len()), (8, 8));
}

/// `merge` and `table` with an input that is missing, or results that disagree, fail with
/// the file's name and create nothing.
#[test]
fn merge_and_table_refuse_missing_or_conflicting_inputs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.toml"), GRID).unwrap();
    run_iris(dir.path(), "a.jsonl", &[]);
    let cli = |args: &[&str]| grid_at(dir.path(), args);
    fails_with(
        &cli(&["merge", "a.jsonl", "nope.jsonl", "--out", "all.jsonl"]),
        "nope.jsonl",
    );
    fails_with(&cli(&["table", "nope.jsonl"]), "nope.jsonl");
    assert!(!dir.path().join("all.jsonl").exists() && !dir.path().join("nope.jsonl").exists());
    // A copy of the same trials whose figures differ.
    let text = std::fs::read_to_string(dir.path().join("a.jsonl")).unwrap();
    let changed = text.replacen("\"test_score\":", "\"test_score\":0.123456,\"x\":", 1);
    std::fs::write(dir.path().join("b.jsonl"), changed).unwrap();
    fails_with(
        &cli(&["merge", "a.jsonl", "b.jsonl", "--out", "all.jsonl"]),
        "differs",
    );
    assert!(!dir.path().join("all.jsonl").exists());
}

/// A grid whose every trial diverges has no best trial: no model is saved and the exit
/// code says so.
#[test]
fn a_grid_that_only_diverged_saves_nothing_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("g.toml"),
        "hidden_layer = [[8]]\neta = [1e30, 1e35]\nepoch = [20]\n",
    )
    .unwrap();
    let out = grid(
        dir.path(),
        &[
            "run",
            "--dataset",
            "iris",
            "--grid",
            "g.toml",
            "--results",
            "r.jsonl",
            "--save-best",
            "best",
            "--quiet",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("diverged"), "{stderr}");
    assert!(!dir.path().join("best").exists());
}

/// The best trial is picked on a validation split carved from the training data unless the
/// user asks for the test set by name; a run without validation data says so.
#[test]
fn the_best_trial_is_picked_on_validation_unless_test_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.toml"), GRID).unwrap();
    let out = run_iris(dir.path(), "v.jsonl", &[]);
    assert!(out.contains("ranked by validation score"), "{out}");
    let (records, _) = ResultsFile::read(&dir.path().join("v.jsonl")).unwrap();
    assert!(
        records
            .iter()
            .all(|r| r.val_score.is_some() && r.test_score.is_some())
    );
    assert_eq!(records[0].config["data"]["validation_fraction"], 0.2);

    let refused = grid(
        dir.path(),
        &[
            "run",
            "--dataset",
            "iris",
            "--grid",
            "g.toml",
            "--results",
            "t.jsonl",
            "--validation-fraction",
            "0",
            "--quiet",
        ],
    );
    fails_with(&refused, "--rank test");
    let out = run_iris(
        dir.path(),
        "t.jsonl",
        &["--validation-fraction", "0", "--rank", "test"],
    );
    assert!(out.contains("ranked by test score"), "{out}");
    fails_with(&grid_at(dir.path(), &["table", "t.jsonl"]), "--rank test");
    let ranked = grid_at(dir.path(), &["table", "t.jsonl", "--rank", "test"]);
    assert!(ok(&ranked).contains("ranked by test score"));
}

/// A user's own CSV (a text column, a missing value) searched like a named dataset: the
/// saved best model carries the table's encoding, results are keyed by the data's
/// fingerprint (the same file resumes, an edited one trains again).
#[test]
fn a_grid_runs_on_a_users_csv() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.toml"), GRID).unwrap();
    let mut csv = String::from("size,colour,label\n");
    for i in 0..60 {
        let colour = if i == 7 { "" } else { ["red", "blue"][i % 2] };
        csv.push_str(&format!(
            "{},{colour},{}\n",
            i % 10,
            ["small", "big"][usize::from(i % 10 >= 5)]
        ));
    }
    std::fs::write(dir.path().join("own.csv"), &csv).unwrap();
    let args = [
        "run",
        "--data",
        "own.csv",
        "--target",
        "label",
        "--grid",
        "g.toml",
        "--results",
        "own.jsonl",
        "--save-best",
        "best",
        "--quiet",
    ];
    fails_with(
        &grid_at(dir.path(), &args),
        "column \"colour\" has a missing value",
    );
    let mut with_impute = args.to_vec();
    with_impute.extend(["--impute", "median"]);
    let stdout = ok(&grid_at(dir.path(), &with_impute));
    assert!(stdout.contains("8 trials on own.csv@"), "{stdout}");
    assert!(stdout.contains("8 trials run"), "{stdout}");
    let card = std::fs::read_to_string(dir.path().join("best/model.json")).unwrap();
    assert!(
        card.contains("\"one_hot\"") && card.contains("\"blue\""),
        "{card}"
    );
    let again = ok(&grid_at(dir.path(), &with_impute));
    assert!(
        again.contains("0 trials run") && again.contains("8 already"),
        "{again}"
    );
    std::fs::write(dir.path().join("own.csv"), csv.replace("3,blue", "4,blue")).unwrap();
    let edited = ok(&grid_at(dir.path(), &with_impute));
    assert!(edited.contains("8 trials run"), "{edited}");
}
