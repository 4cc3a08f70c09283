//! Many small MLPs trained at once on plain buffers: report 001's grids (`trainer::stacked`).
//!
//! A grid of report 001 trains hundreds of tiny MLPs (iris: 4 inputs, layers of 5-32 units,
//! batches of 16). Through Burn's operations with autodiff, a step of such a model is mostly
//! per-operation cost: some sixty operations, each allocating its output, recording a graph
//! node and dispatching, on tensors of a few hundred values (docs/performance.md). Here each
//! member's forward pass, loss, backward pass and update are loops over its own buffers, with
//! no allocation once its buffers have grown to the batch; products big enough to pay for
//! packing (a layer of 784 inputs) go to `gemm`. Members share nothing, so they run on the
//! rayon threads when a step is large enough to split, one after another otherwise.
//!
//! The arithmetic is the textbook one, as `trainer` computes it through Burn: hidden layers
//! `activation(x w + b)`, a linear last layer; softmax cross-entropy on class indices or the
//! mean squared error on values, averaged over the batch (and the outputs); an L2 term
//! `l2 * sum(w^2)` over the weights, not the biases, which adds `2 l2 w` to their gradient;
//! SGD with momentum in PyTorch's (and Burn's) form `v = v mu + g`, `w = w - v lr`. The sums
//! run in another order than Burn's, so results agree with the Burn path to rounding, not bit
//! for bit (`trainer`'s tests hold both to `Mlp::fit`).

use std::fmt;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::activation::tanh_f32;
use crate::kernels::{as_uninit, matmul};

/// Multiply-adds from which a product goes to `gemm` (below, its packing costs more than
/// the loops).
const GEMM_FROM: usize = 1 << 15;

/// Multiply-adds per step from which the members are spread over the rayon threads.
const PARALLEL_FROM: usize = 1 << 17;

/// The activation of the hidden layers (the last layer is linear: logits or values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hidden {
    /// Identity.
    Linear,
    /// `max(0, x)`.
    Relu,
    /// `x` for positive `x`, `slope * x` otherwise.
    LeakyRelu(f32),
    /// The logistic function.
    Sigmoid,
    /// The hyperbolic tangent ([`tanh_f32`], as `flex_ops::activation::tanh`).
    Tanh,
}

impl Hidden {
    /// Applies the activation in place. A NaN stays NaN, so a diverging member shows.
    fn apply(self, values: &mut [f32]) {
        match self {
            Hidden::Linear => {}
            Hidden::Relu => values.iter_mut().for_each(|v| {
                if *v < 0.0 {
                    *v = 0.0;
                }
            }),
            Hidden::LeakyRelu(slope) => values.iter_mut().for_each(|v| {
                if *v < 0.0 {
                    *v *= slope;
                }
            }),
            Hidden::Sigmoid => values
                .iter_mut()
                .for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Hidden::Tanh => values.iter_mut().for_each(|v| *v = tanh_f32(*v)),
        }
    }

    /// Multiplies each delta by the activation's derivative, known from the layer's output.
    fn backward(self, deltas: &mut [f32], outputs: &[f32]) {
        let pairs = deltas.iter_mut().zip(outputs);
        match self {
            Hidden::Linear => {}
            Hidden::Relu => pairs.for_each(|(d, &y)| {
                if y <= 0.0 {
                    *d = 0.0;
                }
            }),
            Hidden::LeakyRelu(slope) => pairs.for_each(|(d, &y)| {
                if y < 0.0 {
                    *d *= slope;
                }
            }),
            Hidden::Sigmoid => pairs.for_each(|(d, &y)| *d *= y * (1.0 - y)),
            Hidden::Tanh => pairs.for_each(|(d, &y)| *d *= 1.0 - y * y),
        }
    }
}

/// What the members' outputs are scored against, for a batch of items.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// One class index per item (softmax cross-entropy).
    Classes(&'a [usize]),
    /// `width` values per item, row-major (mean squared error).
    Values(&'a [f32], usize),
}

impl<'a> Targets<'a> {
    /// Values per item.
    fn width(&self) -> usize {
        match self {
            Targets::Classes(_) => 1,
            Targets::Values(_, width) => *width,
        }
    }

    /// Items described.
    fn len(&self) -> usize {
        match self {
            Targets::Classes(labels) => labels.len(),
            Targets::Values(values, width) => values.len() / (*width).max(1),
        }
    }

    /// Items `from..from + count`.
    fn slice(&self, from: usize, count: usize) -> Targets<'a> {
        match *self {
            Targets::Classes(labels) => Targets::Classes(&labels[from..from + count]),
            Targets::Values(values, width) => {
                Targets::Values(&values[from * width..(from + count) * width], width)
            }
        }
    }
}

