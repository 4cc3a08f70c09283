//! The throughput benchmark: for each enabled backend and each model of
//! `experiments/bench.toml`, training and inference samples per second (median of several
//! timed runs after a warm-up), FLOPs per sample, the fraction of the machine's peak they
//! reach, and peak memory; beside PyTorch's figures from `scripts/bench_pytorch.py` when
//! given.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use clap::Parser;
use data::{ClassNames, Samples, Targets};
use models::{DeviceChoice, ModelSpec, Network, Shape, select_device};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use trainer::{FitConfig, Loss, OptimizerSpec, fit};

/// The benchmark's flags.
#[derive(Debug, Parser)]
#[command(about = "Training and inference throughput of the reports' models on each backend")]
pub struct BenchFlags {
    /// Models file (default: experiments/bench.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Backends: all (every enabled one), cpu or gpu.
    #[arg(long, default_value = "all")]
    pub device: String,
    /// Only the models whose name contains this text.
    #[arg(long)]
    pub only: Option<String>,
    /// Timed runs per model and phase (the median is reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Seconds one timed run should last (sets its number of steps).
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// The device's peak in GFLOP/s (default: the CPU's, measured with an FMA loop).
    #[arg(long)]
    pub peak_gflops: Option<f64>,
    /// PyTorch's figures (JSON lines written by scripts/bench_pytorch.py) to print beside.
    #[arg(long)]
    pub pytorch: Option<PathBuf>,
    /// Output folder for bench.md and bench.csv.
    #[arg(long, default_value = "out/bench")]
    pub out: PathBuf,
    /// Run PyTorch (scripts/bench_pytorch.py, CPU, 2 threads) beside this project on the
    /// CPU, interleaved model by model for --rounds rounds, and print ratio lines and peak
    /// memory (writes peer.md).
    #[arg(long)]
    pub peer: bool,
    /// Only this phase (default: both, training first).
    #[arg(long, value_enum)]
    pub phase: Option<Phase>,
    /// Rounds of the --peer comparison.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// The Python with PyTorch for --peer (default: out/torch-venv/bin/python, made with
    /// `python3 -m venv` and `pip install torch numpy` when it cannot import torch).
    #[arg(long)]
    pub peer_python: Option<PathBuf>,
}

/// A model to time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchModel {
    /// Its name in the tables.
    pub name: String,
    /// Item shape: channels, height, width.
    pub input: [usize; 3],
    /// The report's batch size.
    pub batch_size: usize,
    /// Layers in the text form.
    pub layers: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BenchFile {
    model: Vec<BenchModel>,
}

/// What is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// Forward, backward and an Adam step per batch.
    Train,
    /// Forward only, no gradients, results read back.
    Inference,
}

impl BenchFlags {
    /// The phases to time, in order.
    pub fn phases(&self) -> Vec<Phase> {
        match self.phase {
            Some(phase) => vec![phase],
            None => vec![Phase::Train, Phase::Inference],
        }
    }
}

impl Phase {
    /// `train` or `inference`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Train => "train",
            Phase::Inference => "inference",
        }
    }
}

/// One line of the benchmark.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Backend and device.
    pub backend: String,
    /// Model name.
    pub model: String,
    /// Train or inference.
    pub phase: Phase,
    /// Items per step.
    pub batch_size: usize,
    /// Samples per second of each timed run.
    pub runs: Vec<f64>,
    /// FLOPs of one sample in this phase.
    pub flops_per_sample: f64,
    /// Peak resident memory of the process during the phase, MiB (CPU backends).
    pub peak_mib: Option<f64>,
}

impl Measurement {
    /// The median samples per second.
    pub fn median(&self) -> f64 {
        median(&self.runs)
    }

    /// The slowest and fastest runs' samples per second.
    pub fn range(&self) -> (f64, f64) {
        let min = self.runs.iter().copied().fold(f64::INFINITY, f64::min);
        (min, self.runs.iter().copied().fold(0.0, f64::max))
    }
}

/// Steps in a timed run of about `seconds` when one step takes `per_step`: at least two,
/// at most `max`.
fn steps_for(seconds: f64, per_step: f64, max: usize) -> usize {
    ((seconds / per_step).round() as usize).clamp(2, max)
}

