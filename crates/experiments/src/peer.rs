//! `bench --peer`: this project and PyTorch on the same models in the same session,
//! interleaved model by model and phase by phase for several rounds, so that a change in the
//! machine's load hits both alike. PyTorch runs `scripts/bench_pytorch.py` (CPU, 2 threads,
//! `inference_mode` for inference, the same batch sizes and models) in a virtual environment
//! made on first use. Each round gives one ratio per model and phase (ours over PyTorch's
//! samples per second); the figure printed is the median over the rounds, with its spread,
//! and each side's peak resident memory. It warns when other work shares the machine: a
//! load average above half a core at the start, or more than a tenth of the CPU's time taken
//! by other processes during the run (a load average read at the end would count the
//! benchmark's own two threads).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Device;
use models::{DeviceChoice, ModelSpec, Shape, select_device};

use crate::bench::{
    BenchFlags, BenchModel, Phase, bench_inference, bench_training, median, peak_memory_mib,
    reset_peak_memory,
};

/// The threads both sides use (this machine's cores, as the README states).
const THREADS: usize = 2;

/// A 1-minute load average above this means other work shares the CPU.
const BUSY_LOAD: f64 = 0.5;

/// One model and phase over the rounds.
#[derive(Debug, Clone, Default)]
pub struct Pair {
    /// Ours, samples per second, one per round.
    pub ours: Vec<f64>,
    /// PyTorch's, one per round.
    pub peer: Vec<f64>,
    /// Peak resident memory, MiB: ours (the largest over the rounds), PyTorch's.
    pub ours_mib: Option<f64>,
    /// PyTorch's peak resident memory, MiB.
    pub peer_mib: Option<f64>,
    /// FLOPs per sample of the phase (three forward passes for a training sample).
    pub flops_per_sample: f64,
}

impl Pair {
    /// Each round's ratio, ours over PyTorch's.
    pub fn ratios(&self) -> Vec<f64> {
        self.ours
            .iter()
            .zip(&self.peer)
            .map(|(o, p)| o / p)
            .collect()
    }
}

/// The Python that runs the peer: `--peer-python`, else `out/torch-venv/bin/python`,
/// created (a virtual environment with PyTorch and NumPy from PyPI) when it cannot import
/// torch.
pub fn peer_python(flags: &BenchFlags) -> Result<PathBuf, crate::Error> {
    if let Some(p) = &flags.peer_python {
        return Ok(p.clone());
    }
    let venv = Path::new("out/torch-venv");
    let python = venv.join("bin/python");
    let has_torch = |python: &Path| {
        Command::new(python)
            .args(["-c", "import torch"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_torch(&python) {
        return Ok(python);
    }
    eprintln!(
        "PyTorch is missing: installing it into {} (python3 -m venv; pip install torch numpy)",
        venv.display()
    );
    let run = |cmd: &mut Command| -> Result<(), crate::Error> {
        let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
        match status.success() {
            true => Ok(()),
            false => Err(format!("{cmd:?} failed ({status})").into()),
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
    run(Command::new(&python).args(["-m", "pip", "install", "-q", "torch", "numpy"]))?;
    if has_torch(&python) {
        Ok(python)
    } else {
        Err(crate::Error::from(format!(
            "{} still cannot import torch",
            python.display()
        )))
    }
}

/// The 1-minute load average, where the system gives one.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Warns when the load average before the run shows other work on the machine.
fn warn_if_busy_before(out: &mut String) {
    if let Some(load) = load_average().filter(|l| *l > BUSY_LOAD) {
        warn(
            &format!("the load average at the start is {load:.2}: other work shares the CPU"),
            out,
        );
    }
}

fn warn(what: &str, out: &mut String) {
    let line = format!("warning: {what}, and the figures below are not this machine's best");
    eprintln!("{line}");
    let _ = writeln!(out, "{line}\n");
}

/// A share of the machine's CPU time above this, taken by work other than the two sides
/// being compared, means the run was disturbed.
const OTHERS_SHARE: f64 = 0.1;

/// CPU time in clock ticks, read from `/proc`: the machine's busy and total time (all
/// CPUs; steal, the hypervisor's, counts as busy), and this process's own with its
/// waited-for children (the PyTorch runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
    ours: u64,
}

impl CpuTimes {
    fn now() -> Option<Self> {
        let (busy, total) = machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let ours = process_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        Some(Self { busy, total, ours })
    }

    /// The share of the machine's time between `self` and `later` that was busy with work
    /// other than this process and its children.
    fn others_share(&self, later: &Self) -> Option<f64> {
        let total = later.total.checked_sub(self.total).filter(|t| *t > 0)?;
        let busy = later.busy.saturating_sub(self.busy);
        let ours = later.ours.saturating_sub(self.ours);
        Some(busy.saturating_sub(ours) as f64 / total as f64)
    }
}

/// Busy and total ticks from `/proc/stat`'s first line (`cpu user nice system idle iowait
/// irq softirq steal ...`; guest time is already inside user time).
fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let mut fields = stat.lines().next()?.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let t: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = t.try_into().ok()?;
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy, busy + idle + iowait))
}

/// This process's user and system ticks, its waited-for children's included, from
/// `/proc/self/stat` (fields 14-17, counted after the command name's closing bracket,
/// which may itself hold spaces).
fn process_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum()
}

