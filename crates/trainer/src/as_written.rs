//! Report 001's MLP class as its text writes it, beside the sound implementation of
//! [`Mlp`]: what the report states, and what its loss column implies.
//!
//! Stated (section 1): layers `z = a W` with no bias (equations 1, 3 and 5); initial
//! weights `beta x N(0, 1)`; the regulariser `alpha * sum ||W||_F`, the Frobenius norm
//! itself, not its square (equation 12); the output delta `-(y - a) * sigma'(z)`
//! (equation 8), back-propagated as equations 9 and 10; gradient descent with momentum `mu`.
//! For a softmax output, equation 8's `sigma'` taken element-wise is `a (1 - a)`: the delta
//! vanishes where the softmax saturates, right or wrong.
//!
//! Inferred, not stated: the loss column. The reported losses are about `23.03 x (1 - train
//! accuracy)` (statlog's 5.93, MNIST's 15.93, Fashion-MNIST's 12.04), which is the
//! cross-entropy of a saturated softmax whose probabilities are clipped at `1e-10`
//! (`-ln 1e-10 = 23.03`): a wrong answer costs 23.03, a right one nothing. So the loss here
//! is the mean cross-entropy of probabilities clipped to `[1e-10, 1]`, plus the regulariser.
//!
//! Equation 10 sums the batch's gradients (no `1/n`): so does this class, which makes its
//! steps `batch_size` times those of the sound implementation and drives the softmax into
//! saturation, as the loss column shows.
//!
//! Not followed: the text's "dividing it by variance" (section 2). Tried on statlog,
//! MNIST and Fashion-MNIST's published rows, it reproduced fewer of them than dividing by
//! the standard deviation, scikit-learn's `StandardScaler`, which is used here as in
//! [`Mlp`] (regression targets too). A seeded shuffle per epoch, as in [`Mlp`].

use burn::tensor::{Device, Tensor, TensorData};
use data::{Samples, Targets};
use models::Activation;
use models::network::standard_normal;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::estimator::{ModelCard, ModelError};
use crate::metrics::{accuracy, argmax_rows, r2_score};
use crate::mlp::Mlp;
use data::Task;

/// The probability floor the report's loss column implies.
pub const PROBABILITY_FLOOR: f64 = 1e-10;

/// What a training of the as-written class gives.
#[derive(Debug, Clone, PartialEq)]
pub struct AsWrittenFit {
    /// Per epoch: training loss (with the regulariser) and training score.
    pub history: Vec<(f64, f64)>,
    /// Accuracy (or R²) on the training data after the last epoch.
    pub train_score: f64,
    /// Accuracy (or R²) on the test data.
    pub test_score: f64,
    /// The training loss after the last epoch, as the report's loss column.
    pub loss: f64,
}

/// The weights and their momentum.
struct Net {
    weights: Vec<Tensor<2>>,
    velocity: Vec<Tensor<2>>,
    hidden: Activation,
    output: Activation,
}

/// Trains report 001's class as written with `mlp`'s hyperparameters on raw `train`, and
/// scores it on raw `test`.
pub fn fit_as_written(
    mlp: &Mlp,
    train: &Samples,
    test: &Samples,
    device: &Device,
) -> Result<AsWrittenFit, ModelError> {
    let outputs = match &train.targets {
        Targets::Classes { classes, .. } => classes.len(),
        Targets::Values { width, .. } => *width,
    };
    let input = models::Shape::from_dims(&train.shape).map_err(|e| ModelError::Input(e.0))?;
    let card = ModelCard::fit(mlp.spec(input, outputs), train, mlp.preprocessing())?;
    let (train, test) = (card.prepare(train, true)?, card.prepare(test, true)?);
    let (x, y) = (features(&train, device), targets(&train, outputs, device));
    let mut net = Net::new(mlp, train.item_len(), outputs, device);
    let mut rng = ChaCha8Rng::seed_from_u64(mlp.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut history = Vec::with_capacity(mlp.epochs);
    for _ in 0..mlp.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(mlp.batch_size.max(1)) {
            let ids = index_tensor(chunk, device);
            net.step(
                mlp,
                x.clone().select(0, ids.clone()),
                y.clone().select(0, ids),
            );
        }
        let a = net.forward(x.clone()).pop().unwrap_or_else(|| x.clone());
        history.push((net.loss(mlp, a.clone(), y.clone()), score(a, &train)));
    }
    let a = net.forward(x.clone()).pop().unwrap_or(x);
    let test_out = net
        .forward(features(&test, device))
        .pop()
        .ok_or_else(|| ModelError::Input("no layers".into()))?;
    Ok(AsWrittenFit {
        history,
        loss: net.loss(mlp, a.clone(), y),
        train_score: score(a, &train),
        test_score: score(test_out, &test),
    })
}

