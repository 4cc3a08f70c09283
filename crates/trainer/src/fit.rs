//! The training loop: mini-batch gradient descent over in-memory samples with a seeded
//! shuffle, L2 regularisation, callbacks, divergence detection and per-epoch history.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bytes, Device, Int, Tensor};
use data::{Batch, BatchTargets, ItemBatcher, Samples, Targets};
use indicatif::{ProgressBar, ProgressStyle};
use models::Network;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::callbacks::{
    EarlyStopping, EarlyStoppingState, Monitor, PlateauState, ReduceLrOnPlateau,
};
use crate::checkpoint::{self, Checkpointing, LoopState, Saved, Schedule};
use crate::metrics::{argmax_rows, r2_from_sums, r2_score, total_sum_of_squares};
use crate::optim::OptimizerSpec;

/// The loss minimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Cross-entropy of the softmax of the outputs against class indices.
    CrossEntropy,
    /// Mean squared error (regression).
    Mse,
    /// Mean absolute error (regression).
    Mae,
}

/// How much `fit` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Verbosity {
    /// Nothing.
    Silent,
    /// A progress bar per epoch, then its line (Keras' `verbose=1`).
    Bar,
    /// One line per epoch (Keras' `verbose=2`).
    #[default]
    Epoch,
}

/// Everything `fit` needs besides the model and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    /// Passes over the training data.
    pub epochs: usize,
    /// Items per gradient step.
    pub batch_size: usize,
    /// Update rule and its learning rate.
    pub optimizer: OptimizerSpec,
    /// Loss minimised.
    pub loss: Loss,
    /// L2 coefficient on dense and convolution weights: the loss adds `alpha * sum(w^2)`,
    /// report 001's equation (12) with the squared Frobenius norm, and Keras' `l2(alpha)`
    /// kernel regulariser.
    #[serde(default)]
    pub l2: f64,
    /// Seed of the shuffle and the dropout masks.
    #[serde(default)]
    pub seed: u64,
    /// Optional early stopping.
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Optional learning-rate reduction on plateau.
    #[serde(default)]
    pub reduce_lr: Option<ReduceLrOnPlateau>,
    /// What to print.
    #[serde(default)]
    pub verbose: Verbosity,
    /// What the data passed as validation data is, for the progress lines: a validation
    /// part, or the test set watched for curves (then printed `test_loss`, never `val_loss`).
    #[serde(default)]
    pub held_out: HeldOut,
    /// Where to save checkpoints and resume from (not part of what the training computes,
    /// so never serialised into a result's configuration).
    #[serde(skip)]
    pub checkpoint: Option<Checkpointing>,
}

impl FitConfig {
    /// A configuration with no regularisation or callbacks.
    pub fn new(epochs: usize, batch_size: usize, optimizer: OptimizerSpec, loss: Loss) -> Self {
        FitConfig {
            epochs,
            batch_size,
            optimizer,
            loss,
            l2: 0.0,
            seed: 0,
            early_stopping: None,
            reduce_lr: None,
            verbose: Verbosity::Silent,
            held_out: HeldOut::Validation,
            checkpoint: None,
        }
    }

    /// Checks every field, naming the bad one.
    pub fn validate(&self, has_validation: bool) -> Result<(), FitError> {
        if self.epochs == 0 {
            return Err(FitError::Config("epochs must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(FitError::Config("batch size must be at least 1".into()));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(FitError::Config(format!(
                "l2 {} must be a non-negative number",
                self.l2
            )));
        }
        self.optimizer.validate()?;
        let monitors = self
            .early_stopping
            .iter()
            .map(|e| e.monitor)
            .chain(self.reduce_lr.iter().map(|r| r.monitor));
        for m in monitors {
            if m.needs_validation() && !has_validation {
                return Err(FitError::Config(format!(
                    "callback monitors {m:?}, but there is no validation set"
                )));
            }
        }
        if let Some(r) = &self.reduce_lr
            && !(r.factor > 0.0 && r.factor < 1.0)
        {
            return Err(FitError::Config(format!(
                "ReduceLROnPlateau factor {} must be in (0, 1)",
                r.factor
            )));
        }
        Ok(())
    }
}

