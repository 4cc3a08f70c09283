//! The Burn module built from a [`ModelSpec`]: parameters for the dense, convolution and
//! batch-normalisation layers, and a forward pass that walks the layer list.
//!
//! Initial weights and dropout masks come from the model's own seeded generator, not from
//! the backend's, so one seed gives the same model and the same training on any backend and
//! whatever else runs in the process.

use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation::{leaky_relu, relu, sigmoid, softmax, tanh};
use burn::tensor::module::{avg_pool2d, conv2d, linear, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::predictor::{PackedDense, Predictor, output_activation};
use crate::spec::{
    Activation, Init, Layer, ModelSpec, Padding, PoolKind, Shape, SpecError, window_2d,
};
#[cfg(feature = "flex")]
use burn::module::RunningState;
#[cfg(feature = "flex")]
use flex_ops::{batch_norm as flex_batch_norm, kernels as flex_kernels};

/// Keras' batch normalisation defaults: moving average keeps 0.99 of the old value.
const BATCH_NORM_MOMENTUM: f64 = 0.01;
/// Keras' batch normalisation epsilon.
const BATCH_NORM_EPSILON: f64 = 1e-3;

/// Weights of a dense layer: `weight` is `[inputs, units]`, as in Keras.
#[derive(Module, Debug)]
pub struct DenseParams {
    /// `[inputs, units]`.
    pub weight: Param<Tensor<2>>,
    /// `[units]`.
    pub bias: Param<Tensor<1>>,
}

/// Weights of a convolution: `weight` is `[filters, channels, kernel_h, kernel_w]`.
#[derive(Module, Debug)]
pub struct ConvParams {
    /// `[filters, channels, kernel_h, kernel_w]`.
    pub weight: Param<Tensor<4>>,
    /// `[filters]`.
    pub bias: Param<Tensor<1>>,
}

/// A network: the parameters of its layers, in layer order per kind, and its description.
///
/// The fields are private: `forward` walks the description and takes each kind's next
/// parameters in turn, and fuses a layer with the one after it by looking ahead, which is
/// right only while the parameter lists are the ones [`Network::new`] built for the
/// description. Callers read them, and may change their values (not their number) through
/// [`Network::dense_layers_mut`].
#[derive(Module, Debug)]
pub struct Network {
    /// Dense layers, in order.
    dense: Vec<DenseParams>,
    /// Convolutions, in order.
    conv: Vec<ConvParams>,
    /// Batch normalisations, in order.
    norm: Vec<BatchNorm>,
    /// The description the network was built from.
    #[module(skip)]
    spec: ModelSpec,
}

/// Activations between layers: flat or image-shaped.
enum Value {
    Flat(Tensor<2>),
    Image(Tensor<4>),
}

/// A standard normal sample (Box-Muller), for initialisers.
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn init_weights(
    init: Init,
    count: usize,
    fan_in: usize,
    fan_out: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    let uniform = |limit: f32, rng: &mut ChaCha8Rng| -> Vec<f32> {
        (0..count)
            .map(|_| rng.random_range(-limit..=limit))
            .collect()
    };
    match init {
        Init::GlorotUniform => uniform((6.0 / (fan_in + fan_out) as f32).sqrt(), rng),
        Init::HeUniform => uniform((6.0 / fan_in as f32).sqrt(), rng),
        Init::HeNormal => {
            let std = (2.0 / fan_in as f32).sqrt();
            (0..count).map(|_| standard_normal(rng) * std).collect()
        }
        Init::Normal { beta } => (0..count).map(|_| standard_normal(rng) * beta).collect(),
    }
}

/// Applies `activation` element-wise; softmax runs along `feature_dim` (1 for a
/// `[batch, features]` or `[batch, channels, h, w]` value).
pub fn activate<const D: usize>(
    x: Tensor<D>,
    activation: Activation,
    feature_dim: usize,
) -> Tensor<D> {
    match activation {
        Activation::Linear => x,
        Activation::Relu => relu(x),
        Activation::LeakyRelu(alpha) => leaky_relu_on(x, alpha),
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => tanh_on(x),
        Activation::Softmax => softmax(x, feature_dim),
    }
}

/// tanh: on flex through the project's vectorised kernel (libm's scalar `tanhf` was a
/// quarter of report 001's iris grid), elsewhere through Burn's.
fn tanh_on<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if flex_kernels::runs_on_flex(&x) {
        return flex_ops::activation::tanh(x);
    }
    tanh(x)
}

