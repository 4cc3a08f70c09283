//! Training-mode batch normalisation for Burn's flex CPU backend, in two passes forward
//! and two backward.
//!
//! Burn computes a training batch norm from generic tensor operations: the batch and
//! channel axes are swapped (a full copy) to take each channel's mean, again for the
//! variance, and the backward pass does the same for its two sums before about ten
//! whole-tensor elementwise operations. For report 002's final CNN that was a fifth of a
//! training step (docs/performance.md). Here each sample's channels are read in
//! place: one pass for the means and variances (of values shifted by a sample of each
//! channel, so that one pass loses no precision), one to write the output; backward, one
//! pass for both per-channel sums and one to write the input gradient. Statistics are
//! accumulated in `f64`, and the variance is the biased one, as Burn's.

use std::mem::MaybeUninit;

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

use crate::kernels::{assume_init, f32_values, uninit};

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
/// [`runs_on_flex`](crate::kernels::runs_on_flex).
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

/// Per-channel sums over two tensors of one shape, `a` and `b`, with `d = b - shift[c]`:
/// `[Σ a, Σ a d, Σ d, Σ d²]`. Read sample by sample (contiguous), each plane summed in 16
/// `f32` lanes (a plane is at most a few thousand values), the planes in `f64`, in a fixed
/// order.
fn channel_sums(a: &[f32], b: &[f32], shift: &[f32], shape: [usize; 3]) -> Vec<[f64; 4]> {
    let [_, channels, positions] = shape;
    let sample_len = channels * positions;
    if sample_len == 0 {
        return vec![[0.0; 4]; channels];
    }
    // Each sample's sums in parallel, then added in sample order: the result does not
    // depend on how the work was split between threads (runs with one seed repeat exactly).
    let per_sample: Vec<Vec<[f64; 4]>> = a
        .par_chunks(sample_len)
        .zip(b.par_chunks(sample_len))
        .map(|(a, b)| {
            let planes = a.chunks(positions).zip(b.chunks(positions));
            planes
                .zip(shift)
                .map(|((a, b), &k)| plane_sums(a, b, k))
                .collect()
        })
        .collect();
    let mut sums = vec![[0.0f64; 4]; channels];
    for sample in per_sample {
        for (sum, sample) in sums.iter_mut().zip(sample) {
            sum.iter_mut().zip(sample).for_each(|(s, v)| *s += v);
        }
    }
    sums
}

/// One plane's `[Σ a, Σ a d, Σ d, Σ d²]` with `d = b - k`: value `i` of the plane goes to
/// lane `i mod 16`, each lane adds its values in plane order, then the lanes are added in
/// `f64`, lane 0 first. The whole blocks of 16 are fixed-size arrays, read in two passes of
/// two sums each, so that the compiler keeps each pass's lanes in vector registers (one
/// loop over variable-length chunks was scalar, 17 % of a batch-32 CNN's training step;
/// one pass of all four sums spilled registers); the last partial block adds to lanes
/// `0..len % 16` as before, so every sum is bit for bit what it was.
///
/// On a CPU with AVX-512 the same code is compiled for it (`plane_sums_avx512`): the lanes,
/// operations and order are the same, so are the sums; a batch-32 CNN's planes then take a
/// quarter of the vector instructions.
fn plane_sums(a: &[f32], b: &[f32], k: f32) -> [f64; 4] {
    #[cfg(target_arch = "x86_64")]
    if crate::avx512() {
        // SAFETY: the CPU has AVX-512 (checked just above).
        return unsafe { plane_sums_avx512(a, b, k) };
    }
    plane_sums_here(a, b, k)
}

/// [`plane_sums`] compiled for AVX-512.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_sums_avx512(a: &[f32], b: &[f32], k: f32) -> [f64; 4] {
    plane_sums_here(a, b, k)
}

#[inline(always)]
fn plane_sums_here(a: &[f32], b: &[f32], k: f32) -> [f64; 4] {
    let mut lanes = [[0.0f32; 16]; 4];
    let (a_blocks, a_rest) = a.as_chunks::<16>();
    let (b_blocks, b_rest) = b.as_chunks::<16>();
    let [sum_a, sum_ad, sum_d, sum_dd] = &mut lanes;
    for (a, b) in a_blocks.iter().zip(b_blocks) {
        for i in 0..16 {
            sum_a[i] += a[i];
            sum_d[i] += b[i] - k;
        }
    }
    for (a, b) in a_blocks.iter().zip(b_blocks) {
        for i in 0..16 {
            let d = b[i] - k;
            sum_ad[i] += a[i] * d;
            sum_dd[i] += d * d;
        }
    }
    for (i, (&a, &b)) in a_rest.iter().zip(b_rest).enumerate() {
        let d = b - k;
        sum_a[i] += a;
        sum_ad[i] += a * d;
        sum_d[i] += d;
        sum_dd[i] += d * d;
    }
    lanes.map(|lanes| lanes.iter().map(|&l| l as f64).sum::<f64>())
}

