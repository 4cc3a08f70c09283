//! The stacked members through Burn's operations with autodiff, on any backend: weights
//! stacked along a leading member dimension (`[members, inputs, units]`), so a layer is one
//! batched matrix product for all members and one optimiser step updates them all.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use data::{ItemBatcher, Samples, Targets};
use models::{Activation, Network, activate};

use super::{Engine, MemberLayers, MemberSums};
use crate::fit::accumulate;
use crate::mlp::Mlp;

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

/// The members as stacked tensors, with their settings.
pub(super) struct BurnOps {
    layers: Vec<StackedLayer>,
    activation: Activation,
    /// Each member's learning rate (0 once parked).
    learning_rates: Vec<f64>,
    momentum: Rates,
    /// Each member's L2 factor, on the autodiff device; `None` when every member's is 0.
    l2: Option<Tensor<3>>,
    parked: Vec<bool>,
    /// A parked member's weights when it was parked.
    snapshots: Vec<Option<MemberLayers>>,
    device: Device,
    train_device: Device,
}

impl BurnOps {
    /// The members, from their networks' starting weights.
    pub(super) fn new(members: &[Mlp], networks: &[Network], device: &Device) -> Self {
        let train_device = device.clone().autodiff();
        let any_l2 = members.iter().any(|m| m.l2 > 0.0);
        BurnOps {
            layers: stack_layers(networks),
            activation: members[0].activation,
            learning_rates: members.iter().map(|m| m.learning_rate).collect(),
            momentum: Rates::new(members.iter().map(|m| m.momentum), device),
            l2: any_l2.then(|| per_member(members.iter().map(|m| m.l2), &train_device)),
            parked: vec![false; members.len()],
            snapshots: vec![None; members.len()],
            device: device.clone(),
            train_device,
        }
    }

    /// One batch (each member's `chunks`): forward, loss (with L2), its sums, and an SGD
    /// step with momentum for every member.
    fn train_step(
        &mut self,
        train: &Samples,
        chunks: &[&[usize]],
        lr: &Rates,
        sums: &mut EpochSums,
    ) {
        let (inputs, targets) = stacked_batch(train, chunks, &self.train_device);
        let outputs = forward(&self.layers, inputs, self.activation);
        let losses = self.with_l2(member_losses(outputs.clone(), &targets));
        let batch = chunks[0].len() as f64;
        sums.add(
            losses.clone().detach().inner().mul_scalar(batch),
            outputs,
            &targets,
        );
        let mut grads = losses.sum().backward();
        for layer in &mut self.layers {
            let (w, wv) = sgd_momentum(
                &layer.weight,
                &layer.weight_velocity,
                &mut grads,
                &self.momentum,
                lr,
            );
            let (b, bv) = sgd_momentum(
                &layer.bias,
                &layer.bias_velocity,
                &mut grads,
                &self.momentum,
                lr,
            );
            *layer = StackedLayer {
                weight: w.autodiff().require_grad(),
                bias: b.autodiff().require_grad(),
                weight_velocity: wv,
                bias_velocity: bv,
            };
        }
    }

    /// `losses` plus each member's L2 term `l2 * sum(w^2)` over its weights.
    fn with_l2(&self, losses: Tensor<3>) -> Tensor<3> {
        let Some(l2) = &self.l2 else {
            return losses;
        };
        let mut penalty: Option<Tensor<3>> = None;
        for layer in &self.layers {
            accumulate(
                &mut penalty,
                layer.weight.clone().square().sum_dim(2).sum_dim(1),
            );
        }
        match penalty {
            Some(p) => losses + p * l2.clone(),
            None => losses,
        }
    }
}

impl Engine for BurnOps {
    fn train_epoch(
        &mut self,
        train: &Samples,
        orders: &[Vec<usize>],
        batch_size: usize,
    ) -> Result<Vec<MemberSums>, crate::ModelError> {
        let lr = Rates::new(self.learning_rates.iter().copied(), &self.device);
        let n = train.len();
        let mut sums = EpochSums::default();
        for step in 0..n.div_ceil(batch_size) {
            let range = step * batch_size..((step + 1) * batch_size).min(n);
            let chunks: Vec<&[usize]> = orders.iter().map(|o| &o[range.clone()]).collect();
            self.train_step(train, &chunks, &lr, &mut sums);
        }
        Ok(sums.per_member(self.parked.len()))
    }