/// Leaky ReLU: on flex with a positive slope through the project's one-pass kernel (Burn
/// composes it from three tracked operations), elsewhere through Burn's.
fn leaky_relu_on<const D: usize>(x: Tensor<D>, slope: f32) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if slope > 0.0 && flex_kernels::runs_on_flex(&x) {
        return flex_ops::activation::leaky_relu(x, slope);
    }
    leaky_relu(x, slope as f64)
}

impl Network {
    /// The description the network was built from.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The dense layers' parameters, in layer order.
    pub fn dense_layers(&self) -> &[DenseParams] {
        &self.dense
    }

    /// The dense layers' parameters, to set their values (the layers stay as they are).
    pub fn dense_layers_mut(&mut self) -> &mut [DenseParams] {
        &mut self.dense
    }

    /// The convolutions' parameters, in layer order.
    pub fn conv_layers(&self) -> &[ConvParams] {
        &self.conv
    }

    /// Builds the network for `spec` on `device`, weights drawn from a generator seeded by
    /// `seed`; an impossible architecture is an error naming the layer.
    pub fn new(spec: &ModelSpec, seed: u64, device: &Device) -> Result<Self, SpecError> {
        let infos = spec.layer_infos()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut network = Network {
            dense: Vec::new(),
            conv: Vec::new(),
            norm: Vec::new(),
            spec: spec.clone(),
        };
        let mut shape = spec.input;
        for (layer, info) in spec.layers.iter().zip(&infos) {
            match (layer, shape) {
                (Layer::Dense { units, .. }, Shape::Flat(inputs)) => {
                    let w = init_weights(spec.init, inputs * units, inputs, *units, &mut rng);
                    network.dense.push(DenseParams {
                        weight: Param::from_tensor(Tensor::from_data(
                            TensorData::new(w, [inputs, *units]),
                            device,
                        )),
                        bias: Param::from_tensor(Tensor::zeros([*units], device)),
                    });
                }
                (
                    Layer::Conv {
                        filters, kernel, ..
                    },
                    Shape::Image { channels, .. },
                ) => {
                    let area = kernel[0] * kernel[1];
                    let w = init_weights(
                        spec.init,
                        filters * channels * area,
                        channels * area,
                        filters * area,
                        &mut rng,
                    );
                    network.conv.push(ConvParams {
                        weight: Param::from_tensor(Tensor::from_data(
                            TensorData::new(w, [*filters, channels, kernel[0], kernel[1]]),
                            device,
                        )),
                        bias: Param::from_tensor(Tensor::zeros([*filters], device)),
                    });
                }
                (Layer::BatchNorm, shape) => {
                    let features = match shape {
                        Shape::Flat(n) => n,
                        Shape::Image { channels, .. } => channels,
                    };
                    network.norm.push(
                        BatchNormConfig::new(features)
                            .with_momentum(BATCH_NORM_MOMENTUM)
                            .with_epsilon(BATCH_NORM_EPSILON)
                            .init(device),
                    );
                }
                _ => {}
            }
            shape = info.output;
        }
        Ok(network)
    }

    /// Whether the last layer applies softmax (classification with probabilities).
    pub fn ends_with_softmax(&self) -> bool {
        matches!(
            self.spec.layers.last(),
            Some(
                Layer::Dense {
                    activation: Activation::Softmax,
                    ..
                } | Layer::Activation(Activation::Softmax)
            )
        )
    }

    /// Runs the network on flattened items `[batch, input len]`. A trailing softmax is left
    /// out (the output is logits, which the loss and `predict` turn into probabilities
    /// stably). Dropout is applied only when `dropout` gives a generator, that is, while
    /// training.
    ///
    /// One match over (layer, value) pairs, about 120 lines: each arm is a layer kind and
    /// the fused kernels look one layer ahead (a convolution that also pools), which a split
    /// per layer would have to pass back and forth.
    pub fn forward(&self, input: Tensor<2>, dropout: Option<&mut ChaCha8Rng>) -> Tensor<2> {
        self.forward_with(input, dropout, &[])
    }