/// `k0 a + k1 (b - k3) + k2` for every value, with channel `c`'s coefficients
/// `[k0, k1, k2, k3] = coefficients[c]`, sample by sample in parallel. The output is
/// written once, without zeroing it first (zeroing was 5 % of a batch-32 CNN's step).
fn map_channels(a: &[f32], b: &[f32], coefficients: &[[f32; 4]], shape: [usize; 3]) -> Vec<f32> {
    let [batch, channels, positions] = shape;
    let sample_len = channels * positions;
    // What the unsafe block below relies on: the samples, planes and coefficients cover
    // the output exactly. The callers pass one tensor's values and layout.
    assert!(
        a.len() == batch * sample_len && b.len() == a.len() && coefficients.len() == channels,
        "batch norm: {} and {} values, {} channel coefficients for shape {shape:?}",
        a.len(),
        b.len(),
        coefficients.len()
    );
    let mut out = uninit::<f32>(a.len());
    if sample_len == 0 {
        // SAFETY: an empty output, or one of zero-sized samples, has no values to write.
        return unsafe { assume_init(out) };
    }
    out.par_chunks_mut(sample_len)
        .zip(a.par_chunks(sample_len).zip(b.par_chunks(sample_len)))
        .for_each(|(out, (a, b))| {
            let planes = out
                .chunks_mut(positions)
                .zip(a.chunks(positions).zip(b.chunks(positions)));
            for ((out, (a, b)), &k) in planes.zip(coefficients) {
                map_plane(out, a, b, k);
            }
        });
    // SAFETY: the output has `batch` samples of `channels` planes of `positions` values
    // (asserted above); every sample is zipped with one of `a` (as long), every plane with
    // a coefficient (one per channel) and every value of a plane written.
    unsafe { assume_init(out) }
}

/// `k0 a + k1 (b - k3) + k2` for one plane, value by value (compiled for AVX-512 where
/// the CPU has it: the same operations on each value, so the same values).
fn map_plane(out: &mut [MaybeUninit<f32>], a: &[f32], b: &[f32], k: [f32; 4]) {
    #[cfg(target_arch = "x86_64")]
    if crate::avx512() {
        // SAFETY: the CPU has AVX-512 (checked just above).
        return unsafe { map_plane_avx512(out, a, b, k) };
    }
    map_plane_here(out, a, b, k)
}

/// [`map_plane`] compiled for AVX-512.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn map_plane_avx512(out: &mut [MaybeUninit<f32>], a: &[f32], b: &[f32], k: [f32; 4]) {
    map_plane_here(out, a, b, k)
}

