//! A table of Keras-style models run end to end through a real binary on iris (committed
//! data): named models and a grid with published rows, every row in table.csv, models
//! saved, a rerun trains nothing, `--only` picks models, and bad files end with a message
//! that names the problem, not a panic.

use std::path::Path;
use std::process::{Command, Output};

const STUDY: &str = r#"
title = "iris study"
report = "test"
dataset = "iris"

[split]
kind = "stratified"
test_fraction = 0.2

[training]
optimizer = "adam"
learning_rate = 0.01
batch_size = 16
epochs = 40
inputs = "standard"

[quick]
epochs = 5

[[section]]
name = "Named models"

[[section.model]]
name = "softmax regression"
layers = "dense(3, softmax)"
published = { test_accuracy = 0.9 }

[[section.model]]
name = "one hidden layer"
layers = "dense(16, relu); dense(3, softmax)"
training = { validation = 0.25, early_stopping = { monitor = "val_accuracy", patience = 5 } }
classification_report = true
published = { train_accuracy = 0.95, test_accuracy = 0.95 }

[[section]]
name = "Grid"
layout = "talos"
layers = "{architecture|dense(#, {activation})}; dense(3, softmax)"
training = { validation = 0.25 }

[section.grid]
architecture = [[8], [8, 8]]
activation = ["relu", "tanh"]
batch_size = [8, 32]

[[section.published]]
architecture = [8, 8]
activation = "tanh"
batch_size = 8
val_accuracy = 0.97
"#;

fn run(config: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fashion-baselines"))
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_study_file_runs_resumes_and_reports_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("study.toml");
    std::fs::write(&config, STUDY).unwrap();
    let out = dir.path().join("out");

    let first = run(&config, &out, &[]);
    assert!(first.status.success(), "{}", text(&first));
    let csv = std::fs::read_to_string(out.join("table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3, "{csv}");
    assert!(!csv.contains("queued") && !csv.contains("failed"), "{csv}");
    let trials = std::fs::read_to_string(out.join("trials.jsonl")).unwrap();
    assert_eq!(trials.lines().count(), 2 + 8, "2 models + a grid of 8");
    let saved = out.join("models/named-models--one-hidden-layer");
    for file in ["model.json", "history.csv", "curves.svg", "confusion.svg"] {
        assert!(saved.join(file).exists(), "{file} missing");
    }
    assert_eq!(
        std::fs::read_dir(out.join("histories")).unwrap().count(),
        10
    );
    // The grid's search drawn: scores by hyperparameter value, the best trials' loss.
    for chart in ["grid-by-hyperparameter", "grid-best-trials-loss"] {
        for ext in ["svg", "png"] {
            assert!(out.join(format!("{chart}.{ext}")).exists(), "{chart}.{ext}");
        }
    }
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(table.contains("round_epochs"), "talos layout:\n{table}");
    assert!(table.contains("grid-by-hyperparameter.svg"), "{table}");
    assert!(table.contains("classification report"), "{table}");
    // Each report figure sits under its own header, whatever figures other rows give.
    let cells =
        |line: &str| -> Vec<String> { line.split('|').map(|c| c.trim().to_string()).collect() };
    let header = table
        .lines()
        .find(|l| l.contains("test_accuracy (report)") && l.contains("train_accuracy"))
        .unwrap();
    let column = cells(header)
        .iter()
        .position(|c| c == "test_accuracy (report)")
        .unwrap();
    let row = table
        .lines()
        .find(|l| l.starts_with("| softmax regression"))
        .unwrap();
    assert_eq!(cells(row)[column], "0.9", "{header}\n{row}");
    let train_column = cells(header)
        .iter()
        .position(|c| c == "train_accuracy (report)")
        .unwrap();
    assert_eq!(cells(row)[train_column], "-", "{header}\n{row}");
    // The hidden-layer model learns iris.
    let line = csv
        .lines()
        .find(|l| l.contains("one hidden layer"))
        .unwrap();
    let ours: f64 = line.rsplit(',').next().unwrap().parse().unwrap();
    assert!(ours >= 0.8, "test accuracy {ours}: {line}");

    let again = run(&config, &out, &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("10 model(s) already in"),
        "{}",
        text(&again)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("trials.jsonl"))
            .unwrap()
            .lines()
            .count(),
        10
    );

    let only = run(&config, &dir.path().join("only"), &["--only", "softmax"]);
    assert!(only.status.success(), "{}", text(&only));
    let trials = std::fs::read_to_string(dir.path().join("only/trials.jsonl")).unwrap();
    assert_eq!(trials.lines().count(), 1);
    let csv = std::fs::read_to_string(dir.path().join("only/table.csv")).unwrap();
    let row_of =
        |csv: &str, name: &str| csv.lines().find(|l| l.contains(name)).unwrap().to_string();
    assert!(row_of(&csv, "one hidden layer").contains("queued"), "{csv}");
    let table = std::fs::read_to_string(dir.path().join("only/table.md")).unwrap();
    assert!(table.contains("A row marked queued"), "{table}");
    // A run of another row keeps the first one's figure in the table.
    let other = run(&config, &dir.path().join("only"), &["--only", "one hidden"]);
    assert!(other.status.success(), "{}", text(&other));
    let csv = std::fs::read_to_string(dir.path().join("only/table.csv")).unwrap();
    for name in ["softmax regression", "one hidden layer"] {
        assert!(!row_of(&csv, name).contains("queued"), "{name}:\n{csv}");
    }
    let table = std::fs::read_to_string(dir.path().join("only/table.md")).unwrap();
    assert!(!table.contains("A row marked queued"), "{table}");
    // A section none of whose models has run yet is left out.
    assert!(!csv.contains("tanh"), "{csv}");

    // --rows: the two named models and the grid's one published row, not its other 7.
    let rows = run(&config, &dir.path().join("rows"), &["--rows"]);
    assert!(rows.status.success(), "{}", text(&rows));
    let trials = std::fs::read_to_string(dir.path().join("rows/trials.jsonl")).unwrap();
    assert_eq!(trials.lines().count(), 3, "{trials}");
    let csv = std::fs::read_to_string(dir.path().join("rows/table.csv")).unwrap();
    assert!(
        !csv.contains("queued"),
        "every printed row has a figure:\n{csv}"
    );
}

#[test]
fn bad_study_files_are_refused_with_the_problem_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            STUDY.replace("optimizer = \"adam\"", "optimizer = \"adamw\""),
            "adamw",
        ),
        (
            STUDY.replace("batch_size = 16", "batch_sise = 16"),
            "batch_sise",
        ),
        (
            STUDY.replace("{architecture|dense(#, {activation})}", "dense({units})"),
            "{units}",
        ),
        (
            STUDY.replace("architecture = [8, 8]\nactivation", "activation"),
            "architecture",
        ),
        (
            STUDY.replace(
                "layers = \"dense(3, softmax)\"",
                "layers = \"conv(8, 3x3)\"",
            ),
            "softmax regression",
        ),
    ];
    for (i, (study, expected)) in cases.iter().enumerate() {
        let config = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&config, study).unwrap();
        let output = run(&config, &dir.path().join(format!("out{i}")), &["--summary"]);
        let message = text(&output);
        assert!(!output.status.success(), "case {i} ran:\n{message}");
        assert!(message.contains(expected), "case {i}: {message}");
        assert!(!message.contains("panicked"), "case {i}: {message}");
    }
    let config = dir.path().join("study.toml");
    std::fs::write(&config, STUDY).unwrap();
    let none = run(
        &config,
        &dir.path().join("none"),
        &["--only", "nothing like it"],
    );
    assert!(!none.status.success());
    assert!(text(&none).contains("--only"), "{}", text(&none));
}

