//! tanh and leaky ReLU for Burn's flex backend, each one pass forward and one backward
//! from the saved output.
//!
//! tanh is a rational approximation that the compiler vectorises, its gradient
//! `grad · (1 - y²)`.
//!
//! flex computes tanh with libm's scalar `tanhf` (which calls `expm1f`) value by value, and
//! Burn's autodiff computes its backward by evaluating tanh of the input again, then
//! squaring, negating, adding one and multiplying: five passes and four new tensors. In
//! report 001's iris grid (a third of its trials use tanh) `tanhf` and `expm1f` were a
//! quarter of the whole run (docs/performance.md).
//!
//! The approximation is Eigen's `generic_fast_tanh_float`: an odd polynomial of degree 13
//! over an even one of degree 6, on inputs clamped to ±7.9053 (where tanh is 1 in `f32`),
//! and `x` itself below 0.0004 in magnitude. Its largest difference from libm's `tanhf`
//! over the `f32` inputs the tests try is 6 units in the last place (3.6e-7, near 5.8).
//!
//! Burn composes leaky ReLU from a comparison, a scaled copy and a masked select, each
//! tracked for gradients (three tensors and a boolean mask forward, as many backward); here
//! it is `x` or `slope · x` forward and `grad` or `slope · grad` backward, the choice read
//! from the output's sign (for a positive slope the output is negative exactly where the
//! input is, save inputs so small that `slope · x` rounds to zero, whose gradient is then
//! taken as 1).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::kernels::f32_values;

/// Values per parallel task; smaller tensors are computed on the calling thread.
const CHUNK: usize = 1 << 14;

/// `tanh(x)` on flex, differentiable. Call only where
/// [`runs_on_flex`](crate::kernels::runs_on_flex).
pub fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FlexActivation>::tanh_fast(x.into_dispatch()))
}

/// `x` where positive, else `slope · x`, on flex, differentiable; `slope` must be positive.
/// Call only where [`runs_on_flex`](crate::kernels::runs_on_flex).
pub fn leaky_relu<const D: usize>(x: Tensor<D>, slope: f32) -> Tensor<D> {
    debug_assert!(slope > 0.0, "leaky_relu's backward needs a positive slope");
    Tensor::from_dispatch(<Dispatch as FlexActivation>::leaky_relu_fast(
        x.into_dispatch(),
        slope,
    ))
}

/// The operations, as a Burn backend extension for flex with and without autodiff.
#[backend_extension(Flex, Autodiff)]
pub trait FlexActivation: Backend {
    /// Element-wise tanh.
    fn tanh_fast(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Element-wise leaky ReLU with a positive `slope`.
    fn leaky_relu_fast(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self>;
}

impl FlexActivation for Flex {
    fn tanh_fast(x: FlexTensor) -> FlexTensor {
        map(&x, tanh_f32)
    }

    fn leaky_relu_fast(x: FlexTensor, slope: f32) -> FlexTensor {
        map(&x, |v| leaky(v, slope))
    }
}

impl<C: CheckpointStrategy> FlexActivation for Autodiff<Flex, C> {
    fn tanh_fast(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match TanhBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let output = map(x.primitive(), tanh_f32);
                prep.finish(output.clone(), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(map(x.primitive(), tanh_f32)),
        }
    }

    fn leaky_relu_fast(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self> {
        let step = LeakyReluBackward { slope };
        match step.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let output = map(x.primitive(), |v| leaky(v, slope));
                prep.finish(output.clone(), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(map(x.primitive(), |v| leaky(v, slope))),
        }
    }
}

#[inline]
fn leaky(v: f32, slope: f32) -> f32 {
    if v > 0.0 { v } else { v * slope }
}

#[derive(Debug)]
struct TanhBackward;

impl Backward<Flex, 1> for TanhBackward {
    /// The forward pass's output.
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_from_output(ops, grads, |y, g| g * (1.0 - y * y));
    }
}

#[derive(Debug)]
struct LeakyReluBackward {
    slope: f32,
}

impl Backward<Flex, 1> for LeakyReluBackward {
    /// The forward pass's output.
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let slope = self.slope;
        backward_from_output(ops, grads, |y, g| if y < 0.0 { g * slope } else { g });
    }
}

/// Registers the input's gradient `gradient(output, output's gradient)`, value by value.
fn backward_from_output(
    ops: Ops<FlexTensor, 1>,
    grads: &mut Gradients,
    gradient: impl Fn(f32, f32) -> f32 + Sync,
) {
    let [node_x] = ops.parents;
    let grad = grads.consume::<Flex>(&ops.node);
    if let Some(node) = node_x {
        let shape = grad.shape();
        let (grad, output) = (f32_values(&grad), f32_values(&ops.state));
        let mut dx = output.to_vec();
        each_chunk(&mut dx, &grad, |dx, grad| {
            for (d, &g) in dx.iter_mut().zip(grad) {
                *d = gradient(*d, g);
            }
        });
        grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dx, shape)));
    }
}