/// One epoch of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (with dropout, as Keras reports it).
    pub loss: f64,
    /// Training accuracy (classification) or R² (regression) over the epoch's batches.
    pub score: f64,
    /// Validation loss, when there is a validation set.
    pub val_loss: Option<f64>,
    /// Validation accuracy or R².
    pub val_score: Option<f64>,
    /// Learning rate used in the epoch.
    pub lr: f64,
    /// Wall seconds of the epoch (training and validation).
    pub seconds: f64,
}

/// Why training ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// All epochs ran.
    Finished,
    /// Early stopping ended training; `best_epoch` is 1-based.
    EarlyStopped {
        /// Epoch whose monitored value was best.
        best_epoch: usize,
    },
    /// The loss became NaN or infinite in `epoch` (1-based).
    Diverged {
        /// The epoch in which it happened.
        epoch: usize,
    },
}

/// The record of a `fit`: one entry per epoch, and why it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Per-epoch figures.
    pub epochs: Vec<EpochRecord>,
    /// Why training ended.
    pub outcome: Outcome,
}

impl History {
    /// The history as CSV (`epoch,loss,score,val_loss,val_score,lr,seconds`).
    pub fn to_csv(&self) -> String {
        self.to_csv_as(HeldOut::Validation)
    }

    /// The epoch whose weights the trained model holds: with early stopping that restores
    /// its best weights, the best epoch by its monitor (as `fit` picks it), else the last.
    pub fn kept_epoch(&self, early_stopping: Option<&EarlyStopping>) -> Option<usize> {
        let last = self.epochs.last().map(|e| e.epoch);
        let Some(rule) = early_stopping.filter(|r| r.restore_best_weights) else {
            return last;
        };
        let mut best: Option<(usize, f64)> = None;
        for record in &self.epochs {
            let value = monitored(record, rule.monitor);
            if rule
                .monitor
                .improves(value, best.map(|b| b.1), rule.min_delta)
            {
                best = Some((record.epoch, value));
            }
        }
        best.map(|b| b.0).or(last)
    }

    /// Reads a history written by [`History::to_csv_as`] back, with `outcome` (which the CSV
    /// does not hold) and what its held-out columns were measured on; `Err` names the line.
    pub fn from_csv(text: &str, outcome: Outcome) -> Result<(History, HeldOut), HistoryCsvError> {
        let mut lines = text.lines();
        let header = lines.next().ok_or(HistoryCsvError {
            line: 1,
            message: "an empty history".into(),
        })?;
        let held_out = if header.contains("test_loss") {
            HeldOut::Test
        } else {
            HeldOut::Validation
        };
        let mut epochs = Vec::new();
        for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = || HistoryCsvError {
                line: i + 2,
                message: format!("{line:?} is not a history row"),
            };
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 7 {
                return Err(bad());
            }
            let num = |s: &str| s.parse::<f64>().map_err(|_| bad());
            let opt = |s: &str| (!s.is_empty()).then(|| num(s)).transpose();
            epochs.push(EpochRecord {
                epoch: f[0].parse().map_err(|_| bad())?,
                loss: num(f[1])?,
                score: num(f[2])?,
                val_loss: opt(f[3])?,
                val_score: opt(f[4])?,
                lr: num(f[5])?,
                seconds: num(f[6])?,
            });
        }
        Ok((History { epochs, outcome }, held_out))
    }

    /// As [`History::to_csv`], the held-out columns named for what they were measured on:
    /// `test_loss,test_score` when the test set stood in for validation data (report 001
    /// passed it to Keras for its curves), so the test set is never called validation.
    pub fn to_csv_as(&self, held_out: HeldOut) -> String {
        let prefix = match held_out {
            HeldOut::Validation => "val",
            HeldOut::Test => "test",
        };
        let mut out = format!("epoch,loss,score,{prefix}_loss,{prefix}_score,lr,seconds\n");
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        for e in &self.epochs {
            out.push_str(&format!(
                "{},{},{},{},{},{},{:.3}\n",
                e.epoch,
                e.loss,
                e.score,
                opt(e.val_loss),
                opt(e.val_score),
                e.lr,
                e.seconds
            ));
        }
        out
    }
}

