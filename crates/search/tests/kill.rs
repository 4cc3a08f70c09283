//! A real `grid run` process killed mid-search (SIGKILL, or SIGINT as Ctrl-C sends) keeps
//! every trial it finished; running the same command again skips them, says how many, and
//! completes the grid with no trial twice.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use search::ResultsFile;

const GRID: &str = r#"
hidden_layer = [[8], [6, 4]]
eta = [0.01, 0.03, 0.1]
mu = [0.0, 0.5]
alpha = [0.0, 0.001]
epoch = [300]
batch_size = [8]
"#;
const TRIALS: usize = 24;

fn grid_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_grid"));
    command
        .args([
            "run",
            "--dataset",
            "iris",
            "--one-by-one",
            "--jobs",
            "1",
            "--quiet",
        ])
        .arg("--grid")
        .arg(dir.join("grid.toml"))
        .arg("--results")
        .arg(dir.join("results.jsonl"))
        .arg("--data-dir")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Ctrl-C's signal as a terminal delivers it: a shell that started this test in the
    // background may have left SIGINT ignored, and children inherit that.
    // SAFETY: `signal` is async-signal-safe, as code between fork and exec must be.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    command
}

fn complete_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.matches('\n').count())
        .unwrap_or(0)
}

/// Starts a search, waits until at least two trials are on disk, and stops it with `stop`.
fn interrupted_search(dir: &Path, stop: impl FnOnce(&mut Child)) -> usize {
    std::fs::write(dir.join("grid.toml"), GRID).unwrap();
    let mut child = grid_command(dir).spawn().unwrap();
    let started = Instant::now();
    while complete_lines(&dir.join("results.jsonl")) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no trial finished in two minutes"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the search ended before it was stopped: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(&mut child);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the search was stopped, not finished");
    let kept = ResultsFile::open(&dir.join("results.jsonl"))
        .expect("a killed search leaves a readable results file")
        .records
        .len();
    assert!(
        (2..TRIALS).contains(&kept),
        "{kept} trials kept of {TRIALS}"
    );
    kept
}

fn resume_and_check(dir: &Path, kept: usize) {
    let out = grid_command(dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The killed run may have finished one more trial after we counted: at least `kept`.
    let line = stdout
        .lines()
        .find(|l| l.contains("already in"))
        .unwrap_or_else(|| panic!("no resume line in:\n{stdout}"));
    let skipped: usize = line
        .split(", ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the skipped count in {line:?}"));
    assert!(skipped >= kept, "{line}");
    let records = ResultsFile::open(&dir.join("results.jsonl"))
        .unwrap()
        .records;
    assert_eq!(records.len(), TRIALS);
    let keys: HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys.len(), TRIALS, "no trial recorded twice");
}

#[test]
fn sigkill_loses_only_trials_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let kept = interrupted_search(dir.path(), |child| child.kill().unwrap());
    resume_and_check(dir.path(), kept);
}

#[test]
fn ctrl_c_loses_only_trials_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let kept = interrupted_search(dir.path(), |child| {
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    });
    resume_and_check(dir.path(), kept);
}