    fn evaluate(&mut self, samples: &Samples) -> Result<Vec<MemberSums>, crate::ModelError> {
        let layers = without_autodiff(&self.layers);
        let k = self.parked.len();
        let mut sums = vec![MemberSums::default(); k];
        let all: Vec<usize> = (0..samples.len()).collect();
        for chunk in all.chunks(super::EVAL_ITEMS) {
            let batch = ItemBatcher::<2>::new(&[samples.item_len()])
                .map_err(|e| crate::ModelError::Input(e.to_string()))?
                .batch_indices(samples, chunk, &self.device);
            let outputs = forward_shared(&layers, batch.inputs, self.activation);
            // Targets are small: one copy per member keeps the loss code shared with training.
            let targets = stacked_batch_targets(samples, &vec![chunk; k], &self.device);
            let losses = to_f64(member_losses(outputs.clone(), &targets));
            let fits = fits(outputs, &targets);
            let width = fits.len() / k.max(1);
            for (i, s) in sums.iter_mut().enumerate() {
                s.loss += losses[i] * chunk.len() as f64;
                s.add_fit(&fits[i * width..(i + 1) * width]);
            }
        }
        Ok(sums)
    }

    fn park(&mut self, members: &[usize]) {
        if members.is_empty() {
            return;
        }
        let layers = without_autodiff(&self.layers);
        for &i in members {
            self.snapshots[i] = Some(member_weights(&layers, i));
            self.parked[i] = true;
            self.learning_rates[i] = 0.0;
        }
        // Zero weights and learning rate: their non-finite values cannot reach any sum the
        // others' figures are read from.
        let keep = per_member(
            self.parked.iter().map(|&d| if d { 0.0 } else { 1.0 }),
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

    fn member_weights(&self, i: usize) -> MemberLayers {
        match &self.snapshots[i] {
            Some(weights) => weights.clone(),
            None => member_weights(&without_autodiff(&self.layers), i),
        }
    }
}

/// Sums over an epoch's batches, each `[members, 1, ...]`: loss x batch size, and correct
/// predictions (classification) or squared residuals per output column (regression).
#[derive(Default)]
struct EpochSums {
    loss: Option<Tensor<3>>,
    fit: Option<Tensor<3>>,
}

impl EpochSums {
    /// Adds a batch: its losses x batch size and its outputs' fit to `targets`.
    fn add(&mut self, losses: Tensor<3>, outputs: Tensor<3>, targets: &StackedTargets) {
        accumulate(&mut self.loss, losses);
        let fit = match targets {
            StackedTargets::Classes(classes) => outputs
                .detach()
                .argmax(2)
                .equal(classes.clone())
                .float()
                .sum_dim(1)
                .inner(),
            StackedTargets::Values(y) => (outputs.detach().inner() - y.clone().inner())
                .square()
                .sum_dim(1),
        };
        accumulate(&mut self.fit, fit);
    }

    /// The sums per member (one host read for all).
    fn per_member(self, k: usize) -> Vec<MemberSums> {
        let losses = self.loss.map(to_f64).unwrap_or_else(|| vec![f64::NAN; k]);
        let fits = self.fit.map(to_f64).unwrap_or_default();
        let width = fits.len() / k.max(1);
        losses
            .into_iter()
            .enumerate()
            .map(|(i, loss)| MemberSums {
                loss,
                fit: fits.get(i * width..(i + 1) * width).unwrap_or(&[]).to_vec(),
            })
            .collect()
    }
}

/// Each member's correct predictions `[members]` or squared residuals per output column
/// `[members, width]`, flattened.
fn fits(outputs: Tensor<3>, targets: &StackedTargets) -> Vec<f64> {
    match targets {
        StackedTargets::Classes(classes) => {
            to_f64(outputs.argmax(2).equal(classes.clone()).float().sum_dim(1))
        }
        StackedTargets::Values(y) => to_f64((outputs - y.clone()).square().sum_dim(1)),
    }
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

fn to_f64(t: Tensor<3>) -> Vec<f64> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .unwrap_or_default()
        .into_iter()
        .map(f64::from)
        .collect()
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

/// Member `i`'s weights and biases, layer by layer.
fn member_weights(layers: &[StackedLayer], i: usize) -> MemberLayers {
    let values = |t: Tensor<3>| t.into_data().try_into_vec_as::<f32>().unwrap_or_default();
    layers
        .iter()
        .map(|l| {
            let w = values(l.weight.clone().slice(i..i + 1));
            let b = values(l.bias.clone().slice(i..i + 1));
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