impl Net {
    fn new(mlp: &Mlp, inputs: usize, outputs: usize, device: &Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(mlp.seed ^ 0x5eed_0001);
        let mut sizes = vec![inputs];
        sizes.extend(&mlp.hidden_layers);
        sizes.push(outputs);
        let weights: Vec<Tensor<2>> = sizes
            .windows(2)
            .map(|w| {
                let values: Vec<f32> = (0..w[0] * w[1])
                    .map(|_| standard_normal(&mut rng) * mlp.init_scale)
                    .collect();
                Tensor::from_data(TensorData::new(values, [w[0], w[1]]), device)
            })
            .collect();
        let velocity = weights.iter().map(|w| w.zeros_like()).collect();
        Net {
            weights,
            velocity,
            hidden: mlp.activation,
            output: match mlp.task {
                Task::Classification => Activation::Softmax,
                Task::Regression => Activation::Linear,
            },
        }
    }

    fn activation(&self, layer: usize) -> Activation {
        if layer + 1 == self.weights.len() {
            self.output
        } else {
            self.hidden
        }
    }

    /// The activations of every layer, input first (equations 1-6).
    fn forward(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        let mut activations = vec![x];
        for (i, w) in self.weights.iter().enumerate() {
            let z = activations[i].clone().matmul(w.clone());
            activations.push(models::network::activate(z, self.activation(i), 1));
        }
        activations
    }

    /// One step of gradient descent with momentum on a batch (equations 8-11 and 12's
    /// derivative `alpha W / ||W||_F`).
    fn step(&mut self, mlp: &Mlp, x: Tensor<2>, y: Tensor<2>) {
        let a = self.forward(x);
        let last = self.weights.len() - 1;
        let mut delta = (a[last + 1].clone() - y) * derivative(self.output, &a[last + 1]);
        for l in (0..=last).rev() {
            // Equation 10: the batch's sum, not its mean.
            let grad = a[l].clone().transpose().matmul(delta.clone());
            if l > 0 {
                delta = delta.matmul(self.weights[l].clone().transpose())
                    * derivative(self.hidden, &a[l]);
            }
            let grad = grad + norm_gradient(&self.weights[l]).mul_scalar(mlp.l2);
            self.velocity[l] = self.velocity[l]
                .clone()
                .mul_scalar(mlp.momentum)
                .sub(grad.mul_scalar(mlp.learning_rate));
            self.weights[l] = self.weights[l].clone() + self.velocity[l].clone();
        }
    }

    /// The loss of outputs `a` against targets `y`, with the regulariser.
    fn loss(&self, mlp: &Mlp, a: Tensor<2>, y: Tensor<2>) -> f64 {
        let penalty: f64 = self.weights.iter().map(frobenius).sum::<f64>() * mlp.l2;
        data_loss(self.output, a, y) + penalty
    }
}

/// The loss without the regulariser: cross-entropy of probabilities clipped at
/// [`PROBABILITY_FLOOR`] for a softmax output (mean over items), mean squared error otherwise.
pub fn data_loss(output: Activation, a: Tensor<2>, y: Tensor<2>) -> f64 {
    let n = a.dims()[0].max(1) as f64;
    match output {
        Activation::Softmax => {
            let log_p = a.clamp(PROBABILITY_FLOOR, 1.0).log();
            -(log_p * y).sum().into_scalar::<f32>() as f64 / n
        }
        _ => (a - y).square().mean().into_scalar::<f32>() as f64,
    }
}