/// A member's sums over the items it has seen: the loss (per item, summed; with the L2 term
/// in training), and its correct predictions (one value) or squared residuals (one per
/// output column).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sums {
    /// The summed loss.
    pub loss: f64,
    /// Correct predictions, or squared residuals per output column.
    pub fit: Vec<f64>,
}

/// Wrong buffer sizes or settings, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError(pub String);

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShapeError {}

/// One member's starting point and settings.
#[derive(Debug, Clone)]
pub struct MemberInit {
    /// Per layer, its weights `[inputs, units]` (row-major) and biases `[units]`.
    pub layers: Vec<(Vec<f32>, Vec<f32>)>,
    /// The learning rate.
    pub learning_rate: f32,
    /// The momentum.
    pub momentum: f32,
    /// The L2 coefficient of the weights.
    pub l2: f32,
}

/// A member: parameters, velocities, settings and the buffers of a batch.
#[derive(Debug, Clone)]
struct Member {
    weights: Vec<Vec<f32>>,
    biases: Vec<Vec<f32>>,
    weight_velocity: Vec<Vec<f32>>,
    bias_velocity: Vec<Vec<f32>>,
    learning_rate: f32,
    momentum: f32,
    l2: f32,
    /// Out of training (it diverged): skipped, its weights kept as they were.
    parked: bool,
    work: Work,
}

/// A member's buffers for one batch: each layer's outputs, the deltas of the layer being
/// differentiated and of the one below, and the gradients of a layer's parameters.
#[derive(Debug, Clone, Default)]
struct Work {
    outputs: Vec<Vec<f32>>,
    delta: Vec<f32>,
    delta_below: Vec<f32>,
    weight_grad: Vec<f32>,
    bias_grad: Vec<f32>,
}

/// Members of one architecture (`sizes`: inputs, each layer's units), trained together.
#[derive(Debug, Clone)]
pub struct StackedMlp {
    sizes: Vec<usize>,
    activation: Hidden,
    members: Vec<Member>,
}