/// Lines of a results file.
fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

/// A stored figure is reused only for the same configuration: epochs, seed, or a model's
/// layers changed train anew (and only what changed); the default output folder follows
/// the study file, so another study never shares the built-in one's results.
#[test]
fn results_are_reused_only_for_the_same_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let study = STUDY
        .replace("epochs = 40", "epochs = 8")
        .replace(
            "[section.grid]\narchitecture = [[8], [8, 8]]",
            "[section.grid]\narchitecture = [[8, 8]]",
        )
        .replace("batch_size = [8, 32]", "batch_size = [8]");
    let config = dir.path().join("mine.toml");
    std::fs::write(&config, &study).unwrap();
    // No --out: the folder is named after the study file, under the current folder.
    let run_here = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_fashion-baselines"))
            .arg("--config")
            .arg(&config)
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        text(&output)
    };
    run_here(&[]);
    let trials = dir.path().join("out/mine/trials.jsonl");
    assert_eq!(lines(&trials), 4, "2 models + 2 grid trials");
    assert!(run_here(&[]).contains("4 model(s) already in"));
    run_here(&["--epochs", "3"]);
    assert_eq!(lines(&trials), 8, "--epochs 3 trains every model anew");
    run_here(&["--seed", "1"]);
    assert_eq!(lines(&trials), 12, "another seed trains every model anew");
    std::fs::write(
        &config,
        study.replace(
            "dense(16, relu); dense(3, softmax)",
            "dense(12, relu); dense(3, softmax)",
        ),
    )
    .unwrap();
    let out = run_here(&[]);
    assert!(out.contains("3 model(s) already in"), "{out}");
    assert_eq!(lines(&trials), 13, "only the changed model trains");
    let record: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&trials)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["config"]["data"]["dataset"], "iris");
    assert_eq!(record["config"]["training"]["epochs"], 8);
    assert!(
        record["config"]["model"]["layers"]
            .as_str()
            .unwrap()
            .contains("dense(12")
    );
    assert!(record["commit"].is_string());
}

