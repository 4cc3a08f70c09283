//! A model as a readable list of layers: serialisable with serde, writable in a short text
//! form that reads like the reports (`conv(64, 3x3, stride 1, same, relu)`, `maxpool(2)`,
//! `dropout(0.2)`, `dense(10, softmax)`), with every shape inferred from the input shape.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An error in a model description: a text that does not parse, or an impossible
/// architecture. It names the layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

type Result<T> = std::result::Result<T, SpecError>;

/// Element-wise activation functions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Identity.
    Linear,
    /// `max(0, x)`.
    Relu,
    /// `x` for positive `x`, `alpha * x` otherwise.
    LeakyRelu(f32),
    /// Logistic function.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Softmax over the features (an output layer for classification).
    Softmax,
}

/// How a convolution or pooling window treats the borders (Keras semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// No padding: only windows that fit.
    Valid,
    /// Pad so that the output has `ceil(input / stride)` positions, any odd pixel of padding
    /// at the end (bottom, right), as TensorFlow does.
    Same,
}

/// What a pooling window computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    /// Maximum.
    Max,
    /// Mean (padding excluded from the count, as Keras does).
    Average,
    /// Minimum (report 003's min pooling).
    Min,
}

/// One layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// Fully connected layer on a flat input.
    Dense {
        /// Output features.
        units: usize,
        /// Activation applied to the output.
        activation: Activation,
    },
    /// 2-D convolution on an image.
    Conv {
        /// Output channels.
        filters: usize,
        /// Window height and width.
        kernel: [usize; 2],
        /// Step between windows.
        stride: [usize; 2],
        /// Border handling.
        padding: Padding,
        /// Activation applied to the output.
        activation: Activation,
    },
    /// 2-D pooling on an image.
    Pool {
        /// Max, average or min.
        kind: PoolKind,
        /// Window height and width.
        size: [usize; 2],
        /// Step between windows (Keras' default: the window size).
        stride: [usize; 2],
        /// Border handling.
        padding: Padding,
    },
    /// Zeroes a fraction of the inputs while training.
    Dropout {
        /// Fraction dropped, in [0, 1).
        rate: f32,
    },
    /// Batch normalisation over channels (images) or features (flat inputs), with Keras'
    /// defaults (momentum 0.99, epsilon 0.001).
    BatchNorm,
    /// Flattens an image into features.
    Flatten,
    /// A separate activation.
    Activation(Activation),
}

/// The shape of one item between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shape {
    /// A vector of features.
    Flat(usize),
    /// An image, channel first.
    Image {
        /// Channels.
        channels: usize,
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
    },
}

impl Shape {
    /// From an item shape as the `data` crate's `Samples` gives it (`[n]` or `[c, h, w]`).
    pub fn from_dims(dims: &[usize]) -> Result<Self> {
        match dims {
            [n] => Ok(Shape::Flat(*n)),
            [c, h, w] => Ok(Shape::Image {
                channels: *c,
                height: *h,
                width: *w,
            }),
            other => Err(SpecError(format!(
                "input shape {other:?} is neither [features] nor [channels, height, width]"
            ))),
        }
    }

    /// An image of `channels` planes of `[height, width]`.
    pub fn image(channels: usize, [height, width]: [usize; 2]) -> Self {
        Shape::Image {
            channels,
            height,
            width,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Flat(n) => n,
            Shape::Image {
                channels,
                height,
                width,
            } => channels.saturating_mul(height).saturating_mul(width),
        }
    }

    /// True for a zero-sized shape.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keras' notation, channels last: `(None, 28, 28, 16)` or `(None, 784)`.
    pub fn keras(&self) -> String {
        match *self {
            Shape::Flat(n) => format!("(None, {n})"),
            Shape::Image {
                channels,
                height,
                width,
            } => format!("(None, {height}, {width}, {channels})"),
        }
    }
}

/// How the weights of dense and convolution layers start (biases start at zero).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Uniform in `±sqrt(6 / (fan_in + fan_out))`: the Keras default.
    #[default]
    GlorotUniform,
    /// Normal with standard deviation `sqrt(2 / fan_in)`.
    HeNormal,
    /// Uniform in `±sqrt(6 / fan_in)`.
    HeUniform,
    /// Normal with mean 0 and standard deviation `beta` (report 001's MLP).
    Normal {
        /// Standard deviation.
        beta: f32,
    },
}

/// A whole model: the input shape, the layers, and how weights start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Name shown by `summary()`.
    pub name: String,
    /// Shape of one input item.
    pub input: Shape,
    /// The layers, in order.
    pub layers: Vec<Layer>,
    /// Weight initialisation.
    #[serde(default)]
    pub init: Init,
}

