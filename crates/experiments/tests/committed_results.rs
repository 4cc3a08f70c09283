//! The committed diabetes results are what main computes: the study reruns (its data is in
//! the repository) and every committed trial is found under the same key with the same
//! figures. A change of training that moves them, without a numerics-version bump and a
//! refreshed commit, fails here.

use std::path::Path;
use std::process::Command;

use search::ResultsFile;

#[test]
fn the_committed_diabetes_results_are_what_main_computes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_diabetes"))
        .arg("--out")
        .arg(dir.path())
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ours, _) = ResultsFile::read(&dir.path().join("trials.jsonl")).unwrap();
    let (committed, _) =
        ResultsFile::read(&root.join("experiments/results/diabetes/trials.jsonl")).unwrap();
    assert_eq!(ours.len(), 128);
    assert_eq!(committed.len(), ours.len());
    for c in &committed {
        let o = ours.iter().find(|o| o.key == c.key).unwrap_or_else(|| {
            panic!(
                "committed trial {} ({:?}) has another key now",
                c.index, c.params
            )
        });
        for (what, a, b) in [
            ("test R²", o.test_score, c.test_score),
            ("validation R²", o.val_score, c.val_score),
        ] {
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(
                (a - b).abs() <= 1e-4,
                "trial {:?}: {what} {a} now, {b} committed",
                c.params
            );
        }
    }
}