/// Warns when other work took more than [`OTHERS_SHARE`] of the CPU during the run.
fn warn_if_disturbed(start: Option<CpuTimes>, out: &mut String) {
    let share = start
        .zip(CpuTimes::now())
        .and_then(|(s, e)| s.others_share(&e));
    if let Some(share) = share.filter(|s| *s > OTHERS_SHARE) {
        warn(
            &format!(
                "other work took {:.0} % of the CPU's time during the run (besides ours and \
                 PyTorch's)",
                share * 100.0
            ),
            out,
        );
    }
}

/// PyTorch's samples per second and peak memory for one model and phase.
fn peer_run(
    python: &Path,
    script: &Path,
    config: &Path,
    model: &BenchModel,
    phase: Phase,
    seconds: f64,
) -> Result<(f64, Option<f64>), crate::Error> {
    let out = tempfile_path(&model.name, phase);
    let output = Command::new(python)
        .arg(script)
        .arg("--config")
        .arg(config)
        .args([
            "--model",
            &model.name,
            "--phase",
            phase.name(),
            "--runs",
            "1",
        ])
        .args(["--seconds", &seconds.to_string()])
        .args(["--threads", &THREADS.to_string(), "--out"])
        .arg(&out)
        .output()
        .map_err(|e| crate::Error::io(python, e))?;
    if !output.status.success() {
        return Err(crate::Error::from(format!(
            "the PyTorch peer failed on {}: {}",
            model.name,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| crate::Error::io(&out, e))?;
    let _ = std::fs::remove_file(&out);
    let line: serde_json::Value = text
        .lines()
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("the PyTorch peer wrote no figure for {}", model.name))?;
    let rate = line
        .get("samples_per_s")
        .and_then(serde_json::Value::as_f64)
        .ok_or("the PyTorch peer's line has no samples_per_s")?;
    Ok((
        rate,
        line.get("peak_mib").and_then(serde_json::Value::as_f64),
    ))
}

fn tempfile_path(model: &str, phase: Phase) -> PathBuf {
    let slug: String = model
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    std::env::temp_dir().join(format!(
        "burn-reports-peer-{}-{slug}-{}.jsonl",
        std::process::id(),
        phase.name()
    ))
}

/// Our samples per second (one timed run of about `seconds`) and peak memory.
fn our_run(
    model: &BenchModel,
    spec: &ModelSpec,
    device: &Device,
    phase: Phase,
    seconds: f64,
) -> Result<(f64, Option<f64>), crate::Error> {
    reset_peak_memory();
    let runs = match phase {
        Phase::Train => bench_training(model, spec, device, 1, seconds)?,
        Phase::Inference => bench_inference(model, spec, device, 1, seconds)?,
    };
    Ok((median(&runs), peak_memory_mib()))
}

/// The pair of `name` and `phase` in `pairs`, added (with its FLOPs per sample from the
/// model's `forward` FLOPs) when it is not there yet.
fn pair_for<'a>(
    pairs: &'a mut Vec<(String, Phase, Pair)>,
    name: &str,
    phase: Phase,
    forward: f64,
) -> &'a mut Pair {
    let at = match pairs.iter().position(|(n, p, _)| n == name && *p == phase) {
        Some(i) => i,
        None => {
            let passes = if phase == Phase::Train { 3.0 } else { 1.0 };
            let pair = Pair {
                flops_per_sample: forward * passes,
                ..Pair::default()
            };
            pairs.push((name.to_string(), phase, pair));
            pairs.len() - 1
        }
    };
    &mut pairs[at].2
}

/// Per model and phase the line `ratio <model> <train|infer> <median>` with the spread,
/// both sides' samples per second and our fraction of the CPU's `peak`, and a memory line.
fn ratio_lines(pairs: &[(String, Phase, Pair)], peak: f64) -> String {
    let mut lines = String::new();
    for (name, phase, pair) in pairs {
        let ratios = pair.ratios();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), r| {
                (a.min(*r), b.max(*r))
            });
        let short = match phase {
            Phase::Train => "train",
            Phase::Inference => "infer",
        };
        let gflops = median(&pair.ours) * pair.flops_per_sample / 1e9;
        let _ = writeln!(
            lines,
            "ratio {name} {short} {:.2} ({lo:.2}-{hi:.2}; ours {:.0}, PyTorch {:.0} samples/s; \
             ours {gflops:.0} GFLOP/s, {:.2} of peak)",
            median(&ratios),
            median(&pair.ours),
            median(&pair.peer),
            gflops / peak
        );
        let mib = |m: Option<f64>| m.map_or("-".into(), |m| format!("{m:.0} MiB"));
        let _ = writeln!(
            lines,
            "memory {name} {short}: ours {}, PyTorch {}",
            mib(pair.ours_mib),
            mib(pair.peer_mib)
        );
    }
    lines
}