/// Size along one axis after a window of `kernel` moving by `stride`, and the padding at
/// its start and end (TensorFlow's rule for `same`).
pub fn window_output(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> Option<(usize, usize, usize)> {
    match padding {
        Padding::Valid => {
            if kernel > input {
                None
            } else {
                Some(((input - kernel) / stride + 1, 0, 0))
            }
        }
        Padding::Same => {
            let out = input.div_ceil(stride);
            let total = ((out - 1) * stride + kernel).saturating_sub(input);
            Some((out, total / 2, total - total / 2))
        }
    }
}

/// Output size and padding of a 2-D window (convolution or pooling) on both axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window2d {
    /// Output height and width.
    pub output: [usize; 2],
    /// Padding (start, end) of the height and width axes.
    pub padding: [(usize, usize); 2],
}

/// [`window_output`] on both axes of an `input = [height, width]` image, or `None` when the
/// window does not fit.
pub fn window_2d(
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: Padding,
) -> Option<Window2d> {
    let (h, top, bottom) = window_output(input[0], kernel[0], stride[0], padding)?;
    let (w, left, right) = window_output(input[1], kernel[1], stride[1], padding)?;
    Some(Window2d {
        output: [h, w],
        padding: [(top, bottom), (left, right)],
    })
}

/// One row of a summary: a layer, its output shape and parameter counts.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// Keras-style layer name (`conv2d_1`).
    pub name: String,
    /// Keras class name (`Conv2D`).
    pub kind: &'static str,
    /// Output shape of one item.
    pub output: Shape,
    /// Trainable parameters.
    pub trainable: usize,
    /// Non-trainable parameters (batch normalisation's moving statistics).
    pub non_trainable: usize,
}

impl Layer {
    /// The output shape for `input`, or an error naming the layer.
    pub fn output_shape(&self, input: Shape) -> std::result::Result<Shape, String> {
        match (self, input) {
            (Layer::Dense { units, .. }, Shape::Flat(_)) if *units > 0 => Ok(Shape::Flat(*units)),
            (Layer::Dense { .. }, Shape::Flat(_)) => {
                Err("a dense layer needs at least 1 unit".into())
            }
            (Layer::Dense { .. }, Shape::Image { .. }) => {
                Err("a dense layer needs a flat input: add flatten before it".into())
            }
            (
                Layer::Conv {
                    filters,
                    kernel,
                    stride,
                    padding,
                    ..
                },
                Shape::Image { height, width, .. },
            ) => {
                if *filters == 0 || kernel.contains(&0) || stride.contains(&0) {
                    return Err("filters, kernel and stride must be positive".into());
                }
                match window_2d([height, width], *kernel, *stride, *padding) {
                    Some(window) => Ok(Shape::image(*filters, window.output)),
                    None => Err(format!(
                        "kernel {}x{} is larger than its {height}x{width} input (use same padding \
                         or a smaller kernel)",
                        kernel[0], kernel[1]
                    )),
                }
            }
            (
                Layer::Pool {
                    size,
                    stride,
                    padding,
                    ..
                },
                Shape::Image {
                    channels,
                    height,
                    width,
                },
            ) => {
                if size.contains(&0) || stride.contains(&0) {
                    return Err("pool size and stride must be positive".into());
                }
                match window_2d([height, width], *size, *stride, *padding) {
                    Some(window) => Ok(Shape::image(channels, window.output)),
                    None => Err(format!(
                        "pool window {}x{} is larger than its {height}x{width} input",
                        size[0], size[1]
                    )),
                }
            }
            (Layer::Conv { .. } | Layer::Pool { .. }, Shape::Flat(_)) => {
                Err("convolution and pooling need an image input, not a flat one".into())
            }
            (Layer::Dropout { rate }, shape) => {
                if (0.0..1.0).contains(rate) {
                    Ok(shape)
                } else {
                    Err(format!("dropout rate {rate} is not in [0, 1)"))
                }
            }
            (Layer::Flatten, shape) => Ok(Shape::Flat(shape.len())),
            (Layer::BatchNorm | Layer::Activation(_), shape) => Ok(shape),
        }
    }