    /// [`Network::forward`] without dropout, dense layers on the packed weights given (one
    /// entry per dense layer, [`Predictor`]).
    pub(crate) fn forward_packed(
        &self,
        input: Tensor<2>,
        packed: &[Option<PackedDense>],
    ) -> Tensor<2> {
        self.forward_with(input, None, packed)
    }

    fn forward_with(
        &self,
        input: Tensor<2>,
        mut dropout: Option<&mut ChaCha8Rng>,
        packed: &[Option<PackedDense>],
    ) -> Tensor<2> {
        let [batch, _] = input.dims();
        let mut value = match self.spec.input {
            Shape::Flat(_) => Value::Flat(input),
            Shape::Image {
                channels,
                height,
                width,
            } => Value::Image(input.reshape([batch, channels, height, width])),
        };
        let (mut dense, mut conv, mut norm) = (0, 0, 0);
        let last = self.spec.layers.len().saturating_sub(1);
        // Set when a convolution has also applied the max pool after it (flex's fused kernel).
        let mut pooled_already = false;
        for (i, layer) in self.spec.layers.iter().enumerate() {
            if std::mem::take(&mut pooled_already) {
                continue;
            }
            let skip_softmax = |a: Activation| output_activation(i, last, a);
            value = match (layer, value) {
                (Layer::Dense { activation, .. }, Value::Flat(x)) => {
                    let p = &self.dense[dense];
                    let packed = packed.get(dense).and_then(Option::as_ref);
                    dense += 1;
                    Value::Flat(dense_layer(x, p, skip_softmax(*activation), packed))
                }
                (
                    Layer::Conv {
                        kernel,
                        stride,
                        padding,
                        activation,
                        ..
                    },
                    Value::Image(x),
                ) => {
                    let p = &self.conv[conv];
                    conv += 1;
                    let pad = window_padding(&x, *kernel, *stride, *padding);
                    let activation = skip_softmax(*activation);
                    let pool = match self.spec.layers.get(i + 1) {
                        Some(&Layer::Pool {
                            kind: PoolKind::Max,
                            size,
                            stride,
                            padding,
                        }) => Some((size, stride, padding)),
                        _ => None,
                    };
                    let (y, pooled) = convolve(x, p, *kernel, *stride, pad, activation, pool);
                    pooled_already = pooled;
                    Value::Image(y)
                }
                (
                    Layer::Pool {
                        kind,
                        size,
                        stride,
                        padding,
                    },
                    Value::Image(x),
                ) => {
                    let pad = window_padding(&x, *size, *stride, *padding);
                    Value::Image(match kind {
                        PoolKind::Max => max_pool(x, *size, *stride, pad),
                        PoolKind::Min => max_pool(x.neg(), *size, *stride, pad).neg(),
                        PoolKind::Average => avg_pool2d(
                            x,
                            AvgPoolOptions {
                                kernel_size: *size,
                                stride: *stride,
                                padding: pad,
                                count_include_pad: false,
                                ceil_mode: false,
                            },
                        ),
                    })
                }
                (Layer::Dropout { rate }, v) => match dropout.as_deref_mut() {
                    Some(rng) if *rate > 0.0 => match v {
                        Value::Flat(x) => Value::Flat(apply_dropout(x, *rate, rng)),
                        Value::Image(x) => Value::Image(apply_dropout(x, *rate, rng)),
                    },
                    _ => v,
                },
                (Layer::BatchNorm, v) => {
                    let n = &self.norm[norm];
                    norm += 1;
                    match v {
                        Value::Flat(x) => Value::Flat(batch_norm(n, x)),
                        Value::Image(x) => Value::Image(batch_norm(n, x)),
                    }
                }
                (Layer::Flatten, Value::Image(x)) => {
                    let [b, c, h, w] = x.dims();
                    Value::Flat(x.reshape([b, c * h * w]))
                }
                (Layer::Flatten, v @ Value::Flat(_)) => v,
                (Layer::Activation(a), Value::Flat(x)) => {
                    Value::Flat(activate(x, skip_softmax(*a), 1))
                }
                (Layer::Activation(a), Value::Image(x)) => {
                    Value::Image(activate(x, skip_softmax(*a), 1))
                }
                (layer, _) => unreachable!("layer {layer} was checked against its input shape"),
            };
        }
        match value {
            Value::Flat(x) => x,
            Value::Image(x) => {
                let [b, c, h, w] = x.dims();
                x.reshape([b, c * h * w])
            }
        }
    }

