//! Trains several of report 001's MLPs at once as one stacked model. Members share the
//! layer sizes, activation, batch size and epoch count; each keeps its own learning rate,
//! momentum, L2 coefficient, initial weights and shuffle. Weights are stacked along a
//! leading member dimension (`[members, inputs, units]`), so a layer is one batched matrix
//! product for all members, and one optimiser step updates them all: a tiny MLP's step is
//! mostly fixed cost, which this pays once per group instead of once per trial.
//!
//! The members are independent: the loss is the sum of their losses, so each member's
//! gradient is the gradient of its own loss, and the result is what [`Mlp::fit`] gives
//! each member alone (up to floating-point summation order; tested).

use burn::module::Param;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use data::{ItemBatcher, Samples, Targets};
use models::{Activation, Network, activate};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::estimator::{ModelCard, ModelError, TrainedModel};
use crate::fit::{EpochRecord, History, Outcome, accumulate};
use crate::metrics::{r2_from_sums, total_sum_of_squares};
use crate::mlp::Mlp;
use data::Task;

/// One layer's weights for every member: `weight` is `[members, inputs, units]`, `bias`
/// `[members, 1, units]`, each with its velocity.
struct StackedLayer {
    weight: Tensor<3>,
    bias: Tensor<3>,
    weight_velocity: Tensor<3>,
    bias_velocity: Tensor<3>,
}

