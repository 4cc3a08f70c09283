//! Golden histories: a few epochs of two small models on flex, their losses pinned. A change
//! that moves what training computes (an initialiser, a kernel's arithmetic, an optimizer
//! step) fails here; if the move is meant, raise `trainer::NUMERICS_VERSION` (so stored
//! results made before it are shown as stale, never as current) and update the pins.
//!
//! The tolerance (1e-4, relative) admits the rounding of another CPU's matrix kernels (gemm
//! picks AVX-512 or AVX2 at run time) and nothing larger.
#![cfg(feature = "flex")]

mod common;

use burn::tensor::Device;
use data::Samples;
use models::{ModelSpec, Network, Shape};
use trainer::{FitConfig, Loss, NUMERICS_VERSION, OptimizerSpec, fit};

/// Noisy 6x6 pictures of three shapes (horizontal bar, vertical bar, diagonal).
fn pictures(n: usize) -> Samples {
    common::pictures(n, 0x2545_f491_4f6c_dd1d, |s| {
        (s % 1000) as f32 / 1000.0 - 0.5
    })
}

fn losses(layers: &str, optimizer: OptimizerSpec) -> Vec<f64> {
    let device = Device::flex();
    let spec = ModelSpec::parse("golden", Shape::image(1, [6, 6]), layers).unwrap();
    let network = Network::new(&spec, 3, &device).unwrap();
    let mut config = FitConfig::new(4, 16, optimizer, Loss::CrossEntropy);
    config.seed = 5;
    let result = fit(network, &pictures(96), None, &config, &device).unwrap();
    result.history.epochs.iter().map(|e| e.loss).collect()
}

fn assert_pinned(name: &str, got: &[f64], pinned: &[f64]) {
    println!("{name}: {got:?}");
    assert_eq!(got.len(), pinned.len());
    for (epoch, (g, p)) in got.iter().zip(pinned).enumerate() {
        assert!(
            (g - p).abs() <= 1e-4 * p.abs(),
            "{name}, epoch {}: loss {g}, pinned {p} at numerics version {NUMERICS_VERSION}: \
             training's numbers moved; if that is meant, raise NUMERICS_VERSION and update the \
             pins",
            epoch + 1
        );
    }
}

#[test]
fn an_mlp_with_dropout_trains_as_pinned() {
    let got = losses(
        "flatten; dense(16, relu); dropout(0.2); dense(3, softmax)",
        OptimizerSpec::adam(0.01),
    );
    assert_pinned("mlp", &got, &PINNED_MLP);
}

#[test]
fn a_cnn_with_batch_norm_and_pooling_trains_as_pinned() {
    let got = losses(
        "conv(4, 3x3, same, relu); batchnorm; maxpool(2); flatten; dense(3, softmax)",
        OptimizerSpec::sgd(0.05, 0.9, false),
    );
    assert_pinned("cnn", &got, &PINNED_CNN);
}

/// Losses per epoch at NUMERICS_VERSION 1 (flex, this repository's CPU).
const PINNED_MLP: [f64; 4] = [1.022901, 0.7562364, 0.5567192, 0.4205239];
/// Losses per epoch at NUMERICS_VERSION 1.
const PINNED_CNN: [f64; 4] = [1.644807, 0.4899000, 0.1554808, 0.04787726];
