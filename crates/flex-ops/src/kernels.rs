//! Convolution and max-pooling kernels for Burn's flex CPU backend, used instead of flex's
//! own for the layers where those were measured slow (docs/performance.md).
//!
//! flex computes a max pool through a general window loop, its backward as a scatter-add
//! into a zeroed plane, and a convolution's weight gradient as a convolution of swapped
//! tensors (for a 3x3 kernel, a gemm with nine rows). Here:
//! - a max pool whose windows do not overlap (stride = window, as in every report) records
//!   each window's winner (its first maximum) as it takes the maximum, and its backward
//!   writes each gradient to its winner;
//! - a convolution (any kernel, stride and padding; no dilation or groups) is im2col and one
//!   gemm per image with the bias and a ReLU fused in; its backward is, per image, one gemm
//!   for the weight gradient and one for the input gradient followed by col2im;
//! - a ReLU convolution followed by such a pool is one operation: each image is convolved
//!   and pooled while in cache, the convolution's output is never stored, and the backward
//!   pass rebuilds each image's gradient from the winners as it reaches that image.
//!
//! Both are a Burn backend extension with a hand-written backward for `Autodiff<Flex>`, so
//! gradients flow through them as through Burn's own operations; the tests compare values
//! and gradients with Burn's.

use std::mem::MaybeUninit;

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, FloatTensorOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::tensor::{DType, Device, Tensor, TensorData};
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// A 2-D window (convolution kernel or pooling window) sliding over `[batch, channels,
/// height, width]` images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Step between windows, down and across.
    pub stride: [usize; 2],
    /// (begin, end) zero padding of the height and of the width.
    pub padding: [(usize, usize); 2],
}

impl Window {
    /// Output height and width over an input of `[height, width]`.
    pub fn output(&self, [h, w]: [usize; 2]) -> [usize; 2] {
        let out = |len: usize, axis: usize| {
            let (begin, end) = self.padding[axis];
            (len + begin + end - self.kernel[axis]) / self.stride[axis] + 1
        };
        [out(h, 0), out(w, 1)]
    }
}

/// Whether `x` lives on flex (with or without autodiff) as `f32`, so these kernels apply.
pub fn runs_on_flex<const D: usize>(x: &Tensor<D>) -> bool {
    is_flex(&x.device()) && x.dtype() == DType::F32
}

/// Whether `device` is flex, with or without autodiff.
pub fn is_flex(device: &Device) -> bool {
    matches!(
        device.as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    )
}

/// `relu?(conv2d(x, weight) + bias)` on flex: `x` is `[batch, channels, h, w]`, `weight`
/// `[filters, channels, kh, kw]`, `bias` `[filters]`. Call only where [`runs_on_flex`].
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    window: Window,
    relu: bool,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FlexKernels>::conv2d_fused(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        window,
        relu,
    ))
}

/// Max pooling with `window.stride == window.kernel` on flex. Call only where
/// [`runs_on_flex`].
pub fn max_pool2d(x: Tensor<4>, window: Window) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FlexKernels>::max_pool2d_tiled(
        x.into_dispatch(),
        window,
    ))
}

/// `max_pool2d(relu(conv2d(x, weight) + bias), pool)` on flex, for a pool whose windows do
/// not overlap (`pool.stride == pool.kernel`). The convolution's output is pooled image by
/// image while it is in cache and never stored: the backward pass needs only each window's
/// winner. Call only where [`runs_on_flex`].
pub fn conv2d_relu_max_pool2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    conv: Window,
    pool: Window,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FlexKernels>::conv2d_relu_max_pool2d_fused(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        conv,
        pool,
    ))
}

/// `relu?(x · weight + bias)` for inference on flex: `x` is `[batch, inputs]`, `weight`
/// `[inputs, units]`, `bias` `[units]`. One gemm accumulates into rows that already hold
/// the bias, and the ReLU runs over the output while it is in cache: no separate pass or
/// tensor for either. Call only where [`runs_on_flex`] and not on the autodiff device (it
/// records no gradient; there Burn's operations are used).
pub fn dense(x: Tensor<2>, weight: Tensor<2>, bias: Tensor<1>, relu: bool) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FlexKernels>::dense_fused(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        relu,
    ))
}

/// `x · weight + bias` on flex for training: Burn's `linear` with the same sums forward and
/// backward (the same gemm calls as flex's matrix product, the same bias sum), but with
/// each product written into a buffer that is not zeroed first (`matmul_2d`). `x` is
/// `[batch, inputs]`, `weight` `[inputs, units]`, `bias` `[units]`. Call only where
/// [`runs_on_flex`].
pub fn linear(x: Tensor<2>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FlexKernels>::linear_unzeroed(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// The operations, as a Burn backend extension for flex with and without autodiff.
#[backend_extension(Flex, Autodiff)]
pub trait FlexKernels: Backend {
    /// `relu?(x · weight + bias)` (inference).
    fn dense_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// `x · weight + bias` (Burn's `linear`, its products into unzeroed buffers).
    fn linear_unzeroed(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `relu?(conv2d(x, weight) + bias)`.
    fn conv2d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        window: Window,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// Max pooling over non-overlapping windows.
    fn max_pool2d_tiled(x: FloatTensor<Self>, window: Window) -> FloatTensor<Self>;

    /// `max_pool2d(relu(conv2d(x, weight) + bias), pool)`.
    fn conv2d_relu_max_pool2d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        conv: Window,
        pool: Window,
    ) -> FloatTensor<Self>;
}

impl FlexKernels for Flex {
    fn dense_fused(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, relu: bool) -> FlexTensor {
        dense_forward(&x, &weight, &bias, relu)
    }

    fn linear_unzeroed(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        linear_forward(&x, &weight, &bias)
    }

    fn conv2d_fused(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        window: Window,
        relu: bool,
    ) -> FlexTensor {
        conv_forward(&x, &weight, &bias, window, relu)
    }

    fn max_pool2d_tiled(x: FlexTensor, window: Window) -> FlexTensor {
        max_pool_forward(&x, window, false).0
    }

    fn conv2d_relu_max_pool2d_fused(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        conv: Window,
        pool: Window,
    ) -> FlexTensor {
        conv_relu_pool_forward(&x, &weight, &bias, conv, pool, false).0
    }
}

impl<C: CheckpointStrategy> FlexKernels for Autodiff<Flex, C> {
    /// The tracked `linear` and Burn's ReLU: the fused kernel is for inference.
    fn dense_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        let y = Self::linear_unzeroed(x, weight, bias);
        if relu { Self::relu(y) } else { y }
    }

    fn linear_unzeroed(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (x_tracked, weight_tracked) = (x.is_tracked(), weight.is_tracked());
        match LinearBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let output = linear_forward(x.primitive(), weight.primitive(), bias.primitive());
                // As Burn's: x only for the weight's gradient, the weight only for x's.
                let state = LinearState {
                    x: weight_tracked.then(|| x.primitive().clone()),
                    weight: x_tracked.then(|| weight.primitive().clone()),
                };
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(linear_forward(
                x.primitive(),
                weight.primitive(),
                bias.primitive(),
            )),
        }
    }

    fn conv2d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        window: Window,
        relu: bool,
    ) -> FloatTensor<Self> {
        tracked_conv::<C>([x, weight, bias], window, |x, weight, bias, record| {
            let output = conv_forward(x, weight, bias, window, relu);
            let after = match record && relu {
                true => AfterConv::Relu(output.clone()),
                false => AfterConv::Nothing,
            };
            (output, after)
        })
    }

    fn max_pool2d_tiled(x: FloatTensor<Self>, window: Window) -> FloatTensor<Self> {
        match PoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (output, winners) = max_pool_forward(x.primitive(), window, true);
                let state = PoolState {
                    input: dims4(x.primitive()),
                    window,
                    winners: std::sync::Arc::new(winners),
                };
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(max_pool_forward(x.primitive(), window, false).0)
            }
        }
    }

    fn conv2d_relu_max_pool2d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        conv: Window,
        pool: Window,
    ) -> FloatTensor<Self> {
        tracked_conv::<C>([x, weight, bias], conv, |x, weight, bias, record| {
            let (output, winners) = conv_relu_pool_forward(x, weight, bias, conv, pool, record);
            let winners = std::sync::Arc::new(winners);
            (
                output,
                AfterConv::Pool {
                    winners,
                    window: pool,
                },
            )
        })
    }
}

/// What a dense layer's backward needs: its input (for the weight's gradient) and its
/// weights (for the input's), each only where that gradient is wanted.
#[derive(Debug, Clone)]
struct LinearState {
    x: Option<FlexTensor>,
    weight: Option<FlexTensor>,
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearState;

    /// Burn's `linear` backward (burn-backend's `linear_x_backward`,
    /// `linear_weight_backward`, `linear_bias_backward`): the same products of the same
    /// transposed views, and the bias gradient by flex's own column sum.
    fn backward(self, ops: Ops<LinearState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let LinearState { x, weight } = ops.state;
        if let (Some(node), Some(weight)) = (node_x, weight) {
            grads.register::<Flex>(node.id, matmul_2d(&grad, &weight.transpose(0, 1)));
        }
        if let (Some(node), Some(x)) = (node_weight, x) {
            grads.register::<Flex>(node.id, matmul_2d(&x.transpose(0, 1), &grad));
        }
        if let Some(node) = node_bias {
            let units = grad.layout().shape().dims::<2>()[1];
            let sums = Flex::float_sum_dim(grad, 0);
            grads.register::<Flex>(node.id, Flex::float_reshape(sums, [units].into()));
        }
    }
}

/// `x · weight + bias`, the product by [`matmul_2d`], the bias added to each row (the
/// values of flex's broadcast addition).
fn linear_forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let mut output = matmul_2d(x, weight);
    let bias = f32_values(bias);
    if !bias.is_empty() {
        for row in output.storage_mut::<f32>().chunks_mut(bias.len()) {
            for (o, b) in row.iter_mut().zip(bias.iter()) {
                *o += b;
            }
        }
    }
    output
}