/// The median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Random items of `shape` with labels among 10 classes.
fn synthetic(shape: &[usize], items: usize, seed: u64) -> Result<Samples, crate::Error> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let len: usize = shape.iter().product();
    let features: Vec<f32> = (0..items * len).map(|_| rng.random::<f32>()).collect();
    let labels: Vec<usize> = (0..items).map(|_| rng.random_range(0..10)).collect();
    Samples::new(
        features,
        shape.to_vec(),
        Vec::new(),
        Targets::Classes {
            labels,
            classes: ClassNames::numbered(10),
        },
    )
    .map_err(crate::Error::from)
}

/// Resets the process's peak resident memory (Linux), so the next reading is this phase's.
pub(crate) fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory since the last reset, MiB (Linux).
pub(crate) fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Seconds of one `fit` epoch over `steps` batches.
fn time_training(
    spec: &ModelSpec,
    samples: &Samples,
    batch: usize,
    device: &Device,
) -> Result<f64, crate::Error> {
    let network = Network::new(spec, 0, device)?;
    let config = FitConfig::new(1, batch, OptimizerSpec::adam(0.001), Loss::CrossEntropy);
    let started = Instant::now();
    fit(network, samples, None, &config, device)?;
    Ok(started.elapsed().as_secs_f64())
}

/// Samples per second of `runs` timed training runs, each long enough to last about
/// `seconds`, after a warm-up run.
pub(crate) fn bench_training(
    model: &BenchModel,
    spec: &ModelSpec,
    device: &Device,
    runs: u32,
    seconds: f64,
) -> Result<Vec<f64>, crate::Error> {
    let b = model.batch_size;
    let warm = synthetic(&model.input, 2 * b, 1)?;
    time_training(spec, &warm, b, device)?;
    let per_step = time_training(spec, &warm, b, device)? / 2.0;
    let steps = steps_for(seconds, per_step, 500);
    let data = synthetic(&model.input, steps * b, 2)?;
    (0..runs)
        .map(|_| time_training(spec, &data, b, device).map(|s| (steps * b) as f64 / s))
        .collect()
}

/// Samples per second of `runs` timed inference runs (one batch at a time, copied to the
/// device and the probabilities read back), after a warm-up.
pub(crate) fn bench_inference(
    model: &BenchModel,
    spec: &ModelSpec,
    device: &Device,
    runs: u32,
    seconds: f64,
) -> Result<Vec<f64>, crate::Error> {
    let b = model.batch_size;
    let network = Network::new(spec, 0, device)?;
    let items = synthetic(&model.input, b, 3)?;
    let len = items.item_len();
    // Made once, as PyTorch's script makes its batch once: a step times the model alone.
    let x = Tensor::<2>::from_data(TensorData::new(items.features, [b, len]), device);
    // Weights packed once, at load, and the batches run on the compute threads, as in a
    // table's test pass (`trainer::predict_outputs`).
    let predictor = network.predictor();
    let step = || {
        let y = predictor.predict(x.clone());
        y.into_data().try_into_vec_as::<f32>().map(|v| v.len())
    };
    let timed = || -> Result<Vec<f64>, String> {
        step().map_err(|e| format!("{e:?}"))?;
        let started = Instant::now();
        step().map_err(|e| format!("{e:?}"))?;
        let per_step = started.elapsed().as_secs_f64();
        let steps = steps_for(seconds, per_step, 5000);
        let mut out = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            for _ in 0..steps {
                step().map_err(|e| format!("{e:?}"))?;
            }
            out.push((steps * b) as f64 / started.elapsed().as_secs_f64());
        }
        Ok(out)
    };
    Ok(models::threads::on_compute_threads(timed)?)
}

/// PyTorch's median samples per second for a model and phase, from the script's lines.
fn pytorch_figure(lines: &[serde_json::Value], model: &str, phase: Phase) -> Option<f64> {
    lines
        .iter()
        .find(|l| {
            l.get("model").and_then(|m| m.as_str()) == Some(model)
                && l.get("phase").and_then(|p| p.as_str()) == Some(phase.name())
        })
        .and_then(|l| l.get("samples_per_s"))
        .and_then(|v| v.as_f64())
}