    /// Trainable and non-trainable parameters for `input`.
    pub fn params(&self, input: Shape) -> (usize, usize) {
        match (self, input) {
            // Saturating: a count too large for memory is refused by the size check of
            // `ModelSpec::layer_infos`, never wrapped around.
            (Layer::Dense { units, .. }, Shape::Flat(n)) => {
                (n.saturating_mul(*units).saturating_add(*units), 0)
            }
            (
                Layer::Conv {
                    filters, kernel, ..
                },
                Shape::Image { channels, .. },
            ) => (
                kernel[0]
                    .saturating_mul(kernel[1])
                    .saturating_mul(channels)
                    .saturating_mul(*filters)
                    .saturating_add(*filters),
                0,
            ),
            (Layer::BatchNorm, Shape::Flat(n)) => (2 * n, 2 * n),
            (Layer::BatchNorm, Shape::Image { channels, .. }) => (2 * channels, 2 * channels),
            _ => (0, 0),
        }
    }

    fn keras_kind(&self) -> (&'static str, &'static str) {
        match self {
            Layer::Dense { .. } => ("dense", "Dense"),
            Layer::Conv { .. } => ("conv2d", "Conv2D"),
            Layer::Pool {
                kind: PoolKind::Max,
                ..
            } => ("max_pooling2d", "MaxPooling2D"),
            Layer::Pool {
                kind: PoolKind::Average,
                ..
            } => ("average_pooling2d", "AveragePooling2D"),
            Layer::Pool {
                kind: PoolKind::Min,
                ..
            } => ("min_pooling2d", "MinPooling2D"),
            Layer::Dropout { .. } => ("dropout", "Dropout"),
            Layer::BatchNorm => ("batch_normalization", "BatchNormalization"),
            Layer::Flatten => ("flatten", "Flatten"),
            Layer::Activation(_) => ("activation", "Activation"),
        }
    }
}

impl ModelSpec {
    /// A model named `name` on items of `input` shape.
    pub fn new(name: impl Into<String>, input: Shape, layers: Vec<Layer>) -> Self {
        ModelSpec {
            name: name.into(),
            input,
            layers,
            init: Init::default(),
        }
    }

    /// Parses the text form: layers separated by newlines, `;` or `->` (see [`Layer`]'s
    /// `FromStr`).
    pub fn parse(name: impl Into<String>, input: Shape, text: &str) -> Result<Self> {
        let layers = parse_layers(text)?;
        let spec = ModelSpec::new(name, input, layers);
        spec.layer_infos()?;
        Ok(spec)
    }

    /// Sets the initialiser.
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// The shape after every layer, with parameter counts; an error names the first layer
    /// that cannot follow its input.
    pub fn layer_infos(&self) -> Result<Vec<LayerInfo>> {
        if self.input.is_empty() {
            return Err(SpecError(format!(
                "model \"{}\": the input shape is empty",
                self.name
            )));
        }
        let mut shape = self.input;
        let mut counts: std::collections::HashMap<&str, usize> = Default::default();
        let mut infos = Vec::with_capacity(self.layers.len());
        let mut total = 0usize;
        for (i, layer) in self.layers.iter().enumerate() {
            let output = layer.output_shape(shape).map_err(|why| {
                SpecError(format!(
                    "model \"{}\", layer {} ({layer}): {why}; its input is {}",
                    self.name,
                    i + 1,
                    shape.keras()
                ))
            })?;
            let (trainable, non_trainable) = layer.params(shape);
            total = total
                .saturating_add(trainable)
                .saturating_add(non_trainable);
            check_size(self, i, layer, total, output)?;
            let (base, kind) = layer.keras_kind();
            let n = counts.entry(base).or_insert(0);
            let name = if *n == 0 {
                base.to_string()
            } else {
                format!("{base}_{n}")
            };
            *n += 1;
            infos.push(LayerInfo {
                name,
                kind,
                output,
                trainable,
                non_trainable,
            });
            shape = output;
        }
        Ok(infos)
    }

    /// The shape of the model's output.
    pub fn output_shape(&self) -> Result<Shape> {
        Ok(self
            .layer_infos()?
            .last()
            .map_or(self.input, |info| info.output))
    }

    /// Floating-point operations of one item's forward pass: two per multiply-add of the
    /// dense and convolution layers (the usual measure; the other layers are a few per
    /// value and left out). A training step costs about three times this per item.
    pub fn forward_flops(&self) -> Result<u64> {
        let infos = self.layer_infos()?;
        let mut input = self.input;
        let mut flops = 0u64;
        for (layer, info) in self.layers.iter().zip(&infos) {
            flops += match (layer, input) {
                (Layer::Dense { units, .. }, Shape::Flat(n)) => 2 * (n * units) as u64,
                (Layer::Conv { kernel, .. }, Shape::Image { channels, .. }) => {
                    2 * (info.output.len() * kernel[0] * kernel[1] * channels) as u64
                }
                _ => 0,
            };
            input = info.output;
        }
        Ok(flops)
    }

