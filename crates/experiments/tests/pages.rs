//! A run's `index.html` opened in headless Chromium (Debian's `chromium`, which CI installs):
//! every chart image loads, and a screenshot is taken. Without Chromium the test says it was
//! not checked, unless `REQUIRE_CHROMIUM=1` (CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A study of report 004's kind on iris (committed data): named models and a small grid.
const STUDY: &str = r#"
dataset = "iris"
title = "Iris page check"

[split]
kind = "stratified"
test_fraction = 0.2

[training]
optimizer = "adam"
learning_rate = 0.01
batch_size = 16
epochs = 12
inputs = "standard"
validation = 0.25

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
"#;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(|name| Path::new("/usr/bin").join(name))
        .find(|p| p.is_file())
}

fn browse(chromium: &Path, args: &[&str], page: &Path) -> String {
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn every_chart_of_a_run_page_loads_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("study.toml");
    std::fs::write(&study, STUDY).unwrap();
    let out = dir.path().join("run");
    let run = Command::new(env!("CARGO_BIN_EXE_fashion-baselines"))
        .args([
            "--config",
            study.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .arg("--data-dir")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets"))
        .env("BURN_DEVICE", "cpu")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let page = out.join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<h1>Iris page check</h1>"), "{html}");
    let pngs = html.matches("<img src=").count();
    // The section's chart, and each model's curves and confusion matrix.
    assert!(pngs >= 5, "{pngs} images in {html}");
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var("REQUIRE_CHROMIUM").is_err(),
            "REQUIRE_CHROMIUM is set but no chromium is installed (apt-get install chromium)"
        );
        eprintln!("not checked: no chromium in /usr/bin (apt-get install chromium)");
        return;
    };
    let dom = browse(
        &chromium,
        &["--dump-dom", "--virtual-time-budget=10000"],
        &page,
    );
    assert!(
        dom.contains(&format!("data-images=\"{pngs}\"")),
        "the page did not finish loading its {pngs} images: {}",
        &dom[..dom.len().min(400)]
    );
    assert!(
        dom.contains("data-broken=\"\""),
        "broken images: {}",
        dom.split("data-broken=").nth(1).unwrap_or("")
    );
    let shot = dir.path().join("page.png");
    browse(
        &chromium,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,1600",
        ],
        &page,
    );
    let image = image::open(&shot).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), (1200, 1600));
    assert!(
        image.pixels().any(|p| p.0[2] > 150 && p.0[0] < 60),
        "no chart colour in the screenshot"
    );
}