/// flex's 2-D matrix product `lhs · rhs` (burn-flex's `matmul_2d_strided`): the same gemm
/// call, with the operands' strides and flex's threading, so the same sums; but into a
/// buffer that is written once. flex makes its output with `FlexTensor::empty`, which
/// zeroes a byte vector and then copies it into one of the alignment its byte store
/// enforces: for report 002's MLP, 2.4 MB zeroed and copied per weight gradient.
fn matmul_2d(lhs: &FlexTensor, rhs: &FlexTensor) -> FlexTensor {
    /// burn-flex's threshold (`PARALLEL_THRESHOLD`) for splitting a product between threads.
    const PARALLEL_MULTIPLY_ADDS: usize = 192 * 192 * 192;
    let [m, k] = lhs.layout().shape().dims::<2>();
    let n = rhs.layout().shape().dims::<2>()[1];
    let (lhs_strides, rhs_strides) = (lhs.layout().strides(), rhs.layout().strides());
    let lhs_values = &lhs.storage::<f32>()[lhs.layout().start_offset()..];
    let rhs_values = &rhs.storage::<f32>()[rhs.layout().start_offset()..];
    let mut out = uninit::<f32>(m * n);
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MULTIPLY_ADDS {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the layouts address `[m, k]` and `[k, n]` values within their storage from
    // their start offsets; `out` holds `m * n` values, row-major, and does not alias them.
    // With `read_dst` false and alpha 0 gemm writes every output value (zeros when k is 0).
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr().cast::<f32>(),
            1,
            n as isize,
            false,
            lhs_values.as_ptr(),
            lhs_strides[1],
            lhs_strides[0],
            rhs_values.as_ptr(),
            rhs_strides[1],
            rhs_strides[0],
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    // SAFETY: gemm wrote every value (above).
    flex_tensor(unsafe { assume_init(out) }, [m, n])
}

/// A convolution on `Autodiff<Flex>`: `forward(x, weight, bias, record)` computes the output
/// and, with `record`, what the backward pass needs besides the inputs.
fn tracked_conv<C: CheckpointStrategy>(
    [x, weight, bias]: [FloatTensor<Autodiff<Flex, C>>; 3],
    window: Window,
    forward: impl FnOnce(&FlexTensor, &FlexTensor, &FlexTensor, bool) -> (FlexTensor, AfterConv),
) -> FloatTensor<Autodiff<Flex, C>> {
    match (ConvBackward { window })
        .prepare::<C>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (x, weight) = (x.primitive().clone(), weight.primitive().clone());
            let (output, after) = forward(&x, &weight, bias.primitive(), true);
            prep.finish(ConvState { x, weight, after }, output)
        }
        OpsKind::UnTracked(prep) => {
            let (output, _) = forward(x.primitive(), weight.primitive(), bias.primitive(), false);
            prep.finish(output)
        }
    }
}

/// What stood between a convolution and the gradient its backward pass receives.
#[derive(Debug, Clone)]
enum AfterConv {
    /// Nothing: the gradient is the convolution's own.
    Nothing,
    /// A fused ReLU, with the output whose zeros mark where it cut the gradient.
    Relu(FlexTensor),
    /// A fused ReLU and max pool (its `window`), with each pooled output's winner (its
    /// plane offset, or [`NO_WINNER`] where the ReLU passed no gradient). The winners are
    /// moved in, not copied (an `Arc<[u32]>` made from a `Vec` copies it).
    Pool {
        winners: std::sync::Arc<Vec<u32>>,
        window: Window,
    },
}

/// What a convolution's backward needs: its input, weights, and what was fused after it.
#[derive(Debug, Clone)]
struct ConvState {
    x: FlexTensor,
    weight: FlexTensor,
    after: AfterConv,
}

#[derive(Debug)]
struct ConvBackward {
    window: Window,
}

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<ConvState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_conv_gradients(ops, grads, |state, grad, want| {
            let [_, _, ch, cw] = dims4(&state.x);
            let convolved = self.window.output([ch, cw]);
            let grad = f32_values(&grad);
            let output = match &state.after {
                AfterConv::Relu(output) => Some(f32_values(output)),
                _ => None,
            };
            let grad = match (&state.after, &output) {
                (AfterConv::Relu(_), Some(output)) => OutputGrad::Relu {
                    grad: &grad,
                    output,
                },
                (AfterConv::Pool { winners, window }, _) => OutputGrad::Pooled {
                    grad: &grad,
                    winners,
                    pool: PlanePool::new(*window, convolved),
                },
                _ => OutputGrad::Plain(&grad),
            };
            conv_backward(&state.x, &state.weight, grad, self.window, want)
        });
    }
}

/// Consumes a convolution's output gradient and registers the input, weight and bias
/// gradients that `gradients(state, output gradient, wanted)` computes.
fn register_conv_gradients<S>(
    ops: Ops<S, 3>,
    grads: &mut Gradients,
    gradients: impl FnOnce(S, FlexTensor, Wanted) -> (Option<FlexTensor>, FlexTensor, FlexTensor),
) {
    let Ops {
        parents: [node_x, node_weight, node_bias],
        node,
        state,
    } = ops;
    let grad = grads.consume::<Flex>(&node);
    let want = Wanted {
        x: node_x.is_some(),
        weight: node_weight.is_some(),
    };
    let (dx, dweight, dbias) = gradients(state, grad, want);
    if let (Some(node), Some(dx)) = (node_x, dx) {
        grads.register::<Flex>(node.id, dx);
    }
    if let Some(node) = node_weight {
        grads.register::<Flex>(node.id, dweight);
    }
    if let Some(node) = node_bias {
        grads.register::<Flex>(node.id, dbias);
    }
}

/// What a max pool's backward needs: its input's dimensions and, for each output, the
/// plane offset of its window's winner (first maximum).
#[derive(Debug, Clone)]
struct PoolState {
    input: [usize; 4],
    window: Window,
    winners: std::sync::Arc<Vec<u32>>,
}

#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = PoolState;

    fn backward(self, ops: Ops<PoolState, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node_x {
            let PoolState {
                input,
                window,
                winners,
            } = ops.state;
            let [batch, channels, h, w] = input;
            let (grad, planes) = (f32_values(&grad), batch * channels);
            let pooled = winners.len() / planes.max(1);
            let dx = if pooled > 0 && h * w > 0 {
                let pool = PlanePool::new(window, [h, w]);
                // Each plane written whole by the thread that unpools into it.
                let mut dx = uninit::<f32>(planes * h * w);
                dx.par_chunks_mut(h * w)
                    .zip(grad.par_chunks(pooled).zip(winners.par_chunks(pooled)))
                    .for_each(|(dx, (grad, winners))| pool.unpool(dx, grad, winners));
                // SAFETY: every plane was written whole (the planes cover the vector:
                // `winners` holds `pooled` per plane).
                unsafe { assume_init(dx) }
            } else {
                vec![0.0f32; planes * h * w]
            };
            grads.register::<Flex>(node.id, flex_tensor(dx, input));
        }
    }
}

/// The dimensions of a 4-D flex tensor.
fn dims4(t: &FlexTensor) -> [usize; 4] {
    t.layout().shape().dims::<4>()
}

/// A flex tensor's `f32` values in row-major order (copied only when it is a strided view).
pub(crate) fn f32_values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(values) => std::borrow::Cow::Borrowed(values),
        None => std::borrow::Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("flex kernels run on f32 tensors (runs_on_flex)")
                .to_vec(),
        ),
    }
}

pub(crate) fn flex_tensor<const D: usize>(values: Vec<f32>, dims: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims))
}

/// `values` cut into `count` chunks of `len`, one per parallel task; `count` `None`s when
/// `values` is empty (the output is not wanted).
fn optional_chunks<T>(values: &mut [T], len: usize, count: usize) -> Vec<Option<&mut [T]>> {
    if values.is_empty() {
        (0..count).map(|_| None).collect()
    } else {
        values.chunks_mut(len).map(Some).collect()
    }
}

/// `values` set to zero.
fn zeroed(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    values.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was just written.
    unsafe { slice_assume_init(values) }
}