/// What the held-out figures of a history were measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldOut {
    /// A validation part carved from the training data.
    #[default]
    Validation,
    /// The test set (watched for curves only; nothing was decided on it).
    Test,
}

impl HeldOut {
    /// `validation` or `test`, for legends and columns.
    pub fn name(self) -> &'static str {
        match self {
            HeldOut::Validation => "validation",
            HeldOut::Test => "test",
        }
    }
}

/// A trained network and how its training went.
#[derive(Debug)]
pub struct FitResult {
    /// The network (the best epoch's when early stopping restored it), ready for
    /// inference on the plain device.
    pub network: Network,
    /// Per-epoch figures and outcome.
    pub history: History,
}

/// Errors that stop `fit` before it starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    /// A configuration value out of range.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// Data that does not fit the model or the loss.
    #[error("data does not fit the model: {0}")]
    Data(String),
}

/// A history CSV that [`History::to_csv_as`] did not write: the line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct HistoryCsvError {
    /// One-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Loss and score of a network on samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean loss (without the L2 term).
    pub loss: f64,
    /// Accuracy or R².
    pub score: f64,
}

fn check_data(network: &Network, samples: &Samples, loss: Loss) -> Result<(), FitError> {
    let input = network.spec().input.len();
    if samples.item_len() != input {
        return Err(FitError::Data(format!(
            "items have {} values, the model's input has {input}",
            samples.item_len()
        )));
    }
    let outputs = network
        .spec()
        .output_shape()
        .map_err(|e| FitError::Data(e.0))?
        .len();
    match (&samples.targets, loss) {
        (Targets::Classes { classes, .. }, Loss::CrossEntropy) if classes.len() == outputs => {
            Ok(())
        }
        (Targets::Classes { classes, .. }, Loss::CrossEntropy) => Err(FitError::Data(format!(
            "{} classes, but the model has {outputs} outputs",
            classes.len()
        ))),
        (Targets::Values { width, .. }, Loss::Mse | Loss::Mae) if *width == outputs => Ok(()),
        (Targets::Values { width, .. }, Loss::Mse | Loss::Mae) => Err(FitError::Data(format!(
            "{width} target values per item, but the model has {outputs} outputs"
        ))),
        (Targets::Classes { .. }, _) => Err(FitError::Data(
            "class targets need the cross-entropy loss".into(),
        )),
        (Targets::Values { .. }, _) => Err(FitError::Data(
            "real-valued targets need a regression loss (mse or mae)".into(),
        )),
    }
}

/// The flattened inputs and targets of `indices`, built by the data crate's batcher.
fn batch_tensors(samples: &Samples, indices: &[usize], device: &Device) -> Batch<2> {
    ItemBatcher::<2>::new(&[samples.item_len()])
        .expect("one flat dimension makes rank-2 batches")
        .batch_indices(samples, indices, device)
}

/// Mean loss of `outputs` (logits or regression values) for a batch.
fn batch_loss(outputs: Tensor<2>, targets: &BatchTargets, loss: Loss) -> Tensor<1> {
    match (loss, targets) {
        (Loss::CrossEntropy, BatchTargets::Classes(classes)) => {
            let log_p = log_softmax(outputs, 1);
            let picked = log_p.gather(1, classes.clone().unsqueeze_dim(1));
            picked.mean().neg()
        }
        (Loss::Mse, BatchTargets::Values(y)) => (outputs - y.clone()).square().mean(),
        (Loss::Mae, BatchTargets::Values(y)) => (outputs - y.clone()).abs().mean(),
        _ => unreachable!("targets were checked against the loss before training"),
    }
}

/// Adds `value` to a running total that starts empty.
pub(crate) fn accumulate<T: std::ops::Add<Output = T>>(total: &mut Option<T>, value: T) {
    *total = Some(match total.take() {
        Some(sum) => sum + value,
        None => value,
    });
}

fn l2_penalty(network: &Network) -> Option<Tensor<1>> {
    let mut total = None;
    for d in network.dense_layers() {
        accumulate(&mut total, d.weight.val().square().sum());
    }
    for c in network.conv_layers() {
        accumulate(&mut total, c.weight.val().square().sum());
    }
    total
}

