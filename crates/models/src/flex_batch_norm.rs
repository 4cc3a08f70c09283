//! Training-mode batch normalisation for Burn's flex CPU backend, in three passes forward
//! and two backward.
//!
//! Burn computes a training batch norm from generic tensor operations: the batch and
//! channel axes are swapped (a full copy) to take each channel's mean, again for the
//! variance, and the backward pass does the same for its two sums before about ten
//! whole-tensor elementwise operations. For report 002's final CNN that was a fifth of a
//! training step (README, "Where the time goes"). Here each sample's channels are read in
//! place: one pass for the means, one for the variances, one to write the output; backward,
//! one pass for both per-channel sums and one to write the input gradient. Statistics are
//! accumulated in `f64`, and the variance is the biased one, as Burn's.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::flex_kernels::f32_values;

/// A training batch norm's output and the batch statistics it used.
pub struct BatchNormOutput<const D: usize> {
    /// `(x - mean) / sqrt(variance + epsilon) * gamma + beta`.
    pub output: Tensor<D>,
    /// Per-channel mean over the batch and spatial positions.
    pub mean: Tensor<1>,
    /// Per-channel biased variance.
    pub variance: Tensor<1>,
}

/// Batch normalisation of `x` (`[batch, channels, ...]`) with its own statistics, on flex,
/// differentiable with respect to `x`, `gamma` and `beta`. Call only where
/// [`runs_on_flex`](crate::flex_kernels::runs_on_flex).
pub fn batch_norm_train<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> BatchNormOutput<D> {
    let (output, mean, variance) = <Dispatch as FlexBatchNorm>::batch_norm_train_fused(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    BatchNormOutput {
        output: Tensor::from_dispatch(output),
        mean: Tensor::from_dispatch(mean),
        variance: Tensor::from_dispatch(variance),
    }
}

/// The operation, as a Burn backend extension for flex with and without autodiff.
#[backend_extension(Flex, Autodiff)]
pub trait FlexBatchNorm: Backend {
    /// `(output, mean, variance)` of a training batch norm.
    fn batch_norm_train_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl FlexBatchNorm for Flex {
    fn batch_norm_train_fused(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        forward(&x, &gamma, &beta, epsilon)
    }
}

impl<C: CheckpointStrategy> FlexBatchNorm for Autodiff<Flex, C> {
    fn batch_norm_train_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let step = BatchNormBackward { epsilon };
        let (output, mean, variance) = match step
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, gamma) = (x.primitive().clone(), gamma.primitive().clone());
                let (output, mean, variance) = forward(&x, &gamma, beta.primitive(), epsilon);
                let state = BatchNormState {
                    x,
                    gamma,
                    mean: mean.clone(),
                    variance: variance.clone(),
                };
                (prep.finish(state, output), mean, variance)
            }
            OpsKind::UnTracked(prep) => {
                let (output, mean, variance) =
                    forward(x.primitive(), gamma.primitive(), beta.primitive(), epsilon);
                (prep.finish(output), mean, variance)
            }
        };
        // The statistics are results, not part of the graph (as in Burn's batch norm).
        (output, Self::from_inner(mean), Self::from_inner(variance))
    }
}

/// What the backward pass needs: the input, gamma, and the batch statistics.
#[derive(Debug, Clone)]
struct BatchNormState {
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
}

#[derive(Debug)]
struct BatchNormBackward {
    epsilon: f64,
}

impl Backward<Flex, 3> for BatchNormBackward {
    type State = BatchNormState;

    fn backward(self, ops: Ops<BatchNormState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (dx, dgamma, dbeta) = backward(&ops.state, &grad, self.epsilon);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, dgamma);
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, dbeta);
        }
    }
}

/// `[batch, channels, positions per channel]` of a `[batch, channels, ...]` tensor.
fn layout(x: &FlexTensor) -> [usize; 3] {
    let dims = x.layout().shape();
    let (batch, channels) = (dims[0], dims[1]);
    let positions = dims.iter().skip(2).product();
    [batch, channels, positions]
}

