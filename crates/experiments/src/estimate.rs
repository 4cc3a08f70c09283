//! Time estimates for report rows not yet run: a row's training FLOPs (its layers' forward
//! FLOPs per item, three times that for a training step, once more for the validation pass,
//! times items and epochs) divided by the rate this machine reached on the committed runs of
//! the same kind of model nearest to it in size (forward FLOPs per item: a large convolution
//! keeps the cores busier than a small one; `experiments/results/*/trials.jsonl`: every
//! record keeps its layers, data, epochs run and seconds), and never less than its item passes (three per
//! training item, one per validation item, per epoch) at nearly the fastest pace per item
//! measured on that kind (its 90th percentile): a small model is bound by per-item work (data movement, batch norm,
//! dropout), not by its FLOPs. Epochs are the configured maximum, so a row that stops early
//! takes less.

use std::path::Path;

use data::DatasetName;
use models::{Layer, ModelSpec, Shape};
use search::{ResultsFile, Status, TrialRecord};
use serde_json::Value;

/// Records shorter than this are mostly start-up and evaluation: not used for rates.
const MIN_SECONDS: f64 = 5.0;

/// The two kinds of model whose rates differ most on a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// With at least one convolution.
    Convolutional,
    /// Dense layers only.
    Dense,
}

impl Kind {
    /// The kind of `spec`.
    pub fn of(spec: &ModelSpec) -> Kind {
        if spec.layers.iter().any(|l| matches!(l, Layer::Conv { .. })) {
            Kind::Convolutional
        } else {
            Kind::Dense
        }
    }

    /// `convolutional` or `dense`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Convolutional => "convolutional",
            Kind::Dense => "dense",
        }
    }
}

/// FLOPs of training `spec` for `epochs` on `train_items` items, `validation` of them held
/// out and evaluated after every epoch.
pub fn training_flops(
    spec: &ModelSpec,
    train_items: usize,
    validation: f64,
    epochs: usize,
) -> Result<f64, crate::Error> {
    let forward = spec.forward_flops()? as f64;
    let held_out = (train_items as f64 * validation).round();
    let fit = train_items as f64 - held_out;
    Ok(epochs as f64 * forward * (3.0 * fit + held_out))
}

/// Item passes of training for `epochs` on `train_items` items, `validation` of them held
/// out: three per training item (forward and backward), one per validation item.
pub fn training_passes(train_items: usize, validation: f64, epochs: usize) -> f64 {
    let held_out = (train_items as f64 * validation).round();
    epochs as f64 * (3.0 * (train_items as f64 - held_out) + held_out)
}

/// Rates measured on committed runs, per kind of model.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    convolutional: Measured,
    dense: Measured,
}

/// What the committed runs of one kind of model reached, one value per run.
#[derive(Debug, Clone, Default)]
struct Measured {
    runs: Vec<RunRate>,
}

/// One committed run's size and pace.
#[derive(Debug, Clone, Copy)]
struct RunRate {
    /// Forward FLOPs per item of its model.
    forward: f64,
    /// GFLOP/s of its training.
    gflops: f64,
    /// Item passes per second.
    passes: f64,
}

/// How many committed runs nearest in size a row's rate is the median of.
pub const NEAREST: usize = 7;

/// A rate and the number of runs it is the median of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Median GFLOP/s.
    pub gflops: f64,
    /// Runs measured.
    pub runs: usize,
}