/// Runs the network over `samples` in batches, returning its outputs (probabilities for a
/// softmax model, raw outputs otherwise), `len() x outputs`, row-major. The weights are
/// packed once for all batches ([`Network::predictor`]), and the batches run on the compute
/// threads, handed over once rather than per operation.
pub fn predict_outputs(network: &Network, samples: &Samples, device: &Device) -> Vec<f32> {
    models::threads::on_compute_threads(|| {
        let predictor = network.predictor();
        let mut out = Vec::new();
        let indices: Vec<usize> = (0..samples.len()).collect();
        for chunk in indices.chunks(EVAL_BATCH) {
            let batch = batch_tensors(samples, chunk, device);
            let y = predictor.predict(batch.inputs);
            out.extend(y.into_data().try_into_vec_as::<f32>().unwrap_or_default());
        }
        out
    })
}

/// Batch size for inference: large, since no gradients are kept.
const EVAL_BATCH: usize = 1024;

/// Loss and score of `network` on `samples` (no dropout; batch normalisation uses its moving
/// statistics). As [`predict_outputs`], the weights are packed once and the batches run on
/// the compute threads.
pub fn evaluate(network: &Network, samples: &Samples, loss: Loss, device: &Device) -> Evaluation {
    models::threads::on_compute_threads(|| evaluate_here(network, samples, loss, device))
}

fn evaluate_here(network: &Network, samples: &Samples, loss: Loss, device: &Device) -> Evaluation {
    let predictor = network.predictor();
    let mut total_loss = 0.0;
    let mut correct = 0usize;
    let mut predictions: Vec<f32> = Vec::new();
    let indices: Vec<usize> = (0..samples.len()).collect();
    for chunk in indices.chunks(EVAL_BATCH) {
        let batch = batch_tensors(samples, chunk, device);
        let outputs = predictor.forward(batch.inputs.clone());
        let l: f64 = batch_loss(outputs.clone(), &batch.targets, loss).into_scalar::<f32>() as f64;
        total_loss += l * chunk.len() as f64;
        match &samples.targets {
            Targets::Classes { labels, .. } => {
                let width = outputs.dims()[1];
                let values: Vec<f32> = outputs
                    .into_data()
                    .try_into_vec_as::<f32>()
                    .unwrap_or_default();
                let predicted = argmax_rows(&values, width);
                correct += predicted
                    .iter()
                    .zip(chunk)
                    .filter(|(p, i)| **p == labels[**i])
                    .count();
            }
            Targets::Values { .. } => {
                predictions.extend(
                    outputs
                        .into_data()
                        .try_into_vec_as::<f32>()
                        .unwrap_or_default(),
                );
            }
        }
    }
    let n = samples.len().max(1) as f64;
    let score = match &samples.targets {
        Targets::Classes { .. } => correct as f64 / n,
        Targets::Values { values, width, .. } => r2_score(&predictions, values, *width),
    };
    Evaluation {
        loss: total_loss / n,
        score,
    }
}

fn monitored(record: &EpochRecord, monitor: Monitor) -> f64 {
    match monitor {
        Monitor::Loss => record.loss,
        Monitor::Score => record.score,
        Monitor::ValLoss => record.val_loss.unwrap_or(f64::NAN),
        Monitor::ValScore => record.val_score.unwrap_or(f64::NAN),
    }
}

fn epoch_line(r: &EpochRecord, epochs: usize, score_name: &str, held_out: HeldOut) -> String {
    let mut line = format!(
        "Epoch {}/{epochs} - {:.1}s - loss: {:.4} - {score_name}: {:.4}",
        r.epoch, r.seconds, r.loss, r.score
    );
    let prefix = match held_out {
        HeldOut::Validation => "val",
        HeldOut::Test => "test",
    };
    if let (Some(l), Some(s)) = (r.val_loss, r.val_score) {
        line.push_str(&format!(
            " - {prefix}_loss: {l:.4} - {prefix}_{score_name}: {s:.4}"
        ));
    }
    line.push_str(&format!(" - lr: {:.2e}", r.lr));
    if r.epoch < epochs {
        // The time left at this epoch's pace (early stopping may end sooner).
        let left = r.seconds * (epochs - r.epoch) as f64;
        line.push_str(&format!(" - eta: {}", clock(left)));
    }
    line
}