/// Per-channel sums of `term(channel, value index, value)` over every sample and position,
/// read sample by sample (contiguous) and summed in `f64`.
fn channel_sums(
    values: &[f32],
    [_, channels, positions]: [usize; 3],
    term: impl Fn(usize, usize, f32) -> f32 + Sync,
) -> Vec<f64> {
    if channels * positions == 0 {
        return vec![0.0; channels];
    }
    let sample_len = channels * positions;
    values
        .par_chunks(sample_len)
        .enumerate()
        .fold(
            || vec![0.0f64; channels],
            |mut sums, (n, sample)| {
                for (c, plane) in sample.chunks(positions).enumerate() {
                    let start = n * sample_len + c * positions;
                    // 16 f32 lanes over one plane (at most a few thousand values), then f64.
                    let mut lanes = [0.0f32; 16];
                    for (j, block) in plane.chunks(16).enumerate() {
                        for (k, (lane, &v)) in lanes.iter_mut().zip(block).enumerate() {
                            *lane += term(c, start + 16 * j + k, v);
                        }
                    }
                    sums[c] += lanes.iter().map(|&l| l as f64).sum::<f64>();
                }
                sums
            },
        )
        .reduce(
            || vec![0.0f64; channels],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        )
}

/// Writes `out[i] = value(channel, i, x[i])` for every value of a `[batch, channels, ...]`
/// tensor, sample by sample in parallel.
fn map_channels(
    values: &[f32],
    [_, channels, positions]: [usize; 3],
    value: impl Fn(usize, usize, f32) -> f32 + Sync,
) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    let sample_len = channels * positions;
    if sample_len == 0 {
        return out;
    }
    out.par_chunks_mut(sample_len)
        .zip(values.par_chunks(sample_len))
        .enumerate()
        .for_each(|(n, (out, sample))| {
            for (c, (out, plane)) in out
                .chunks_mut(positions)
                .zip(sample.chunks(positions))
                .enumerate()
            {
                let start = n * sample_len + c * positions;
                for (i, (o, &v)) in out.iter_mut().zip(plane).enumerate() {
                    *o = value(c, start + i, v);
                }
            }
        });
    out
}

fn forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let shape = layout(x);
    let [batch, channels, positions] = shape;
    let count = (batch * positions).max(1) as f64;
    let values = f32_values(x);
    let (gamma, beta) = (f32_values(gamma), f32_values(beta));
    let mean: Vec<f32> = channel_sums(&values, shape, |_, _, v| v)
        .into_iter()
        .map(|s| (s / count) as f32)
        .collect();
    let variance: Vec<f32> = channel_sums(&values, shape, |c, _, v| (v - mean[c]) * (v - mean[c]))
        .into_iter()
        .map(|s| (s / count) as f32)
        .collect();
    let scale: Vec<f32> = (0..channels)
        .map(|c| gamma[c] / (variance[c] as f64 + epsilon).sqrt() as f32)
        .collect();
    let output = map_channels(&values, shape, |c, _, v| (v - mean[c]) * scale[c] + beta[c]);
    let dims = x.layout().shape().clone();
    (
        FlexTensor::from_data(TensorData::new(output, dims)),
        FlexTensor::from_data(TensorData::new(mean, [channels])),
        FlexTensor::from_data(TensorData::new(variance, [channels])),
    )
}