/// A vector of `len` values for a kernel to write before it is read.
pub(crate) fn uninit<T>(len: usize) -> Vec<MaybeUninit<T>> {
    let mut values = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` needs no initialisation and the capacity is `len`.
    unsafe { values.set_len(len) };
    values
}

/// `values` as slots for a kernel to overwrite.
pub(crate) fn as_uninit<T: Copy>(values: &mut [T]) -> &mut [MaybeUninit<T>] {
    // SAFETY: `MaybeUninit<T>` has `T`'s layout; the kernels write only `T` values through
    // the view, so `values` stays initialised.
    unsafe { &mut *(values as *mut [T] as *mut [MaybeUninit<T>]) }
}

/// `values`, every one of which has been written.
///
/// # Safety
/// Every element must have been initialised.
unsafe fn slice_assume_init(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: same layout, and the caller vouches for the contents.
    unsafe { &mut *(values as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// The values of `values`, every one of which has been written.
///
/// # Safety
/// Every element must have been initialised.
pub(crate) unsafe fn assume_init<T>(values: Vec<MaybeUninit<T>>) -> Vec<T> {
    let mut values = std::mem::ManuallyDrop::new(values);
    let (ptr, len, capacity) = (values.as_mut_ptr(), values.len(), values.capacity());
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the caller vouches for the contents.
    unsafe { Vec::from_raw_parts(ptr.cast::<T>(), len, capacity) }
}

// ---------------------------------------------------------------------------------------
// Max pooling

/// Max pooling over non-overlapping windows, and (with `record`) each output's winner: the
/// plane offset of its window's first maximum, all the backward pass needs.
fn max_pool_forward(x: &FlexTensor, window: Window, record: bool) -> (FlexTensor, Vec<u32>) {
    let [batch, channels, h, w] = dims4(x);
    let pool = PlanePool::new(window, [h, w]);
    let [oh, ow] = pool.pooled;
    let values = f32_values(x);
    let mut output = uninit(batch * channels * oh * ow);
    // Written whole by the pool, as the outputs are.
    let mut winners = uninit::<u32>(if record { output.len() } else { 0 });
    if oh * ow > 0 && h * w > 0 {
        let mut winner_planes = optional_chunks(&mut winners, oh * ow, batch * channels);
        output
            .par_chunks_mut(oh * ow)
            .zip(values.par_chunks(h * w))
            .zip(winner_planes.par_iter_mut())
            .for_each(|((out, plane), winners)| {
                let winners = winners.as_deref_mut();
                pool.pool(plane, out, winners, false)
            });
    }
    // SAFETY: every output of every plane was written, and its winner where recorded.
    let (output, winners) = unsafe { (assume_init(output), assume_init(winners)) };
    (flex_tensor(output, [batch, channels, oh, ow]), winners)
}

/// A max pool over one plane: its window, the plane and the pooled plane. Forward
/// ([`PlanePool::pool`]) it keeps each output's winner, the plane offset of its window's
/// first maximum; backward ([`PlanePool::unpool`]) each pooled gradient goes to its
/// window's winner and every other position of the plane gets zero.
#[derive(Debug, Clone, Copy)]
struct PlanePool {
    /// The pool's window.
    window: Window,
    /// The pool's input plane, `[h, w]`.
    plane: [usize; 2],
    /// Its output plane, `[oh, ow]`.
    pooled: [usize; 2],
}

impl PlanePool {
    /// The pool of `window` over a plane of `[h, w]`.
    fn new(window: Window, plane: [usize; 2]) -> Self {
        PlanePool {
            window,
            plane,
            pooled: window.output(plane),
        }
    }

    /// Writes the whole of `plane` (`[h, w]`) from the pooled gradients `grad` and their
    /// winners (plane offsets, or [`NO_WINNER`]). The 2x2 windows with stride 2 that lie
    /// inside the plane are written as they are read, four values per window with no
    /// branch (a window's gradient where its winner is, zero elsewhere; 16 windows at a
    /// time with AVX-512); the rest of the plane is zeroed and the other windows'
    /// gradients scattered into it. The values are those of zeroing the plane and
    /// scattering every gradient.
    fn unpool(&self, plane: &mut [MaybeUninit<f32>], grad: &[f32], winners: &[u32]) {
        self.unpool_with(plane, grad, winners, crate::avx512());
    }

    fn unpool_with(
        &self,
        plane: &mut [MaybeUninit<f32>],
        grad: &[f32],
        winners: &[u32],
        avx512: bool,
    ) {
        let [h, w] = self.plane;
        let [oh, ow] = self.pooled;
        if w == 0 {
            return;
        }
        let full = full_2x2_windows(self.window, [h, w], [oh, ow]);
        let (rows, columns) = (2 * full[0], 2 * full[1]);
        if [rows, columns] != [h, w] {
            for (y, row) in plane.chunks_mut(w).enumerate() {
                // Positions no full window covers: zero, before the scatter below.
                let from = if y < rows { columns } else { 0 };
                row[from..].fill(MaybeUninit::new(0.0));
            }
        }
        for oy in 0..full[0] {
            let (top, bottom) = plane[2 * oy * w..][..2 * w].split_at_mut(w);
            let pairs = PoolRows {
                top: &mut top[..columns],
                bottom: &mut bottom[..columns],
                grad: &grad[oy * ow..][..full[1]],
                winners: &winners[oy * ow..][..full[1]],
                corner: (2 * oy * w) as u32,
                width: w as u32,
            };
            #[cfg(target_arch = "x86_64")]
            if avx512 {
                // SAFETY: the CPU has AVX-512 (`crate::avx512()`, the caller's flag); the
                // rows hold two values per window.
                unsafe { pairs.unpool_avx512() };
                continue;
            }
            let _ = avx512;
            pairs.unpool();
        }
        if full == [oh, ow] {
            return;
        }
        // SAFETY: every position was written: the full windows' above, the rest zeroed.
        let plane = unsafe { slice_assume_init(plane) };
        for oy in 0..oh {
            let first = if oy < full[0] { full[1] } else { 0 };
            for ox in first..ow {
                let at = winners[oy * ow + ox];
                if at != NO_WINNER {
                    plane[at as usize] = grad[oy * ow + ox];
                }
            }
        }
    }
}

/// The two rows of a plane under one row of full 2x2 windows, and those windows' gradients
/// and winners.
struct PoolRows<'p> {
    top: &'p mut [MaybeUninit<f32>],
    bottom: &'p mut [MaybeUninit<f32>],
    grad: &'p [f32],
    winners: &'p [u32],
    /// The plane offset of the first window's top left value.
    corner: u32,
    /// The plane's width.
    width: u32,
}

impl PoolRows<'_> {
    /// Each window's four values: its gradient at its winner, zero elsewhere.
    fn unpool(self) {
        let top = self.top.as_chunks_mut::<2>().0;
        let bottom = self.bottom.as_chunks_mut::<2>().0;
        let w = self.width;
        for (ox, ((t, b), (&g, &at))) in top
            .iter_mut()
            .zip(bottom.iter_mut())
            .zip(self.grad.iter().zip(self.winners))
            .enumerate()
        {
            let left = self.corner + 2 * ox as u32;
            let pick = |position: u32| MaybeUninit::new(if at == position { g } else { 0.0 });
            *t = [pick(left), pick(left + 1)];
            *b = [pick(left + w), pick(left + w + 1)];
        }
    }

    /// [`PoolRows::unpool`], 16 windows at a time: the winners compared with the four
    /// positions of each window, the gradient kept under each match (zero elsewhere), and
    /// the pairs interleaved into the rows.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the rows hold two values per window.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn unpool_avx512(self) {
        use std::arch::x86_64::*;
        let count = self.grad.len().min(self.winners.len());
        assert!(self.top.len() >= 2 * count && self.bottom.len() >= 2 * count);
        let evens = even_lanes();
        let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let (one, width) = (_mm512_set1_epi32(1), _mm512_set1_epi32(self.width as i32));
        let mut ox = 0;
        while ox < count {
            let n = (count - ox).min(16);
            // SAFETY: the loads and stores are masked to the `n` windows left from `ox`,
            // within `grad`, `winners` and (two values each) the rows (asserted above).
            unsafe {
                let at = _mm512_maskz_loadu_epi32(mask(n), self.winners.as_ptr().add(ox).cast());
                let g = _mm512_maskz_loadu_ps(mask(n), self.grad.as_ptr().add(ox));
                let corner = self.corner as i32 + 2 * ox as i32;
                let left = _mm512_add_epi32(_mm512_set1_epi32(corner), evens);
                let below = _mm512_add_epi32(left, width);
                let keep = |position: __m512i| {
                    _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, position), g)
                };
                let rows = [
                    (
                        self.top.as_mut_ptr(),
                        keep(left),
                        keep(_mm512_add_epi32(left, one)),
                    ),
                    (
                        self.bottom.as_mut_ptr(),
                        keep(below),
                        keep(_mm512_add_epi32(below, one)),
                    ),
                ];
                for (row, first, second) in rows {
                    let row = row.add(2 * ox).cast::<f32>();
                    let lo = _mm512_permutex2var_ps(first, low, second);
                    let hi = _mm512_permutex2var_ps(first, high, second);
                    _mm512_mask_storeu_ps(row, mask(2 * n), lo);
                    _mm512_mask_storeu_ps(row.add(16), mask((2 * n).saturating_sub(16)), hi);
                }
            }
            ox += 16;
        }
    }
}

/// The mask of the first `n` of 16 lanes (all 16 for `n` >= 16), for the pooling loops'
/// last, partial vectors.
#[cfg(target_arch = "x86_64")]
fn mask(n: usize) -> std::arch::x86_64::__mmask16 {
    ((1u32 << n.min(16)) - 1) as std::arch::x86_64::__mmask16
}

/// 0, 2, ..., 30: the even positions of two vectors (a row's pairs of columns), for
/// `_mm512_permutex2var_ps` and as each window's left column.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn even_lanes() -> std::arch::x86_64::__m512i {
    std::arch::x86_64::_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
}

/// A row of full 2x2 windows (`rows`: the plane from the window's top row and from its
/// bottom row) pooled into `out` with each window's winner, 16 windows at a time: the
/// comparisons and selects of [`first_max_2x2`] and [`PlanePool::pool`]'s ReLU gate, lane by
/// lane, so the same maxima and winners. `at` is the plane offset of the first window's top
/// left value and the plane's width.
///
/// # Safety
/// The CPU must have AVX-512F; each row holds two values per window of `out`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pool_row_avx512(
    rows: [&[f32]; 2],
    out: &mut [MaybeUninit<f32>],
    winners: &mut [MaybeUninit<u32>],
    [corner, width]: [u32; 2],
    relu_gate: bool,
) {
    use std::arch::x86_64::*;
    let count = out.len().min(winners.len());
    assert!(rows.iter().all(|r| r.len() >= 2 * count));
    let evens = even_lanes();
    let odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
    let (one, below) = (_mm512_set1_epi32(1), _mm512_set1_epi32(width as i32));
    let (zero, none) = (_mm512_setzero_ps(), _mm512_set1_epi32(NO_WINNER as i32));
    let mut ox = 0;
    while ox < count {
        let n = (count - ox).min(16);
        // SAFETY: loads and stores masked to the `n` windows left from `ox`: two values
        // each in the rows (asserted above), one in `out` and `winners`.
        unsafe {
            let pairs = |row: &[f32]| {
                let p = row.as_ptr().add(2 * ox);
                let lo = _mm512_maskz_loadu_ps(mask(2 * n), p);
                let hi = _mm512_maskz_loadu_ps(mask((2 * n).saturating_sub(16)), p.add(16));
                (
                    _mm512_permutex2var_ps(lo, evens, hi),
                    _mm512_permutex2var_ps(lo, odds, hi),
                )
            };
            let (t0, t1) = pairs(rows[0]);
            let (b0, b1) = pairs(rows[1]);
            // A later value wins only if it is larger (`first_max_2x2`).
            let right_top = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(t1, t0);
            let upper = _mm512_mask_blend_ps(right_top, t0, t1);
            let right_bottom = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b1, b0);
            let lower = _mm512_mask_blend_ps(right_bottom, b0, b1);
            let bottom = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(lower, upper);
            let m = _mm512_mask_blend_ps(bottom, upper, lower);
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(ox).cast(), mask(n), m);
            // The winner's offset in its window: 0, 1, width or width + 1.
            let upper_at = _mm512_maskz_mov_epi32(right_top, one);
            let lower_at = _mm512_add_epi32(below, _mm512_maskz_mov_epi32(right_bottom, one));
            let at = _mm512_mask_blend_epi32(bottom, upper_at, lower_at);
            let left = _mm512_add_epi32(_mm512_set1_epi32((corner + 2 * ox as u32) as i32), evens);
            let gate = if relu_gate {
                _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, zero)
            } else {
                0xffff
            };
            let winner = _mm512_mask_blend_epi32(gate, none, _mm512_add_epi32(left, at));
            _mm512_mask_storeu_epi32(winners.as_mut_ptr().add(ox).cast(), mask(n), winner);
        }
        ox += 16;
    }
}

/// The maximum of a 2x2 window given as its top and bottom pairs, and the position (0 to 3
/// in reading order) of its first maximum: a later value wins only if it is larger.
/// Written as selects so that loops over windows vectorise.
#[inline(always)]
fn first_max_2x2(top: &[f32], bottom: &[f32]) -> (f32, u32) {
    let (upper, upper_at) = if top[1] > top[0] {
        (top[1], 1)
    } else {
        (top[0], 0)
    };
    let (lower, lower_at) = if bottom[1] > bottom[0] {
        (bottom[1], 3)
    } else {
        (bottom[0], 2)
    };
    if lower > upper {
        (lower, lower_at)
    } else {
        (upper, upper_at)
    }
}

/// One pooling window of a plane: its valid rows and columns.
struct PoolWindow<'a> {
    plane: &'a [f32],
    width: usize,
    rows: (usize, usize),
    columns: (usize, usize),
}

impl PoolWindow<'_> {
    fn values(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        (self.rows.0..self.rows.1).flat_map(move |y| {
            let start = y * self.width;
            (start + self.columns.0..start + self.columns.1).map(move |i| (i, self.plane[i]))
        })
    }

    fn max(&self) -> f32 {
        self.values().fold(f32::NEG_INFINITY, |m, (_, v)| m.max(v))
    }

    /// The plane offset of the first value equal to `max` (the last one if none is, as
    /// when every value is NaN).
    fn position_of(&self, max: f32) -> usize {
        let mut last = 0;
        for (i, v) in self.values() {
            if v == max {
                return i;
            }
            last = i;
        }
        last
    }
}

/// For 2x2 windows with stride 2 and no padding before, the outputs `[rows, columns]`
/// whose windows lie wholly inside the plane (the kernels' fast paths); `[0, 0]` otherwise.
fn full_2x2_windows(window: Window, [h, w]: [usize; 2], [oh, ow]: [usize; 2]) -> [usize; 2] {
    let fits = window.kernel == [2, 2]
        && window.stride == [2, 2]
        && window.padding[0].0 == 0
        && window.padding[1].0 == 0;
    if fits {
        [(h / 2).min(oh), (w / 2).min(ow)]
    } else {
        [0, 0]
    }
}

/// Calls `each(output offset, window)` for every output of a plane except those of the
/// first `done[0]` rows' first `done[1]` columns (handled by a fast path).
fn for_each_window(
    plane: &[f32],
    [h, w]: [usize; 2],
    window: Window,
    [oh, ow]: [usize; 2],
    done: [usize; 2],
    mut each: impl FnMut(usize, PoolWindow<'_>),
) {
    let [kh, kw] = window.kernel;
    let [sh, sw] = window.stride;
    let (top, left) = (window.padding[0].0, window.padding[1].0);
    for oy in 0..oh {
        let rows = clip((oy * sh) as isize - top as isize, kh, h);
        let first = if oy < done[0] { done[1] } else { 0 };
        for ox in first..ow {
            let columns = clip((ox * sw) as isize - left as isize, kw, w);
            let window = PoolWindow {
                plane,
                width: w,
                rows,
                columns,
            };
            each(oy * ow + ox, window);
        }
    }
}

/// The valid input range `[start, end)` a window starting at `start` (possibly negative)
/// of `len` covers in an axis of `size`.
fn clip(start: isize, len: usize, size: usize) -> (usize, usize) {
    let begin = start.max(0) as usize;
    let end = (start + len as isize).clamp(0, size as isize) as usize;
    (begin.min(end), end)
}

// ---------------------------------------------------------------------------------------
// Convolution

/// Output planes smaller than this many pixels are convolved several images at a time, with
/// at least [`GROUP_COLUMNS`] gemm columns (output pixels of the images in one group); see
/// [`ConvGeometry::group`]. Measured on the reports' shapes: the gemms of report 002's
/// 7 x 7 planes run 13 % faster in groups of 4 to 8, and its training 6 % faster; 8 x 8
/// planes and larger (the pooled CIFAR-10 CNN's) gained nothing in the training step, the
/// regrouping costing what the wider gemm saves, so they go one image at a time.
const GROUP_BELOW: usize = 64;

/// See [`GROUP_BELOW`].
const GROUP_COLUMNS: usize = 384;

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct ConvGeometry {
    batch: usize,
    channels: usize,
    input: [usize; 2],
    filters: usize,
    output: [usize; 2],
    window: Window,
}

impl ConvGeometry {
    fn new(x: &FlexTensor, weight: &FlexTensor, window: Window) -> Self {
        let [batch, channels, h, w] = dims4(x);
        let [filters, _, _, _] = dims4(weight);
        ConvGeometry {
            batch,
            channels,
            input: [h, w],
            filters,
            output: window.output([h, w]),
            window,
        }
    }

    /// Length of one group's im2col matrix (none for a pointwise convolution).
    fn col_len(&self) -> usize {
        if self.pointwise() {
            0
        } else {
            self.patch() * self.pixels_out() * self.group()
        }
    }

    /// Images per gemm. A small output plane makes a narrow gemm, which runs below the
    /// kernel's speed (report 002's 7 x 7 planes: 83 GFLOP/s one image at a time on this
    /// project's CPU, 106 four at a time), so images are taken in groups whose im2col
    /// matrices sit side by side, at least [`GROUP_COLUMNS`] columns in all, and no more
    /// images than each thread gets. A pointwise convolution's image is its own im2col
    /// matrix: one image at a time.
    fn group(&self) -> usize {
        if self.pointwise() || self.pixels_out() == 0 || self.pixels_out() >= GROUP_BELOW {
            return 1;
        }
        let per_thread = self.batch.div_ceil(rayon::current_num_threads().max(1));
        GROUP_COLUMNS
            .div_ceil(self.pixels_out())
            .min(per_thread)
            .max(1)
    }

    /// Rows of the im2col matrix: channels x kernel area.
    fn patch(&self) -> usize {
        self.channels * self.window.kernel[0] * self.window.kernel[1]
    }

    fn image_in(&self) -> usize {
        self.channels * self.input[0] * self.input[1]
    }

    fn pixels_out(&self) -> usize {
        self.output[0] * self.output[1]
    }

    /// Whether patch rows are shifted copies of the input planes (unit stride, output as
    /// wide as the input: "same" padding).
    fn shifts(&self) -> bool {
        self.window.stride == [1, 1] && self.output[1] == self.input[1]
    }

    /// A 1x1 kernel with unit stride and no padding reads the image as its own im2col.
    fn pointwise(&self) -> bool {
        self.window.kernel == [1, 1]
            && self.window.stride == [1, 1]
            && self.window.padding == [(0, 0); 2]
    }
}

/// The outputs `[lo, hi)` along one axis whose input `o * stride + offset` lies in
/// `[0, size)`.
fn valid_outputs(offset: isize, stride: usize, size: usize, outputs: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset + s - 1) / s) as usize
    };
    let reach = size as isize - offset; // outputs o with o * s < reach
    let hi = if reach <= 0 {
        0
    } else {
        ((reach + s - 1) / s) as usize
    };
    let hi = hi.min(outputs);
    (lo.min(hi), hi)
}

/// Calls `each(patch row, output row, source)` for every (patch row, output row) pair;
/// `source` is `None` when the output row reads only padding, else `(start of the input row,
/// column offset where output column 0 would read, [lo, hi) of the output columns that read
/// inside the image)`. Shared by im2col and col2im so the two agree on the geometry.
fn for_each_patch_row(
    g: &ConvGeometry,
    mut each: impl FnMut(usize, usize, Option<(usize, isize, usize, usize)>),
) {
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let [kh, kw] = g.window.kernel;
    let [sh, sw] = g.window.stride;
    let (top, left) = (
        g.window.padding[0].0 as isize,
        g.window.padding[1].0 as isize,
    );
    for c in 0..g.channels {
        for i in 0..kh {
            for j in 0..kw {
                let row = (c * kh + i) * kw + j;
                let x_offset = j as isize - left;
                let (lo, hi) = valid_outputs(x_offset, sw, w, ow);
                for oy in 0..oh {
                    let iy = (oy * sh) as isize + i as isize - top;
                    let inside = (0..h as isize).contains(&iy);
                    let source = inside.then(|| (c * h * w + iy as usize * w, x_offset, lo, hi));
                    each(row, oy, source);
                }
            }
        }
    }
}

/// For a unit-stride convolution whose output is as wide as its input, the patch row of
/// kernel tap `(c, i, j)` is channel `c` shifted by `(i - top) * width + (j - left)`: calls
/// `each(row, plane start, shift, [first, end) of the outputs read in one piece (possibly
/// empty), valid output columns)`. The piece covers the valid output rows; outputs before
/// and after it, and those in the invalid columns, read outside the image.
fn for_each_shifted_row(
    g: &ConvGeometry,
    mut each: impl FnMut(usize, usize, isize, [usize; 2], (usize, usize)),
) {
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let [kh, kw] = g.window.kernel;
    let (top, left) = (
        g.window.padding[0].0 as isize,
        g.window.padding[1].0 as isize,
    );
    for c in 0..g.channels {
        for i in 0..kh {
            let dy = i as isize - top;
            let (oy_lo, oy_hi) = valid_outputs(dy, 1, h, oh);
            for j in 0..kw {
                let dx = j as isize - left;
                let shift = dy * w as isize + dx;
                let d_lo = ((oy_lo * ow) as isize).max(-shift) as usize;
                let d_hi = ((oy_hi * ow) as isize).min((h * w) as isize - shift).max(0) as usize;
                let row = (c * kh + i) * kw + j;
                let columns = valid_outputs(dx, 1, w, ow);
                each(row, c * h * w, shift, [d_lo.min(d_hi), d_hi], columns);
            }
        }
    }
}

/// Zeroes, in every row of `values` (rows of `width`), the columns outside `[lo, hi)`.
fn zero_columns(values: &mut [f32], width: usize, (lo, hi): (usize, usize)) {
    // Column by column: a `fill` per row would be a `memset` call per one or two values.
    for column in (0..lo).chain(hi..width) {
        values
            .iter_mut()
            .skip(column)
            .step_by(width)
            .for_each(|v| *v = 0.0);
    }
}

/// Writes image `x`'s patches as the first `pixels_out` columns of `col`, a `[patch, ld]`
/// matrix from the image's first column on (`ld` = `pixels_out` for one image alone).
fn im2col(x: &[f32], g: &ConvGeometry, col: &mut [f32], ld: usize) {
    if g.shifts() {
        return for_each_shifted_row(g, |row, plane, shift, [d_lo, d_hi], columns| {
            let dst = &mut col[row * ld..row * ld + g.pixels_out()];
            let plane = &x[plane..plane + g.input[0] * g.input[1]];
            dst[..d_lo].fill(0.0);
            dst[d_hi..].fill(0.0);
            if d_hi > d_lo {
                let from = (d_lo as isize + shift) as usize;
                dst[d_lo..d_hi].copy_from_slice(&plane[from..from + (d_hi - d_lo)]);
            }
            zero_columns(dst, g.output[1], columns);
        });
    }
    let ow = g.output[1];
    let sw = g.window.stride[1];
    for_each_patch_row(g, |row, oy, source| {
        let dst = &mut col[row * ld + oy * ow..row * ld + (oy + 1) * ow];
        match source {
            None => dst.fill(0.0),
            Some((start, offset, lo, hi)) => {
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                let first = (start as isize + (lo * sw) as isize + offset) as usize;
                if sw == 1 {
                    dst[lo..hi].copy_from_slice(&x[first..first + (hi - lo)]);
                } else {
                    for (k, d) in dst[lo..hi].iter_mut().enumerate() {
                        *d = x[first + k * sw];
                    }
                }
            }
        }
    });
}

/// Adds the first `pixels_out` columns of `col` (a `[patch, ld]` matrix from the image's
/// first column on) back onto image gradient `dx`; `col` is scratch and may be changed.
fn col2im(col: &mut [f32], g: &ConvGeometry, dx: &mut [f32], ld: usize) {
    if g.shifts() {
        return for_each_shifted_row(g, |row, plane, shift, [d_lo, d_hi], columns| {
            let src = &mut col[row * ld..row * ld + g.pixels_out()];
            // Columns that read outside the image would land on the neighbouring row.
            zero_columns(src, g.output[1], columns);
            if d_hi > d_lo {
                let from = plane + (d_lo as isize + shift) as usize;
                for (d, s) in dx[from..from + (d_hi - d_lo)]
                    .iter_mut()
                    .zip(&src[d_lo..d_hi])
                {
                    *d += s;
                }
            }
        });
    }
    let ow = g.output[1];
    let sw = g.window.stride[1];
    for_each_patch_row(g, |row, oy, source| {
        if let Some((start, offset, lo, hi)) = source {
            let src = &col[row * ld + oy * ow + lo..row * ld + oy * ow + hi];
            let first = (start as isize + (lo * sw) as isize + offset) as usize;
            if sw == 1 {
                for (d, s) in dx[first..first + (hi - lo)].iter_mut().zip(src) {
                    *d += s;
                }
            } else {
                for (k, s) in src.iter().enumerate() {
                    dx[first + k * sw] += s;
                }
            }
        }
    });
}

/// Row-major `dst = lhs · rhs` (or `dst += lhs · rhs` with `accumulate`, which needs `dst`
/// initialised), with each operand given by its (row, column) strides.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    [m, n, k]: [usize; 3],
    dst: &mut [MaybeUninit<f32>],
    dst_strides: [usize; 2],
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: [usize; 2],
    rhs: &[f32],
    rhs_strides: [usize; 2],
    parallelism: Parallelism,
) {
    debug_assert!(
        m == 0 || n == 0 || (m - 1) * dst_strides[0] + (n - 1) * dst_strides[1] < dst.len()
    );
    debug_assert!(
        m == 0 || k == 0 || (m - 1) * lhs_strides[0] + (k - 1) * lhs_strides[1] < lhs.len()
    );
    debug_assert!(
        k == 0 || n == 0 || (k - 1) * rhs_strides[0] + (n - 1) * rhs_strides[1] < rhs.len()
    );
    // SAFETY: the three slices cover every element the strides address (checked above in
    // debug builds and guaranteed by the callers' shapes); `dst` is borrowed mutably and
    // does not alias `lhs` or `rhs`.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            dst_strides[1] as isize,
            dst_strides[0] as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides[1] as isize,
            lhs_strides[0] as isize,
            rhs.as_ptr(),
            rhs_strides[1] as isize,
            rhs_strides[0] as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Parallelism for the gemm of one group of images: the groups are spread over the threads,
/// unless there are fewer groups than threads.
fn per_group_parallelism(g: &ConvGeometry) -> Parallelism {
    if g.batch.div_ceil(g.group()) < rayon::current_num_threads() {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    }
}

fn dense_forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor, relu: bool) -> FlexTensor {
    let [m, k] = x.layout().shape().dims::<2>();
    let n = weight.layout().shape().dims::<2>()[1];
    if m == 0 || n == 0 {
        return flex_tensor(Vec::new(), [m, n]);
    }
    let (x, weight, bias) = (f32_values(x), f32_values(weight), f32_values(bias));
    let mut out = uninit(m * n);
    let rows = dense_rows_per_thread([m, n, k]);
    out.par_chunks_mut(rows * n)
        .zip(x.par_chunks(rows * k))
        .for_each(|(out, x)| dense_rows(x, &weight, &bias, relu, out, [n, k]));
    // SAFETY: every row was written by `dense_rows`.
    let out = unsafe { assume_init(out) };
    flex_tensor(out, [m, n])
}

/// How many rows of a `[m, n, k]` dense product each thread of [`dense`] takes: the rows
/// are split between the threads, each running its own single-threaded gemm and then its
/// bias and ReLU while its rows are in its cache (for report 002's MLP, 128 rows, 16 %
/// faster than one gemm split by gemm's own threading, which joins the threads for every
/// product and leaves the bias and ReLU to one of them); small products stay on one thread.
/// `packed_dense` repeats gemm's sums for each such share.
pub(crate) fn dense_rows_per_thread([m, n, k]: [usize; 3]) -> usize {
    let threads = if m * n * k >= 1 << 16 {
        rayon::current_num_threads().max(1)
    } else {
        1
    };
    m.div_ceil(threads).max(1)
}

/// `relu?(x · weight + bias)` for the rows of `x` into `out`, on the calling thread; `n`
/// units, `k` inputs.
fn dense_rows(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    relu: bool,
    out: &mut [MaybeUninit<f32>],
    [n, k]: [usize; 2],
) {
    let m = out.len() / n;
    for row in out.chunks_mut(n) {
        for (o, &b) in row.iter_mut().zip(bias) {
            o.write(b);
        }
    }
    // SAFETY: every value was just set to its bias.
    let out = unsafe { slice_assume_init(out) };
    matmul(
        [m, n, k],
        as_uninit(out),
        [n, 1],
        true,
        x,
        [k, 1],
        weight,
        [n, 1],
        Parallelism::None,
    );
    if relu {
        for v in out.iter_mut() {
            *v = v.max(0.0);
        }
    }
}

fn conv_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    window: Window,
    relu: bool,
) -> FlexTensor {
    let g = ConvGeometry::new(x, weight, window);
    let (x, weight, bias) = (f32_values(x), f32_values(weight), f32_values(bias));
    let mut output = uninit(g.batch * g.filters * g.pixels_out());
    output
        .par_chunks_mut(g.group() * g.filters * g.pixels_out())
        .zip(x.par_chunks(g.group() * g.image_in()))
        .for_each_init(
            || GroupScratch::new(&g),
            |scratch, (out, images)| {
                convolve_group(images, &g, &weight, &bias, relu, scratch, out);
            },
        );
    // SAFETY: every image's outputs were written.
    let output = unsafe { assume_init(output) };
    flex_tensor(output, [g.batch, g.filters, g.output[0], g.output[1]])
}