impl StackedMlp {
    /// The members of the network with layer sizes `sizes` (inputs first) and `activation`
    /// between layers, from their starting weights; a weight list of the wrong size, a
    /// layer of no units or a setting that is not finite is an error.
    pub fn new(
        sizes: &[usize],
        activation: Hidden,
        members: Vec<MemberInit>,
    ) -> Result<Self, ShapeError> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(ShapeError(format!(
                "layer sizes {sizes:?}: at least inputs and outputs, none 0"
            )));
        }
        let members = members
            .into_iter()
            .enumerate()
            .map(|(i, m)| Member::new(sizes, m).map_err(|e| ShapeError(format!("member {i}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StackedMlp {
            sizes: sizes.to_vec(),
            activation,
            members,
        })
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// One training step: member `i` sees its own batch, the `i`-th of `inputs` (`[members,
    /// batch, inputs]`) and of `targets` (`members * batch` items); each adds its batch's
    /// loss (with the L2 term) and fit to its `sums` and takes an SGD step. Parked members
    /// are skipped.
    pub fn train_batch(
        &mut self,
        inputs: &[f32],
        targets: Targets,
        sums: &mut [Sums],
    ) -> Result<(), ShapeError> {
        let batch = self.batch_of(inputs, self.members.len(), targets, sums)?;
        let (sizes, activation) = (&self.sizes, self.activation);
        let per_member = batch * sizes[0];
        for_each_member(&mut self.members, sizes, batch, sums, |i, member, sums| {
            let x = &inputs[i * per_member..(i + 1) * per_member];
            member.train(sizes, activation, x, targets.slice(i * batch, batch), sums);
        });
        Ok(())
    }

    /// Every member's outputs for the same `inputs` (`[batch, inputs]`), scored against
    /// `targets` (`batch` items) into its `sums` (the loss without the L2 term). Parked
    /// members are skipped.
    pub fn evaluate(
        &mut self,
        inputs: &[f32],
        targets: Targets,
        sums: &mut [Sums],
    ) -> Result<(), ShapeError> {
        let batch = self.batch_of(inputs, 1, targets, sums)?;
        let (sizes, activation) = (&self.sizes, self.activation);
        for_each_member(&mut self.members, sizes, batch, sums, |_, member, sums| {
            member.forward(sizes, activation, inputs, batch);
            let logits = member.work.outputs.last().map_or(&[][..], |o| &o[..]);
            score(logits, targets, batch, sums, None);
        });
        Ok(())
    }

    /// Takes member `i` out of training, its weights kept as they are.
    pub fn park(&mut self, i: usize) {
        if let Some(member) = self.members.get_mut(i) {
            member.parked = true;
        }
    }

    /// Member `i`'s weights and biases, layer by layer (`None` past the last member).
    pub fn member_layers(&self, i: usize) -> Option<Vec<(&[f32], &[f32])>> {
        let m = self.members.get(i)?;
        Some(
            m.weights
                .iter()
                .zip(&m.biases)
                .map(|(w, b)| (&w[..], &b[..]))
                .collect(),
        )
    }

    /// The batch size that `inputs` (`[copies, batch, inputs]`) hold, checked against the
    /// targets (`copies * batch` items of the output width) and the sums (one per member).
    fn batch_of(
        &self,
        inputs: &[f32],
        copies: usize,
        targets: Targets,
        sums: &[Sums],
    ) -> Result<usize, ShapeError> {
        let (first, last) = (self.sizes[0], self.sizes[self.sizes.len() - 1]);
        let batch = inputs.len() / (first * copies).max(1);
        let expected_width = match targets {
            Targets::Classes(_) => targets.width(),
            Targets::Values(..) => last,
        };
        if inputs.len() != batch * first * copies
            || targets.len() != batch * copies
            || targets.width() != expected_width
            || sums.len() != self.members.len()
        {
            return Err(ShapeError(format!(
                "{} input values, {} target items of width {}, {} sums for {} members of \
                 {first} inputs and {last} outputs",
                inputs.len(),
                targets.len(),
                targets.width(),
                sums.len(),
                self.members.len()
            )));
        }
        Ok(batch)
    }
}

/// Runs `each(index, member, its sums)` for every member not parked, on the rayon
/// threads when a batch of `batch` items is work enough to split.
fn for_each_member(
    members: &mut [Member],
    sizes: &[usize],
    batch: usize,
    sums: &mut [Sums],
    each: impl Fn(usize, &mut Member, &mut Sums) + Sync + Send,
) {
    let macs: usize = sizes.windows(2).map(|w| w[0] * w[1]).sum();
    let live = members.iter().filter(|m| !m.parked).count();
    let run = |(i, (m, s)): (usize, (&mut Member, &mut Sums))| {
        if !m.parked {
            each(i, m, s);
        }
    };
    if live > 1 && batch * macs * live >= PARALLEL_FROM {
        let pairs = members.par_iter_mut().zip(sums.par_iter_mut());
        pairs.enumerate().for_each(run);
    } else {
        let pairs = members.iter_mut().zip(sums.iter_mut());
        pairs.enumerate().for_each(run);
    }
}

impl Member {
    /// A member from its starting weights, checked against the layer sizes.
    fn new(sizes: &[usize], init: MemberInit) -> Result<Self, String> {
        if init.layers.len() != sizes.len() - 1 {
            return Err(format!(
                "{} layers given, {} expected",
                init.layers.len(),
                sizes.len() - 1
            ));
        }
        for (l, ((w, b), io)) in init.layers.iter().zip(sizes.windows(2)).enumerate() {
            if w.len() != io[0] * io[1] || b.len() != io[1] {
                return Err(format!(
                    "layer {l}: {} weights and {} biases, expected {} x {} and {}",
                    w.len(),
                    b.len(),
                    io[0],
                    io[1],
                    io[1]
                ));
            }
        }
        let settings = [init.learning_rate, init.momentum, init.l2];
        if settings.iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "learning rate {}, momentum {} and l2 {} must be finite",
                init.learning_rate, init.momentum, init.l2
            ));
        }
        let (weights, biases): (Vec<_>, Vec<_>) = init.layers.into_iter().unzip();
        Ok(Member {
            weight_velocity: weights.iter().map(|w| vec![0.0; w.len()]).collect(),
            bias_velocity: biases.iter().map(|b| vec![0.0; b.len()]).collect(),
            weights,
            biases,
            learning_rate: init.learning_rate,
            momentum: init.momentum,
            l2: init.l2,
            parked: false,
            work: Work::default(),
        })
    }

    /// Forward, loss and its sums, backward and update for one batch `x` (`[batch, inputs]`).
    fn train(
        &mut self,
        sizes: &[usize],
        activation: Hidden,
        x: &[f32],
        targets: Targets,
        sums: &mut Sums,
    ) {
        let batch = targets.len();
        self.forward(sizes, activation, x, batch);
        sums.loss += batch as f64 * self.l2_penalty();
        let work = &mut self.work;
        let logits = work.outputs.last().map_or(&[][..], |o| &o[..]);
        work.delta.resize(logits.len(), 0.0);
        score(logits, targets, batch, sums, Some(&mut work.delta));
        self.backward_and_step(sizes, activation, x, batch);
    }

    /// `l2 * sum(w^2)` over every layer's weights.
    fn l2_penalty(&self) -> f64 {
        if self.l2 == 0.0 {
            return 0.0;
        }
        let squares: f64 = self
            .weights
            .iter()
            .flatten()
            .map(|&w| f64::from(w * w))
            .sum();
        f64::from(self.l2) * squares
    }

    /// Each layer's outputs for `x` (`[batch, inputs]`) into `work.outputs`: activated for
    /// the hidden layers, linear for the last.
    fn forward(&mut self, sizes: &[usize], activation: Hidden, x: &[f32], batch: usize) {
        let layers = self.weights.len();
        self.work.outputs.resize_with(layers, Vec::new);
        for l in 0..layers {
            let (below, rest) = self.work.outputs.split_at_mut(l);
            let input = if l == 0 { x } else { &below[l - 1][..] };
            let out = &mut rest[0];
            out.clear();
            for _ in 0..batch {
                out.extend_from_slice(&self.biases[l]);
            }
            mul_add(
                out,
                input,
                &self.weights[l],
                [batch, sizes[l + 1], sizes[l]],
            );
            if l + 1 < layers {
                activation.apply(out);
            }
        }
    }

    /// From the loss's gradient in `work.delta`, each layer's gradients, last layer first,
    /// and its SGD step once the delta of the layer below has been taken through its
    /// weights.
    fn backward_and_step(&mut self, sizes: &[usize], activation: Hidden, x: &[f32], batch: usize) {
        let (lr, mu, l2) = (self.learning_rate, self.momentum, self.l2);
        let Member {
            weights,
            biases,
            weight_velocity,
            bias_velocity,
            work,
            ..
        } = self;
        for l in (0..weights.len()).rev() {
            let (inputs, units) = (sizes[l], sizes[l + 1]);
            let input = if l == 0 { x } else { &work.outputs[l - 1][..] };
            work.weight_grad.clear();
            work.weight_grad
                .extend(weights[l].iter().map(|&w| 2.0 * l2 * w));
            mul_add_transposed_lhs(
                &mut work.weight_grad,
                input,
                &work.delta,
                [batch, units, inputs],
            );
            column_sums(&work.delta, units, &mut work.bias_grad);
            if l > 0 {
                work.delta_below.resize(batch * inputs, 0.0);
                mul_transposed_rhs(
                    &mut work.delta_below,
                    &work.delta,
                    &weights[l],
                    [batch, units, inputs],
                );
                activation.backward(&mut work.delta_below, input);
            }
            sgd_step(
                &mut weights[l],
                &mut weight_velocity[l],
                &work.weight_grad,
                mu,
                lr,
            );
            sgd_step(
                &mut biases[l],
                &mut bias_velocity[l],
                &work.bias_grad,
                mu,
                lr,
            );
            std::mem::swap(&mut work.delta, &mut work.delta_below);
        }
    }
}