/// `values` in ascending order.
fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// The median of `values` (not empty).
fn median(values: &[f64]) -> f64 {
    let sorted = sorted(values);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

impl Rates {
    /// The rates of every Keras-style model in the `trials.jsonl` files under `results`
    /// (one folder per table), full runs only (no `--quick` subset).
    pub fn measure(results: &Path) -> Result<Rates, crate::Error> {
        let mut rates = Rates::default();
        let mut folders: Vec<_> = std::fs::read_dir(results)
            .map_err(|e| crate::Error::io(results, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        folders.sort();
        for folder in folders {
            let path = folder.join("trials.jsonl");
            if !path.is_file() {
                continue;
            }
            let (records, _) = ResultsFile::read(&path)?;
            for record in &records {
                if let Some((kind, run)) = record_rate(record) {
                    rates.of_mut(kind).runs.push(run);
                }
            }
        }
        Ok(rates)
    }

    fn of(&self, kind: Kind) -> &Measured {
        match kind {
            Kind::Convolutional => &self.convolutional,
            Kind::Dense => &self.dense,
        }
    }

    fn of_mut(&mut self, kind: Kind) -> &mut Measured {
        match kind {
            Kind::Convolutional => &mut self.convolutional,
            Kind::Dense => &mut self.dense,
        }
    }

    /// Nearly the fastest item passes per second measured on `kind` (the 90th percentile:
    /// one record timed only after a resume is not taken for the pace): no row of that kind
    /// is estimated faster.
    pub fn fastest_passes(&self, kind: Kind) -> Option<f64> {
        let passes: Vec<f64> = self.of(kind).runs.iter().map(|r| r.passes).collect();
        let sorted = sorted(&passes);
        let n = sorted.len();
        (n > 0).then(|| sorted[((n - 1) as f64 * 0.9).round() as usize])
    }

    /// The rate of a `kind` model of `forward` FLOPs per item: the median GFLOP/s of the
    /// [`NEAREST`] runs of that kind nearest to it in forward FLOPs (on a log scale), if any
    /// run of it was measured.
    pub fn rate(&self, kind: Kind, forward: f64) -> Option<Rate> {
        let mut runs = self.of(kind).runs.clone();
        let distance = |r: &RunRate| (r.forward.ln() - forward.ln()).abs();
        runs.sort_by(|a, b| distance(a).total_cmp(&distance(b)));
        runs.truncate(NEAREST);
        let gflops: Vec<f64> = runs.iter().map(|r| r.gflops).collect();
        (!gflops.is_empty()).then(|| Rate {
            gflops: median(&gflops),
            runs: gflops.len(),
        })
    }

    /// The runs measured of `kind` and the lowest and highest GFLOP/s among them.
    pub fn span(&self, kind: Kind) -> Option<(usize, f64, f64)> {
        let gflops = sorted(
            &self
                .of(kind)
                .runs
                .iter()
                .map(|r| r.gflops)
                .collect::<Vec<_>>(),
        );
        Some((gflops.len(), *gflops.first()?, *gflops.last()?))
    }

    /// Seconds to train `flops` in `passes` item passes of a `kind` model of `forward` FLOPs
    /// per item: its FLOPs at the rate of the runs nearest in size, and at least its passes at
    /// the fastest pace per item measured.
    pub fn seconds(&self, kind: Kind, forward: f64, flops: f64, passes: f64) -> Option<f64> {
        let by_flops = self.rate(kind, forward).map(|r| flops / (r.gflops * 1e9))?;
        let by_items = self.fastest_passes(kind).map_or(0.0, |p| passes / p);
        Some(by_flops.max(by_items))
    }
}

/// Training items of a run's data key: the dataset's training split, less the test part
/// where the split cuts one from it.
pub fn train_items(data: &Value) -> Option<usize> {
    let dataset = DatasetName::parse(data.get("dataset")?.as_str()?).ok()?;
    if data.get("subset").is_some_and(|s| !s.is_null()) {
        return None; // a --quick subset: not a full run
    }
    let mut items = dataset.size().train as f64;
    if let Some(fraction) = data
        .get("split")
        .and_then(|s| s.get("test_fraction"))
        .and_then(Value::as_f64)
    {
        items -= (items * fraction).round();
    }
    Some(items as usize)
}

/// The kind, size and pace of one finished record of a Keras-style model.
fn record_rate(record: &TrialRecord) -> Option<(Kind, RunRate)> {
    if !matches!(record.status, Status::Finished | Status::EarlyStopped) {
        return None;
    }
    if record.seconds < MIN_SECONDS || record.epochs == 0 {
        return None;
    }
    let config = &record.config;
    let model = config.get("model")?;
    let input: Shape = serde_json::from_value(model.get("input")?.clone()).ok()?;
    let spec = ModelSpec::parse("rate", input, model.get("layers")?.as_str()?).ok()?;
    let training = config.get("training")?;
    let validation = training.get("validation")?.as_f64()?;
    let items = train_items(config.get("data")?)?;
    let flops = training_flops(&spec, items, validation, record.epochs).ok()?;
    let passes = training_passes(items, validation, record.epochs);
    let run = RunRate {
        forward: spec.forward_flops().ok()? as f64,
        gflops: flops / record.seconds / 1e9,
        passes: passes / record.seconds,
    };
    Some((Kind::of(&spec), run))
}

/// `45 s`, `12 min`, `3.4 h`.
pub fn duration_text(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 90.0 * 60.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_flops_count_three_passes_for_fitting_and_one_for_validation() {
        let spec =
            ModelSpec::parse("m", Shape::Flat(10), "dense(5, relu); dense(2, softmax)").unwrap();
        let forward = (2 * 10 * 5 + 2 * 5 * 2) as f64;
        let flops = training_flops(&spec, 100, 0.2, 3).unwrap();
        assert_eq!(flops, 3.0 * forward * (3.0 * 80.0 + 20.0));
    }

    fn run(forward: f64, gflops: f64, passes: f64) -> RunRate {
        RunRate {
            forward,
            gflops,
            passes,
        }
    }

    #[test]
    fn the_rate_is_the_median_of_the_runs_nearest_in_size() {
        let mut rates = Rates::default();
        for g in [10.0, 30.0, 20.0] {
            rates.convolutional.runs.push(run(1e6, g, 0.0));
        }
        rates.dense.runs.push(run(1e5, 4.0, 0.0));
        rates.dense.runs.push(run(1e5, 6.0, 0.0));
        assert_eq!(rates.rate(Kind::Convolutional, 1e6).unwrap().gflops, 20.0);
        assert_eq!(
            rates.rate(Kind::Dense, 1e5).unwrap(),
            Rate {
                gflops: 5.0,
                runs: 2
            }
        );
        assert_eq!(rates.seconds(Kind::Dense, 1e5, 5e9, 0.0), Some(1.0));
        assert!(Rates::default().rate(Kind::Dense, 1e5).is_none());
        assert_eq!(rates.span(Kind::Convolutional), Some((3, 10.0, 30.0)));
        // Seven small runs at 10 GFLOP/s and seven large ones at 100: a large row takes the
        // large runs' rate, a small row the small runs'.
        let mut sized = Rates::default();
        for i in 0..NEAREST {
            let f = i as f64;
            sized
                .convolutional
                .runs
                .push(run(1e5 * (1.0 + f / 10.0), 10.0, 0.0));
            sized
                .convolutional
                .runs
                .push(run(1e9 * (1.0 + f / 10.0), 100.0, 0.0));
        }
        assert_eq!(sized.rate(Kind::Convolutional, 2e9).unwrap().gflops, 100.0);
        assert_eq!(sized.rate(Kind::Convolutional, 5e4).unwrap().gflops, 10.0);
        assert_eq!(sized.rate(Kind::Convolutional, 2e9).unwrap().runs, NEAREST);
        // A small model is bound by its item passes at the fastest pace measured.
        rates.dense.runs = vec![run(1e5, 5.0, 1000.0), run(1e5, 5.0, 4000.0)];
        assert_eq!(rates.fastest_passes(Kind::Dense), Some(4000.0));
        let mut many = Rates::default();
        for p in 1..=11 {
            many.convolutional
                .runs
                .push(run(1e6, 1.0, f64::from(p) * 1000.0));
        }
        many.convolutional.runs.push(run(1e6, 1.0, 1e9)); // timed only after a resume
        assert_eq!(many.fastest_passes(Kind::Convolutional), Some(11_000.0));
        assert_eq!(rates.seconds(Kind::Dense, 1e5, 5e9, 40_000.0), Some(10.0));
        assert_eq!(rates.seconds(Kind::Dense, 1e5, 5e9, 400.0), Some(1.0));
        assert_eq!(training_passes(100, 0.2, 3), 3.0 * (3.0 * 80.0 + 20.0));
    }

    #[test]
    fn train_items_follow_the_split_and_refuse_quick_subsets() {
        let official = serde_json::json!({"dataset": "fashion-mnist", "split": {"kind": "official"}, "subset": null});
        assert_eq!(train_items(&official), Some(60_000));
        let cut = serde_json::json!({"dataset": "iris", "split": {"kind": "stratified", "test_fraction": 0.2}});
        assert_eq!(train_items(&cut), Some(120));
        let quick = serde_json::json!({"dataset": "mnist", "subset": {"train": 2000}});
        assert_eq!(train_items(&quick), None);
    }

    #[test]
    fn durations_read_in_their_unit() {
        assert_eq!(duration_text(45.0), "45 s");
        assert_eq!(duration_text(720.0), "12 min");
        assert_eq!(duration_text(3.4 * 3600.0), "3.4 h");
    }
}