/// `(dx, dgamma, dbeta)` from the output gradient: with `x̂ = (x - mean) / std` and `M`
/// values per channel, `dbeta = Σ dy`, `dgamma = Σ dy x̂`, and
/// `dx = gamma / std (dy - dbeta / M - x̂ dgamma / M)`.
fn backward(
    state: &BatchNormState,
    grad: &FlexTensor,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let shape = layout(&state.x);
    let [batch, channels, positions] = shape;
    let count = (batch * positions).max(1) as f32;
    let (values, grad) = (f32_values(&state.x), f32_values(grad));
    let (gamma, mean) = (f32_values(&state.gamma), f32_values(&state.mean));
    let variance = f32_values(&state.variance);
    let inv_std: Vec<f32> = variance
        .iter()
        .map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32)
        .collect();
    let dbeta = channel_sums(&grad, shape, |_, i, _| grad[i]);
    let dgamma: Vec<f32> = channel_sums(&values, shape, |c, i, v| grad[i] * (v - mean[c]))
        .iter()
        .zip(&inv_std)
        .map(|(s, &inv)| (s * inv as f64) as f32)
        .collect();
    let dbeta: Vec<f32> = dbeta.into_iter().map(|s| s as f32).collect();
    let dx = map_channels(&values, shape, |c, i, v| {
        let normalized = (v - mean[c]) * inv_std[c];
        gamma[c] * inv_std[c] * (grad[i] - dbeta[c] / count - normalized * dgamma[c] / count)
    });
    let dims = state.x.layout().shape().clone();
    (
        FlexTensor::from_data(TensorData::new(dx, dims)),
        FlexTensor::from_data(TensorData::new(dgamma, [channels])),
        FlexTensor::from_data(TensorData::new(dbeta, [channels])),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::batch_norm_train as burn_batch_norm_train;
    use burn::tensor::{Device, Distribution};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec().unwrap()
    }

    fn assert_close(name: &str, ours: Vec<f32>, burns: Vec<f32>) {
        assert_eq!(ours.len(), burns.len(), "{name}: lengths");
        let scale = burns.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * scale,
                "{name}[{i}]: ours {a}, Burn's {b}"
            );
        }
    }

    fn check<const D: usize>(dims: [usize; D]) {
        let device = Device::flex().autodiff();
        let x = Tensor::<D>::random(dims, Distribution::Normal(3.0, 2.0), &device);
        let gamma = Tensor::<1>::random([dims[1]], Distribution::Normal(1.0, 0.5), &device);
        let beta = Tensor::<1>::random([dims[1]], Distribution::Normal(0.0, 0.5), &device);
        // The output gradient is not uniform, so every term of dx matters.
        let weights = Tensor::<D>::random(dims, Distribution::Normal(0.0, 1.0), &device);
        let copy = |t: &Tensor<1>| Tensor::from_data(t.to_data(), &device).require_grad();
        let (x1, x2) = (
            x.clone().require_grad(),
            Tensor::<D>::from_data(x.to_data(), &device).require_grad(),
        );
        let (g1, g2) = (copy(&gamma), copy(&gamma));
        let (b1, b2) = (copy(&beta), copy(&beta));

        let ours = batch_norm_train(x1.clone(), g1.clone(), b1.clone(), 1e-3);
        let burns = burn_batch_norm_train(x2.clone(), g2.clone(), b2.clone(), 1e-3);
        let name = format!("{dims:?}");
        assert_close(
            &format!("{name} mean"),
            values(ours.mean),
            values(burns.mean),
        );
        assert_close(
            &format!("{name} variance"),
            values(ours.variance),
            values(burns.variance),
        );
        let grads_ours = (ours.output.clone() * weights.clone()).sum().backward();
        let grads_burn = (burns.output.clone() * weights).sum().backward();
        assert_close(
            &format!("{name} output"),
            values(ours.output),
            values(burns.output),
        );
        assert_close(
            &format!("{name} dx"),
            values(x1.grad(&grads_ours).unwrap()),
            values(x2.grad(&grads_burn).unwrap()),
        );
        for (what, a, b) in [
            ("dgamma", g1.grad(&grads_ours), g2.grad(&grads_burn)),
            ("dbeta", b1.grad(&grads_ours), b2.grad(&grads_burn)),
        ] {
            assert_close(
                &format!("{name} {what}"),
                values(a.unwrap()),
                values(b.unwrap()),
            );
        }
    }

    /// Statistics, output and all three gradients agree with Burn's batch norm, for images
    /// and for flat features (one position per channel).
    #[test]
    fn batch_norm_matches_burn() {
        check([4, 3, 5, 7]);
        check([2, 5, 1, 1]);
        check([16, 6]);
    }

    /// Without autodiff the output and statistics are the same as with it.
    #[test]
    fn inference_device_gives_the_same_output() {
        let device = Device::flex();
        let x = Tensor::<4>::random([3, 2, 4, 4], Distribution::Normal(0.0, 1.0), &device);
        let (gamma, beta) = (
            Tensor::<1>::ones([2], &device),
            Tensor::<1>::zeros([2], &device),
        );
        let ours = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
        let burns = burn_batch_norm_train(x, gamma, beta, 1e-5);
        assert_close("output", values(ours.output), values(burns.output));
    }
}