/// Scores `logits` (`[batch, outputs]`) against `targets` into `sums`, and with `delta`
/// writes the gradient of the batch's mean loss with respect to them: softmax
/// cross-entropy with correct predictions (the first largest output), or the squared error
/// (averaged over the outputs per item) with squared residuals per column.
fn score(
    logits: &[f32],
    targets: Targets,
    batch: usize,
    sums: &mut Sums,
    delta: Option<&mut Vec<f32>>,
) {
    let outputs = logits.len() / batch.max(1);
    if outputs == 0 {
        return;
    }
    sums.fit.resize(targets.width(), 0.0);
    let scale = 1.0 / batch as f32;
    let mut deltas = delta.map(|d| d.chunks_exact_mut(outputs));
    for (i, z) in logits.chunks_exact(outputs).enumerate() {
        let d = deltas.as_mut().and_then(|d| d.next());
        match targets {
            Targets::Classes(labels) => cross_entropy(z, labels[i], scale, sums, d),
            Targets::Values(values, width) => {
                squared_error(z, &values[i * width..(i + 1) * width], scale, sums, d)
            }
        }
    }
}

/// One item's softmax cross-entropy on logits `z` for class `label`.
fn cross_entropy(z: &[f32], label: usize, scale: f32, sums: &mut Sums, delta: Option<&mut [f32]>) {
    let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let total: f32 = z.iter().map(|&v| (v - max).exp()).sum();
    let log_total = total.ln();
    let picked = z.get(label).copied().unwrap_or(f32::NAN);
    sums.loss += f64::from(max + log_total - picked);
    let winner = z.iter().position(|&v| v == max);
    sums.fit[0] += f64::from(u8::from(winner == Some(label)));
    if let Some(delta) = delta {
        for (j, (d, &v)) in delta.iter_mut().zip(z).enumerate() {
            let p = (v - max).exp() / total;
            *d = (p - f32::from(u8::from(j == label))) * scale;
        }
    }
}