/// Equation 8's `sigma'(z)`, from the activation's output `a` (element-wise, softmax too).
fn derivative(activation: Activation, a: &Tensor<2>) -> Tensor<2> {
    match activation {
        Activation::Linear => a.ones_like(),
        Activation::Relu => a.clone().greater_elem(0.0).float(),
        Activation::LeakyRelu(alpha) => {
            let positive = a.clone().greater_elem(0.0).float();
            positive.clone() + (positive.neg().add_scalar(1.0)).mul_scalar(alpha as f64)
        }
        Activation::Sigmoid | Activation::Softmax => a.clone() * (a.clone().neg().add_scalar(1.0)),
        Activation::Tanh => a.clone().square().neg().add_scalar(1.0),
    }
}

fn frobenius(w: &Tensor<2>) -> f64 {
    (w.clone().square().sum().into_scalar::<f32>() as f64).sqrt()
}

/// The derivative of `||W||_F`: `W / ||W||_F` (zero for a zero matrix).
fn norm_gradient(w: &Tensor<2>) -> Tensor<2> {
    let norm = frobenius(w);
    if norm > 0.0 {
        w.clone().div_scalar(norm)
    } else {
        w.zeros_like()
    }
}

fn features(samples: &Samples, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(
            samples.features.clone(),
            [samples.len(), samples.item_len()],
        ),
        device,
    )
}

/// One-hot rows for classes, the values for regression.
fn targets(samples: &Samples, outputs: usize, device: &Device) -> Tensor<2> {
    let values = match &samples.targets {
        Targets::Classes { labels, .. } => {
            let mut one_hot = vec![0f32; labels.len() * outputs];
            for (i, &l) in labels.iter().enumerate() {
                one_hot[i * outputs + l] = 1.0;
            }
            one_hot
        }
        Targets::Values { values, .. } => values.clone(),
    };
    Tensor::from_data(TensorData::new(values, [samples.len(), outputs]), device)
}

fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, burn::tensor::Int> {
    let values: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

/// Accuracy of the outputs' argmax, or R² of the outputs.
fn score(a: Tensor<2>, samples: &Samples) -> f64 {
    let width = a.dims()[1];
    let values: Vec<f32> = a.into_data().try_into_vec_as::<f32>().unwrap_or_default();
    match &samples.targets {
        Targets::Classes { labels, .. } => accuracy(&argmax_rows(&values, width), labels),
        Targets::Values {
            values: y, width, ..
        } => r2_score(&values, y, *width),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(values: &[f32], rows: usize, device: &Device) -> Tensor<2> {
        let cols = values.len() / rows;
        Tensor::from_data(TensorData::new(values.to_vec(), [rows, cols]), device)
    }

    #[test]
    fn a_saturated_softmax_costs_23_03_per_wrong_answer() {
        let device = Device::default();
        // Four items, three classes: saturated outputs, one of them wrong.
        let a = tensor(
            &[1., 0., 0., 0., 1., 0., 0., 0., 1., 1., 0., 0.],
            4,
            &device,
        );
        let y = tensor(
            &[1., 0., 0., 0., 1., 0., 0., 0., 1., 0., 1., 0.],
            4,
            &device,
        );
        let loss = data_loss(Activation::Softmax, a, y);
        let expected = 23.025_850_9 * (1.0 - 3.0 / 4.0);
        assert!((loss - expected).abs() < 1e-4, "{loss} vs {expected}");
    }

    #[test]
    fn the_loss_adds_the_unsquared_frobenius_norms() {
        let device = Device::default();
        let mut mlp = Mlp::new(Task::Classification, 0);
        mlp.l2 = 0.5;
        let net = Net {
            weights: vec![
                tensor(&[3., 4.], 1, &device),
                tensor(&[0., 12., 5., 0.], 2, &device),
            ],
            velocity: Vec::new(),
            hidden: Activation::Relu,
            output: Activation::Softmax,
        };
        let a = tensor(&[0.5, 0.5], 1, &device);
        let y = tensor(&[1., 0.], 1, &device);
        // ||(3, 4)|| = 5 and ||(0, 12; 5, 0)|| = 13: 0.5 x 18 = 9, plus ln 2.
        let loss = net.loss(&mlp, a, y);
        assert!(
            (loss - (9.0 + std::f64::consts::LN_2)).abs() < 1e-5,
            "{loss}"
        );
        let g = norm_gradient(&net.weights[0])
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(g, vec![0.6, 0.8]);
    }
}