/// A thread's scratch for convolving groups of images: their im2col matrices side by side
/// and, for groups of more than one image, the gemm's product before it is split by image.
struct GroupScratch {
    col: Vec<f32>,
    product: Vec<MaybeUninit<f32>>,
}

impl GroupScratch {
    fn new(g: &ConvGeometry) -> Self {
        let product = if g.group() > 1 {
            g.group() * g.filters * g.pixels_out()
        } else {
            0
        };
        GroupScratch {
            col: vec![0.0; g.col_len()],
            product: uninit(product),
        }
    }
}

/// The im2col matrices of `images` (whole images, at most a group) side by side in `col`
/// (`[patch, images x pixels_out]`), or a pointwise convolution's one image as it is.
fn group_col<'c>(images: &'c [f32], g: &ConvGeometry, col: &'c mut [f32]) -> &'c [f32] {
    if g.pointwise() {
        return images;
    }
    let ld = images.len() / g.image_in() * g.pixels_out();
    for (i, image) in images.chunks(g.image_in()).enumerate() {
        im2col(image, g, &mut col[i * g.pixels_out()..], ld);
    }
    &col[..g.patch() * ld]
}

/// The convolution of a group of images into `out` (`[image, filters, pixels]`): their
/// im2col matrices, one gemm, then the bias and the ReLU (for several images, while the
/// product is split by image).
fn convolve_group<'o>(
    images: &[f32],
    g: &ConvGeometry,
    weight: &[f32],
    bias: &[f32],
    relu: bool,
    scratch: &mut GroupScratch,
    out: &'o mut [MaybeUninit<f32>],
) -> &'o mut [f32] {
    let pixels = g.pixels_out();
    let count = images.len() / g.image_in();
    let ld = count * pixels;
    let col = group_col(images, g, &mut scratch.col);
    let activate = |v: f32, b: f32| if relu { (v + b).max(0.0) } else { v + b };
    if count == 1 {
        filter_gemm(g, weight, col, ld, out);
        // SAFETY: the gemm wrote every output of the image.
        let out = unsafe { slice_assume_init(out) };
        for (row, &b) in out.chunks_mut(pixels).zip(bias) {
            row.iter_mut().for_each(|v| *v = activate(*v, b));
        }
        return out;
    }
    let product = &mut scratch.product[..g.filters * ld];
    filter_gemm(g, weight, col, ld, product);
    // SAFETY: the gemm wrote all `filters x ld` values of the product.
    let product = unsafe { slice_assume_init(product) };
    for (i, image) in out.chunks_mut(g.filters * pixels).enumerate() {
        for (f, (dst, &b)) in image.chunks_mut(pixels).zip(bias).enumerate() {
            for (d, &v) in dst
                .iter_mut()
                .zip(&product[f * ld + i * pixels..][..pixels])
            {
                d.write(activate(v, b));
            }
        }
    }
    // SAFETY: every output of every image in the group was written just above.
    unsafe { slice_assume_init(out) }
}