/// `f` of every value of `x`, as a new tensor of its shape.
fn map(x: &FlexTensor, f: impl Fn(f32) -> f32 + Sync) -> FlexTensor {
    let mut values = f32_values(x).into_owned();
    each_chunk(&mut values, &[], |chunk, _| {
        chunk.iter_mut().for_each(|v| *v = f(*v));
    });
    FlexTensor::from_data(TensorData::new(values, x.shape()))
}

/// Runs `each(chunk of values, same chunk of other)` over `values` (and `other`, empty or as
/// long), in parallel for large tensors.
fn each_chunk(values: &mut [f32], other: &[f32], each: impl Fn(&mut [f32], &[f32]) + Sync) {
    let part = |i: usize, len: usize| other.get(i * CHUNK..i * CHUNK + len).unwrap_or(&[]);
    if values.len() <= CHUNK {
        return each(values, other);
    }
    values
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| each(chunk, part(i, chunk.len())));
}

/// tanh by Eigen's rational approximation (see the module documentation).
#[inline]
pub fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const TINY: f32 = 0.0004;
    const ALPHA: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const BETA: [f32; 4] = [4.893_525e-3, 2.268_434_7e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    let c = x.clamp(-CLAMP, CLAMP);
    let x2 = c * c;
    let mut p = ALPHA[6];
    for &a in ALPHA[..6].iter().rev() {
        p = p * x2 + a;
    }
    let mut q = BETA[3];
    for &b in BETA[..3].iter().rev() {
        q = q * x2 + b;
    }
    let y = c * p / q;
    if x.abs() < TINY { x } else { y }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, values};
    use burn::tensor::{Device, Distribution};

    /// Units in the last place between two `f32`s of one sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn the_approximation_is_within_a_few_ulps_of_libm() {
        // Every 97th f32 from 1e-12 to past the clamp, both signs, and the special points.
        let mut worst = (0, 0.0f32);
        let (lo, hi) = (1e-12f32.to_bits(), 12.0f32.to_bits());
        for bits in (lo..hi).step_by(97) {
            let x = f32::from_bits(bits);
            for x in [x, -x] {
                let (ours, libm) = (tanh_f32(x), x.tanh());
                let error = ulps(ours, libm);
                if error > worst.0 {
                    worst = (error, x);
                }
            }
        }
        // 6 units in the last place near 5.8 (where tanh is 0.99998), fewer elsewhere.
        println!("worst: {} ulps at {}", worst.0, worst.1);
        assert!(worst.0 <= 6, "{} ulps at {}", worst.0, worst.1);
        assert_eq!(tanh_f32(0.0), 0.0);
        assert_eq!(tanh_f32(100.0), 1.0);
        assert_eq!(tanh_f32(-100.0), -1.0);
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert!(tanh_f32(f32::NAN).is_nan());
    }

    /// Values and input gradients of `ours` and `burns` on the same inputs, small (one
    /// thread) and large (in chunks, with a short last one).
    fn matches_burn(
        name: &str,
        ours: impl Fn(Tensor<2>) -> Tensor<2>,
        burns: impl Fn(Tensor<2>) -> Tensor<2>,
    ) {
        let device = Device::flex().autodiff();
        for shape in [[3, 7], [37, 1000]] {
            let x = Tensor::<2>::random(shape, Distribution::Normal(0.0, 2.0), &device);
            let weights = Tensor::<2>::random(shape, Distribution::Default, &device);
            let (x1, x2) = (x.clone().require_grad(), x.detach().require_grad());
            let (y1, y2) = (ours(x1.clone()), burns(x2.clone()));
            let g1 = (y1.clone() * weights.clone()).sum().backward();
            let g2 = (y2.clone() * weights).sum().backward();
            assert_close(&format!("{name} {shape:?}"), values(y1), values(y2));
            let (d1, d2) = (x1.grad(&g1).unwrap(), x2.grad(&g2).unwrap());
            assert_close(&format!("{name} {shape:?} dx"), values(d1), values(d2));
        }
    }

    #[test]
    fn values_and_gradients_match_burns() {
        matches_burn("tanh", tanh, |x| x.tanh());
        for slope in [0.1, 0.01, 1.5] {
            matches_burn(
                &format!("leaky_relu({slope})"),
                |x| leaky_relu(x, slope),
                |x| burn::tensor::activation::leaky_relu(x, slope as f64),
            );
        }
    }

    #[test]
    fn inference_runs_without_autodiff() {
        let x = Tensor::<1>::from_floats([-3.0, -0.5, 0.0, 0.25, 20.0], &Device::flex());
        let y = values(tanh(x.clone()));
        for (y, x) in y.iter().zip(values(x.clone())) {
            assert!((y - x.tanh()).abs() <= 1e-6, "{y} against tanh({x})");
        }
        assert_eq!(values(leaky_relu(x, 0.1)), [-0.3, -0.05, 0.0, 0.25, 20.0]);
    }
}