/// Runs the benchmark.
pub fn run(flags: &BenchFlags) -> Result<(), crate::Error> {
    let path = flags.config.clone().unwrap_or_else(|| {
        let local = Path::new("experiments/bench.toml");
        if local.exists() {
            local.to_path_buf()
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/bench.toml")
        }
    });
    let file: BenchFile = crate::config::read(&path)?;
    if !(flags.seconds > 0.0 && flags.seconds.is_finite()) {
        return Err(crate::Error::from(format!(
            "--seconds {} must be positive",
            flags.seconds
        )));
    }
    let wanted = |m: &&BenchModel| {
        flags
            .only
            .as_ref()
            .is_none_or(|o| m.name.to_lowercase().contains(&o.to_lowercase()))
    };
    let models: Vec<BenchModel> = file.model.iter().filter(wanted).cloned().collect();
    if flags.peer {
        let report = crate::peer::run(flags, &models, &path)?;
        println!("\n{report}");
        let md = write_out(flags, "peer.md", &report)?;
        println!("written to {}", md.display());
        return Ok(());
    }
    let pytorch = read_pytorch(flags)?;
    let (cpu_peak, cpu_how) = crate::cpu_peak::cpu_peak_gflops();
    let mut results: Vec<Measurement> = Vec::new();
    for choice in device_choices(flags)? {
        let selected = match select_device(choice) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipping {choice:?}: {e}");
                continue;
            }
        };
        for model in &models {
            results.extend(measure_model(flags, model, &path, &selected, choice)?);
        }
    }
    if results.is_empty() {
        return Err("no backend could be benchmarked".into());
    }
    let table = report(&results, &pytorch, flags.peak_gflops, (cpu_peak, &cpu_how));
    println!("\n{table}");
    let md = write_out(flags, "bench.md", &table)?;
    let csv = write_out(flags, "bench.csv", &results_csv(&results, &pytorch))?;
    println!("written to {} and {}", md.display(), csv.display());
    Ok(())
}

/// Writes `text` to `name` in the output folder (made if missing); returns its path.
fn write_out(flags: &BenchFlags, name: &str, text: &str) -> Result<PathBuf, crate::Error> {
    std::fs::create_dir_all(&flags.out).map_err(|e| crate::Error::io(&flags.out, e))?;
    let path = flags.out.join(name);
    std::fs::write(&path, text).map_err(|e| crate::Error::io(&path, e))?;
    Ok(path)
}

/// The devices `--device` names: one, or every backend this build has (`all`).
fn device_choices(flags: &BenchFlags) -> Result<Vec<DeviceChoice>, crate::Error> {
    Ok(match flags.device.to_ascii_lowercase().as_str() {
        "all" => {
            let mut c = Vec::new();
            if cfg!(feature = "flex") {
                c.push(DeviceChoice::Cpu);
            }
            if cfg!(feature = "wgpu") {
                c.push(DeviceChoice::Gpu);
            }
            c
        }
        other => vec![other.parse::<DeviceChoice>()?],
    })
}

/// The lines of `--pytorch`'s JSON-lines file (none without it); a bad line is an error
/// naming it.
fn read_pytorch(flags: &BenchFlags) -> Result<Vec<serde_json::Value>, crate::Error> {
    let Some(p) = &flags.pytorch else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(p).map_err(|e| crate::Error::io(p, e))?;
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}: line {}: {e}", p.display(), i + 1))
        })
        .collect::<Result<_, _>>()?;
    Ok(lines)
}

/// Measures one model on one device, a measurement per phase asked for.
fn measure_model(
    flags: &BenchFlags,
    model: &BenchModel,
    path: &Path,
    selected: &models::SelectedDevice,
    choice: DeviceChoice,
) -> Result<Vec<Measurement>, crate::Error> {
    let [c, h, w] = model.input;
    let spec = ModelSpec::parse(&model.name, Shape::image(c, [h, w]), &model.layers)
        .map_err(|e| format!("{}: {}", path.display(), e.0))?;
    let flops = spec.forward_flops()? as f64;
    let mut measured = Vec::new();
    for phase in flags.phases() {
        eprintln!(
            "{} / {} / {}: warming up, then {} timed runs of about {} s",
            selected.description,
            model.name,
            phase.name(),
            flags.runs,
            flags.seconds
        );
        reset_peak_memory();
        let (device, runs, seconds) = (&selected.device, flags.runs, flags.seconds);
        let runs = match phase {
            Phase::Train => bench_training(model, &spec, device, runs, seconds)?,
            Phase::Inference => bench_inference(model, &spec, device, runs, seconds)?,
        };
        let m = Measurement {
            backend: selected.description.clone(),
            model: model.name.clone(),
            phase,
            batch_size: model.batch_size,
            runs,
            flops_per_sample: if phase == Phase::Train {
                3.0 * flops
            } else {
                flops
            },
            peak_mib: (choice == DeviceChoice::Cpu)
                .then(peak_memory_mib)
                .flatten(),
        };
        eprintln!("  {:.1} samples/s", m.median());
        measured.push(m);
    }
    Ok(measured)
}