/// `dst = weight · col`: `[filters, patch] x [patch, ld]`.
fn filter_gemm(
    g: &ConvGeometry,
    weight: &[f32],
    col: &[f32],
    ld: usize,
    dst: &mut [MaybeUninit<f32>],
) {
    matmul(
        [g.filters, ld, g.patch()],
        dst,
        [ld, 1],
        false,
        weight,
        [g.patch(), 1],
        col,
        [ld, 1],
        per_group_parallelism(g),
    );
}

/// Marks a pooled output whose maximum is not positive: the ReLU before the pool passed
/// no gradient to any input of its window.
const NO_WINNER: u32 = u32::MAX;

/// `max_pool2d(relu(conv2d(x) + bias), pool)`, image by image, and (with `record`) each
/// pooled output's winner: the plane offset of its window's first maximum, or
/// [`NO_WINNER`].
fn conv_relu_pool_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    conv: Window,
    pool: Window,
    record: bool,
) -> (FlexTensor, Vec<u32>) {
    let g = ConvGeometry::new(x, weight, conv);
    let (x, weight, bias) = (f32_values(x), f32_values(weight), f32_values(bias));
    let plane_pool = PlanePool::new(pool, g.output);
    let pooled = plane_pool.pooled;
    let pooled_plane = pooled[0] * pooled[1];
    let mut output = uninit(g.batch * g.filters * pooled_plane);
    // Written whole by the pool, as the outputs are.
    let mut winners = uninit::<u32>(if record { output.len() } else { 0 });
    let group = g.group();
    let mut winner_groups = optional_chunks(
        &mut winners,
        group * g.filters * pooled_plane,
        g.batch.div_ceil(group),
    );
    output
        .par_chunks_mut(group * g.filters * pooled_plane)
        .zip(x.par_chunks(group * g.image_in()))
        .zip(winner_groups.par_iter_mut())
        .for_each_init(
            || {
                (
                    GroupScratch::new(&g),
                    uninit(group * g.filters * g.pixels_out()),
                )
            },
            |(scratch, convolved), ((out, images), winners)| {
                let convolved =
                    &mut convolved[..images.len() / g.image_in() * g.filters * g.pixels_out()];
                let convolved =
                    convolve_group(images, &g, &weight, &bias, true, scratch, convolved);
                // Planes of every (image, filter) of the group, in order.
                for (f, (plane, out)) in convolved
                    .chunks(g.pixels_out())
                    .zip(out.chunks_mut(pooled_plane))
                    .enumerate()
                {
                    let winners = winners
                        .as_deref_mut()
                        .map(|w| &mut w[f * pooled_plane..(f + 1) * pooled_plane]);
                    plane_pool.pool(plane, out, winners, true);
                }
            },
        );
    // SAFETY: every pooled output of every image was written, and its winner where
    // recorded.
    let (output, winners) = unsafe { (assume_init(output), assume_init(winners)) };
    let output = flex_tensor(output, [g.batch, g.filters, pooled[0], pooled[1]]);
    (output, winners)
}