/// One item's squared error, averaged over its outputs.
fn squared_error(y: &[f32], t: &[f32], scale: f32, sums: &mut Sums, delta: Option<&mut [f32]>) {
    let width = y.len() as f32;
    let mut item = 0.0f64;
    for (j, (&y, &t)) in y.iter().zip(t).enumerate() {
        let r = y - t;
        item += f64::from(r * r);
        sums.fit[j] += f64::from(r * r);
    }
    sums.loss += item / f64::from(width);
    if let Some(delta) = delta {
        for ((d, &y), &t) in delta.iter_mut().zip(y).zip(t) {
            *d = 2.0 * (y - t) * scale / width;
        }
    }
}

/// `out[m, n] += a[m, k] b[k, n]`, row-major.
fn mul_add(out: &mut [f32], a: &[f32], b: &[f32], [m, n, k]: [usize; 3]) {
    if m * n * k >= GEMM_FROM {
        return matmul(
            [m, n, k],
            as_uninit(out),
            [n, 1],
            true,
            a,
            [k, 1],
            b,
            [n, 1],
            Parallelism::None,
        );
    }
    for (o, a) in out.chunks_exact_mut(n).zip(a.chunks_exact(k)) {
        for (&x, b) in a.iter().zip(b.chunks_exact(n)) {
            axpy(o, x, b);
        }
    }
}

/// `out[k, n] += a[m, k]ᵀ d[m, n]` (a weight gradient from a layer's inputs and deltas).
fn mul_add_transposed_lhs(out: &mut [f32], a: &[f32], d: &[f32], [m, n, k]: [usize; 3]) {
    if m * n * k >= GEMM_FROM {
        return matmul(
            [k, n, m],
            as_uninit(out),
            [n, 1],
            true,
            a,
            [1, k],
            d,
            [n, 1],
            Parallelism::None,
        );
    }
    for (a, d) in a.chunks_exact(k).zip(d.chunks_exact(n)) {
        for (&x, o) in a.iter().zip(out.chunks_exact_mut(n)) {
            axpy(o, x, d);
        }
    }
}

