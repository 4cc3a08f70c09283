//! A network made ready for inference: on flex, each dense layer that ends in a linear or
//! ReLU activation gets its weights packed once for the matrix product
//! (`flex_ops::packed_dense`), so that predicting batch after batch (a table's test pass,
//! `predict` over a file, `bench`) does not pack them again for every batch. The values are
//! those of [`Network::predict`], bit for bit.

use burn::tensor::Tensor;

use crate::network::Network;
use crate::spec::{Activation, Layer};

/// A dense layer's packed weights (none without flex).
#[cfg(feature = "flex")]
pub(crate) use flex_ops::packed_dense::PackedDense;
/// A dense layer's packed weights: none without flex.
#[cfg(not(feature = "flex"))]
#[derive(Debug)]
pub(crate) enum PackedDense {}

/// A [`Network`] with its dense layers' weights packed for inference ([`Network::predictor`]).
/// It borrows the network: its weights cannot change while it lives.
#[derive(Debug)]
pub struct Predictor<'a> {
    network: &'a Network,
    /// Per dense layer, in order, its packed weights where the packed kernel runs.
    packed: Vec<Option<PackedDense>>,
}

impl<'a> Predictor<'a> {
    pub(crate) fn new(network: &'a Network) -> Self {
        let last = network.spec().layers.len().saturating_sub(1);
        let activations = network
            .spec()
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, layer)| match layer {
                Layer::Dense { activation, .. } => Some(output_activation(i, last, *activation)),
                _ => None,
            });
        let packed = network
            .dense_layers()
            .iter()
            .zip(activations)
            .map(|(layer, activation)| pack(layer, activation))
            .collect();
        Self { network, packed }
    }

    /// Outputs before a trailing softmax (logits), as [`Network::forward`] without dropout.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        crate::threads::on_compute_threads(|| self.network.forward_packed(input, &self.packed))
    }

    /// Class probabilities (or regression outputs), as [`Network::predict`].
    pub fn predict(&self, input: Tensor<2>) -> Tensor<2> {
        crate::threads::on_compute_threads(|| {
            self.network
                .outputs(self.network.forward_packed(input, &self.packed))
        })
    }

    /// How many dense layers run on packed weights.
    pub fn packed_layers(&self) -> usize {
        self.packed.iter().filter(|p| p.is_some()).count()
    }
}

/// The activation a dense layer applies in the forward pass: a trailing softmax is left to
/// the loss or to `predict`.
pub(crate) fn output_activation(index: usize, last: usize, activation: Activation) -> Activation {
    if index == last && activation == Activation::Softmax {
        Activation::Linear
    } else {
        activation
    }
}

#[cfg(feature = "flex")]
fn pack(layer: &crate::network::DenseParams, activation: Activation) -> Option<PackedDense> {
    matches!(activation, Activation::Linear | Activation::Relu)
        .then(|| PackedDense::new(&layer.weight.val(), &layer.bias.val()))
        .flatten()
}

#[cfg(not(feature = "flex"))]
fn pack(_: &crate::network::DenseParams, _: Activation) -> Option<PackedDense> {
    None
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::spec::{ModelSpec, Shape};
    use burn::tensor::{Device, Distribution};

    #[test]
    fn packs_linear_and_relu_layers_and_predicts_as_the_network() {
        let device = Device::flex();
        let spec = ModelSpec::parse(
            "m",
            Shape::Image {
                channels: 1,
                height: 8,
                width: 8,
            },
            "conv(4, 3x3, same, relu); flatten; dense(32, relu); dense(16, tanh); dense(5, softmax)",
        )
        .expect("spec");
        let network = Network::new(&spec, 1, &device).expect("network");
        let predictor = network.predictor();
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        // The ReLU layer and the output layer (its softmax left to `predict`), not the tanh.
        assert_eq!(predictor.packed_layers(), if avx512 { 2 } else { 0 });
        let x = Tensor::<2>::random([70, 64], Distribution::Normal(0.0, 1.0), &device);
        let bits = |t: Tensor<2>| -> Vec<u32> {
            let values = t.into_data().try_into_vec_as::<f32>().expect("f32");
            values.iter().map(|v| v.to_bits()).collect()
        };
        assert_eq!(
            bits(predictor.predict(x.clone())),
            bits(network.predict(x.clone()))
        );
        assert_eq!(
            bits(predictor.forward(x.clone())),
            bits(network.forward(x, None))
        );
    }
}