impl PlanePool {
    /// Max pools `values` (a plane `[h, w]`) into `out` (`[oh, ow]`), with each output's
    /// winner in `winners` when given: with `relu_gate`, [`NO_WINNER`] where the maximum is
    /// not positive (a ReLU before the pool passes no gradient there).
    ///
    /// On a CPU with AVX-512 the same code is compiled for it ([`PlanePool::pool_avx512`]),
    /// with a row of full windows taken 16 at a time ([`pool_row_avx512`]): only
    /// comparisons and selects, so the same values and winners.
    fn pool(
        &self,
        values: &[f32],
        out: &mut [MaybeUninit<f32>],
        winners: Option<&mut [MaybeUninit<u32>]>,
        relu_gate: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        if crate::avx512() {
            // SAFETY: the CPU has AVX-512 (checked just above).
            return unsafe { self.pool_avx512(values, out, winners, relu_gate) };
        }
        self.pool_with(values, out, winners, relu_gate, false);
    }

    /// [`PlanePool::pool`] compiled for AVX-512.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn pool_avx512(
        &self,
        values: &[f32],
        out: &mut [MaybeUninit<f32>],
        winners: Option<&mut [MaybeUninit<u32>]>,
        relu_gate: bool,
    ) {
        self.pool_with(values, out, winners, relu_gate, true);
    }

    /// [`PlanePool::pool`]; with `avx512` (only where the CPU has it), a row of full
    /// windows with winners 16 windows at a time.
    #[inline(always)]
    fn pool_with(
        &self,
        plane: &[f32],
        out: &mut [MaybeUninit<f32>],
        mut winners: Option<&mut [MaybeUninit<u32>]>,
        relu_gate: bool,
        avx512: bool,
    ) {
        let Self {
            window,
            plane: [h, w],
            pooled: [oh, ow],
        } = *self;
        let full = full_2x2_windows(window, [h, w], [oh, ow]);
        for oy in 0..full[0] {
            // Pairs of columns of the window's two rows; written as selects over whole slices
            // so that the compiler vectorises them.
            let top = plane[2 * oy * w..][..2 * full[1]].as_chunks::<2>().0.iter();
            let bottom = plane[(2 * oy + 1) * w..][..2 * full[1]]
                .as_chunks::<2>()
                .0
                .iter();
            let out = &mut out[oy * ow..oy * ow + full[1]];
            match winners.as_deref_mut() {
                None => {
                    for (out, (t, b)) in out.iter_mut().zip(top.zip(bottom)) {
                        *out = MaybeUninit::new(t[0].max(t[1]).max(b[0].max(b[1])));
                    }
                }
                Some(winners) => {
                    let winners = &mut winners[oy * ow..oy * ow + full[1]];
                    let row = (2 * oy * w) as u32;
                    #[cfg(target_arch = "x86_64")]
                    if avx512 {
                        let rows = [&plane[2 * oy * w..], &plane[(2 * oy + 1) * w..]];
                        // SAFETY: `avx512` is set only where the CPU has AVX-512; each row holds
                        // two values per window.
                        unsafe { pool_row_avx512(rows, out, winners, [row, w as u32], relu_gate) };
                        continue;
                    }
                    let _ = avx512;
                    let w = w as u32;
                    for (ox, ((out, winner), (t, b))) in
                        out.iter_mut().zip(winners).zip(top.zip(bottom)).enumerate()
                    {
                        let (m, at) = first_max_2x2(t, b);
                        *out = MaybeUninit::new(m);
                        winner.write(if m > 0.0 || !relu_gate {
                            row + 2 * ox as u32 + (at & 1) + (at >> 1) * w
                        } else {
                            NO_WINNER
                        });
                    }
                }
            }
        }
        if full == [oh, ow] {
            return;
        }
        for_each_window(plane, [h, w], window, [oh, ow], full, |at, window| {
            let m = window.max();
            out[at] = MaybeUninit::new(m);
            if let Some(winners) = winners.as_deref_mut() {
                winners[at] = MaybeUninit::new(if m > 0.0 || !relu_gate {
                    window.position_of(m) as u32
                } else {
                    NO_WINNER
                });
            }
        });
    }
}

/// A convolution's output gradient, as its backward pass receives it: each image's part is
/// produced when that image is processed, so a ReLU's mask or a pool's scatter costs no
/// pass over memory of its own.
#[derive(Clone, Copy)]
enum OutputGrad<'a> {
    /// The gradient itself, `[batch, filters, oh, ow]`.
    Plain(&'a [f32]),
    /// The gradient of a fused ReLU's output: zero where that `output` was zero.
    Relu { grad: &'a [f32], output: &'a [f32] },
    /// The gradient of a fused max pool's output (`[batch, filters, pooled]`): each value
    /// goes to its window's winner, every other position gets zero.
    Pooled {
        grad: &'a [f32],
        winners: &'a [u32],
        /// The pool's geometry.
        pool: PlanePool,
    },
}

impl<'a> OutputGrad<'a> {
    /// Image `b`'s output gradient (`filters` planes of `pixels`), written into `scratch`
    /// unless it is stored as it is.
    fn image<'s>(self, b: usize, [filters, pixels]: [usize; 2], scratch: &'s mut [f32]) -> &'s [f32]
    where
        'a: 's,
    {
        let len = filters * pixels;
        match self {
            OutputGrad::Plain(grad) => &grad[b * len..(b + 1) * len],
            OutputGrad::Relu { grad, output } => {
                let (grad, output) = (&grad[b * len..(b + 1) * len], &output[b * len..][..len]);
                for (s, (&g, &o)) in scratch.iter_mut().zip(grad.iter().zip(output)) {
                    *s = if o > 0.0 { g } else { 0.0 };
                }
                scratch
            }
            OutputGrad::Pooled {
                grad,
                winners,
                pool,
            } => {
                let pooled = pool.pooled[0] * pool.pooled[1];
                let image = filters * pooled;
                let (grad, winners) = (&grad[b * image..][..image], &winners[b * image..][..image]);
                for (plane, (grad, winners)) in scratch
                    .chunks_mut(pixels)
                    .zip(grad.chunks(pooled).zip(winners.chunks(pooled)))
                {
                    pool.unpool(as_uninit(plane), grad, winners);
                }
                scratch
            }
        }
    }
}

/// The sum of `values`, in 16 lanes (a single running sum is a chain of dependent adds).
fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    for block in values.chunks(16) {
        lanes.iter_mut().zip(block).for_each(|(l, &v)| *l += v);
    }
    lanes.iter().sum()
}

/// Which gradients a convolution's backward must produce (the bias's always is).
#[derive(Debug, Clone, Copy)]
struct Wanted {
    x: bool,
    weight: bool,
}

/// The input, weight and bias gradients of a convolution from the output gradient `grad`
/// (`[batch, filters, oh, ow]`, with any fused ReLU already applied).
fn conv_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: OutputGrad<'_>,
    window: Window,
    want: Wanted,
) -> (Option<FlexTensor>, FlexTensor, FlexTensor) {
    let g = ConvGeometry::new(x, weight, window);
    let weight_dims = dims4(weight);
    let (x, weight) = (f32_values(x), f32_values(weight));
    let (patch, filters) = (g.patch(), g.filters);

    // Contiguous runs of images, one per thread, each summing its own weight gradient.
    let threads = rayon::current_num_threads().max(1);
    let run = g.batch.div_ceil(threads).max(1);
    let mut dx = uninit::<f32>(if want.x { g.batch * g.image_in() } else { 0 });
    let dx_runs = optional_chunks(&mut dx, run * g.image_in(), g.batch.div_ceil(run));
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx_runs
        .into_par_iter()
        .enumerate()
        .map(|(r, dx_run)| {
            let images = r * run..((r + 1) * run).min(g.batch);
            // Each run's input gradient zeroed by its own thread before col2im adds to it.
            backward_run(&g, &x, &weight, grad, want, images, dx_run.map(zeroed))
        })
        .collect();
    // SAFETY: the runs cover `dx` (`batch` images in runs of `run`), each zeroed above.
    let dx = unsafe { assume_init(dx) };
    let mut dweight_t = vec![0.0f32; patch * filters];
    let mut dbias = vec![0.0f32; filters];
    for (dw, db) in partial {
        dweight_t.iter_mut().zip(dw).for_each(|(a, b)| *a += b);
        dbias.iter_mut().zip(db).for_each(|(a, b)| *a += b);
    }
    let mut dweight = vec![0.0f32; filters * patch];
    for (q, row) in dweight_t.chunks(filters).enumerate() {
        for (f, &v) in row.iter().enumerate() {
            dweight[f * patch + q] = v;
        }
    }
    let dx = want
        .x
        .then(|| flex_tensor(dx, [g.batch, g.channels, g.input[0], g.input[1]]));
    (
        dx,
        flex_tensor(dweight, weight_dims),
        flex_tensor(dbias, [filters]),
    )
}