    /// The network ready for inference over many batches: on flex, its dense layers'
    /// weights packed once ([`Predictor`]); the same values as [`Network::predict`].
    pub fn predictor(&self) -> Predictor<'_> {
        Predictor::new(self)
    }

    /// Class probabilities (or regression outputs) for flattened items, without dropout.
    /// For many batches, [`Network::predictor`] packs the weights once for all of them.
    pub fn predict(&self, input: Tensor<2>) -> Tensor<2> {
        crate::threads::on_compute_threads(|| self.outputs(self.forward(input, None)))
    }

    /// What [`Network::predict`] returns for the forward pass's `logits`: probabilities
    /// where the network ends with a softmax, the outputs as they are otherwise.
    pub(crate) fn outputs(&self, logits: Tensor<2>) -> Tensor<2> {
        if self.ends_with_softmax() {
            softmax(logits, 1)
        } else {
            logits
        }
    }
}

/// `activation(x · weight + bias)`: for inference on flex with a linear or ReLU activation
/// through the project's fused kernel (on `packed` weights where given and the kernel takes
/// the batch, with the same values); otherwise on flex through the project's `linear`
/// (Burn's values, without flex's zeroing and copying of each product's output); elsewhere
/// through Burn's operations.
#[cfg_attr(not(feature = "flex"), allow(unused_variables))]
fn dense_layer(
    x: Tensor<2>,
    p: &DenseParams,
    activation: Activation,
    packed: Option<&PackedDense>,
) -> Tensor<2> {
    #[cfg(feature = "flex")]
    if flex_kernels::runs_on_flex(&x) {
        let relu = activation == Activation::Relu;
        return match activation {
            Activation::Linear | Activation::Relu if !x.device().is_autodiff() => match packed {
                Some(packed) if packed.handles(x.dims()[0]) => packed.apply(x, relu),
                _ => flex_kernels::dense(x, p.weight.val(), p.bias.val(), relu),
            },
            _ => activate(
                flex_kernels::linear(x, p.weight.val(), p.bias.val()),
                activation,
                1,
            ),
        };
    }
    let y = linear(x, p.weight.val(), Some(p.bias.val()));
    activate(y, activation, 1)
}

/// `activation(conv2d(x, weight) + bias)`: on flex through the project's own kernel (with
/// a ReLU fused in), elsewhere through Burn's. `pool` is the max pool (size, stride,
/// padding) that follows, if one does: on flex, after a ReLU and with windows that do not
/// overlap, it is applied too, in the same kernel, and the second value is `true`; Burn's
/// path leaves the pool to its own layer.
#[cfg_attr(not(feature = "flex"), allow(unused_variables))]
fn convolve(
    x: Tensor<4>,
    p: &ConvParams,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
    activation: Activation,
    pool: Option<([usize; 2], [usize; 2], Padding)>,
) -> (Tensor<4>, bool) {
    #[cfg(feature = "flex")]
    if flex_kernels::runs_on_flex(&x) {
        let window = flex_kernels::Window {
            kernel,
            stride,
            padding,
        };
        let relu = activation == Activation::Relu;
        if let Some((size, pool_stride, pool_padding)) = pool
            && relu
            && size == pool_stride
        {
            let [_, _, h, w] = x.dims();
            let convolved = window.output([h, w]);
            let pool = flex_kernels::Window {
                kernel: size,
                stride: size,
                padding: window_2d(convolved, size, size, pool_padding)
                    .expect("shapes were checked when the network was built")
                    .padding,
            };
            let (weight, bias) = (p.weight.val(), p.bias.val());
            let y = flex_kernels::conv2d_relu_max_pool2d(x, weight, bias, window, pool);
            return (y, true);
        }
        let y = flex_kernels::conv2d(x, p.weight.val(), p.bias.val(), window, relu);
        return (
            activate(y, if relu { Activation::Linear } else { activation }, 1),
            false,
        );
    }
    let options = ConvOptions {
        stride,
        padding,
        dilation: [1, 1],
        groups: 1,
    };
    let y = conv2d(x, p.weight.val(), Some(p.bias.val()), options);
    (activate(y, activation, 1), false)
}