/// A duration as progress lines write it: `42s`, `7m05s`, `2h03m`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Trains `network` on `train` (already preprocessed), validating on `validation` after
/// each epoch. `device` is the plain device; training runs on its autodiff form. With
/// `config.checkpoint`, a checkpoint of the same identity continues where it was saved, and
/// new ones are written as training goes. On a CPU backend the training runs on one of its
/// compute threads ([`models::threads::on_compute_threads`]).
pub fn fit(
    network: Network,
    train: &Samples,
    validation: Option<&Samples>,
    config: &FitConfig,
    device: &Device,
) -> Result<FitResult, FitError> {
    models::threads::on_compute_threads(|| fit_here(network, train, validation, config, device))
}

/// [`fit`], on the calling thread.
fn fit_here(
    network: Network,
    train: &Samples,
    validation: Option<&Samples>,
    config: &FitConfig,
    device: &Device,
) -> Result<FitResult, FitError> {
    config.validate(validation.is_some())?;
    check_data(&network, train, config.loss)?;
    if let Some(v) = validation {
        check_data(&network, v, config.loss)?;
    }
    if train.is_empty() {
        return Err(FitError::Data("no training items".into()));
    }
    let mut run = Run::start(train, validation, config, device);
    let mut model = network.to_device(&run.train_device).train();
    if let Some(ckpt) = &config.checkpoint {
        model = run.resume(model, ckpt);
    }
    let mut schedule = config
        .checkpoint
        .as_ref()
        .map(|c| Schedule::new(c.interval));
    let mut outcome = Outcome::Finished;
    for epoch in run.records.len() + 1..=config.epochs {
        let record;
        (model, record) = run.epoch(model, epoch);
        if config.verbose != Verbosity::Silent {
            println!(
                "{}",
                epoch_line(&record, config.epochs, run.score_name(), config.held_out)
            );
        }
        if let Some(end) = run.end_epoch(&model, record) {
            outcome = end;
            break;
        }
        if let (Some(ckpt), Some(schedule)) = (&config.checkpoint, &mut schedule)
            && schedule.due()
        {
            run.save(&model, ckpt);
        }
    }
    Ok(run.finish(model, outcome))
}

/// A training in progress: everything the loop carries from one epoch to the next besides
/// the network itself (which the loop owns and passes by value, so that an optimizer step
/// holds its tensors' only reference and may update them in place).
struct Run<'a> {
    train: &'a Samples,
    validation: Option<&'a Samples>,
    config: &'a FitConfig,
    device: Device,
    train_device: Device,
    optimizer: ModuleOptimizer,
    shuffle_rng: ChaCha8Rng,
    dropout_rng: ChaCha8Rng,
    order: Vec<usize>,
    lr: f64,
    records: Vec<EpochRecord>,
    stopping: EarlyStoppingState,
    plateau: PlateauState,
    best_model: Option<Network>,
    /// The training targets' spread (regression): fixed, since only their order changes.
    train_ss_tot: Vec<f64>,
}

