//! Trains several of report 001's MLPs at once as one stacked model. Members share the
//! layer sizes, activation, batch size and epoch count; each keeps its own learning rate,
//! momentum, L2 coefficient, initial weights and shuffle. A tiny MLP's step is mostly fixed
//! cost, which this pays once per group instead of once per trial.
//!
//! Two engines do the arithmetic ([`StackedEngine`]): on flex, [`flex_ops::stacked_mlp`]'s
//! loops over plain buffers (`flex_loops`); on every backend, Burn's operations on weights
//! stacked along a member dimension, one batched product per layer (`burn_ops`). The
//! members are independent: each member's gradient is that of its own loss, and the result
//! is what [`Mlp::fit`] gives each member alone (up to floating-point summation order;
//! tested for both engines).

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use data::{Samples, Targets};
use models::Network;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::estimator::{ModelCard, ModelError, TrainedModel};
use crate::fit::{EpochRecord, History, Outcome};
use crate::metrics::{r2_from_sums, total_sum_of_squares};
use crate::mlp::Mlp;
use data::Task;

mod burn_ops;
#[cfg(feature = "flex")]
mod flex_loops;

/// The version of stacked training's numbers ([`Mlp::fit_stacked`]), as
/// [`crate::NUMERICS_VERSION`] is of `fit`'s: report 001's MLP grids are keyed by both.
/// Version 2: flex trains stacked members with [`flex_ops::stacked_mlp`]'s loops (sums in
/// another order than Burn's batched products).
pub const STACKED_NUMERICS_VERSION: u32 = 2;

/// Items per evaluation chunk: bounds the memory of a large validation set.
const EVAL_ITEMS: usize = 1024;

/// Which arithmetic trains a stacked group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StackedEngine {
    /// The fastest for the device: on flex, [`flex_ops::stacked_mlp`]'s loops (for every
    /// activation but softmax); elsewhere Burn's operations.
    #[default]
    Fastest,
    /// Burn's operations with autodiff on any device.
    BurnOps,
}

/// A member's sums over the items of an epoch or an evaluation: its loss (per item,
/// summed), and its correct predictions (one value) or squared residuals (one per output
/// column).
#[derive(Debug, Clone, Default)]
struct MemberSums {
    loss: f64,
    fit: Vec<f64>,
}

impl MemberSums {
    /// Adds `fit` to the member's.
    fn add_fit(&mut self, fit: &[f64]) {
        self.fit.resize(fit.len().max(self.fit.len()), 0.0);
        for (sum, f) in self.fit.iter_mut().zip(fit) {
            *sum += f;
        }
    }
}

/// A member's weights `[inputs, units]` and biases `[units]`, layer by layer.
type MemberLayers = Vec<(Vec<f32>, Vec<f32>)>;

/// What trains the members' weights: the engines.
trait Engine {
    /// One epoch in batches of `batch_size` items, member `i` taking them in `orders[i]`:
    /// each member's sums (the loss with the L2 term). Parked members' sums are unused.
    fn train_epoch(
        &mut self,
        train: &Samples,
        orders: &[Vec<usize>],
        batch_size: usize,
    ) -> Result<Vec<MemberSums>, ModelError>;

    /// Each member's sums on `samples` (the loss without the L2 term).
    fn evaluate(&mut self, samples: &Samples) -> Result<Vec<MemberSums>, ModelError>;

    /// Takes `members` out of training (they diverged), their weights kept as they are.
    fn park(&mut self, members: &[usize]);

    /// Member `i`'s weights `[inputs, units]` and biases `[units]`, layer by layer.
    fn member_weights(&self, i: usize) -> MemberLayers;
}

/// The engine `choice` gives for `members` on `device`.
fn engine(
    choice: StackedEngine,
    members: &[Mlp],
    networks: &[Network],
    device: &Device,
) -> Result<Box<dyn Engine>, ModelError> {
    #[cfg(feature = "flex")]
    if choice == StackedEngine::Fastest
        && flex_ops::kernels::is_flex(device)
        && let Some(loops) = flex_loops::FlexLoops::new(members, networks)?
    {
        return Ok(Box::new(loops));
    }
    #[cfg(not(feature = "flex"))]
    let _ = choice;
    Ok(Box::new(burn_ops::BurnOps::new(members, networks, device)))
}

/// Each member's mean loss and accuracy, or R² against `samples`' targets, from its sums
/// over `samples`.
fn figures(sums: &[MemberSums], samples: &Samples) -> (Vec<f64>, Vec<f64>) {
    let n = samples.len().max(1) as f64;
    let losses = sums.iter().map(|s| s.loss / n).collect();
    let scores = match &samples.targets {
        Targets::Classes { .. } => sums
            .iter()
            .map(|s| s.fit.first().map_or(f64::NAN, |h| h / n))
            .collect(),
        Targets::Values { values, width, .. } => {
            let ss_tot = total_sum_of_squares(values, *width);
            sums.iter().map(|s| r2_from_sums(&s.fit, &ss_tot)).collect()
        }
    };
    (losses, scores)
}