/// Max pooling: on flex, windows that do not overlap (stride = window) go through the
/// project's own kernel; the rest through Burn's.
fn max_pool(
    x: Tensor<4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if kernel == stride && flex_kernels::runs_on_flex(&x) {
        let window = flex_kernels::Window {
            kernel,
            stride,
            padding,
        };
        return flex_kernels::max_pool2d(x, window);
    }
    let options = MaxPoolOptions {
        kernel_size: kernel,
        stride,
        padding,
        dilation: [1, 1],
        ceil_mode: false,
    };
    max_pool2d(x, options)
}

/// Burn's batch norm, except that training on flex normalises through the project's own
/// kernel; the running statistics are updated as Burn updates them.
fn batch_norm<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if flex_kernels::runs_on_flex(&x) && x.device().is_autodiff() && norm.training.is_enabled() {
        let device = x.device();
        let batch =
            flex_batch_norm::batch_norm_train(x, norm.gamma.val(), norm.beta.val(), norm.epsilon);
        let update = |running: &RunningState<Tensor<1>>, batch: Tensor<1>| {
            let value = running
                .value_sync()
                .to_device(&device)
                .mul_scalar(1.0 - norm.momentum)
                .add(batch.detach().mul_scalar(norm.momentum));
            running.update(value.detach());
        };
        update(&norm.running_mean, batch.mean);
        update(&norm.running_var, batch.variance);
        return batch.output;
    }
    norm.forward(x)
}

/// The (start, end) padding of both axes for a window over image batch `x`.
fn window_padding(
    x: &Tensor<4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: Padding,
) -> [(usize, usize); 2] {
    let [_, _, h, w] = x.dims();
    window_2d([h, w], kernel, stride, padding)
        .expect("shapes were checked when the network was built")
        .padding
}

/// Inverted dropout with a mask drawn from `rng`: kept values are scaled by `1 / keep`.
fn apply_dropout<const D: usize>(x: Tensor<D>, rate: f32, rng: &mut ChaCha8Rng) -> Tensor<D> {
    let keep = 1.0 - rate;
    let dims = x.dims();
    let count: usize = dims.iter().product();
    let mask = dropout_mask(count, keep, rng);
    let mask = Tensor::<D>::from_data(TensorData::new(mask, dims), &x.device());
    x * mask
}

