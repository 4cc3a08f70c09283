//! `predict` on a saved model: CSV rows classified with probabilities; a bad row, a value
//! that is not a finite number, a model description that disagrees with its layers, an
//! image of the wrong size, or an image for a table model end with a message, not a panic.

use std::process::Command;

use burn::tensor::Device;
use data::{DataDirs, DatasetName};
use models::Activation;
use trainer::{Mlp, Task};

#[test]
fn predict_classifies_csv_rows_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let iris = DataDirs::new(None).load(DatasetName::Iris).unwrap().train;
    let mlp = Mlp {
        hidden_layers: vec![8],
        activation: Activation::Relu,
        epochs: 60,
        learning_rate: 0.05,
        init_scale: 0.3,
        l2: 0.0,
        momentum: 0.8,
        batch_size: 16,
        verbose: false,
        task: Task::Classification,
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
    // A quoted header, and a file of space-separated columns, read the same rows.
    let quoted = dir.path().join("quoted.csv");
    std::fs::write(
        &quoted,
        "\"sepal length\",\"b\",\"c\",\"d\"\n5.1,3.5,1.4,0.2\n",
    )
    .unwrap();
    let spaced = dir.path().join("spaced.txt");
    std::fs::write(&spaced, "a  b c d\n5.1 3.5  1.4 0.2\n").unwrap();
    for file in [&quoted, &spaced] {
        let out = run(&["--csv".as_ref(), file.as_os_str()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("line 2: Iris-setosa"), "{stdout}");
    }

    let ragged = dir.path().join("ragged.csv");
    std::fs::write(&ragged, "5.1,3.5,1.4,0.2\n5.1,3.5\n").unwrap();
    let words = dir.path().join("words.csv");
    std::fs::write(&words, "5.1,3.5,1.4,0.2\n5.1,x,1.4,0.2\n").unwrap();
    let image = dir.path().join("x.png");
    std::fs::write(&image, b"not a png").unwrap();
    let nan = dir.path().join("nan.csv");
    std::fs::write(&nan, "5.1,3.5,1.4,0.2\n5.1,NaN,1.4,0.2\n").unwrap();
    let inf = dir.path().join("inf.csv");
    std::fs::write(&inf, "5.1,3.5,inf,0.2\n").unwrap();
    for (args, expected) in [
        (
            vec!["--csv".as_ref(), nan.as_os_str()],
            "line 2: field 2 (\"NaN\") is not a finite number",
        ),
        (
            vec!["--csv".as_ref(), inf.as_os_str()],
            "line 1: field 3 (\"inf\") is not a finite number",
        ),
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
    // A description whose class names disagree with the weights' outputs.
    let card_path = model_dir.join("model.json");
    let card = std::fs::read_to_string(&card_path).unwrap();
    std::fs::write(
        &card_path,
        card.replace("\"Iris-virginica\"", "\"Iris-virginica\", \"Iris-extra\""),
    )
    .unwrap();
    let out = run(&["--csv".as_ref(), csv.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("4 class names") && stderr.contains("3 outputs"),
        "{stderr}"
    );
}

/// An image of another size than the model's input is an error naming both sizes, unless
/// `--resize` asks for resizing.
#[test]
fn images_of_the_wrong_size_need_resize() {
    let dir = tempfile::tempdir().unwrap();
    // Two classes of 8x8 grey pictures: bright left half or bright right half.
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for i in 0..40 {
        let class = i % 2;
        for _row in 0..8 {
            for col in 0..8 {
                features.push(if (col < 4) == (class == 0) {
                    220.0
                } else {
                    10.0
                });
            }
        }
        labels.push(class);
    }
    let samples = data::Samples::new(
        features,
        vec![1, 8, 8],
        Vec::new(),
        data::Targets::Classes {
            labels,
            classes: data::ClassNames(vec!["left".into(), "right".into()]),
        },
    )
    .unwrap();
    let spec = models::ModelSpec::parse(
        "tiny",
        models::Shape::image(1, [8, 8]),
        "flatten; dense(2, softmax)",
    )
    .unwrap();
    let device = Device::flex();
    let network = models::Network::new(&spec, 0, &device).unwrap();
    let config = trainer::FitConfig::new(
        5,
        8,
        trainer::OptimizerSpec::adam(0.01),
        trainer::Loss::CrossEntropy,
    );
    let prep = trainer::Preprocessing {
        inputs: trainer::InputScaling::Pixels,
        scale_targets: false,
    };
    let (model, _) = trainer::train_model(network, &samples, None, prep, &config, &device).unwrap();
    let model_dir = dir.path().join("model");
    model.save(&model_dir).unwrap();
    let picture = dir.path().join("wide.png");
    image::GrayImage::from_fn(12, 10, |x, _| image::Luma([if x < 6 { 220 } else { 10 }]))
        .save(&picture)
        .unwrap();
    let predict = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_predict"))
            .arg("--model")
            .arg(&model_dir)
            .arg("--image")
            .arg(&picture)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = predict(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("12x10") && stderr.contains("8x8") && stderr.contains("--resize"),
        "{stderr}"
    );
    let out = predict(&["--resize"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("left"), "{stdout}");
}