/// `out[m, k] = d[m, n] w[k, n]ᵀ` (the deltas taken back through a layer's weights).
fn mul_transposed_rhs(out: &mut [f32], d: &[f32], w: &[f32], [m, n, k]: [usize; 3]) {
    if m * n * k >= GEMM_FROM {
        return matmul(
            [m, k, n],
            as_uninit(out),
            [k, 1],
            false,
            d,
            [n, 1],
            w,
            [1, n],
            Parallelism::None,
        );
    }
    for (o, d) in out.chunks_exact_mut(k).zip(d.chunks_exact(n)) {
        for (o, w) in o.iter_mut().zip(w.chunks_exact(n)) {
            *o = d.iter().zip(w).map(|(&a, &b)| a * b).sum();
        }
    }
}

/// `o += x b`.
#[inline]
fn axpy(o: &mut [f32], x: f32, b: &[f32]) {
    for (o, &b) in o.iter_mut().zip(b) {
        *o += x * b;
    }
}

/// The sums of the columns of `values` (`[rows, width]`) into `out`.
fn column_sums(values: &[f32], width: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(width, 0.0);
    for row in values.chunks_exact(width) {
        axpy(out, 1.0, row);
    }
}

/// SGD with momentum: `v = v mu + g`, `p = p - v lr`.
fn sgd_step(param: &mut [f32], velocity: &mut [f32], grad: &[f32], mu: f32, lr: f32) {
    for ((p, v), &g) in param.iter_mut().zip(velocity.iter_mut()).zip(grad) {
        *v = *v * mu + g;
        *p -= *v * lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close_within, values};
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Device, Int, Tensor, TensorData};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Normal-ish values: the sum of two uniform draws, centred.
    fn draws(n: usize, scale: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n)
            .map(|_| (rng.random::<f32>() + rng.random::<f32>() - 1.0) * scale)
            .collect()
    }

    fn init(sizes: &[usize], lr: f32, mu: f32, l2: f32, rng: &mut ChaCha8Rng) -> MemberInit {
        MemberInit {
            layers: sizes
                .windows(2)
                .map(|io| (draws(io[0] * io[1], 1.0, rng), draws(io[1], 0.3, rng)))
                .collect(),
            learning_rate: lr,
            momentum: mu,
            l2,
        }
    }

    fn burn_activation(x: Tensor<2>, hidden: Hidden) -> Tensor<2> {
        use burn::tensor::activation as act;
        match hidden {
            Hidden::Linear => x,
            Hidden::Relu => act::relu(x),
            Hidden::LeakyRelu(s) => act::leaky_relu(x, f64::from(s)),
            Hidden::Sigmoid => act::sigmoid(x),
            Hidden::Tanh => x.tanh(),
        }
    }

    /// One member trained by Burn's operations with autodiff, step by step as
    /// `trainer::stacked` did before this module: its loss per step and final layers.
    fn burn_reference(
        sizes: &[usize],
        hidden: Hidden,
        init: &MemberInit,
        batches: &[(Vec<f32>, Targets)],
    ) -> (Vec<f64>, Vec<Vec<f32>>) {
        let device = Device::flex().autodiff();
        let mut params: Vec<Tensor<2>> = Vec::new();
        for ((w, b), io) in init.layers.iter().zip(sizes.windows(2)) {
            params.push(Tensor::from_data(
                TensorData::new(w.clone(), [io[0], io[1]]),
                &device,
            ));
            params.push(Tensor::from_data(
                TensorData::new(b.clone(), [1, io[1]]),
                &device,
            ));
        }
        let mut velocity: Vec<Tensor<2>> = params.iter().map(|p| p.zeros_like().inner()).collect();
        let mut losses = Vec::new();
        for (x, targets) in batches {
            let batch = targets.len();
            let params_g: Vec<Tensor<2>> =
                params.iter().map(|p| p.clone().require_grad()).collect();
            let mut a =
                Tensor::<2>::from_data(TensorData::new(x.clone(), [batch, sizes[0]]), &device);
            let layers = params_g.len() / 2;
            for l in 0..layers {
                a = a.matmul(params_g[2 * l].clone()) + params_g[2 * l + 1].clone();
                if l + 1 < layers {
                    a = burn_activation(a, hidden);
                }
            }
            let mut loss = match *targets {
                Targets::Classes(labels) => {
                    let idx: Vec<i64> = labels.iter().map(|&c| c as i64).collect();
                    let idx =
                        Tensor::<2, Int>::from_data(TensorData::new(idx, [batch, 1]), &device);
                    log_softmax(a, 1).gather(1, idx).mean().neg()
                }
                Targets::Values(v, width) => {
                    let t = Tensor::<2>::from_data(
                        TensorData::new(v.to_vec(), [batch, width]),
                        &device,
                    );
                    (a - t).square().mean()
                }
            };
            for l in 0..layers {
                loss = loss + params_g[2 * l].clone().square().sum() * init.l2;
            }
            losses.push(f64::from(values(loss.clone())[0]) * batch as f64);
            let grads = loss.backward();
            for (i, p) in params_g.iter().enumerate() {
                let g = p.grad(&grads).unwrap();
                velocity[i] = velocity[i].clone() * init.momentum + g;
                params[i] = p
                    .clone()
                    .inner()
                    .sub(velocity[i].clone() * init.learning_rate)
                    .autodiff();
            }
        }
        (losses, params.into_iter().map(values).collect())
    }

    /// One member's batch: inputs, class indices and values.
    type Batch = (Vec<f32>, Vec<usize>, Vec<f32>);

    fn check(sizes: &[usize], hidden: Hidden, classes: bool) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let members: Vec<MemberInit> = [(0.05, 0.0, 0.0), (0.02, 0.8, 0.01), (0.1, 0.5, 0.001)]
            .iter()
            .map(|&(lr, mu, l2)| init(sizes, lr, mu, l2, &mut rng))
            .collect();
        let (k, batch, outputs) = (members.len(), 9, sizes[sizes.len() - 1]);
        let mut mlp = StackedMlp::new(sizes, hidden, members.clone()).unwrap();
        let mut sums = vec![Sums::default(); k];
        // Per member, per step: its batch.
        let mut per_member: Vec<Vec<Batch>> = vec![Vec::new(); k];
        for _ in 0..3 {
            let mut inputs = Vec::new();
            let (mut labels, mut vals) = (Vec::new(), Vec::new());
            for own in per_member.iter_mut() {
                let x = draws(batch * sizes[0], 2.0, &mut rng);
                let l: Vec<usize> = (0..batch).map(|_| rng.random_range(0..outputs)).collect();
                let v = draws(batch * outputs, 3.0, &mut rng);
                inputs.extend_from_slice(&x);
                labels.extend_from_slice(&l);
                vals.extend_from_slice(&v);
                own.push((x, l, v));
            }
            let targets = if classes {
                Targets::Classes(&labels)
            } else {
                Targets::Values(&vals, outputs)
            };
            mlp.train_batch(&inputs, targets, &mut sums).unwrap();
        }
        for (i, member) in members.iter().enumerate() {
            let batches: Vec<(Vec<f32>, Targets)> = per_member[i]
                .iter()
                .map(|(x, l, v)| {
                    let t = if classes {
                        Targets::Classes(l)
                    } else {
                        Targets::Values(v, outputs)
                    };
                    (x.clone(), t)
                })
                .collect();
            let (losses, layers) = burn_reference(sizes, hidden, member, &batches);
            let what = format!("{hidden:?} {sizes:?} member {i}");
            let total: f64 = losses.iter().sum();
            assert!(
                (sums[i].loss - total).abs() <= 1e-4 * (1.0 + total.abs()),
                "{what}: loss {} vs Burn's {total}",
                sums[i].loss
            );
            let ours: Vec<Vec<f32>> = mlp
                .member_layers(i)
                .unwrap()
                .into_iter()
                .flat_map(|(w, b)| [w.to_vec(), b.to_vec()])
                .collect();
            for (p, (o, b)) in ours.into_iter().zip(layers).enumerate() {
                assert_close_within(&format!("{what} parameter {p}"), o, b, 1e-5);
            }
        }
    }

    #[test]
    fn three_steps_match_burns_autodiff_and_sgd() {
        for hidden in [
            Hidden::Tanh,
            Hidden::Relu,
            Hidden::LeakyRelu(0.1),
            Hidden::Sigmoid,
            Hidden::Linear,
        ] {
            check(&[4, 6, 5, 3], hidden, true);
            check(&[3, 7, 2], hidden, false);
        }
    }

    #[test]
    fn products_through_gemm_match_the_loops() {
        // Large enough for gemm in every product, and for the rayon threads.
        check(&[64, 48, 40], Hidden::Relu, true);
    }

    #[test]
    fn evaluation_scores_every_member_on_the_same_items() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let sizes = [2, 3, 2];
        let members: Vec<MemberInit> = (0..2)
            .map(|_| init(&sizes, 0.1, 0.0, 0.0, &mut rng))
            .collect();
        let mut mlp = StackedMlp::new(&sizes, Hidden::Relu, members.clone()).unwrap();
        let x = draws(4 * 2, 1.0, &mut rng);
        let labels = [0, 1, 1, 0];
        let mut sums = vec![Sums::default(); 2];
        mlp.evaluate(&x, Targets::Classes(&labels), &mut sums)
            .unwrap();
        for (i, m) in members.iter().enumerate() {
            // By hand: the logits, then cross-entropy and hits.
            let (w1, b1) = &m.layers[0];
            let (w2, b2) = &m.layers[1];
            let (mut loss, mut hits) = (0.0f64, 0.0);
            for (item, &label) in x.chunks(2).zip(&labels) {
                let h: Vec<f32> = (0..3)
                    .map(|j| (b1[j] + item[0] * w1[j] + item[1] * w1[3 + j]).max(0.0))
                    .collect();
                let z: Vec<f32> = (0..2)
                    .map(|j| b2[j] + (0..3).map(|u| h[u] * w2[u * 2 + j]).sum::<f32>())
                    .collect();
                let lse = (z[0].exp() + z[1].exp()).ln();
                loss += f64::from(lse - z[label]);
                hits += f64::from(u8::from((z[1] > z[0]) == (label == 1)));
            }
            assert!(
                (sums[i].loss - loss).abs() < 1e-5,
                "member {i}: {} vs {loss}",
                sums[i].loss
            );
            assert_eq!(sums[i].fit, vec![hits], "member {i}");
        }
        // Evaluation leaves the weights alone.
        assert_eq!(
            mlp.member_layers(0).unwrap()[0].0,
            &members[0].layers[0].0[..]
        );
    }

    #[test]
    fn a_parked_member_keeps_its_weights_and_the_others_train() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let sizes = [2, 3, 2];
        let members: Vec<MemberInit> = (0..2)
            .map(|_| init(&sizes, 0.1, 0.0, 0.0, &mut rng))
            .collect();
        let mut mlp = StackedMlp::new(&sizes, Hidden::Tanh, members.clone()).unwrap();
        mlp.park(0);
        let x = draws(2 * 4 * 2, 1.0, &mut rng);
        let mut sums = vec![Sums::default(); 2];
        mlp.train_batch(&x, Targets::Classes(&[0, 1, 1, 0, 1, 1, 0, 0]), &mut sums)
            .unwrap();
        assert_eq!(
            mlp.member_layers(0).unwrap()[0].0,
            &members[0].layers[0].0[..]
        );
        assert_eq!(sums[0], Sums::default());
        assert_ne!(
            mlp.member_layers(1).unwrap()[0].0,
            &members[1].layers[0].0[..]
        );
    }

    #[test]
    fn wrong_sizes_are_errors_naming_them() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let good = init(&[2, 3, 2], 0.1, 0.0, 0.0, &mut rng);
        let mut short = good.clone();
        short.layers[1].0.pop();
        let err = StackedMlp::new(&[2, 3, 2], Hidden::Relu, vec![good.clone(), short]).unwrap_err();
        assert!(
            err.0.contains("member 1") && err.0.contains("layer 1"),
            "{err}"
        );
        let mut nan = good.clone();
        nan.learning_rate = f32::NAN;
        assert!(StackedMlp::new(&[2, 3, 2], Hidden::Relu, vec![nan]).is_err());
        assert!(StackedMlp::new(&[2, 0, 2], Hidden::Relu, vec![]).is_err());
        let mut mlp = StackedMlp::new(&[2, 3, 2], Hidden::Relu, vec![good]).unwrap();
        let mut sums = vec![Sums::default()];
        // Three input values cannot be items of two.
        let err = mlp.train_batch(&[1.0, 2.0, 3.0], Targets::Classes(&[0]), &mut sums);
        assert!(err.is_err());
        // Values of the wrong width.
        let err = mlp.train_batch(&[1.0, 2.0], Targets::Values(&[1.0, 2.0, 3.0], 3), &mut sums);
        assert!(err.is_err());
    }
}