    /// Total, trainable and non-trainable parameter counts.
    pub fn param_counts(&self) -> Result<(usize, usize, usize)> {
        let infos = self.layer_infos()?;
        let trainable: usize = infos.iter().map(|i| i.trainable).sum();
        let non_trainable: usize = infos.iter().map(|i| i.non_trainable).sum();
        Ok((trainable + non_trainable, trainable, non_trainable))
    }

    /// The Keras `model.summary()` table.
    pub fn summary(&self) -> Result<String> {
        let infos = self.layer_infos()?;
        let (total, trainable, non_trainable) = self.param_counts()?;
        let rule = "_".repeat(65);
        let double = "=".repeat(65);
        let mut out = format!("Model: \"{}\"\n{rule}\n", self.name);
        out.push_str(&format!(
            " {:<28}{:<26}{:<10}\n{double}\n",
            "Layer (type)", "Output Shape", "Param #"
        ));
        for (i, info) in infos.iter().enumerate() {
            out.push_str(&format!(
                " {:<28}{:<26}{:<10}\n",
                format!("{} ({})", info.name, info.kind),
                info.output.keras(),
                group_thousands(info.trainable + info.non_trainable)
            ));
            if i + 1 < infos.len() {
                out.push_str(&format!("{rule}\n"));
            }
        }
        out.push_str(&format!(
            "{double}\nTotal params: {}\nTrainable params: {}\nNon-trainable params: {}\n{rule}\n",
            group_thousands(total),
            group_thousands(trainable),
            group_thousands(non_trainable)
        ));
        Ok(out)
    }

    /// The layers in the text form, one per line.
    pub fn to_text(&self) -> String {
        self.layers
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Bytes one parameter takes in training: the weight, its gradient and two optimizer
/// moments (Adam's), in f32.
pub const TRAINING_BYTES_PER_PARAM: u64 = 16;

/// Values one item may have after a layer (2^31: tensor indexing stays in range).
pub const MAX_VALUES_PER_ITEM: usize = 1 << 31;

/// The most memory a model's parameters may need to train, in bytes: 16 GiB, or
/// `BURN_REPORTS_MAX_MODEL_GB` gibibytes when that is set to a positive number.
pub fn model_memory_limit() -> u64 {
    std::env::var("BURN_REPORTS_MAX_MODEL_GB")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|gb| gb.is_finite() && *gb > 0.0)
        .map_or(16 << 30, |gb| (gb * (1u64 << 30) as f64) as u64)
}

/// Refuses a layer after which the model's parameters (`total` so far) would need more
/// than [`model_memory_limit`] to train, or whose output per item is too large to index,
/// before anything is allocated.
fn check_size(
    spec: &ModelSpec,
    i: usize,
    layer: &Layer,
    total: usize,
    output: Shape,
) -> Result<()> {
    let limit = model_memory_limit();
    let needed = (total as u64).saturating_mul(TRAINING_BYTES_PER_PARAM);
    if needed > limit {
        return Err(SpecError(format!(
            "model \"{}\", layer {} ({layer}): the model would have {} parameters, which need \
             {} GiB to train (weights, gradients and optimizer state); the limit is {} GiB \
             (set BURN_REPORTS_MAX_MODEL_GB to change it)",
            spec.name,
            i + 1,
            group_thousands(total),
            gib(needed),
            gib(limit)
        )));
    }
    if output.len() > MAX_VALUES_PER_ITEM {
        return Err(SpecError(format!(
            "model \"{}\", layer {} ({layer}): its output {} has {} values per item, more than \
             the {} a layer may produce",
            spec.name,
            i + 1,
            output.keras(),
            group_thousands(output.len()),
            group_thousands(MAX_VALUES_PER_ITEM)
        )));
    }
    Ok(())
}

/// Bytes as GiB for a message: one decimal below 1,000 GiB, whole and grouped above
/// (`16.0`, `149,011,618`).
fn gib(bytes: u64) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if gib < 1000.0 {
        format!("{gib:.1}")
    } else {
        group_thousands(gib.round() as usize)
    }
}

/// `1234567` as `1,234,567`.
pub fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Linear => f.write_str("linear"),
            Activation::Relu => f.write_str("relu"),
            Activation::LeakyRelu(a) => write!(f, "leakyrelu({a})"),
            Activation::Sigmoid => f.write_str("sigmoid"),
            Activation::Tanh => f.write_str("tanh"),
            Activation::Softmax => f.write_str("softmax"),
        }
    }
}

