//! A table split across 3 shards (`--shard I/3`, each into its own folder), then joined
//! with `--merge`, gives the same table and book rows as one unsharded run, and the joining
//! run trains nothing: a Keras-style table (the report 004 binary on a study of iris, the
//! committed data) and report 001's iris MLP table at `--quick` scale.

use std::path::Path;
use std::process::{Command, Output};

const STUDY: &str = r#"
dataset = "iris"

[split]
kind = "stratified"
test_fraction = 0.2

[training]
optimizer = "adam"
learning_rate = 0.01
batch_size = 16
epochs = 15
inputs = "standard"

[[section]]
name = "Named models"

[[section.model]]
name = "softmax regression"
layers = "dense(3, softmax)"
published = { test_accuracy = 0.9 }

[[section.model]]
name = "one hidden layer"
layers = "dense(16, relu); dense(3, softmax)"
published = { test_accuracy = 0.95 }

[[section]]
name = "Grid"
layout = "talos"
layers = "{architecture|dense(#, {activation})}; dense(3, softmax)"
training = { validation = 0.25 }

[section.grid]
architecture = [[8], [8, 8]]
activation = ["relu", "tanh"]

[[section.published]]
architecture = [8, 8]
activation = "tanh"
val_accuracy = 0.97
"#;

fn run(binary: &str, args: &[&str]) -> Output {
    let output = Command::new(binary).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A file of `dir`, its `seconds` figures left out (they are timings): the field of a JSON
/// line, the last column of a CSV whose header ends with it.
fn read(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    if text.lines().next().is_some_and(|h| h.ends_with(",seconds")) {
        return text
            .lines()
            .map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head))
            .collect::<Vec<_>>()
            .join("\n");
    }
    text.lines()
        .map(|l| {
            let mut record: serde_json::Value = match serde_json::from_str(l) {
                Ok(v) => v,
                Err(_) => return l.to_string(),
            };
            if let Some(o) = record.as_object_mut() {
                o.remove("seconds");
            }
            record.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn sharded_equals_unsharded(binary: &str, base: &[&str], files: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let one = path("one");
    run(
        binary,
        &with(&["--out", &one])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let mut shards = Vec::new();
    for i in 0..3 {
        let folder = path(&format!("shard-{i}"));
        let shard = format!("{i}/3");
        let out = run(
            binary,
            &with(&["--out", &folder, "--shard", &shard])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("shard {i}/3:")),
            "a shard says what it did"
        );
        assert!(
            !Path::new(&folder).join("table.md").exists(),
            "a shard builds no table"
        );
        shards.push(folder);
    }
    let merged = path("merged");
    let mut args = vec!["--out".to_string(), merged.clone(), "--merge".to_string()];
    args.extend(shards.iter().cloned());
    let out = run(
        binary,
        &with(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("merged 3 shard folder(s)"));
    for file in files {
        assert_eq!(
            read(Path::new(&merged), file),
            read(Path::new(&one), file),
            "{binary}: {file}"
        );
    }
}

#[test]
fn a_model_table_in_three_shards_merges_to_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("study.toml");
    std::fs::write(&study, STUDY).unwrap();
    sharded_equals_unsharded(
        env!("CARGO_BIN_EXE_fashion-baselines"),
        &["--config", study.to_str().unwrap()],
        &["table.csv", "rows.json"],
    );
}

#[test]
fn report_001s_iris_table_in_three_shards_merges_to_the_unsharded_run() {
    sharded_equals_unsharded(
        env!("CARGO_BIN_EXE_iris"),
        &["--quick"],
        &["table.csv", "best.csv", "rows.json"],
    );
}