impl<'a> Run<'a> {
    fn start(
        train: &'a Samples,
        validation: Option<&'a Samples>,
        config: &'a FitConfig,
        device: &Device,
    ) -> Self {
        let train_device = device.clone().autodiff();
        let train_ss_tot = match &train.targets {
            Targets::Values { values, width, .. } => total_sum_of_squares(values, *width),
            Targets::Classes { .. } => Vec::new(),
        };
        Run {
            train,
            validation,
            config,
            device: device.clone(),
            train_device,
            optimizer: config.optimizer.build(),
            shuffle_rng: ChaCha8Rng::seed_from_u64(config.seed),
            dropout_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15),
            order: (0..train.len()).collect(),
            lr: config.optimizer.learning_rate(),
            records: Vec::new(),
            stopping: EarlyStoppingState::default(),
            plateau: PlateauState::default(),
            best_model: None,
            train_ss_tot,
        }
    }

    fn score_name(&self) -> &'static str {
        if self.train.num_classes().is_some() {
            "accuracy"
        } else {
            "r2"
        }
    }

    fn say(&self, line: &str) {
        if self.config.verbose != Verbosity::Silent {
            println!("{line}");
        }
    }

    /// Continues from the checkpoint, if there is one; one that cannot be used is reported
    /// and training starts over (a checkpoint only saves time: the run stays correct).
    fn resume(&mut self, model: Network, ckpt: &Checkpointing) -> Network {
        let restored = ckpt
            .load()
            .map_err(|e| e.to_string())
            .and_then(|saved| saved.map(|s| self.restore(&model, s)).transpose());
        match restored {
            Ok(None) => model,
            Ok(Some(resumed)) => {
                self.say(&format!(
                    "resuming from checkpoint {} after epoch {}/{}",
                    ckpt.path.display(),
                    self.records.len(),
                    self.config.epochs
                ));
                resumed
            }
            Err(why) => {
                eprintln!("warning: starting over: {why}");
                *self = Run::start(self.train, self.validation, self.config, &self.device);
                model
            }
        }
    }

    /// The loop's state from `saved`, and `model` with its weights.
    fn restore(&mut self, model: &Network, saved: Saved) -> Result<Network, String> {
        let state = saved.state;
        if state.order.len() != self.train.len() || state.records.len() > self.config.epochs {
            return Err("it was made for other data or more epochs".into());
        }
        let resumed = load_network(model.clone(), saved.model, "weights")?;
        let record = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(saved.optimizer))
            .map_err(|e| format!("unreadable optimizer state: {e}"))?;
        self.optimizer = self.config.optimizer.build().load_record(record);
        self.best_model = saved
            .best
            .map(|bytes| load_network(model.clone(), bytes, "best weights"))
            .transpose()?
            .map(|n| n.valid());
        self.shuffle_rng
            .set_word_pos(checkpoint::position_from(&state.shuffle_position)?);
        self.dropout_rng
            .set_word_pos(checkpoint::position_from(&state.dropout_position)?);
        self.order = state.order;
        self.lr = state.lr;
        self.records = state.records;
        self.stopping = state.stopping;
        self.plateau = state.plateau;
        Ok(resumed)
    }

    /// Writes a checkpoint; a failure is reported and training goes on without it.
    fn save(&self, model: &Network, ckpt: &Checkpointing) {
        let saved = self
            .saved(model, ckpt)
            .and_then(|s| ckpt.store(&s).map_err(|e| e.to_string()));
        if let Err(why) = saved {
            eprintln!("warning: no checkpoint written: {why}");
        }
    }

    fn saved(&self, model: &Network, ckpt: &Checkpointing) -> Result<Saved, String> {
        let optimizer = self
            .optimizer
            .into_bytes()
            .map_err(|e| format!("optimizer state: {e}"))?;
        Ok(Saved {
            state: LoopState {
                format: checkpoint::FORMAT,
                identity: ckpt.identity.clone(),
                label: ckpt.label.clone(),
                epochs: self.config.epochs,
                records: self.records.clone(),
                lr: self.lr,
                shuffle_position: self.shuffle_rng.get_word_pos().to_string(),
                dropout_position: self.dropout_rng.get_word_pos().to_string(),
                order: self.order.clone(),
                stopping: self.stopping.clone(),
                plateau: self.plateau.clone(),
            },
            model: network_bytes(model)?,
            optimizer: optimizer.to_vec(),
            best: self.best_model.as_ref().map(network_bytes).transpose()?,
        })
    }

    /// One pass over the shuffled training data, then the validation pass.
    fn epoch(&mut self, model: Network, epoch: usize) -> (Network, EpochRecord) {
        let start = Instant::now();
        self.order.shuffle(&mut self.shuffle_rng);
        let (model, loss, score) = self.train_pass(model, epoch);
        let val = self
            .validation
            .map(|v| evaluate(&model.valid(), v, self.config.loss, &self.device));
        let record = EpochRecord {
            epoch,
            loss,
            score,
            val_loss: val.map(|e| e.loss),
            val_score: val.map(|e| e.score),
            lr: self.lr,
            seconds: start.elapsed().as_secs_f64(),
        };
        (model, record)
    }

    /// The gradient steps of one epoch; returns the network, the mean loss and the
    /// accuracy (or R²).
    fn train_pass(&mut self, mut model: Network, epoch: usize) -> (Network, f64, f64) {
        let config = self.config;
        let bar = progress_bar(config, epoch, self.train.len().div_ceil(config.batch_size));
        // Sums stay on the device until the epoch ends: no host round trip per step.
        let mut sums = EpochSums::default();
        let order = std::mem::take(&mut self.order);
        for chunk in order.chunks(config.batch_size) {
            let batch = batch_tensors(self.train, chunk, &self.train_device);
            let outputs = model.forward(batch.inputs.clone(), Some(&mut self.dropout_rng));
            let mut loss = batch_loss(outputs.clone(), &batch.targets, config.loss);
            if config.l2 > 0.0
                && let Some(penalty) = l2_penalty(&model)
            {
                loss = loss + penalty.mul_scalar(config.l2);
            }
            sums.add(&loss, outputs, &batch.targets, chunk.len());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = self.optimizer.step(self.lr, model, grads);
            bar.inc(1);
        }
        self.order = order;
        bar.finish_and_clear();
        let (loss, score) = sums.means(self.train.len(), &self.train_ss_tot);
        (model, loss, score)
    }

    /// Records the epoch and applies the callbacks; `Some` when training ends here.
    fn end_epoch(&mut self, model: &Network, record: EpochRecord) -> Option<Outcome> {
        let epoch = record.epoch;
        let diverged = !record.loss.is_finite() || record.val_loss.is_some_and(|l| !l.is_finite());
        self.records.push(record);
        let record = self.records.last().expect("just pushed");
        if diverged {
            self.say(&format!(
                "training diverged in epoch {epoch}: the loss is not finite"
            ));
            return Some(Outcome::Diverged { epoch });
        }
        if let Some(rule) = &self.config.early_stopping {
            let (improved, stop) =
                self.stopping
                    .update(rule, epoch - 1, monitored(record, rule.monitor));
            if improved && rule.restore_best_weights {
                self.best_model = Some(model.valid());
            }
            if stop {
                return Some(Outcome::EarlyStopped {
                    best_epoch: self.stopping.best_epoch + 1,
                });
            }
        }
        if let Some(rule) = &self.config.reduce_lr {
            self.lr = self
                .plateau
                .update(rule, monitored(record, rule.monitor), self.lr);
        }
        None
    }

    fn finish(self, model: Network, outcome: Outcome) -> FitResult {
        let network = match (self.best_model, &outcome) {
            (Some(best), Outcome::EarlyStopped { .. } | Outcome::Finished) => best,
            _ => model.valid(),
        };
        FitResult {
            network,
            history: History {
                epochs: self.records,
                outcome,
            },
        }
    }
}