/// Checks that the members can train together and returns what they share.
fn shared_shape(members: &[Mlp]) -> Result<&Mlp, ModelError> {
    let first = members
        .first()
        .ok_or_else(|| ModelError::Input("no models to train".into()))?;
    for (i, m) in members.iter().enumerate().skip(1) {
        let differs = if m.hidden_layers != first.hidden_layers {
            Some("hidden_layer")
        } else if m.activation != first.activation {
            Some("activation")
        } else if m.batch_size != first.batch_size {
            Some("batch_size")
        } else if m.epochs != first.epochs {
            Some("epoch")
        } else if m.task != first.task {
            Some("task")
        } else {
            None
        };
        if let Some(field) = differs {
            return Err(ModelError::Input(format!(
                "models 0 and {i} differ in {field}: stacked models must share their layers, \
                 activation, batch size, epochs and task"
            )));
        }
    }
    Ok(first)
}

/// The checks `fit_stacked` makes before training: a batch size, training items, and each
/// member's learning rate, momentum and L2 within their ranges.
fn check_members(members: &[Mlp], first: &Mlp, train: &Samples) -> Result<(), ModelError> {
    if first.batch_size == 0 {
        return Err(ModelError::Input("batch_size must be at least 1".into()));
    }
    if train.is_empty() {
        return Err(ModelError::Input("no training items".into()));
    }
    for (i, m) in members.iter().enumerate() {
        let valid = m.learning_rate.is_finite()
            && m.learning_rate > 0.0
            && m.momentum.is_finite()
            && (0.0..1.0).contains(&m.momentum)
            && m.l2.is_finite()
            && m.l2 >= 0.0;
        if !valid {
            return Err(ModelError::Input(format!(
                "model {i}: learning_rate must be positive, momentum in [0, 1) and l2 at \
                 least 0 (got learning_rate {}, momentum {}, l2 {})",
                m.learning_rate, m.momentum, m.l2
            )));
        }
    }
    Ok(())
}

/// A stacked training in progress: the engine, each member's shuffle, history and whether
/// it has diverged.
struct StackedRun {
    engine: Box<dyn Engine>,
    /// Each member's learning rate (for its history).
    learning_rates: Vec<f64>,
    shuffles: Vec<ChaCha8Rng>,
    orders: Vec<Vec<usize>>,
    histories: Vec<History>,
    diverged: Vec<bool>,
}

impl StackedRun {
    fn new(members: &[Mlp], engine: Box<dyn Engine>, train: &Samples) -> Self {
        let k = members.len();
        StackedRun {
            engine,
            learning_rates: members.iter().map(|m| m.learning_rate).collect(),
            shuffles: members
                .iter()
                .map(|m| ChaCha8Rng::seed_from_u64(m.seed))
                .collect(),
            orders: vec![(0..train.len()).collect(); k],
            histories: (0..k)
                .map(|_| History {
                    epochs: Vec::new(),
                    outcome: Outcome::Finished,
                })
                .collect(),
            diverged: vec![false; k],
        }
    }

    /// One epoch over `train` (each member in its own shuffled order): each member's mean
    /// loss and its accuracy or R² on the training batches.
    fn train_epoch(
        &mut self,
        train: &Samples,
        batch_size: usize,
    ) -> Result<(Vec<f64>, Vec<f64>), ModelError> {
        for (order, rng) in self.orders.iter_mut().zip(&mut self.shuffles) {
            order.shuffle(rng);
        }
        let sums = self.engine.train_epoch(train, &self.orders, batch_size)?;
        Ok(figures(&sums, train))
    }

    /// Appends the epoch to each live member's history; returns the members whose loss (or
    /// validation loss) stopped being finite, now recorded as diverged.
    fn record(
        &mut self,
        epoch: usize,
        (losses, scores): (Vec<f64>, Vec<f64>),
        val: Option<&(Vec<f64>, Vec<f64>)>,
        seconds: f64,
    ) -> Vec<usize> {
        let mut newly_diverged = Vec::new();
        let live: Vec<usize> = (0..self.diverged.len())
            .filter(|&i| !self.diverged[i])
            .collect();
        for i in live {
            let record = EpochRecord {
                epoch,
                loss: losses[i],
                score: scores[i],
                val_loss: val.map(|v| v.0[i]),
                val_score: val.map(|v| v.1[i]),
                lr: self.learning_rates[i],
                seconds,
            };
            let bad = !record.loss.is_finite() || record.val_loss.is_some_and(|l| !l.is_finite());
            self.histories[i].epochs.push(record);
            if bad {
                self.histories[i].outcome = Outcome::Diverged { epoch };
                self.diverged[i] = true;
                newly_diverged.push(i);
            }
        }
        newly_diverged
    }