/// Members' targets for one batch: class indices `[members, batch, 1]` or values
/// `[members, batch, width]`.
enum StackedTargets {
    Classes(Tensor<3, Int>),
    Values(Tensor<3>),
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

/// The stacked forward pass: `[members, batch, inputs]` to `[members, batch, outputs]`
/// (logits for classification).
fn forward(layers: &[StackedLayer], input: Tensor<3>, activation: Activation) -> Tensor<3> {
    let first = input.matmul(layers[0].weight.clone()) + layers[0].bias.clone();
    after_first_product(layers, first, activation)
}

/// The stacked forward pass when every member sees the same items `[batch, inputs]`: the
/// first layer is one product with the members' weights side by side (`[inputs, members *
/// units]`), so the items are never copied once per member.
fn forward_shared(layers: &[StackedLayer], input: Tensor<2>, activation: Activation) -> Tensor<3> {
    let [batch, _] = input.dims();
    let [members, inputs, units] = layers[0].weight.dims();
    let side_by_side = layers[0]
        .weight
        .clone()
        .swap_dims(0, 1)
        .reshape([inputs, members * units]);
    let first = input
        .matmul(side_by_side)
        .reshape([batch, members, units])
        .swap_dims(0, 1)
        + layers[0].bias.clone();
    after_first_product(layers, first, activation)
}

/// The rest of the network from the first layer's product: activation between layers,
/// none after the last.
fn after_first_product(
    layers: &[StackedLayer],
    first: Tensor<3>,
    activation: Activation,
) -> Tensor<3> {
    let mut x = first;
    for layer in &layers[1..] {
        x = activate(x, activation, 2).matmul(layer.weight.clone()) + layer.bias.clone();
    }
    x
}

/// Per-member mean loss over the batch, `[members, 1, 1]`.
fn member_losses(outputs: Tensor<3>, targets: &StackedTargets) -> Tensor<3> {
    match targets {
        StackedTargets::Classes(classes) => {
            let [_, batch, _] = outputs.dims();
            log_softmax(outputs, 2)
                .gather(2, classes.clone())
                .sum_dim(1)
                .div_scalar(-(batch as f64))
        }
        StackedTargets::Values(y) => {
            let [_, batch, width] = outputs.dims();
            (outputs - y.clone())
                .square()
                .sum_dim(2)
                .sum_dim(1)
                .div_scalar((batch * width) as f64)
        }
    }
}

/// A `[members, 1, 1]` tensor of one value per member.
fn per_member(values: impl Iterator<Item = f64>, device: &Device) -> Tensor<3> {
    let v: Vec<f32> = values.map(|x| x as f32).collect();
    let k = v.len();
    Tensor::from_data(TensorData::new(v, [k, 1, 1]), device)
}

/// Gathers each member's batch (its own shuffle) into stacked inputs and targets.
fn stacked_batch(
    samples: &Samples,
    chunks: &[&[usize]],
    device: &Device,
) -> (Tensor<3>, StackedTargets) {
    let (k, batch, n) = (chunks.len(), chunks[0].len(), samples.item_len());
    let mut flat = Vec::with_capacity(k * batch * n);
    for chunk in chunks {
        for &i in *chunk {
            flat.extend_from_slice(samples.item(i));
        }
    }
    let inputs = Tensor::from_data(TensorData::new(flat, [k, batch, n]), device);
    (inputs, stacked_batch_targets(samples, chunks, device))
}

/// Each member's targets for its batch: class indices `[members, batch, 1]` or values
/// `[members, batch, width]`.
fn stacked_batch_targets(
    samples: &Samples,
    chunks: &[&[usize]],
    device: &Device,
) -> StackedTargets {
    let (k, batch) = (chunks.len(), chunks[0].len());
    match &samples.targets {
        Targets::Classes { labels, .. } => {
            let idx: Vec<i64> = chunks
                .iter()
                .flat_map(|c| c.iter().map(|&i| labels[i] as i64))
                .collect();
            StackedTargets::Classes(Tensor::from_data(
                TensorData::new(idx, [k, batch, 1]),
                device,
            ))
        }
        Targets::Values { values, width, .. } => {
            let mut v = Vec::with_capacity(k * batch * width);
            for chunk in chunks {
                for &i in *chunk {
                    v.extend_from_slice(&values[i * width..(i + 1) * width]);
                }
            }
            StackedTargets::Values(Tensor::from_data(
                TensorData::new(v, [k, batch, *width]),
                device,
            ))
        }
    }
}

/// Items per evaluation chunk: bounds the memory of a large validation set.
const EVAL_ITEMS: usize = 1024;

/// Loss and score of every member on `samples` (already prepared), without the L2 term.
fn evaluate_stacked(
    layers: &[StackedLayer],
    activation: Activation,
    samples: &Samples,
    device: &Device,
) -> (Vec<f64>, Vec<f64>) {
    let k = layers[0].weight.dims()[0];
    let n = samples.len().max(1) as f64;
    let mut loss_sums = vec![0.0; k];
    // Hits per member, or squared residuals per member and output.
    let mut fits: Vec<f64> = Vec::new();
    let all: Vec<usize> = (0..samples.len()).collect();
    for chunk in all.chunks(EVAL_ITEMS) {
        let batch = ItemBatcher::<2>::new(&[samples.item_len()])
            .expect("one flat dimension makes rank-2 batches")
            .batch_indices(samples, chunk, device);
        let outputs = forward_shared(layers, batch.inputs, activation);
        // Targets are small: one copy per member keeps the loss code shared with training.
        let targets = stacked_batch_targets(samples, &vec![chunk; k], device);
        let losses = to_f64(member_losses(outputs.clone(), &targets));
        for (sum, l) in loss_sums.iter_mut().zip(losses) {
            *sum += l * chunk.len() as f64;
        }
        let chunk_fits = match &targets {
            StackedTargets::Classes(classes) => {
                to_f64_int(outputs.argmax(2).equal(classes.clone()).int().sum_dim(1))
            }
            StackedTargets::Values(y) => to_f64((outputs - y.clone()).square().sum_dim(1)),
        };
        if fits.is_empty() {
            fits = vec![0.0; chunk_fits.len()];
        }
        for (sum, f) in fits.iter_mut().zip(chunk_fits) {
            *sum += f;
        }
    }
    let losses = loss_sums.into_iter().map(|l| l / n).collect();
    let scores = match &samples.targets {
        Targets::Classes { .. } => fits.into_iter().map(|h| h / n).collect(),
        Targets::Values { values, width, .. } => {
            let ss_tot = total_sum_of_squares(values, *width);
            fits.chunks(*width)
                .map(|r| r2_from_sums(r, &ss_tot))
                .collect()
        }
    };
    (losses, scores)
}

fn to_f64(t: Tensor<3>) -> Vec<f64> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .unwrap_or_default()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn to_f64_int(t: Tensor<3, Int>) -> Vec<f64> {
    t.into_data()
        .try_into_vec_as::<i64>()
        .unwrap_or_default()
        .into_iter()
        .map(|x| x as f64)
        .collect()
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

/// The members' stacked layers `[members, inputs, units]`, each from its own network.
fn stack_layers(networks: &[Network]) -> Vec<StackedLayer> {
    (0..networks[0].dense_layers().len())
        .map(|j| {
            let weight = Tensor::stack::<3>(
                networks
                    .iter()
                    .map(|n| n.dense_layers()[j].weight.val())
                    .collect(),
                0,
            );
            let bias = Tensor::stack::<2>(
                networks
                    .iter()
                    .map(|n| n.dense_layers()[j].bias.val())
                    .collect(),
                0,
            )
            .unsqueeze_dim::<3>(1);
            StackedLayer {
                weight_velocity: weight.zeros_like(),
                bias_velocity: bias.zeros_like(),
                weight: weight.autodiff().require_grad(),
                bias: bias.autodiff().require_grad(),
            }
        })
        .collect()
}

/// A stacked training in progress: the layers, each member's settings, shuffle, history
/// and whether it has diverged.
struct StackedRun {
    layers: Vec<StackedLayer>,
    /// Each member's learning rate (0 once it has diverged).
    learning_rates: Vec<f64>,
    /// Each member's momentum.
    momentum: Rates,
    /// Each member's L2 factor, on the autodiff device; `None` when every member's is 0.
    l2: Option<Tensor<3>>,
    shuffles: Vec<ChaCha8Rng>,
    orders: Vec<Vec<usize>>,
    /// Per output column of the training targets (regression), for R².
    train_ss_tot: Vec<f64>,
    histories: Vec<History>,
    diverged: Vec<bool>,
    /// A diverged member's weights when it diverged.
    snapshots: Vec<Option<Vec<(Tensor<2>, Tensor<1>)>>>,
    device: Device,
    train_device: Device,
}

/// Sums over an epoch's batches, each `[members, 1, ...]`: loss x batch size, and correct
/// predictions (classification) or squared residuals per output column (regression).
#[derive(Default)]
struct EpochSums {
    loss: Option<Tensor<3>>,
    hits: Option<Tensor<3, Int>>,
    residuals: Option<Tensor<3>>,
}

impl StackedRun {
    fn new(members: &[Mlp], networks: &[Network], train: &Samples, device: &Device) -> Self {
        let k = members.len();
        let train_device = device.clone().autodiff();
        let any_l2 = members.iter().any(|m| m.l2 > 0.0);
        StackedRun {
            layers: stack_layers(networks),
            learning_rates: members.iter().map(|m| m.learning_rate).collect(),
            momentum: Rates::new(members.iter().map(|m| m.momentum), device),
            l2: any_l2.then(|| per_member(members.iter().map(|m| m.l2), &train_device)),
            shuffles: members
                .iter()
                .map(|m| ChaCha8Rng::seed_from_u64(m.seed))
                .collect(),
            orders: vec![(0..train.len()).collect(); k],
            train_ss_tot: match &train.targets {
                Targets::Values { values, width, .. } => total_sum_of_squares(values, *width),
                Targets::Classes { .. } => Vec::new(),
            },
            histories: (0..k)
                .map(|_| History {
                    epochs: Vec::new(),
                    outcome: Outcome::Finished,
                })
                .collect(),
            diverged: vec![false; k],
            snapshots: vec![None; k],
            device: device.clone(),
            train_device,
        }
    }

    /// One epoch over `train` (each member in its own shuffled order): each member's mean
    /// loss and its accuracy or R² on the training batches.
    fn train_epoch(&mut self, train: &Samples, shape: &Mlp) -> (Vec<f64>, Vec<f64>) {
        for (order, rng) in self.orders.iter_mut().zip(&mut self.shuffles) {
            order.shuffle(rng);
        }
        let lr = Rates::new(self.learning_rates.iter().copied(), &self.device);
        let (n, batch_size) = (train.len(), shape.batch_size);
        let mut sums = EpochSums::default();
        for step in 0..n.div_ceil(batch_size) {
            let range = step * batch_size..((step + 1) * batch_size).min(n);
            self.train_step(train, range, shape.activation, &lr, &mut sums);
        }
        self.epoch_figures(sums, n)
    }

    /// One batch (`range` of each member's order): forward, loss (with L2), its sums, and
    /// an SGD step with momentum for every member.
    fn train_step(
        &mut self,
        train: &Samples,
        range: std::ops::Range<usize>,
        activation: Activation,
        lr: &Rates,
        sums: &mut EpochSums,
    ) {
        let chunks: Vec<&[usize]> = self.orders.iter().map(|o| &o[range.clone()]).collect();
        let (inputs, targets) = stacked_batch(train, &chunks, &self.train_device);
        let outputs = forward(&self.layers, inputs, activation);
        let mut losses = member_losses(outputs.clone(), &targets);
        if let Some(l2) = &self.l2 {
            let mut penalty: Option<Tensor<3>> = None;
            for layer in &self.layers {
                accumulate(
                    &mut penalty,
                    layer.weight.clone().square().sum_dim(2).sum_dim(1),
                );
            }
            if let Some(p) = penalty {
                losses = losses + p * l2.clone();
            }
        }
        let batch = range.len() as f64;
        accumulate(
            &mut sums.loss,
            losses.clone().detach().inner().mul_scalar(batch),
        );
        match &targets {
            StackedTargets::Classes(classes) => accumulate(
                &mut sums.hits,
                outputs
                    .detach()
                    .argmax(2)
                    .equal(classes.clone())
                    .int()
                    .sum_dim(1),
            ),
            StackedTargets::Values(y) => accumulate(
                &mut sums.residuals,
                (outputs.detach().inner() - y.clone().inner())
                    .square()
                    .sum_dim(1),
            ),
        }
        let mut grads = losses.sum().backward();
        let momentum = &self.momentum;
        for layer in &mut self.layers {
            let (w, wv) = sgd_momentum(
                &layer.weight,
                &layer.weight_velocity,
                &mut grads,
                momentum,
                lr,
            );
            let (b, bv) = sgd_momentum(&layer.bias, &layer.bias_velocity, &mut grads, momentum, lr);
            *layer = StackedLayer {
                weight: w.autodiff().require_grad(),
                bias: b.autodiff().require_grad(),
                weight_velocity: wv,
                bias_velocity: bv,
            };
        }
    }

    /// Each member's mean loss and training accuracy or R² from an epoch's sums over `n`
    /// items: one host read per epoch for all members.
    fn epoch_figures(&self, sums: EpochSums, n: usize) -> (Vec<f64>, Vec<f64>) {
        let k = self.diverged.len();
        let losses: Vec<f64> = sums
            .loss
            .map(to_f64)
            .unwrap_or_else(|| vec![f64::NAN; k])
            .into_iter()
            .map(|l| l / n as f64)
            .collect();
        let scores: Vec<f64> = match (sums.hits, sums.residuals) {
            (Some(h), _) => to_f64_int(h).into_iter().map(|h| h / n as f64).collect(),
            (None, Some(r)) => to_f64(r)
                .chunks(self.train_ss_tot.len().max(1))
                .map(|r| r2_from_sums(r, &self.train_ss_tot))
                .collect(),
            (None, None) => vec![f64::NAN; k],
        };
        (losses, scores)
    }

    /// Appends the epoch to each live member's history; returns the members whose loss (or
    /// validation loss) stopped being finite, now recorded as diverged.
    fn record(
        &mut self,
        epoch: usize,
        losses: &[f64],
        scores: &[f64],
        val: Option<&(Vec<f64>, Vec<f64>)>,
        seconds: f64,
    ) -> Vec<usize> {
        let mut newly_diverged = Vec::new();
        for i in (0..self.diverged.len()).filter(|&i| !self.diverged[i]) {
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
                newly_diverged.push(i);
            }
        }
        newly_diverged
    }

    /// Parks the newly diverged members at zero weights and learning rate 0, so their
    /// non-finite values cannot reach any sum the others' figures are read from; their
    /// weights at divergence are kept from `inner_layers`.
    fn park(&mut self, newly_diverged: &[usize], inner_layers: &[StackedLayer]) {
        if newly_diverged.is_empty() {
            return;
        }
        for &i in newly_diverged {
            self.snapshots[i] = Some(member_weights(inner_layers, i));
            self.diverged[i] = true;
            self.learning_rates[i] = 0.0;
        }
        let keep = per_member(
            self.diverged.iter().map(|&d| if d { 0.0 } else { 1.0 }),
            &self.device,
        );
        let park = |t: Tensor<3>| {
            let dims = t.dims();
            t.mask_fill(keep.clone().equal_elem(0.0).expand(dims), 0.0)
        };
        for layer in &mut self.layers {
            *layer = StackedLayer {
                weight: park(layer.weight.clone().inner()).autodiff().require_grad(),
                bias: park(layer.bias.clone().inner()).autodiff().require_grad(),
                weight_velocity: park(layer.weight_velocity.clone()),
                bias_velocity: park(layer.bias_velocity.clone()),
            };
        }
    }

    /// Each member's trained model (its final weights, or those at divergence) and history.
    fn into_models(
        mut self,
        networks: Vec<Network>,
        specs: Vec<models::ModelSpec>,
        card: &ModelCard,
        device: &Device,
    ) -> Vec<(TrainedModel, History)> {
        let inner_layers = without_autodiff(&self.layers);
        let histories = std::mem::take(&mut self.histories);
        let mut results = Vec::with_capacity(networks.len());
        for (i, ((mut network, spec), history)) in
            networks.into_iter().zip(specs).zip(histories).enumerate()
        {
            let weights = self.snapshots[i]
                .take()
                .unwrap_or_else(|| member_weights(&inner_layers, i));
            for (dense, (w, b)) in network.dense_layers_mut().iter_mut().zip(weights) {
                dense.weight = Param::from_tensor(w);
                dense.bias = Param::from_tensor(b);
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
        let mut run = StackedRun::new(members, &networks, &train_ready, device);
        for epoch in 1..=first.epochs {
            let start = std::time::Instant::now();
            let (losses, scores) = run.train_epoch(&train_ready, first);
            let inner_layers = without_autodiff(&run.layers);
            let val = val_ready
                .as_ref()
                .map(|v| evaluate_stacked(&inner_layers, first.activation, v, device));
            let seconds = start.elapsed().as_secs_f64();
            let newly_diverged = run.record(epoch, &losses, &scores, val.as_ref(), seconds);
            run.park(&newly_diverged, &inner_layers);
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

/// The layers as plain tensors (no autodiff graph), for evaluation and extraction.
fn without_autodiff(layers: &[StackedLayer]) -> Vec<StackedLayer> {
    layers
        .iter()
        .map(|l| StackedLayer {
            weight: l.weight.clone().inner(),
            bias: l.bias.clone().inner(),
            weight_velocity: l.weight_velocity.clone(),
            bias_velocity: l.bias_velocity.clone(),
        })
        .collect()
}

/// Member `i`'s weights and biases, layer by layer, as a plain network holds them.
fn member_weights(layers: &[StackedLayer], i: usize) -> Vec<(Tensor<2>, Tensor<1>)> {
    layers
        .iter()
        .map(|l| {
            let [_, inputs, units] = l.weight.dims();
            let w = l.weight.clone().slice(i..i + 1).reshape([inputs, units]);
            let b = l.bias.clone().slice(i..i + 1).reshape([units]);
            (w, b)
        })
        .collect()
}

/// SGD with momentum (PyTorch's and Burn's form, no dampening): `v = mu * v + g`,
/// `w = w - eta * v`, with `mu` and `eta` one per member. Returns plain (non-autodiff)
/// weights and velocity.
fn sgd_momentum(
    param: &Tensor<3>,
    velocity: &Tensor<3>,
    grads: &mut burn::tensor::Gradients,
    mu: &Rates,
    lr: &Rates,
) -> (Tensor<3>, Tensor<3>) {
    let weight = param.clone().inner();
    match param.grad_remove(grads) {
        #[cfg(feature = "flex")]
        Some(g) if flex_ops::kernels::runs_on_flex(&weight) => {
            flex_ops::sgd::momentum_step(weight, g, velocity.clone(), &mu.values, &lr.values)
        }
        Some(g) => {
            let v = velocity.clone() * mu.tensor.clone() + g;
            (weight - v.clone() * lr.tensor.clone(), v)
        }
        None => (weight, velocity.clone()),
    }
}

/// A value per member, as a `[members, 1, 1]` tensor (Burn's broadcast operations) and as
/// numbers (the fused update on flex).
struct Rates {
    tensor: Tensor<3>,
    #[cfg_attr(not(feature = "flex"), allow(dead_code))]
    values: std::sync::Arc<[f32]>,
}

impl Rates {
    /// The members' `values`, as both, on `device`.
    fn new(values: impl Iterator<Item = f64>, device: &Device) -> Self {
        let values: std::sync::Arc<[f32]> = values.map(|x| x as f32).collect();
        // f32 -> f64 -> f32 is exact: the tensor holds the same numbers.
        let tensor = per_member(values.iter().map(|&v| f64::from(v)), device);
        Rates { tensor, values }
    }
}
