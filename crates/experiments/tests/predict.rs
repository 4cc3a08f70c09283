//! `predict` on a saved model: CSV rows classified with probabilities; a bad row, a model
//! that is not there, or an image for a table model end with a message, not a panic.

use std::process::Command;

use burn::tensor::Device;
use data::{DataDirs, DatasetName};
use models::Activation;
use trainer::{Mlp, MlpTask};

#[test]
fn predict_classifies_csv_rows_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let iris = DataDirs::new(None).load(DatasetName::Iris).unwrap().train;
    let mlp = Mlp {
        hidden_layer: vec![8],
        activation: Activation::Relu,
        epoch: 60,
        eta: 0.05,
        beta: 0.3,
        alpha: 0.0,
        mu: 0.8,
        batch_size: 16,
        verbose: false,
        task: MlpTask::Classification,
        seed: 0,
    };
    let (model, _) = mlp.fit(&iris, None, &Device::flex()).unwrap();
    let model_dir = dir.path().join("model");
    model.save(&model_dir).unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "a,b,c,d\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n").unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_predict"))
            .arg("--model")
            .arg(&model_dir)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--csv".as_ref(),
        csv.as_os_str(),
        "--top".as_ref(),
        "2".as_ref(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("line 2: Iris-setosa"), "{stdout}");
    assert!(lines[1].starts_with("line 3: Iris-virginica"), "{stdout}");
    assert_eq!(lines[0].matches('%').count(), 2);

    let ragged = dir.path().join("ragged.csv");
    std::fs::write(&ragged, "5.1,3.5,1.4,0.2\n5.1,3.5\n").unwrap();
    let words = dir.path().join("words.csv");
    std::fs::write(&words, "5.1,3.5,1.4,0.2\n5.1,x,1.4,0.2\n").unwrap();
    let image = dir.path().join("x.png");
    std::fs::write(&image, b"not a png").unwrap();
    for (args, expected) in [
        (
            vec!["--csv".as_ref(), ragged.as_os_str()],
            "line 2: 2 values, the model takes 4",
        ),
        (
            vec!["--csv".as_ref(), words.as_os_str()],
            "line 2: field 2 (\"x\") is not a number",
        ),
        (
            vec!["--image".as_ref(), image.as_os_str()],
            "not an image: use --csv",
        ),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