/// The measurements as CSV, with PyTorch's figure where given.
fn results_csv(results: &[Measurement], pytorch: &[serde_json::Value]) -> String {
    let mut csv = String::from(
        "backend,model,phase,batch_size,samples_per_s,min,max,gflops_per_s,flops_per_sample,peak_mib,pytorch_samples_per_s\n",
    );
    for m in results {
        let gflops = m.median() * m.flops_per_sample / 1e9;
        let (min, max) = m.range();
        let _ = writeln!(
            csv,
            "\"{}\",\"{}\",{},{},{:.1},{min:.1},{max:.1},{:.2},{:.0},{},{}",
            m.backend,
            m.model,
            m.phase.name(),
            m.batch_size,
            m.median(),
            gflops,
            m.flops_per_sample,
            m.peak_mib.map_or(String::new(), |p| format!("{p:.0}")),
            pytorch_figure(pytorch, &m.model, m.phase).map_or(String::new(), |p| format!("{p:.1}"))
        );
    }
    csv
}

/// The Markdown table of the measurements.
fn report(
    results: &[Measurement],
    pytorch: &[serde_json::Value],
    peak_override: Option<f64>,
    (cpu_peak, cpu_how): (f64, &str),
) -> String {
    let mut out = String::from(
        "| backend | model | phase | batch | samples/s (median) | min-max | GFLOP/s | fraction of peak | peak memory |",
    );
    if !pytorch.is_empty() {
        out.push_str(" PyTorch samples/s | ratio |");
    }
    out.push_str("\n|---|---|---|---|---|---|---|---|---|");
    if !pytorch.is_empty() {
        out.push_str("---|---|");
    }
    out.push('\n');
    for m in results {
        let gflops = m.median() * m.flops_per_sample / 1e9;
        let peak = peak_override.or((m.peak_mib.is_some()).then_some(cpu_peak));
        let (min, max) = m.range();
        let _ = write!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.1}-{:.1} | {:.2} | {} | {} |",
            m.backend,
            m.model,
            m.phase.name(),
            m.batch_size,
            m.median(),
            min,
            max,
            gflops,
            peak.map_or("-".into(), |p| format!("{:.3}", gflops / p)),
            m.peak_mib.map_or("-".into(), |p| format!("{p:.0} MiB")),
        );
        if !pytorch.is_empty() {
            match pytorch_figure(pytorch, &m.model, m.phase) {
                Some(p) => {
                    let _ = write!(out, " {p:.1} | {:.2}x |", m.median() / p);
                }
                None => out.push_str(" - | - |"),
            }
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nFLOPs per sample: two per multiply-add of the dense and convolution layers; a \
         training sample counts three forward passes. CPU peak: {cpu_peak:.0} GFLOP/s, \
         {cpu_how}{}.",
        peak_override.map_or(String::new(), |p| format!(
            "; fractions use --peak-gflops {p}"
        ))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn pytorch_lines_are_matched_by_model_and_phase() {
        let lines = vec![
            serde_json::json!({"model": "m", "phase": "train", "samples_per_s": 100.0}),
            serde_json::json!({"model": "m", "phase": "inference", "samples_per_s": 900.0}),
        ];
        assert_eq!(pytorch_figure(&lines, "m", Phase::Train), Some(100.0));
        assert_eq!(pytorch_figure(&lines, "m", Phase::Inference), Some(900.0));
        assert_eq!(pytorch_figure(&lines, "x", Phase::Train), None);
    }
}