#[inline(always)]
fn map_plane_here(out: &mut [MaybeUninit<f32>], a: &[f32], b: &[f32], [k0, k1, k2, k3]: [f32; 4]) {
    for (o, (&a, &b)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = MaybeUninit::new(k0 * a + k1 * (b - k3) + k2);
    }
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
    // Sums of x - shift, with each channel's first value as its shift: close to the mean,
    // so that the variance from one pass loses no precision.
    let shift: Vec<f32> = (0..channels)
        .map(|c| values.get(c * positions).copied().unwrap_or(0.0))
        .collect();
    let sums = channel_sums(&values, &values, &shift, shape);
    let (mut mean, mut variance) = (Vec::new(), Vec::new());
    for (&[_, _, d, dd], &k) in sums.iter().zip(&shift) {
        let centre = d / count;
        mean.push((k as f64 + centre) as f32);
        variance.push((dd / count - centre * centre).max(0.0) as f32);
    }
    let coefficients: Vec<[f32; 4]> = (0..channels)
        .map(|c| {
            let scale = gamma[c] / (variance[c] as f64 + epsilon).sqrt() as f32;
            [0.0, scale, beta[c], mean[c]]
        })
        .collect();
    let output = map_channels(&values, &values, &coefficients, shape);
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
    let count = (batch * positions).max(1) as f64;
    let (values, grad) = (f32_values(&state.x), f32_values(grad));
    let (gamma, mean) = (f32_values(&state.gamma), f32_values(&state.mean));
    let variance = f32_values(&state.variance);
    let sums = channel_sums(&grad, &values, &mean, shape);
    let (mut dgamma, mut dbeta, mut coefficients) = (Vec::new(), Vec::new(), Vec::new());
    for c in 0..channels {
        let inv_std = 1.0 / (variance[c] as f64 + epsilon).sqrt();
        let [sum_dy, sum_dy_centred, _, _] = sums[c];
        let scale = gamma[c] as f64 * inv_std;
        dbeta.push(sum_dy as f32);
        dgamma.push((sum_dy_centred * inv_std) as f32);
        // dx = scale dy - scale inv_std² Σdy(x - mean) / M (x - mean) - scale Σdy / M
        coefficients.push([
            scale as f32,
            (-scale * inv_std * inv_std * sum_dy_centred / count) as f32,
            (-scale * sum_dy / count) as f32,
            mean[c],
        ]);
    }
    let dx = map_channels(&grad, &values, &coefficients, shape);
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
    use crate::kernels::testing::{assert_close, assert_close_within, values};
    use burn::tensor::module::batch_norm_train as burn_batch_norm_train;
    use burn::tensor::{Device, Distribution};

    fn check<const D: usize>(dims: [usize; D], mean: f64, tolerance: f32) {
        let device = Device::flex().autodiff();
        let x = Tensor::<D>::random(dims, Distribution::Normal(mean, 2.0), &device);
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
        // The statistics are held to 1e-4 whatever the offset.
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
        assert_close_within(
            &format!("{name} output"),
            values(ours.output),
            values(burns.output),
            tolerance,
        );
        assert_close_within(
            &format!("{name} dx"),
            values(x1.grad(&grads_ours).unwrap()),
            values(x2.grad(&grads_burn).unwrap()),
            tolerance,
        );
        for (what, a, b) in [
            ("dgamma", g1.grad(&grads_ours), g2.grad(&grads_burn)),
            ("dbeta", b1.grad(&grads_ours), b2.grad(&grads_burn)),
        ] {
            assert_close_within(
                &format!("{name} {what}"),
                values(a.unwrap()),
                values(b.unwrap()),
                tolerance,
            );
        }
    }

    /// Statistics, output and all three gradients agree with Burn's batch norm, for images
    /// and for flat features (one position per channel), near zero and far from it.
    /// The form `plane_sums` replaced: variable-length chunks of 16, value `i` of a chunk
    /// to lane `i`.
    fn plane_sums_by_chunks(a: &[f32], b: &[f32], k: f32) -> [f64; 4] {
        let mut lanes = [[0.0f32; 16]; 4];
        for (a, b) in a.chunks(16).zip(b.chunks(16)) {
            for (i, (&a, &b)) in a.iter().zip(b).enumerate() {
                let d = b - k;
                lanes[0][i] += a;
                lanes[1][i] += a * d;
                lanes[2][i] += d;
                lanes[3][i] += d * d;
            }
        }
        lanes.map(|lanes| lanes.iter().map(|&l| l as f64).sum::<f64>())
    }

    #[test]
    fn plane_sums_are_bit_for_bit_the_chunked_form() {
        // Plane sizes with and without a partial last block, below one block and empty.
        for len in [0, 1, 7, 16, 31, 32, 144, 169, 676, 1000] {
            let wave = |scale: f32, phase: f32| -> Vec<f32> {
                (0..len)
                    .map(|i| scale * (i as f32 * 0.37 + phase).sin())
                    .collect()
            };
            let (a, b) = (wave(1.5, 0.0), wave(3.0, 1.0));
            let (got, want) = (plane_sums(&a, &b, 0.25), plane_sums_by_chunks(&a, &b, 0.25));
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "plane of {len}: {got:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn the_avx512_build_of_the_map_gives_the_baseline_values() {
        let len = 1000;
        let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 1.5).collect();
        let b: Vec<f32> = (0..len)
            .map(|i| (i as f32 * 0.11 + 1.0).cos() * 3.0)
            .collect();
        let k = [0.7, -1.3, 0.05, 0.25];
        type PlaneMap = fn(&mut [MaybeUninit<f32>], &[f32], &[f32], [f32; 4]);
        let run = |f: PlaneMap| -> Vec<u32> {
            let mut out = uninit::<f32>(len);
            f(&mut out, &a, &b, k);
            // SAFETY: the map wrote every value.
            unsafe { assume_init(out) }
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        // `map_plane` takes the AVX-512 build where the CPU has it; `map_plane_here` is
        // the baseline build.
        assert_eq!(run(map_plane), run(map_plane_here));
        let sums = |f: fn(&[f32], &[f32], f32) -> [f64; 4]| f(&a, &b, 0.25).map(f64::to_bits);
        assert_eq!(sums(plane_sums), sums(plane_sums_here));
    }

    #[test]
    fn batch_norm_matches_burn() {
        check([4, 3, 5, 7], 3.0, 1e-4);
        check([2, 5, 1, 1], 3.0, 1e-4);
        check([16, 6], 3.0, 1e-4);
        // Far from zero, where a one-pass variance without the shift loses its last digits
        // (about 1e-3 off here). Values near 1,000 carry f32 errors of 6e-5, which Burn's
        // gradient sums and ours round differently: those are held to 1e-3.
        check([8, 2, 6, 6], 1000.0, 1e-3);
    }

    /// Two runs on the same input give the same bits, however the threads split the work
    /// (the sums are added in sample order), so one seed repeats a training run exactly.
    #[test]
    fn results_repeat_exactly() {
        let device = Device::flex();
        let x = Tensor::<4>::random([64, 8, 12, 12], Distribution::Normal(1.0, 3.0), &device);
        let (gamma, beta) = (
            Tensor::<1>::ones([8], &device),
            Tensor::<1>::zeros([8], &device),
        );
        let run = || {
            let out = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
            (values(out.output), values(out.mean), values(out.variance))
        };
        let first = run();
        for _ in 0..5 {
            assert_eq!(run(), first);
        }
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
