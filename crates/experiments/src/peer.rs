//! `bench --peer`: this project and PyTorch on the same models in the same session,
//! interleaved model by model and phase by phase for several rounds, so that a change in the
//! machine's load hits both alike. PyTorch runs `scripts/bench_pytorch.py` (CPU, 2 threads,
//! `inference_mode` for inference, the same batch sizes and models) in a virtual environment
//! made on first use. Each round gives one ratio per model and phase (ours over PyTorch's
//! samples per second); the figure printed is the median over the rounds, with its spread,
//! and each side's peak resident memory. It warns when other work shares the machine
//! (`models::cpu_load`): a load average above half a core at the start, or more than a
//! tenth of the CPU's time taken by other processes during the run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Device;
use models::cpu_load;
use models::{DeviceChoice, ModelSpec, Shape, select_device};

use crate::bench::{
    BenchFlags, BenchModel, Phase, bench_inference, bench_training, median, peak_memory_mib,
    reset_peak_memory,
};

/// The threads both sides use (this machine's cores, as the README states).
const THREADS: usize = 2;

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

/// A warning on stderr at once and in the report above the figures.
fn warn(line: &str, out: &mut String) {
    eprintln!("{line}");
    let _ = writeln!(out, "{line}\n");
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
    let (watch, busy) = cpu_load::Watch::start();
    if let Some(busy) = busy {
        warn(&busy, &mut report);
    }
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
    if let Some(disturbed) = watch.disturbed() {
        warn(&disturbed, &mut report);
    }
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
}