/// Runs the comparison and returns its report: per model and phase a line
/// `ratio <model> <train|infer> <median ours/peer>` with the spread, and the memory of both.
pub fn run(
    flags: &BenchFlags,
    models: &[BenchModel],
    config: &Path,
) -> Result<String, crate::Error> {
    let python = peer_python(flags)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_pytorch.py");
    let script = if Path::new("scripts/bench_pytorch.py").exists() {
        PathBuf::from("scripts/bench_pytorch.py")
    } else {
        script
    };
    let device = select_device(DeviceChoice::Cpu)?.device;
    let mut report = String::new();
    warn_if_busy_before(&mut report);
    let start = CpuTimes::now();
    let (peak, peak_how) = crate::cpu_peak::cpu_peak_gflops();
    let mut pairs: Vec<(String, Phase, Pair)> = Vec::new();
    for round in 1..=flags.rounds {
        for model in models {
            let [c, h, w] = model.input;
            let spec = ModelSpec::parse(&model.name, Shape::image(c, [h, w]), &model.layers)?;
            let forward = spec.forward_flops()? as f64;
            for phase in flags.phases() {
                let (ours, ours_mib) = our_run(model, &spec, &device, phase, flags.seconds)?;
                let (peer, peer_mib) =
                    peer_run(&python, &script, config, model, phase, flags.seconds)?;
                eprintln!(
                    "round {round}/{}: {} {}: ours {ours:.0}, PyTorch {peer:.0} samples/s ({:.2}x)",
                    flags.rounds,
                    model.name,
                    phase.name(),
                    ours / peer
                );
                let pair = pair_for(&mut pairs, &model.name, phase, forward);
                pair.ours.push(ours);
                pair.peer.push(peer);
                pair.ours_mib = max_of(pair.ours_mib, ours_mib);
                pair.peer_mib = max_of(pair.peer_mib, peer_mib);
            }
        }
    }
    warn_if_disturbed(start, &mut report);
    let _ = writeln!(
        report,
        "This project (flex, {THREADS} threads) against PyTorch (CPU, {THREADS} threads) on the \
         same models and batch sizes, {} interleaved round(s) of about {} s per side, model \
         and phase; each ratio is ours over PyTorch's samples per second, the median over the \
         rounds (min-max in brackets); memory is each process's peak resident set. Our \
         fraction of the CPU's peak ({peak:.0} GFLOP/s, {peak_how}) counts two FLOPs per \
         multiply-add of the dense and convolution layers, three forward passes per \
         training sample.\n",
        flags.rounds, flags.seconds
    );
    report.push_str(&ratio_lines(&pairs, peak));
    Ok(report)
}

fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_pair_each_round() {
        let pair = Pair {
            ours: vec![200.0, 300.0],
            peer: vec![100.0, 200.0],
            ..Pair::default()
        };
        assert_eq!(pair.ratios(), vec![2.0, 1.5]);
        assert_eq!(max_of(Some(1.0), None), Some(1.0));
        assert_eq!(max_of(Some(1.0), Some(3.0)), Some(3.0));
    }

    #[test]
    fn cpu_ticks_are_read_from_proc_files() {
        let stat = "cpu  100 5 20 800 10 1 2 7 0 0\ncpu0 50 2 10 400 5 0 1 3 0 0\n";
        assert_eq!(machine_ticks(stat), Some((135, 945)));
        assert_eq!(machine_ticks("intr 1 2 3\n"), None);
        assert_eq!(machine_ticks("cpu 1 2 x 4 5 6 7 8\n"), None);
        // A command name with spaces and a bracket; utime, stime, cutime, cstime = 11, 12, 13, 14.
        let own = "4242 (bench (x) y) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 20 0 2 0 99";
        assert_eq!(process_ticks(own), Some(11 + 12 + 13 + 14));
        assert_eq!(process_ticks("4242 (bench) R 1 2"), None);
    }

    #[test]
    fn others_share_leaves_out_our_own_time() {
        let start = CpuTimes {
            busy: 1_000,
            total: 5_000,
            ours: 300,
        };
        // 2,000 ticks pass; 1,500 of them busy, 1,400 of those ours or PyTorch's.
        let alone = CpuTimes {
            busy: 2_500,
            total: 7_000,
            ours: 1_700,
        };
        assert_eq!(start.others_share(&alone), Some(0.05));
        // The same run beside 600 ticks of other work (a queue, a build).
        let shared = CpuTimes {
            busy: 3_100,
            total: 7_000,
            ours: 1_700,
        };
        assert_eq!(start.others_share(&shared), Some(0.35));
        assert!(start.others_share(&shared).unwrap() > OTHERS_SHARE);
        assert_eq!(start.others_share(&start), None);
    }
}
