//! Bring your own data: `train` on tables and an image folder the repository has never
//! seen, `predict` on new rows, and every bad input a clear error with a non-zero exit.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .env("BURN_DEVICE", "cpu")
        .output()
        .unwrap()
}

fn predict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_predict"))
        .args(args)
        .env("BURN_DEVICE", "cpu")
        .output()
        .unwrap()
}

/// `predict --model MODEL --data DATA`, with `--out OUT` when given.
fn predict_data(
    model: &std::path::Path,
    data: &std::path::Path,
    out: Option<&std::path::Path>,
) -> Output {
    let mut args = vec![
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ];
    if let Some(out) = out {
        args.extend(["--out", out.to_str().unwrap()]);
    }
    predict(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A figure printed after `label` on a line of `text`.
fn figure(text: &str, label: &str) -> f64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {text}"));
    text[at + label.len()..]
        .split(|c: char| c.is_whitespace() || c == ',')
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {text}"))
}

/// Two well separated classes with a text feature that decides a third of them and a
/// quoted field holding the separator.
fn flowers(rows: usize) -> String {
    let mut text = String::from("petal,\"width, cm\",soil,kind\n");
    for i in 0..rows {
        let class = i % 2;
        let x = class as f64 * 3.0 + (i % 7) as f64 * 0.2;
        let soil = ["clay", "sand", "loam"][i % 3];
        let kind = ["rose", "tulip"][class];
        text.push_str(&format!("{x:.2},\"{:.1}\",{soil},{kind}\n", 1.0 + x / 2.0));
    }
    text
}

#[test]
fn a_csv_trains_and_predicts_with_its_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("flowers.csv");
    std::fs::write(&data, flowers(120)).unwrap();
    let out = dir.path().join("model");
    let run = train(&[
        "--data",
        data.to_str().unwrap(),
        "--target",
        "kind",
        "--epochs",
        "30",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = stdout(&run);
    assert!(run.status.success(), "{text}{}", stderr(&run));
    assert!(text.contains("\"kind\" holds text labels"), "{text}");
    assert!(
        text.contains("soil: text, one-hot over 3 categories"),
        "{text}"
    );
    assert!(text.contains("96 training and 24 test rows"), "{text}");
    // Classes default to scikit-learn's MLPClassifier scheme: every training row trains,
    // and early stopping watches the training loss.
    assert!(text.contains("validation: none"), "{text}");
    assert!(figure(&text, "test accuracy") >= 0.95, "{text}");
    for file in [
        "model.json",
        "weights.safetensors",
        "history.csv",
        "curves.svg",
        "confusion.svg",
        "report.txt",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    // New rows without the target, columns in another order.
    let new = dir.path().join("new.csv");
    std::fs::write(
        &new,
        "soil,petal,\"width, cm\"\nsand,0.1,1.0\nloam,3.4,2.7\n",
    )
    .unwrap();
    let predictions = dir.path().join("predictions.csv");
    let run = predict_data(&out, &new, Some(&predictions));
    assert!(run.status.success(), "{}", stderr(&run));
    let written = std::fs::read_to_string(&predictions).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "item,kind,p(rose),p(tulip)");
    assert!(lines[1].starts_with("line 2,rose,"), "{written}");
    assert!(lines[2].starts_with("line 3,tulip,"), "{written}");
    // A category the model never saw is named.
    std::fs::write(&new, "soil,petal,\"width, cm\"\npeat,0.1,1.0\n").unwrap();
    let run = predict_data(&out, &new, None);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("line 2") && stderr(&run).contains("\"peat\""),
        "{}",
        stderr(&run)
    );
}

#[test]
fn a_gzip_regression_table_is_scored_in_its_units() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("houses.tsv.gz");
    let mut text = String::from("rooms\tarea\tprice\n");
    for i in 0..200 {
        let rooms = 1 + i % 5;
        let area = 30.0 + (i * 37 % 100) as f64;
        text.push_str(&format!(
            "{rooms}\t{area}\t{}\n",
            1000.0 * area + 20000.0 * rooms as f64
        ));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    std::fs::write(&data, gz.finish().unwrap()).unwrap();
    let out = dir.path().join("model");
    let run = train(&[
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "60",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = stdout(&run);
    assert!(run.status.success(), "{text}{}", stderr(&run));
    assert!(text.contains("regression: \"price\""), "{text}");
    // Values default to a tenth of the training part for early stopping.
    assert!(
        text.contains("(early stopping watches their loss)"),
        "{text}"
    );
    assert!(figure(&text, "test R²") > 0.95, "{text}");
    let new = dir.path().join("new.tsv");
    std::fs::write(&new, "rooms\tarea\n3\t80\n").unwrap();
    let run = predict_data(&out, &new, None);
    assert!(run.status.success(), "{}", stderr(&run));
    let value = figure(&stdout(&run), "line 2:");
    assert!((value - 140_000.0).abs() < 15_000.0, "{}", stdout(&run));
}

fn save_square(path: &Path, size: u32, bright: bool, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let image = image::GrayImage::from_fn(size, size, |x, y| {
        let noise = ((x * 7 + y * 13 + seed * 31) % 40) as u8;
        image::Luma([if bright { 200 + noise / 2 } else { 20 + noise }])
    });
    image.save(path).unwrap();
}

#[test]
fn an_image_folder_trains_and_mixed_sizes_need_resize() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("photos");
    for i in 0..20 {
        save_square(&root.join(format!("day/{i}.png")), 8, true, i);
        save_square(&root.join(format!("night/{i}.png")), 8, false, i);
    }
    let out = dir.path().join("model");
    let run = train(&[
        "--data",
        root.to_str().unwrap(),
        "--layers",
        "16",
        "--epochs",
        "60",
        "--learning-rate",
        "0.01",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = stdout(&run);
    assert!(run.status.success(), "{text}{}", stderr(&run));
    assert!(
        text.contains("40 images of 8x8 grey in 2 classes (day, night)"),
        "{text}"
    );
    assert!(text.contains("8-bit pixels divided by 255"), "{text}");
    assert!(figure(&text, "test accuracy") == 1.0, "{text}");
    // A folder of new images is predicted image by image.
    let new = dir.path().join("new");
    save_square(&new.join("a.png"), 8, true, 50);
    save_square(&new.join("b.png"), 8, false, 51);
    let predictions = dir.path().join("predictions.csv");
    let run = predict_data(&out, &new, Some(&predictions));
    assert!(run.status.success(), "{}", stderr(&run));
    let written = std::fs::read_to_string(&predictions).unwrap();
    let classes: Vec<&str> = written
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(classes, ["day", "night"], "{written}");
    save_square(&root.join("day/odd.png"), 9, true, 99);
    let run = train(&[
        "--data",
        root.to_str().unwrap(),
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(
        err.contains("odd.png")
            && err.contains("9x9")
            && err.contains("8x8")
            && err.contains("--resize"),
        "{err}"
    );
    let run = train(&[
        "--data",
        root.to_str().unwrap(),
        "--resize",
        "--layers",
        "4",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stdout(&run).contains("41 images of 8x8"),
        "{}",
        stdout(&run)
    );
}

/// Each bad input exits non-zero with a message naming what is wrong and where.
#[test]
fn bad_inputs_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        (
            "ragged.csv",
            "a,b,y\n1,2,p\n3,q\n",
            &[],
            &["ragged.csv, line 3", "2 fields, but the header has 3"],
        ),
        (
            "text.csv",
            "a,y\n1,p\n2,q\nx3,p\n4,q\n5,p\n",
            &[],
            &["line 4", "\"x3\", not a number"],
        ),
        ("empty.csv", "\n", &[], &["empty.csv", "empty"]),
        (
            "target.csv",
            "a,y\n1,p\n2,q\n",
            &["--target", "price"],
            &["no column named \"price\"", "a, y"],
        ),
        (
            "single.csv",
            "a,y\n1,p\n2,p\n3,p\n4,p\n5,p\n",
            &[],
            &["single class"],
        ),
        ("few.csv", "a,y\n1,p\n2,q\n", &[], &["test split"]),
        (
            "missing.csv",
            "a,b,y\n1,,p\n2,3,q\n3,4,p\n4,5,q\n5,6,p\n",
            &[],
            &["line 2", "column \"b\" has a missing value", "--impute"],
        ),
        (
            "nan.csv",
            "a,y\n1,p\n2,q\n",
            &["--learning-rate", "NaN"],
            &["--learning-rate NaN"],
        ),
        (
            "layers.csv",
            "a,y\n1,p\n2,q\n",
            &["--layers", "10,zero"],
            &["--layers", "\"zero\""],
        ),
    ];
    for (name, content, extra, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let mut args = vec![
            "--data",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "1",
        ];
        args.extend_from_slice(extra);
        let run = train(&args);
        let err = stderr(&run);
        assert_eq!(run.status.code(), Some(1), "{name}: {err}{}", stdout(&run));
        for e in *expected {
            assert!(err.contains(e), "{name}: expected {e:?} in {err}");
        }
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    let run = train(&["--data", "no/such/file.csv"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("no such file or folder"),
        "{}",
        stderr(&run)
    );
}

/// A study file of your own: `[dataset]` names a CSV beside it; the table binary trains its
/// models on it with no code, keys results by the data's fingerprint and saves models that
/// `predict` reads rows of the same table with.
#[test]
fn a_study_file_trains_on_a_users_csv() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flowers.csv"), flowers(100)).unwrap();
    let study = r#"
title = "My flowers"

[dataset]
path = "flowers.csv"
target = "kind"

[split]
kind = "stratified"
test_fraction = 0.2

[training]
optimizer = "adam"
learning_rate = 0.01
batch_size = 16
epochs = 20
inputs = "standard"
validation = 0.2

[[section]]
name = "Models"

[[section.model]]
name = "one hidden layer"
layers = "dense(16, relu); dense(2, softmax)"
published = { test_accuracy = 0.9 }
"#;
    let config = dir.path().join("study.toml");
    std::fs::write(&config, study).unwrap();
    let out = dir.path().join("out");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_fashion-baselines"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .env("BURN_DEVICE", "cpu")
            .output()
            .unwrap()
    };
    let first = run();
    let text = stdout(&first);
    assert!(first.status.success(), "{text}{}", stderr(&first));
    assert!(
        text.contains("soil: text, one-hot over 3 categories"),
        "{text}"
    );
    let trials = std::fs::read_to_string(out.join("trials.jsonl")).unwrap();
    assert!(trials.contains("flowers.csv@"), "{trials}");
    let table = std::fs::read_to_string(out.join("table.csv")).unwrap();
    assert!(table.contains("one hidden layer"), "{table}");
    let model = std::fs::read_dir(out.join("models"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let new = dir.path().join("new.csv");
    std::fs::write(&new, "petal,\"width, cm\",soil\n3.2,2.6,clay\n").unwrap();
    let predicted = predict_data(&model, &new, None);
    assert!(
        stdout(&predicted).contains("line 2: tulip"),
        "{}{}",
        stdout(&predicted),
        stderr(&predicted)
    );
    let again = run();
    assert!(
        stdout(&again).contains("1 model(s) already in"),
        "{}",
        stdout(&again)
    );
}

/// An IDX pair (the labels file found beside the images) trains like the named datasets.
#[test]
fn an_idx_pair_trains() {
    let dir = tempfile::tempdir().unwrap();
    let (items, side) = (60usize, 4usize);
    let labels: Vec<u8> = (0..items).map(|i| (i % 2) as u8).collect();
    let pixels: Vec<u8> = labels
        .iter()
        .flat_map(|&l| std::iter::repeat_n(if l == 1 { 220 } else { 30 }, side * side))
        .collect();
    let images = dir.path().join("my-images-idx3-ubyte");
    std::fs::write(
        &images,
        data::idx::encode_idx(&[items, side, side], &pixels),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("my-labels-idx1-ubyte"),
        data::idx::encode_idx(&[items], &labels),
    )
    .unwrap();
    let out = dir.path().join("model");
    let run = train(&[
        "--data",
        images.to_str().unwrap(),
        "--layers",
        "8",
        "--epochs",
        "40",
        "--learning-rate",
        "0.01",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = stdout(&run);
    assert!(run.status.success(), "{text}{}", stderr(&run));
    assert!(text.contains("48 training and 12 test items"), "{text}");
    assert!(figure(&text, "test accuracy") == 1.0, "{text}");
    std::fs::remove_file(dir.path().join("my-labels-idx1-ubyte")).unwrap();
    let run = train(&[
        "--data",
        images.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        stderr(&run).contains("my-labels-idx1-ubyte is missing"),
        "{}",
        stderr(&run)
    );
}