impl FromStr for Activation {
    type Err = SpecError;
    fn from_str(text: &str) -> Result<Self> {
        let (name, args) = split_call(text)?;
        let activation = match (name.as_str(), args.as_slice()) {
            ("linear" | "identity", []) => Activation::Linear,
            ("relu", []) => Activation::Relu,
            ("leakyrelu" | "leaky_relu", []) => Activation::LeakyRelu(0.3),
            ("leakyrelu" | "leaky_relu", [alpha]) => Activation::LeakyRelu(number(alpha, text)?),
            ("sigmoid" | "logistic", []) => Activation::Sigmoid,
            ("tanh", []) => Activation::Tanh,
            ("softmax", []) => Activation::Softmax,
            _ => {
                return Err(SpecError(format!(
                    "unknown activation {text:?}: use linear, relu, leakyrelu(alpha), sigmoid, \
                     tanh or softmax"
                )));
            }
        };
        Ok(activation)
    }
}

fn kernel_text(k: [usize; 2]) -> String {
    format!("{}x{}", k[0], k[1])
}

fn stride_text(s: [usize; 2]) -> String {
    if s[0] == s[1] {
        s[0].to_string()
    } else {
        kernel_text(s)
    }
}

impl fmt::Display for Padding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Padding::Valid => "valid",
            Padding::Same => "same",
        })
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Dense { units, activation } => write!(f, "dense({units}, {activation})"),
            Layer::Conv {
                filters,
                kernel,
                stride,
                padding,
                activation,
            } => write!(
                f,
                "conv({filters}, {}, stride {}, {padding}, {activation})",
                kernel_text(*kernel),
                stride_text(*stride)
            ),
            Layer::Pool {
                kind,
                size,
                stride,
                padding,
            } => {
                let name = match kind {
                    PoolKind::Max => "maxpool",
                    PoolKind::Average => "avgpool",
                    PoolKind::Min => "minpool",
                };
                write!(
                    f,
                    "{name}({}, stride {}, {padding})",
                    stride_text(*size),
                    stride_text(*stride)
                )
            }
            Layer::Dropout { rate } => write!(f, "dropout({rate})"),
            Layer::BatchNorm => f.write_str("batchnorm"),
            Layer::Flatten => f.write_str("flatten"),
            Layer::Activation(a) => write!(f, "{a}"),
        }
    }
}

/// `name(a, b, c)` into `("name", ["a", "b", "c"])`; a bare `name` has no arguments.
fn split_call(text: &str) -> Result<(String, Vec<String>)> {
    let text = text.trim();
    match text.find('(') {
        None => Ok((text.to_ascii_lowercase(), Vec::new())),
        Some(open) => {
            let Some(inner) = text[open + 1..].strip_suffix(')') else {
                return Err(SpecError(format!("{text:?}: missing closing parenthesis")));
            };
            let args = inner
                .split(',')
                .map(|a| a.trim().to_ascii_lowercase())
                .filter(|a| !a.is_empty())
                .collect();
            Ok((text[..open].trim().to_ascii_lowercase(), args))
        }
    }
}

fn number<T: FromStr>(text: &str, context: &str) -> Result<T> {
    text.trim()
        .parse()
        .map_err(|_| SpecError(format!("{context:?}: {text:?} is not a valid number")))
}

/// `3`, `3x3` or `(3, 3)`-like `3x5` into a pair.
fn pair(text: &str, context: &str) -> Result<[usize; 2]> {
    let text = text.trim();
    match text.split_once('x') {
        Some((a, b)) => Ok([number(a, context)?, number(b, context)?]),
        None => {
            let n = number(text, context)?;
            Ok([n, n])
        }
    }
}

impl FromStr for Layer {
    type Err = SpecError;

    /// Parses one layer: `dense(UNITS[, ACTIVATION])`, `conv(FILTERS, KxK[, stride S][,
    /// same|valid][, ACTIVATION])`, `maxpool|avgpool|minpool(SIZE[, stride S][,
    /// same|valid])`, `dropout(RATE)`, `batchnorm`, `flatten`, or an activation name.
    fn from_str(text: &str) -> Result<Self> {
        let (name, args) = split_call(text)?;
        let bad = |why: &str| SpecError(format!("layer {text:?}: {why}"));
        match name.as_str() {
            "dense" => {
                let units = args.first().ok_or_else(|| bad("needs a number of units"))?;
                let activation = match args.get(1) {
                    Some(a) => a.parse()?,
                    None => Activation::Linear,
                };
                if args.len() > 2 {
                    return Err(bad("takes units and an activation"));
                }
                Ok(Layer::Dense {
                    units: number(units, text)?,
                    activation,
                })
            }
            "conv" | "conv2d" => parse_conv(&args, text),
            "maxpool" | "avgpool" | "averagepool" | "minpool" => parse_pool(&name, &args, text),
            "dropout" => match args.as_slice() {
                [rate] => Ok(Layer::Dropout {
                    rate: number(rate, text)?,
                }),
                _ => Err(bad("takes one rate, like dropout(0.2)")),
            },
            "batchnorm" | "batch_norm" | "batchnormalization" if args.is_empty() => {
                Ok(Layer::BatchNorm)
            }
            "flatten" if args.is_empty() => Ok(Layer::Flatten),
            _ => text
                .parse::<Activation>()
                .map(Layer::Activation)
                .map_err(|_| {
                    bad(
                        "unknown layer: use dense, conv, maxpool, avgpool, minpool, dropout, \
                         batchnorm, flatten or an activation",
                    )
                }),
        }
    }
}