/// The running sums of an epoch's loss and accuracy (or squared errors), on the device.
#[derive(Default)]
struct EpochSums {
    loss: Option<Tensor<1>>,
    correct: Option<Tensor<1, Int>>,
    squared_error: Option<Tensor<2>>,
}

impl EpochSums {
    fn add(&mut self, loss: &Tensor<1>, outputs: Tensor<2>, targets: &BatchTargets, n: usize) {
        accumulate(&mut self.loss, loss.clone().detach().mul_scalar(n as f64));
        match targets {
            BatchTargets::Classes(targets) => {
                let hits = outputs
                    .detach()
                    .argmax(1)
                    .squeeze_dim::<1>(1)
                    .equal(targets.clone())
                    .int()
                    .sum();
                accumulate(&mut self.correct, hits);
            }
            BatchTargets::Values(y) => {
                let residual = outputs.detach() - y.clone();
                accumulate(&mut self.squared_error, residual.square().sum_dim(0));
            }
        }
    }

    /// Mean loss and accuracy (or R² against `ss_tot`) over `n` items.
    fn means(self, n: usize, ss_tot: &[f64]) -> (f64, f64) {
        let n = n as f64;
        let loss = self
            .loss
            .map_or(f64::NAN, |t| t.into_scalar::<f32>() as f64)
            / n;
        let score = match (self.correct, self.squared_error) {
            (Some(c), _) => c.into_scalar::<i64>() as f64 / n,
            (None, Some(ss_res)) => {
                let ss_res: Vec<f64> = ss_res
                    .into_data()
                    .try_into_vec_as::<f32>()
                    .unwrap_or_default()
                    .into_iter()
                    .map(f64::from)
                    .collect();
                r2_from_sums(&ss_res, ss_tot)
            }
            (None, None) => f64::NAN,
        };
        (loss, score)
    }
}

