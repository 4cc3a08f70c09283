//! Benchmark: report 001's iris grid (540 MLPs, 300 epochs each, `experiments/iris.toml`),
//! and with `--peer` against scikit-learn on the same grid in the same session
//! (`scripts/sklearn_iris.py`, MLPClassifier with joblib on the same cores), interleaved for
//! `--rounds` rounds.
//!
//! ```text
//! cargo run --release -p search --example iris_grid_bench -- [--jobs N] [--one-by-one] [--limit N]
//!     [--peer [--rounds N] [--peer-python PATH]]
//! ```
//!
//! Prints the wall time, trials per second and the five best trials; with `--peer`, each
//! round's times and `ratio iris-grid <median ours/scikit-learn time>` with the spread (the
//! Python defaults to `out/torch-venv/bin/python`, made with scikit-learn on first use),
//! and a warning when other work shared the machine, as `bench --peer` gives.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use data::{DataDirs, DatasetName, HoldOut, stratified_split};
use models::cpu_load;
use search::{
    Grid, MLP_COLUMNS, MlpSearch, RankBy, ResultsFile, SearchOptions, SearchSummary, Table, Trial,
    best,
};
use trainer::{Mlp, Task};

/// What the command line asked for.
struct Args {
    jobs: usize,
    stacked: bool,
    limit: usize,
    peer: bool,
    rounds: usize,
    peer_python: Option<PathBuf>,
}

/// mimalloc, as the `iris` binary uses (see the `experiments` crate), so that the grid is
/// timed as a user runs it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Args, Box<dyn std::error::Error>> {
    let mut a = Args {
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        stacked: true,
        limit: usize::MAX,
        peer: false,
        rounds: 3,
        peer_python: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--jobs" => a.jobs = value("--jobs")?.parse()?,
            "--limit" => a.limit = value("--limit")?.parse()?,
            "--rounds" => a.rounds = value("--rounds")?.parse()?,
            "--peer-python" => a.peer_python = Some(value("--peer-python")?.into()),
            "--one-by-one" => a.stacked = false,
            "--peer" => a.peer = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if a.jobs == 0 || a.rounds == 0 {
        return Err("--jobs and --rounds must be at least 1".into());
    }
    Ok(a)
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let config_path = repository().join("experiments/iris.toml");
    let config: toml::Table = toml::from_str(&std::fs::read_to_string(config_path)?)?;
    let grid = Grid::from_value(serde_json::to_value(
        config
            .get("grid")
            .ok_or("experiments/iris.toml has no [grid]")?,
    )?)?;
    let mut trials = grid.trials();
    trials.truncate(args.limit);
    if !args.peer {
        return ours(&args, &trials, true).map(|_| ());
    }
    let python = peer_python(&args)?;
    let (watch, busy) = cpu_load::Watch::start();
    if let Some(line) = busy {
        println!("{line}");
    }
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let t = ours(&args, &trials, round == args.rounds)?.seconds;
        let p = sklearn_seconds(&python, &args, trials.len())?;
        println!(
            "round {round}/{}: ours {t:.1} s, scikit-learn {p:.1} s ({:.3})",
            args.rounds,
            t / p
        );
        mine.push(t);
        theirs.push(p);
    }
    if let Some(line) = watch.disturbed() {
        println!("{line}");
    }
    let mut ratios: Vec<f64> = mine.iter().zip(&theirs).map(|(a, b)| a / b).collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "ratio iris-grid time {:.3} ({:.3}-{:.3} over {} rounds; ours/scikit-learn, lower is \
         faster; {} trials, {} worker(s) each side)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        args.rounds,
        trials.len(),
        args.jobs
    );
    Ok(())
}

/// The Python with scikit-learn: `--peer-python`, else `out/torch-venv/bin/python`, made
/// (and given scikit-learn) when it cannot import it.
fn peer_python(args: &Args) -> Result<PathBuf, Box<dyn std::error::Error>> {
    if let Some(p) = &args.peer_python {
        return Ok(p.clone());
    }
    let venv = repository().join("out/torch-venv");
    let python = venv.join("bin/python");
    let has = |python: &Path| {
        Command::new(python)
            .args(["-c", "import sklearn, joblib"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has(&python) {
        return Ok(python);
    }
    eprintln!(
        "scikit-learn is missing: installing it into {}",
        venv.display()
    );
    if !python.exists() {
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?;
    }
    Command::new(&python)
        .args(["-m", "pip", "install", "-q", "scikit-learn"])
        .status()?;
    if has(&python) {
        Ok(python)
    } else {
        Err(format!("{} cannot import scikit-learn", python.display()).into())
    }
}

/// scikit-learn's wall seconds for the grid's first `trials` trials.
fn sklearn_seconds(
    python: &Path,
    args: &Args,
    trials: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let output = Command::new(python)
        .arg(repository().join("scripts/sklearn_iris.py"))
        .args([
            "--jobs",
            &args.jobs.to_string(),
            "--limit",
            &trials.to_string(),
        ])
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "scripts/sklearn_iris.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let line: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    line.get("seconds")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| "scripts/sklearn_iris.py printed no seconds".into())
}

/// One run of the grid; prints its summary, and the best trials when `report`.
fn ours(
    args: &Args,
    trials: &[Trial],
    report: bool,
) -> Result<SearchSummary, Box<dyn std::error::Error>> {
    let all = DataDirs::new(None).load(DatasetName::Iris)?.train;
    let split = stratified_split(
        all.targets.labels().unwrap_or(&[]),
        HoldOut::Fraction(0.2),
        0,
    )?;
    let (train, test) = (all.subset(&split.train), all.subset(&split.held_out));
    let defaults = Mlp::new(Task::Classification, 0);
    // The CPU device as the `iris` binary chooses it (flex, freed memory kept for reuse).
    let device = models::select_device(models::DeviceChoice::Cpu)?.device;
    let mut search = MlpSearch::new(&train, defaults, device);
    search.test = Some(&test);
    search.stacked = args.stacked;

    let dir = tempfile::tempdir()?;
    let mut results = ResultsFile::open(&dir.path().join("iris.jsonl"))?;
    let options = SearchOptions {
        workers: args.jobs,
        progress: !args.peer,
        rank: RankBy::Test,
    };
    println!(
        "report 001 iris grid: {} trials, {} train / {} test, {} worker(s), {}",
        trials.len(),
        train.len(),
        test.len(),
        args.jobs,
        if args.stacked {
            "stacked"
        } else {
            "one by one"
        }
    );
    let summary = search.run(trials, &mut results, &options)?;
    let failed = results
        .records
        .iter()
        .filter(|r| matches!(r.status, search::Status::Failed { .. }))
        .count();
    let diverged = results
        .records
        .iter()
        .filter(|r| r.status == search::Status::Diverged)
        .count();
    println!(
        "{} trials in {:.1} s ({:.1} trials/s); {failed} failed, {diverged} diverged",
        summary.ran,
        summary.seconds,
        summary.ran as f64 / summary.seconds
    );
    if report {
        let top = Table::top(
            &results.records,
            5,
            &[
                MLP_COLUMNS,
                &["test_score", "train_score", "train_loss", "test_loss"],
            ]
            .concat(),
            RankBy::Test,
        );
        print!("{}", top.to_markdown());
        if let Some(b) = best(&results.records, RankBy::Test) {
            println!(
                "best test accuracy {:.4} (report Table 1: 1.00)",
                b.test_score.unwrap_or(f64::NAN)
            );
        }
    }
    Ok(summary)
}