/// Reads `arg` into `stride` (`stride S` or `stride SxT`) or `padding` (`same`, `valid`),
/// the options convolutions and poolings share; `false` when it is neither.
fn window_option(
    arg: &str,
    text: &str,
    stride: &mut [usize; 2],
    padding: &mut Padding,
) -> Result<bool> {
    if let Some(s) = arg.strip_prefix("stride") {
        *stride = pair(s, text)?;
    } else if arg == "same" {
        *padding = Padding::Same;
    } else if arg == "valid" {
        *padding = Padding::Valid;
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// `conv(FILTERS, KxK[, stride S][, same|valid][, ACTIVATION])`, its arguments `args`.
fn parse_conv(args: &[String], text: &str) -> Result<Layer> {
    let bad = |why: &str| SpecError(format!("layer {text:?}: {why}"));
    let filters = args
        .first()
        .ok_or_else(|| bad("needs a number of filters"))?;
    let kernel = args
        .get(1)
        .ok_or_else(|| bad("needs a kernel size like 3x3"))?;
    let (mut stride, mut padding, mut activation) = ([1, 1], Padding::Valid, Activation::Linear);
    for arg in &args[2..] {
        if !window_option(arg, text, &mut stride, &mut padding)? {
            activation = arg.parse()?;
        }
    }
    Ok(Layer::Conv {
        filters: number(filters, text)?,
        kernel: pair(kernel, text)?,
        stride,
        padding,
        activation,
    })
}

/// `maxpool|avgpool|minpool(SIZE[, stride S][, same|valid])` (`name` the first word), its
/// arguments `args`; the stride defaults to the window size, as in Keras.
fn parse_pool(name: &str, args: &[String], text: &str) -> Result<Layer> {
    let bad = |why: &str| SpecError(format!("layer {text:?}: {why}"));
    let kind = match name {
        "maxpool" => PoolKind::Max,
        "minpool" => PoolKind::Min,
        _ => PoolKind::Average,
    };
    let size = pair(
        args.first().ok_or_else(|| bad("needs a window size"))?,
        text,
    )?;
    let mut stride = size;
    let mut padding = Padding::Valid;
    for arg in &args[1..] {
        if !window_option(arg, text, &mut stride, &mut padding)? {
            return Err(bad(&format!("unknown pooling option {arg:?}")));
        }
    }
    Ok(Layer::Pool {
        kind,
        size,
        stride,
        padding,
    })
}

/// DatasetParts a model text into layers at newlines, `;`, `->`, commas and spaces outside
/// parentheses (`conv(32, 3) relu maxpool(2) flatten dense(10)` is five layers; a space
/// before a `(` belongs to its layer). A line starting with `#` is a comment.
pub fn parse_layers(text: &str) -> Result<Vec<Layer>> {
    let text = text.replace("->", ";");
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    let mut chars = lines.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        let space_before_call = c.is_whitespace() && {
            while chars.peek().is_some_and(|n| *n == ' ' || *n == '\t') {
                chars.next();
            }
            chars.peek() == Some(&'(')
        };
        if depth == 0 && (matches!(c, ';' | ',') || (c.is_whitespace() && !space_before_call)) {
            parts.push(std::mem::take(&mut current));
        } else if !space_before_call {
            current.push(c);
        }
    }
    parts.push(current);
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(c: usize, h: usize, w: usize) -> Shape {
        Shape::image(c, [h, w])
    }

    fn total(input: Shape, text: &str) -> (usize, usize, usize) {
        ModelSpec::parse("m", input, text)
            .unwrap()
            .param_counts()
            .unwrap()
    }

    /// Memory in messages: one decimal for everyday sizes, grouped whole GiB for absurd ones.
    #[test]
    fn memory_in_messages_is_readable_gib() {
        assert_eq!(gib(16 << 30), "16.0");
        assert_eq!(gib(3 << 29), "1.5");
        assert_eq!(gib(149_011_618 << 30), "149,011,618");
        assert_eq!(gib(u64::MAX), "17,179,869,184");
    }

    /// A layer too large for memory is refused with its name and the memory it would
    /// need, before anything is allocated; counts that would overflow saturate into the
    /// same refusal instead of wrapping.
    #[test]
    fn layers_too_large_for_memory_are_refused() {
        for units in ["100000000", &usize::MAX.to_string()] {
            let err = ModelSpec::parse(
                "big",
                Shape::Flat(784),
                &format!("dense({units}, relu); dense(10)"),
            )
            .unwrap_err()
            .0;
            assert!(
                err.contains("layer 1")
                    && err.contains("GiB")
                    && err.contains("BURN_REPORTS_MAX_MODEL_GB"),
                "{err}"
            );
        }
        let err = ModelSpec::parse(
            "wide",
            Shape::image(3, [32, 32]),
            "conv(100000000, 3x3, same); flatten; dense(1)",
        )
        .unwrap_err()
        .0;
        assert!(err.contains("layer 1"), "{err}");
        // A large model that fits is accepted.
        ModelSpec::parse("ok", Shape::Flat(784), "dense(4096, relu); dense(10)").unwrap();
    }

    #[test]
    fn report_004_parameter_counts() {
        let flat = image(1, 28, 28);
        assert_eq!(total(flat, "flatten, dense(10, softmax)").0, 7_850);
        assert_eq!(
            total(flat, "flatten, dense(256, relu), dense(10, softmax)").0,
            203_530
        );
        assert_eq!(
            total(
                flat,
                "conv(16, 3x3, same, relu), maxpool(2), dropout(0.2), flatten,
                 dense(256, relu), dropout(0.4), dense(128, relu), dropout(0.4),
                 dense(100, relu), dropout(0.4), dense(10, softmax)"
            )
            .0,
            850_038
        );
        assert_eq!(
            total(
                flat,
                "conv(16, 3x3, same, relu) -> maxpool(2) -> dropout(0.2)
                 -> conv(32, 3x3, same, relu) -> maxpool(2) -> dropout(0.2)
                 -> flatten -> dense(256, relu) -> dropout(0.4) -> dense(10, softmax)"
            )
            .0,
            409_034
        );
    }

    #[test]
    fn forward_flops_count_dense_and_convolution_multiply_adds() {
        let input = image(1, 28, 28);
        let flops = |text: &str| {
            ModelSpec::parse("m", input, text)
                .unwrap()
                .forward_flops()
                .unwrap()
        };
        assert_eq!(flops("flatten; dense(10, softmax)"), 2 * 784 * 10);
        // Report 004's CNN: 28x28x16 outputs of 3x3x1, 14x14x32 of 3x3x16, then dense.
        assert_eq!(
            flops(
                "conv(16, 3x3, same, relu); maxpool(2); dropout(0.2);
                 conv(32, 3x3, same, relu); maxpool(2); dropout(0.2);
                 flatten; dense(256, relu); dropout(0.4); dense(10, softmax)"
            ),
            2 * (28 * 28 * 16 * 9 + 14 * 14 * 32 * 9 * 16 + 1568 * 256 + 256 * 10)
        );
    }

    #[test]
    fn report_002_parameter_counts() {
        let input = image(1, 28, 28);
        assert_eq!(
            total(
                input,
                "flatten; dense(768, relu); dropout(0.3); dense(10, softmax)"
            )
            .0,
            610_570
        );
        let mut layers = String::new();
        for filters in [8, 16, 32, 64] {
            layers.push_str(&format!(
                "conv({filters}, 3x3, same, relu); batchnorm; maxpool(2, stride 2, same); dropout(0.2);"
            ));
        }
        layers.push_str("flatten; dense(10, softmax)");
        assert_eq!(total(input, &layers), (27_434, 27_194, 240));
        let mut layers = String::new();
        for filters in [128, 256, 512] {
            layers.push_str(&format!(
                "conv({filters}, 3x3, same, relu); batchnorm; maxpool(2, stride 2, same); dropout(0.2);"
            ));
        }
        layers.push_str("flatten; dense(10, softmax)");
        assert_eq!(total(input, &layers), (1_562_122, 1_560_330, 1_792));
    }

    #[test]
    fn report_001_cifar_parameter_counts() {
        let input = image(3, 32, 32);
        let convs = [
            "conv(32, 3x3, same, relu)",
            "conv(64, 3x3, same, relu)",
            "conv(128, 3x3, same, relu)",
        ];
        let dense = "flatten; dense(256, relu); dense(128, relu); dense(10, softmax)";
        let plain = format!("batchnorm; {}; {dense}", convs.join("; "));
        assert_eq!(total(input, &plain).0, 33_682_134);
        let pooled = format!(
            "batchnorm; {}; {dense}",
            convs.map(|c| format!("{c}; maxpool(2)")).join("; ")
        );
        assert_eq!(total(input, &pooled).0, 651_990);
    }

    #[test]
    fn shapes_follow_keras() {
        let spec = ModelSpec::parse(
            "m",
            image(1, 7, 7),
            "maxpool(2, stride 2, same); conv(4, 3x3, stride 2, valid); minpool(1)",
        )
        .unwrap();
        let infos = spec.layer_infos().unwrap();
        assert_eq!(infos[0].output, image(1, 4, 4));
        assert_eq!(infos[1].output, image(4, 1, 1));
        assert_eq!(window_output(7, 2, 2, Padding::Same), Some((4, 0, 1)));
        assert_eq!(window_output(28, 3, 1, Padding::Same), Some((28, 1, 1)));
        assert_eq!(window_output(28, 2, 1, Padding::Same), Some((28, 0, 1)));
        assert_eq!(window_output(28, 3, 5, Padding::Same), Some((6, 0, 0)));
        assert_eq!(window_output(28, 5, 5, Padding::Same), Some((6, 1, 1)));
    }

    #[test]
    fn impossible_architectures_name_the_layer() {
        let err = ModelSpec::parse("m", image(1, 4, 4), "conv(8, 5x5, relu)")
            .unwrap_err()
            .0;
        assert!(
            err.contains("layer 1") && err.contains("larger than its 4x4 input"),
            "{err}"
        );
        let err = ModelSpec::parse("m", image(1, 4, 4), "dense(3)")
            .unwrap_err()
            .0;
        assert!(err.contains("add flatten"), "{err}");
        let err = ModelSpec::parse("m", Shape::Flat(4), "dense(3); maxpool(2)")
            .unwrap_err()
            .0;
        assert!(
            err.contains("layer 2") && err.contains("image input"),
            "{err}"
        );
        let err = ModelSpec::parse("m", Shape::Flat(4), "dropout(1.5)")
            .unwrap_err()
            .0;
        assert!(err.contains("not in [0, 1)"), "{err}");
    }

    #[test]
    fn text_form_round_trips_and_rejects_nonsense() {
        let text = "conv(64, 3x3, stride 1, same, relu)\nmaxpool(2, stride 2, valid)\n\
                    minpool(3x2, stride 1, same)\nbatchnorm\ndropout(0.2)\nflatten\n\
                    dense(32, leakyrelu(0.1))\ntanh\ndense(10, softmax)";
        let layers = parse_layers(text).unwrap();
        let again: Vec<String> = layers.iter().map(|l| l.to_string()).collect();
        assert_eq!(again.join("\n"), text);
        let spaced =
            parse_layers("conv(32, 3) relu  maxpool (2)\n# a comment\nflatten dense(10)").unwrap();
        let spaced: Vec<String> = spaced.iter().map(|l| l.to_string()).collect();
        assert_eq!(
            spaced,
            [
                "conv(32, 3x3, stride 1, valid, linear)",
                "relu",
                "maxpool(2, stride 2, valid)",
                "flatten",
                "dense(10, linear)"
            ]
        );
        assert!(
            parse_layers("dense(ten)")
                .unwrap_err()
                .0
                .contains("not a valid number")
        );
        assert!(
            parse_layers("lstm(3)")
                .unwrap_err()
                .0
                .contains("unknown layer")
        );
        assert!(
            parse_layers("conv(3, 3x3, swish)")
                .unwrap_err()
                .0
                .contains("unknown activation")
        );
        assert!(
            parse_layers("dense(3")
                .unwrap_err()
                .0
                .contains("parenthesis")
        );
    }

    #[test]
    fn serde_round_trip() {
        let spec = ModelSpec::parse(
            "m",
            image(1, 28, 28),
            "conv(8, 3x3, same, relu); flatten; dense(10, softmax)",
        )
        .unwrap()
        .with_init(Init::Normal { beta: 0.3 });
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn summary_prints_keras_table() {
        let spec = ModelSpec::parse(
            "baseline",
            image(1, 28, 28),
            "flatten; dense(256, relu); dense(10, softmax)",
        )
        .unwrap();
        let s = spec.summary().unwrap();
        assert!(s.contains("Model: \"baseline\""), "{s}");
        assert!(s.contains("dense_1 (Dense)"), "{s}");
        assert!(s.contains("(None, 256)"), "{s}");
        assert!(s.contains("Total params: 203,530"), "{s}");
        assert_eq!(group_thousands(33_682_134), "33,682,134");
    }
}