/// One thread's share of a convolution's backward: the transposed weight gradient and the
/// bias gradient summed over `images`, and their input gradients into `dx` (the run's
/// images, from the first) when wanted. Images go in groups, as in the forward pass.
fn backward_run(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    grad: OutputGrad<'_>,
    want: Wanted,
    images: std::ops::Range<usize>,
    mut dx: Option<&mut [f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let (patch, pixels, filters, group) = (g.patch(), g.pixels_out(), g.filters, g.group());
    let parallelism = per_group_parallelism(g);
    let mut dweight_t = vec![0.0f32; patch * filters];
    let mut dbias = vec![0.0f32; filters];
    let mut col = vec![0.0f32; if want.weight { g.col_len() } else { 0 }];
    let mut dcol = vec![0.0f32; if want.x { g.col_len() } else { 0 }];
    let mut grads = GroupGrad::new(g, grad);
    for start in images.clone().step_by(group) {
        let count = group.min(images.end - start);
        let ld = count * pixels;
        let grad = grads.of(g, start, count);
        for (db, row) in dbias.iter_mut().zip(grad.chunks(ld)) {
            *db += sum(row);
        }
        if want.weight {
            let col = group_col(
                &x[start * g.image_in()..][..count * g.image_in()],
                g,
                &mut col,
            );
            // dWᵀ += col · gradᵀ: [patch, ld] x [ld, filters]. gemm runs this orientation
            // faster than dW += grad · colᵀ (measured 63 against 88 us for the pooled CIFAR
            // CNN's second layer); transposed once at the end.
            matmul(
                [patch, filters, ld],
                as_uninit(&mut dweight_t),
                [filters, 1],
                true,
                col,
                [ld, 1],
                grad,
                [1, ld],
                parallelism,
            );
        }
        if let Some(dx) = dx.as_deref_mut() {
            let dx = &mut dx[(start - images.start) * g.image_in()..][..count * g.image_in()];
            // dcol = Wᵀ · grad: [patch, filters] x [filters, ld].
            let target: &mut [f32] = if g.pointwise() {
                &mut *dx
            } else {
                &mut dcol[..patch * ld]
            };
            matmul(
                [patch, ld, filters],
                as_uninit(target),
                [ld, 1],
                false,
                weight,
                [1, patch],
                grad,
                [ld, 1],
                parallelism,
            );
            if !g.pointwise() {
                for (i, dx) in dx.chunks_mut(g.image_in()).enumerate() {
                    col2im(&mut dcol[i * pixels..], g, dx, ld);
                }
            }
        }
    }
    (dweight_t, dbias)
}

/// The output gradient of a group of images as one `[filters, images x pixels]` matrix,
/// with the scratch that building it needs.
struct GroupGrad<'a> {
    grad: OutputGrad<'a>,
    /// One image's gradient, where it is not stored as it is (a fused ReLU or pool).
    image: Vec<f32>,
    /// The group's, side by side, for groups of more than one image.
    group: Vec<f32>,
}

impl<'a> GroupGrad<'a> {
    fn new(g: &ConvGeometry, grad: OutputGrad<'a>) -> Self {
        let plane = g.filters * g.pixels_out();
        let stored = matches!(grad, OutputGrad::Plain(_));
        GroupGrad {
            grad,
            image: vec![0.0; if stored { 0 } else { plane }],
            group: vec![0.0; if g.group() > 1 { plane * g.group() } else { 0 }],
        }
    }

    /// The gradient of images `start..start + count`.
    fn of(&mut self, g: &ConvGeometry, start: usize, count: usize) -> &[f32] {
        let (filters, pixels) = (g.filters, g.pixels_out());
        if count == 1 {
            return self.grad.image(start, [filters, pixels], &mut self.image);
        }
        let ld = count * pixels;
        for i in 0..count {
            let one = self
                .grad
                .image(start + i, [filters, pixels], &mut self.image);
            for (f, row) in one.chunks(pixels).enumerate() {
                self.group[f * ld + i * pixels..][..pixels].copy_from_slice(row);
            }
        }
        &self.group[..filters * ld]
    }
}