    /// Each member's trained model (its final weights, or those at divergence) and history.
    fn into_models(
        mut self,
        networks: Vec<Network>,
        specs: Vec<models::ModelSpec>,
        card: &ModelCard,
        device: &Device,
    ) -> Vec<(TrainedModel, History)> {
        let histories = std::mem::take(&mut self.histories);
        let mut results = Vec::with_capacity(networks.len());
        for (i, ((mut network, spec), history)) in
            networks.into_iter().zip(specs).zip(histories).enumerate()
        {
            let weights = self.engine.member_weights(i);
            for (dense, (w, b)) in network.dense_layers_mut().iter_mut().zip(weights) {
                let [inputs, units] = dense.weight.dims();
                dense.weight = Param::from_tensor(Tensor::from_data(
                    TensorData::new(w, [inputs, units]),
                    device,
                ));
                dense.bias =
                    Param::from_tensor(Tensor::from_data(TensorData::new(b, [units]), device));
            }
            let mut member_card = card.clone();
            member_card.spec = spec;
            results.push((
                TrainedModel::new(member_card, network, device.clone()),
                history,
            ));
        }
        results
    }
}

impl Mlp {
    /// Trains `members` together as one stacked model on raw `train` (standardised here),
    /// validating each on `validation` after every epoch. They must share `hidden_layers`,
    /// `activation`, `batch_size`, `epochs` and `task`; each keeps its own `learning_rate`,
    /// `momentum`, `l2`, `init_scale` and `seed`. Returns each member's trained model and
    /// history, in order. A member whose loss stops being finite is recorded as diverged at
    /// that epoch and the others go on.
    pub fn fit_stacked(
        members: &[Mlp],
        train: &Samples,
        validation: Option<&Samples>,
        device: &Device,
    ) -> Result<Vec<(TrainedModel, History)>, ModelError> {
        Self::fit_stacked_with(StackedEngine::Fastest, members, train, validation, device)
    }

    /// [`Mlp::fit_stacked`] with the arithmetic chosen by `choice`.
    pub fn fit_stacked_with(
        choice: StackedEngine,
        members: &[Mlp],
        train: &Samples,
        validation: Option<&Samples>,
        device: &Device,
    ) -> Result<Vec<(TrainedModel, History)>, ModelError> {
        let first = shared_shape(members)?;
        check_members(members, first, train)?;
        let specs = members
            .iter()
            .map(|m| m.spec_for(train))
            .collect::<Result<Vec<_>, _>>()?;
        let card = ModelCard::fit(specs[0].clone(), train, first.preprocessing())?;
        let train_ready = card.prepare(train, true)?;
        let val_ready = validation.map(|v| card.prepare(v, true)).transpose()?;

        // Each member starts from exactly the weights `Mlp::fit` would give it.
        let networks = members
            .iter()
            .zip(&specs)
            .map(|(m, spec)| Network::new(spec, m.seed, device))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ModelError::Input(e.0))?;
        let engine = engine(choice, members, &networks, device)?;
        let mut run = StackedRun::new(members, engine, &train_ready);
        for epoch in 1..=first.epochs {
            let start = std::time::Instant::now();
            let train_figures = run.train_epoch(&train_ready, first.batch_size)?;
            let val = match &val_ready {
                Some(v) => Some(figures(&run.engine.evaluate(v)?, v)),
                None => None,
            };
            let seconds = start.elapsed().as_secs_f64();
            let newly_diverged = run.record(epoch, train_figures, val.as_ref(), seconds);
            run.engine.park(&newly_diverged);
            if run.diverged.iter().all(|&d| d) {
                break;
            }
        }
        Ok(run.into_models(networks, specs, &card, device))
    }

    /// The layer list for `train`'s inputs and targets.
    pub(crate) fn spec_for(&self, train: &Samples) -> Result<models::ModelSpec, ModelError> {
        let outputs = match (&train.targets, self.task) {
            (Targets::Classes { classes, .. }, Task::Classification) => classes.len(),
            (Targets::Values { width, .. }, Task::Regression) => *width,
            (_, task) => {
                return Err(ModelError::Input(format!(
                    "task {task:?} does not match the data's targets"
                )));
            }
        };
        let input = models::Shape::from_dims(&train.shape).map_err(|e| ModelError::Input(e.0))?;
        Ok(self.spec(input, outputs))
    }
}