/// Numbers that are not numbers, out of range, or a layer too large for memory: refused
/// before anything trains, with the field (or layer) named and a failing exit code.
#[test]
fn bad_numbers_and_oversized_layers_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            STUDY.replace("learning_rate = 0.01", "learning_rate = nan"),
            "training.learning_rate: nan and inf",
        ),
        (
            STUDY.replace("learning_rate = 0.01", "learning_rate = inf"),
            "training.learning_rate: nan and inf",
        ),
        (
            STUDY.replace("learning_rate = 0.01", "learning_rate = -0.01"),
            "learning rate must be positive",
        ),
        (STUDY.replace("epochs = 40", "epochs = 0"), "epochs"),
        (
            STUDY.replace("batch_size = [8, 32]", "batch_size = [8, 0]"),
            "batch size",
        ),
        (
            STUDY.replace(
                "layers = \"dense(3, softmax)\"",
                "layers = \"dense(1000000000, relu); dense(3, softmax)\"",
            ),
            "GiB",
        ),
    ];
    for (i, (study, expected)) in cases.iter().enumerate() {
        let config = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&config, study).unwrap();
        let out = dir.path().join(format!("out{i}"));
        let output = run(&config, &out, &[]);
        let message = text(&output);
        assert!(!output.status.success(), "case {i} ran:\n{message}");
        assert!(message.contains(expected), "case {i}: {message}");
        assert!(!message.contains("panicked"), "case {i}: {message}");
        assert!(
            !out.join("trials.jsonl").exists(),
            "case {i} trained something"
        );
    }
}

/// A model that diverges is a result, not a winner: the table says "diverged" instead of a
/// figure computed from NaN outputs, and nothing is saved for `predict` to use.
#[test]
fn a_diverged_model_reports_no_figure_and_is_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let study = STUDY.replace(
        "name = \"softmax regression\"\nlayers = \"dense(3, softmax)\"",
        "name = \"softmax regression\"\nlayers = \"dense(8, relu); dense(8, relu); dense(3, softmax)\"\ntraining = { learning_rate = 1e30, optimizer = \"sgd\" }",
    );
    assert_ne!(study, STUDY);
    let config = dir.path().join("study.toml");
    std::fs::write(&config, study).unwrap();
    let out = dir.path().join("out");
    let output = run(&config, &out, &["--only", "softmax"]);
    assert!(output.status.success(), "{}", text(&output));
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    let row = table
        .lines()
        .find(|l| l.starts_with("| softmax regression"))
        .unwrap();
    assert!(row.contains("diverged"), "{row}");
    assert!(
        !out.join("models/named-models--softmax-regression/model.json")
            .exists()
    );
}

/// `--rows` trains the cheapest models first (the background queue fills the most rows per
/// hour), and `--only` also matches the `section / model` line a run prints, so one model of
/// one section can be picked where its name alone is shared.
#[test]
fn rows_run_cheapest_first_and_only_matches_section_and_model() {
    let header = STUDY.split("[[section]]").next().unwrap();
    let study = format!(
        r#"{header}
[[section]]
name = "Wide first"

[[section.model]]
name = "wide"
layers = "dense(64, relu); dense(64, relu); dense(3, softmax)"

[[section.model]]
name = "narrow"
layers = "dense(3, softmax)"

[[section]]
name = "Other"

[[section.model]]
name = "narrow"
layers = "dense(3, softmax)"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("study.toml");
    std::fs::write(&config, study).unwrap();

    let rows = run(
        &config,
        &dir.path().join("rows"),
        &["--rows", "--epochs", "2"],
    );
    let log = text(&rows);
    assert!(rows.status.success(), "{log}");
    let at = |line: &str| {
        log.find(line)
            .unwrap_or_else(|| panic!("{line:?} in\n{log}"))
    };
    assert!(
        at("] Wide first / narrow:") < at("] Wide first / wide:"),
        "{log}"
    );
    assert!(
        at("] Other / narrow:") < at("] Wide first / wide:"),
        "{log}"
    );

    let one = dir.path().join("one");
    let only = run(
        &config,
        &one,
        &["--epochs", "2", "--only", "first / narrow"],
    );
    assert!(only.status.success(), "{}", text(&only));
    let trials = std::fs::read_to_string(one.join("trials.jsonl")).unwrap();
    assert_eq!(trials.lines().count(), 1, "{trials}");
    assert!(trials.contains("Wide first"), "{trials}");
}