/// Helpers the flex kernels' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use burn::tensor::Tensor;

    /// A tensor's values as `f32`s.
    pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec().unwrap()
    }

    /// Ours and Burn's agree within 1e-4 of the largest of Burn's values (at least 1).
    pub(crate) fn assert_close(name: &str, ours: Vec<f32>, burns: Vec<f32>) {
        assert_close_within(name, ours, burns, 1e-4);
    }

    /// Ours and Burn's agree within `tolerance` of the largest of Burn's values (at least 1).
    pub(crate) fn assert_close_within(name: &str, ours: Vec<f32>, burns: Vec<f32>, tolerance: f32) {
        assert_eq!(ours.len(), burns.len(), "{name}: lengths");
        let scale = burns.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
            assert!(
                (a - b).abs() <= tolerance * scale,
                "{name}[{i}]: ours {a}, Burn's {b}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{assert_close, values};
    use super::*;
    use burn::tensor::Distribution;
    use burn::tensor::activation::relu;
    use burn::tensor::module::{conv2d as burn_conv2d, max_pool2d as burn_max_pool2d};
    use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
    use burn::tensor::{Device, Tensor};

    #[test]
    fn dense_matches_burns_linear_with_and_without_relu() {
        let device = Device::flex();
        // Small (one thread), split in halves, and split with a shorter last part; no units.
        for (m, k, n) in [
            (1, 3, 2),
            (7, 33, 5),
            (128, 784, 96),
            (129, 300, 40),
            (4, 5, 0),
        ] {
            let x = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 0.2), &device);
            let b = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
            let linear = burn::tensor::module::linear(x.clone(), w.clone(), Some(b.clone()));
            for relu_on in [false, true] {
                let burns = if relu_on {
                    relu(linear.clone())
                } else {
                    linear.clone()
                };
                let ours = dense(x.clone(), w.clone(), b.clone(), relu_on);
                assert_close(&format!("dense {m}x{k}x{n}"), values(ours), values(burns));
            }
        }
    }

    #[test]
    fn linear_is_bit_for_bit_burns_forward_and_backward() {
        let device = Device::flex().autodiff();
        let bits = |t: Tensor<2>| values(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        // Report 002's MLP (threaded products), small, odd and empty sizes; with the input
        // tracked or not (a first layer's is not).
        for (m, k, n) in [
            (128, 784, 768),
            (128, 768, 10),
            (7, 33, 5),
            (1, 3, 2),
            (129, 300, 40),
            (3, 0, 4),
        ] {
            for x_tracked in [false, true] {
                let normal = Distribution::Normal(0.0, 1.0);
                let x = Tensor::<2>::random([m, k], normal, &device);
                let w = Tensor::<2>::random([k, n], normal, &device);
                let b = Tensor::<1>::random([n], normal, &device);
                // A loss whose gradient differs per output value.
                let loss_weights = Tensor::<2>::random([m, n], normal, &device);
                let run = |ours: bool| {
                    let x = if x_tracked { copy(&x) } else { x.clone() };
                    let (w, b) = (copy(&w), copy(&b));
                    let y = if ours {
                        linear(x.clone(), w.clone(), b.clone())
                    } else {
                        burn::tensor::module::linear(x.clone(), w.clone(), Some(b.clone()))
                    };
                    let grads = (y.clone() * loss_weights.clone()).sum().backward();
                    let dx = x_tracked.then(|| bits(x.grad(&grads).unwrap()));
                    (
                        bits(y),
                        dx,
                        bits(w.grad(&grads).unwrap()),
                        bits(b.grad(&grads).unwrap().unsqueeze()),
                    )
                };
                assert!(
                    run(true) == run(false),
                    "linear {m}x{k}x{n}, x tracked {x_tracked}"
                );
            }
        }
    }

    /// Burn's options for the same max pool as `window`.
    fn pool_options(window: Window) -> MaxPoolOptions<2> {
        MaxPoolOptions {
            kernel_size: window.kernel,
            stride: window.stride,
            padding: window.padding,
            dilation: [1, 1],
            ceil_mode: false,
        }
    }

    fn copy<const D: usize>(t: &Tensor<D>) -> Tensor<D> {
        Tensor::from_data(t.to_data(), &t.device()).require_grad()
    }

    /// The fused convolution-ReLU-pool agrees with Burn's conv2d, relu and max_pool2d on
    /// the output and all three gradients, including windows the ReLU zeroes entirely
    /// (negative biases), odd sizes a pool drops or pads, and a 3x3 pool.
    #[test]
    fn fused_conv_relu_pool_matches_burn() {
        let device = Device::flex().autodiff();
        let same = [(1, 1), (1, 1)];
        let cases = [
            // (batch, channels, h, w, filters, conv padding, pool kernel, pool padding)
            (3, 1, 8, 8, 4, same, 2, [(0, 0), (0, 0)]),
            (2, 3, 7, 9, 5, same, 2, [(0, 0), (0, 0)]),
            (2, 2, 7, 7, 3, same, 2, [(0, 1), (0, 1)]),
            (2, 2, 11, 10, 3, [(0, 0), (0, 0)], 3, [(0, 0), (0, 0)]),
            (1, 2, 1, 1, 3, same, 2, [(0, 1), (0, 1)]),
            // Groups of four and three images (7 over two threads, 25 pixels each) ...
            (7, 2, 5, 5, 3, same, 2, [(0, 1), (0, 1)]),
            // ... and planes large enough to go one image at a time.
            (3, 2, 16, 16, 3, same, 2, [(0, 0), (0, 0)]),
        ];
        for (b, c, h, w, f, conv_padding, k, pool_padding) in cases {
            let name = format!("{c}x{h}x{w} -> {f}, pool {k} pad {pool_padding:?}");
            let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let weight = Tensor::<4>::random([f, c, 3, 3], Distribution::Normal(0.0, 0.5), &device);
            // Biases from -3 to 1: some filters leave whole windows at zero.
            let bias = Tensor::<1>::random([f], Distribution::Uniform(-3.0, 1.0), &device);
            let (x1, x2) = (x.clone().require_grad(), copy(&x));
            let (w1, w2) = (weight.clone().require_grad(), copy(&weight));
            let (b1, b2) = (bias.clone().require_grad(), copy(&bias));
            let conv = Window {
                kernel: [3, 3],
                stride: [1, 1],
                padding: conv_padding,
            };
            let pool = Window {
                kernel: [k, k],
                stride: [k, k],
                padding: pool_padding,
            };
            let ours = conv2d_relu_max_pool2d(x1.clone(), w1.clone(), b1.clone(), conv, pool);
            let options = ConvOptions {
                stride: [1, 1],
                padding: conv.padding,
                dilation: [1, 1],
                groups: 1,
            };
            let burns = burn_max_pool2d(
                relu(burn_conv2d(
                    x2.clone(),
                    w2.clone(),
                    Some(b2.clone()),
                    options,
                )),
                pool_options(pool),
            );
            let weights = Tensor::<4>::random(burns.dims(), Distribution::Default, &device);
            let grads_ours = (ours.clone() * weights.clone()).sum().backward();
            let grads_burn = (burns.clone() * weights).sum().backward();
            assert_close(&format!("{name} output"), values(ours), values(burns));
            let grad = |t: &Tensor<4>, g| values(t.grad(g).unwrap());
            assert_close(
                &format!("{name} dx"),
                grad(&x1, &grads_ours),
                grad(&x2, &grads_burn),
            );
            assert_close(
                &format!("{name} dW"),
                grad(&w1, &grads_ours),
                grad(&w2, &grads_burn),
            );
            let (db1, db2) = (b1.grad(&grads_ours), b2.grad(&grads_burn));
            assert_close(
                &format!("{name} db"),
                values(db1.unwrap()),
                values(db2.unwrap()),
            );
        }
    }

    /// Our convolution and Burn's agree on the output and on all three gradients, for the
    /// kernels, strides and paddings the reports use.
    #[test]
    fn convolution_matches_burn() {
        let device = Device::flex().autodiff();
        let cases = [
            // (batch, channels, h, w, filters, kernel, stride, padding, relu)
            (3, 1, 9, 8, 4, [3, 3], [1, 1], [(1, 1), (1, 1)], true),
            (2, 3, 7, 7, 5, [3, 3], [1, 1], [(0, 0), (0, 0)], false),
            (2, 2, 11, 10, 3, [3, 3], [2, 2], [(0, 0), (0, 0)], true),
            (2, 2, 12, 12, 3, [3, 3], [5, 5], [(0, 0), (0, 0)], false),
            (3, 4, 6, 6, 2, [2, 2], [1, 1], [(0, 1), (0, 1)], true),
            (2, 3, 5, 5, 4, [1, 1], [1, 1], [(0, 0), (0, 0)], true),
            (1, 2, 8, 8, 3, [5, 5], [1, 1], [(2, 2), (2, 2)], false),
            // Images smaller than the kernel: every patch row is clipped at both ends.
            (2, 2, 2, 2, 3, [3, 3], [1, 1], [(1, 1), (1, 1)], true),
            (2, 1, 1, 5, 2, [3, 3], [1, 1], [(1, 1), (1, 1)], false),
            // Images in groups (of four and three on two threads, and of three and two),
            // and planes large enough to go one image at a time.
            (7, 3, 5, 5, 4, [3, 3], [1, 1], [(1, 1), (1, 1)], true),
            (7, 2, 9, 9, 3, [3, 3], [2, 2], [(1, 1), (1, 1)], false),
            (3, 2, 16, 16, 3, [3, 3], [1, 1], [(1, 1), (1, 1)], true),
            (5, 2, 7, 7, 3, [3, 3], [1, 1], [(1, 1), (1, 1)], false),
        ];
        for (b, c, h, w, f, kernel, stride, padding, fused_relu) in cases {
            let name = format!("{c}x{h}x{w} -> {f}, {kernel:?} stride {stride:?} pad {padding:?}");
            let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let weight = Tensor::<4>::random(
                [f, c, kernel[0], kernel[1]],
                Distribution::Normal(0.0, 0.5),
                &device,
            );
            let bias = Tensor::<1>::random([f], Distribution::Normal(0.0, 0.5), &device);
            // Two independent copies of each, one for our graph and one for Burn's.
            let (x1, x2) = (x.clone().require_grad(), copy(&x));
            let (w1, w2) = (weight.clone().require_grad(), copy(&weight));
            let (b1, b2) = (bias.clone().require_grad(), copy(&bias));

            let window = Window {
                kernel,
                stride,
                padding,
            };
            let ours = conv2d(x1.clone(), w1.clone(), b1.clone(), window, fused_relu);
            let options = ConvOptions {
                stride,
                padding,
                dilation: [1, 1],
                groups: 1,
            };
            let mut burns = burn_conv2d(x2.clone(), w2.clone(), Some(b2.clone()), options);
            if fused_relu {
                burns = relu(burns);
            }
            assert_eq!(ours.dims(), burns.dims(), "{name}: output shape");
            assert_close(&name, values(ours.clone()), values(burns.clone()));

            // A loss that weighs every output differently, so each gradient entry matters.
            let weights = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
            let g1 = (ours * weights.clone()).sum().backward();
            let g2 = (burns * weights).sum().backward();
            let grads = |x: &Tensor<4>, g| values(x.grad(g).unwrap());
            assert_close(&format!("{name} dx"), grads(&x1, &g1), grads(&x2, &g2));
            assert_close(&format!("{name} dweight"), grads(&w1, &g1), grads(&w2, &g2));
            let bias_grads = |b: &Tensor<1>, g| values(b.grad(g).unwrap());
            assert_close(
                &format!("{name} dbias"),
                bias_grads(&b1, &g1),
                bias_grads(&b2, &g2),
            );
        }
    }

    /// Our max pool and Burn's agree on values and gradients, with and without "same"
    /// padding and odd sizes.
    #[test]
    fn max_pool_matches_burn() {
        let device = Device::flex().autodiff();
        let cases = [
            ([2, 3, 8, 8], [2, 2], [(0, 0), (0, 0)]),
            ([2, 3, 7, 9], [2, 2], [(0, 0), (0, 0)]),
            ([2, 3, 7, 9], [2, 2], [(0, 1), (0, 1)]),
            ([1, 2, 28, 28], [3, 3], [(1, 1), (1, 1)]),
            ([1, 2, 10, 10], [5, 5], [(0, 0), (0, 0)]),
            ([1, 1, 4, 4], [1, 1], [(0, 0), (0, 0)]),
        ];
        for (dims, kernel, padding) in cases {
            let name = format!("{dims:?} pool {kernel:?} pad {padding:?}");
            let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let (x1, x2) = (x.clone().require_grad(), copy(&x));
            let window = Window {
                kernel,
                stride: kernel,
                padding,
            };
            let ours = max_pool2d(x1.clone(), window);
            let burns = burn_max_pool2d(x2.clone(), pool_options(window));
            assert_eq!(ours.dims(), burns.dims(), "{name}: output shape");
            assert_close(&name, values(ours.clone()), values(burns.clone()));
            let weights = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
            let g1 = (ours * weights.clone()).sum().backward();
            let g2 = (burns * weights).sum().backward();
            let (dx1, dx2) = (x1.grad(&g1).unwrap(), x2.grad(&g2).unwrap());
            assert_close(&format!("{name} dx"), values(dx1), values(dx2));
        }
    }

    /// Pooling with winners 16 windows at a time (AVX-512) gives the baseline build's maxima
    /// and winners bit for bit: ties (the first maximum wins), NaNs, values at or below zero
    /// (no winner under the ReLU gate), rows of more and fewer than 16 windows.
    #[test]
    fn pooling_a_row_at_a_time_picks_the_same_winners() {
        if !crate::avx512() {
            eprintln!("no AVX-512 on this CPU: the 16-window path does not run");
            return;
        }
        for ([h, w], padding) in [([28, 28], (0, 0)), ([6, 70], (0, 0)), ([7, 9], (0, 1))] {
            let window = Window {
                kernel: [2, 2],
                stride: [2, 2],
                padding: [padding; 2],
            };
            let pool = PlanePool::new(window, [h, w]);
            let pooled = pool.pooled;
            let plane: Vec<f32> = (0..h * w)
                .map(|i| match i % 37 {
                    5 => f32::NAN,
                    9 | 10 => 0.0,
                    11 => -0.0,
                    _ => ((i as u64 * 2_654_435_761 % 7) as f32 - 4.0) * 0.5,
                })
                .collect();
            for relu_gate in [true, false] {
                let run = |avx512: bool| {
                    let count = pooled[0] * pooled[1];
                    let mut out = vec![f32::NAN; count];
                    let mut winners = vec![7u32; count];
                    let (out_view, winner_view) =
                        (as_uninit(&mut out), Some(as_uninit(&mut winners)));
                    if avx512 {
                        pool.pool(&plane, out_view, winner_view, relu_gate);
                    } else {
                        pool.pool_with(&plane, out_view, winner_view, relu_gate, false);
                    }
                    let bits: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                    (bits, winners)
                };
                let (simd, scalar) = (run(true), run(false));
                assert!(scalar.1.contains(&NO_WINNER) || !relu_gate);
                assert_eq!(simd, scalar, "{h}x{w} relu gate {relu_gate}");
            }
        }
    }

    /// Unpooling writes, bit for bit, what zeroing the plane and scattering each gradient to
    /// its winner writes: full 2x2 windows, odd sizes, "same" padding after, windows of 3
    /// with padding before (no full windows), and outputs without a winner.
    #[test]
    fn unpooling_is_zeroing_and_scattering() {
        let cases = [
            ([28, 28], [2, 2], [(0, 0), (0, 0)]),
            ([7, 9], [2, 2], [(0, 0), (0, 0)]),
            ([7, 7], [2, 2], [(0, 1), (0, 1)]),
            ([10, 10], [3, 3], [(1, 1), (1, 1)]),
            ([3, 33], [2, 2], [(0, 0), (0, 1)]),
            ([4, 70], [2, 2], [(0, 0), (0, 0)]),
        ];
        for ([h, w], kernel, padding) in cases {
            let window = Window {
                kernel,
                stride: kernel,
                padding,
            };
            let pool = PlanePool::new(window, [h, w]);
            let pooled = pool.pooled;
            // Winners from a forward pass over signed values (some windows' maxima are not
            // positive, so NO_WINNER with the ReLU gate).
            let plane: Vec<f32> = (0..h * w)
                .map(|i| ((i as u64 * 2_654_435_761 % 1000) as f32 / 1000.0 - 0.85) * 3.0)
                .collect();
            let count = pooled[0] * pooled[1];
            let mut out = uninit::<f32>(count);
            let mut winners = vec![0u32; count];
            pool.pool(&plane, &mut out, Some(as_uninit(&mut winners)), true);
            assert!(
                winners.contains(&NO_WINNER) && winners.iter().any(|&at| at != NO_WINNER),
                "{h}x{w}: {winners:?}"
            );
            let grad: Vec<f32> = (0..count).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut expected = vec![0.0f32; h * w];
            for (&g, &at) in grad.iter().zip(&winners) {
                if at != NO_WINNER {
                    expected[at as usize] = g;
                }
            }
            let mut ours = vec![f32::NAN; h * w];
            pool.unpool(as_uninit(&mut ours), &grad, &winners);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&ours),
                bits(&expected),
                "{h}x{w} pool {kernel:?} {padding:?}"
            );
            let mut scalar = vec![f32::NAN; h * w];
            pool.unpool_with(as_uninit(&mut scalar), &grad, &winners, false);
            assert_eq!(bits(&scalar), bits(&expected), "without AVX-512, {h}x{w}");
        }
    }

    /// Without autodiff (inference) the kernels run on flex directly.
    #[test]
    fn inference_runs_without_autodiff() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 1, 6, 6], Distribution::Normal(0.0, 1.0), &device);
        assert!(runs_on_flex(&x));
        let window = Window {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [(0, 0); 2],
        };
        let pooled = max_pool2d(x.clone(), window);
        assert_eq!(pooled.dims(), [2, 1, 3, 3]);
        let expected = burn_max_pool2d(x, pool_options(window));
        assert_close("pool", values(pooled), values(expected));
    }
}