fn progress_bar(config: &FitConfig, epoch: usize, steps: usize) -> ProgressBar {
    if config.verbose != Verbosity::Bar {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("Epoch {epoch}/{}", config.epochs));
    bar
}

/// Burnpack bytes of a network (each parameter's id kept, so optimizer state still
/// matches after loading).
fn network_bytes(network: &Network) -> Result<Vec<u8>, String> {
    let mut store = BurnpackStore::from_bytes(None);
    network
        .save_into(&mut store)
        .map_err(|e| format!("cannot serialise the network: {e}"))?;
    store
        .get_bytes()
        .map(|b| b.to_vec())
        .map_err(|e| format!("cannot serialise the network: {e}"))
}

/// `network` with the weights (and parameter ids) of `bytes`.
fn load_network(mut network: Network, bytes: Vec<u8>, what: &str) -> Result<Network, String> {
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
    let result = network
        .load_from(&mut store)
        .map_err(|e| format!("unreadable {what}: {e}"))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(format!(
            "{what} do not match the model ({} missing, {} errors)",
            result.missing.len(),
            result.errors.len()
        ));
    }
    Ok(network)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_reads_back_from_its_csv() {
        let history = History {
            epochs: vec![
                EpochRecord {
                    epoch: 1,
                    loss: 0.5,
                    score: 0.8,
                    val_loss: Some(0.625),
                    val_score: Some(0.75),
                    lr: 0.001,
                    seconds: 1.5,
                },
                EpochRecord {
                    epoch: 2,
                    loss: 0.25,
                    score: 0.9,
                    val_loss: None,
                    val_score: None,
                    lr: 0.0001,
                    seconds: 2.0,
                },
            ],
            outcome: Outcome::Finished,
        };
        let (back, held_out) =
            History::from_csv(&history.to_csv_as(HeldOut::Test), Outcome::Finished).unwrap();
        assert_eq!(back, history);
        assert_eq!(held_out, HeldOut::Test);
        let err = History::from_csv("epoch,loss\n1,x\n", Outcome::Finished).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.to_string().starts_with("line 2: "), "{err}");
        // Restoring early stopping keeps the best validation loss's epoch; without it, the last.
        let mut rule = EarlyStopping {
            monitor: Monitor::ValLoss,
            patience: 5,
            min_delta: 0.0,
            restore_best_weights: true,
        };
        let mut three = history.clone();
        three.epochs[1].val_loss = Some(0.7);
        three.epochs.push(EpochRecord {
            epoch: 3,
            ..three.epochs[1].clone()
        });
        assert_eq!(three.kept_epoch(Some(&rule)), Some(1));
        rule.restore_best_weights = false;
        assert_eq!(three.kept_epoch(Some(&rule)), Some(3));
        assert_eq!(three.kept_epoch(None), Some(3));
    }

    #[test]
    fn epoch_lines_give_the_time_left_at_the_epochs_pace() {
        let record = |epoch| EpochRecord {
            epoch,
            loss: 0.5,
            score: 0.8,
            val_loss: Some(0.6),
            val_score: Some(0.75),
            lr: 0.001,
            seconds: 90.0,
        };
        let line = epoch_line(&record(2), 10, "accuracy", HeldOut::Validation);
        assert!(line.contains("val_accuracy: 0.7500"), "{line}");
        assert!(line.ends_with(" - eta: 12m00s"), "{line}");
        let last = epoch_line(&record(10), 10, "accuracy", HeldOut::Test);
        assert!(
            last.contains("test_loss") && !last.contains("eta"),
            "{last}"
        );
        assert_eq!(clock(42.4), "42s");
        assert_eq!(clock(7385.0), "2h03m");
    }
}
