//! The `bench` binary on a tiny model: one line per backend, model and phase with its
//! samples/s, files written, PyTorch's figure matched into a ratio, bad input refused.

use std::path::Path;
use std::process::{Command, Output};

const TINY: &str = r#"
[[model]]
name = "tiny"
input = [1, 8, 8]
batch_size = 16
layers = "conv(4, 3x3, same, relu); maxpool(2); flatten; dense(10, softmax)"
"#;

fn bench(config: &Path, pytorch: &Path, out: &Path, runs: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--device", "cpu", "--runs", runs, "--seconds", "0.05"])
        .arg("--config")
        .arg(config)
        .arg("--pytorch")
        .arg(pytorch)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn bench_measures_both_phases_and_compares_with_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.toml");
    std::fs::write(&config, TINY).unwrap();
    let pytorch = dir.path().join("pytorch.jsonl");
    std::fs::write(
        &pytorch,
        "{\"model\": \"tiny\", \"phase\": \"train\", \"samples_per_s\": 1000.0}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = bench(&config, &pytorch, &out, "2");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = std::fs::read_to_string(out.join("bench.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{csv}");
    for (line, phase) in lines.iter().zip(["train", "inference"]) {
        assert!(line.contains(&format!(",{phase},16,")), "{line}");
        let samples: f64 = line.split(',').nth(4).unwrap().parse().unwrap();
        assert!(samples > 0.0, "{line}");
    }
    assert!(
        text.contains("x |"),
        "a ratio beside PyTorch's figure:\n{text}"
    );

    std::fs::write(&pytorch, "not json\n").unwrap();
    let bad = bench(&config, &pytorch, &out, "1");
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(message.contains("pytorch.jsonl: line 1"), "{message}");
}