/// `count` mask values: `1 / keep` where `rng.random::<f32>() < keep`, else 0, one draw per
/// value in order. `random::<f32>()` is exactly `(next_u32() >> 8) · 2⁻²⁴`, so the test is
/// made on the 24-bit integer against `keep · 2²⁴` rounded up, with the words drawn a block
/// at a time: the same draws and decisions as drawing value by value (a test compares the
/// two), without a call and a float conversion per value, which were a tenth of report
/// 004's training step.
fn dropout_mask(count: usize, keep: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let scale = 1.0 / keep;
    // keep · 2²⁴ is exact in f32 (a power-of-two scaling of an f32 below 1).
    let threshold = (keep * (1u32 << 24) as f32).ceil() as u32;
    // Filled as drawn, not zeroed first (zeroing was a tenth of the mask's time).
    let mut mask = Vec::with_capacity(count);
    let mut words = [0u32; 1024];
    while mask.len() < count {
        let words = &mut words[..(count - mask.len()).min(1024)];
        rng.fill(words);
        mask.extend(
            words
                .iter()
                .map(|&w| if (w >> 8) < threshold { scale } else { 0.0 }),
        );
    }
    mask
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::spec::ModelSpec;

    fn image(c: usize, h: usize, w: usize) -> Shape {
        Shape::image(c, [h, w])
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec().unwrap()
    }

    #[test]
    fn param_count_matches_the_spec() {
        let spec = ModelSpec::parse(
            "m",
            image(1, 28, 28),
            "conv(16, 3x3, same, relu); batchnorm; maxpool(2); dropout(0.2); conv(32, 3x3, same, relu);
             maxpool(2); flatten; dense(256, relu); dense(10, softmax)",
        )
        .unwrap();
        let net = Network::new(&spec, 0, &Device::flex()).unwrap();
        let (total, trainable, _) = spec.param_counts().unwrap();
        // Burn counts the moving statistics too, as Keras' total does.
        assert_eq!(net.num_params(), total);
        assert_eq!(total, trainable + 2 * 16);
    }

    #[test]
    fn same_seed_same_weights_and_output() {
        let spec =
            ModelSpec::parse("m", Shape::Flat(4), "dense(8, relu); dense(3, softmax)").unwrap();
        let device = Device::flex();
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; 8], [2, 4]), &device);
        let a = Network::new(&spec, 7, &device).unwrap().predict(x.clone());
        let b = Network::new(&spec, 7, &device).unwrap().predict(x.clone());
        let c = Network::new(&spec, 8, &device).unwrap().predict(x);
        let (a, b, c) = (values(a), values(b), values(c));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Softmax rows sum to one.
        assert!((a[0] + a[1] + a[2] - 1.0).abs() < 1e-5);
    }

    #[test]
    fn pooling_kinds_and_same_padding() {
        let device = Device::flex();
        // One 3x3 image 1..9; a 2x2 window, stride 2, same padding: 2x2 output where the
        // padded border never wins (max), never loses (min) and is not counted (average).
        let x = Tensor::<2>::from_data(
            TensorData::new((1..=9).map(|v| v as f32).collect::<Vec<_>>(), [1, 9]),
            &device,
        );
        let run = |pool: &str| {
            let spec = ModelSpec::parse("m", image(1, 3, 3), &format!("{pool}(2, stride 2, same)"))
                .unwrap();
            values(Network::new(&spec, 0, &device).unwrap().predict(x.clone()))
        };
        assert_eq!(run("maxpool"), [5., 6., 8., 9.]);
        assert_eq!(run("minpool"), [1., 3., 7., 9.]);
        assert_eq!(run("avgpool"), [3., 4.5, 7.5, 9.]);
    }

    #[test]
    fn glorot_uniform_stays_within_its_limit() {
        let spec = ModelSpec::parse("m", Shape::Flat(100), "dense(50)").unwrap();
        let net = Network::new(&spec, 1, &Device::flex()).unwrap();
        let w: Vec<f32> = net.dense[0]
            .weight
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap();
        let limit = (6.0f32 / 150.0).sqrt();
        assert!(w.iter().all(|v| v.abs() <= limit));
        assert!(w.iter().any(|v| v.abs() > limit * 0.9));
    }

    #[test]
    fn dropout_masks_are_the_value_by_value_draws() {
        for (count, rate) in [(0, 0.5), (1, 0.2), (1023, 0.3), (5000, 0.25), (4099, 0.9)] {
            let keep = 1.0f32 - rate;
            let mut a = ChaCha8Rng::seed_from_u64(count as u64 + 7);
            let mut b = a.clone();
            let by_value: Vec<f32> = (0..count)
                .map(|_| {
                    if b.random::<f32>() < keep {
                        1.0 / keep
                    } else {
                        0.0
                    }
                })
                .collect();
            assert_eq!(
                dropout_mask(count, keep, &mut a),
                by_value,
                "{count} at {rate}"
            );
            assert_eq!(
                a.random::<u64>(),
                b.random::<u64>(),
                "the generator moved as far"
            );
        }
    }

    #[test]
    fn dropout_only_with_a_generator() {
        let device = Device::flex();
        let spec = ModelSpec::parse("m", Shape::Flat(1000), "dropout(0.5)").unwrap();
        let net = Network::new(&spec, 0, &device).unwrap();
        let x = Tensor::<2>::ones([1, 1000], &device);
        assert!(
            values(net.forward(x.clone(), None))
                .iter()
                .all(|&v| v == 1.0)
        );
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let y = values(net.forward(x, Some(&mut rng)));
        let zeros = y.iter().filter(|&&v| v == 0.0).count();
        assert!((400..600).contains(&zeros), "{zeros}");
        assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
    }
}
