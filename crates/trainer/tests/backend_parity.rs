//! The same model, seed and data trained on `flex` (CPU) and on another backend (`wgpu` on
//! the GPU, through Burn's fusion and autotuning; or the `ndarray` CPU backend) reach the same
//! result.
//!
//! Weights, shuffles and dropout masks come from the project's own seeded generators, so the
//! two runs differ only by floating-point rounding (summation order inside the kernels). The
//! tolerances below say how much of that a user may see: every epoch's training loss within
//! 2 % (relative) and the test accuracy within 2 points.
//!
//! Built only with flex (the default) and another backend (`--features wgpu`, `vulkan` or
//! `ndarray`). CI runs the GPU half on Mesa's lavapipe, a software Vulkan device, so the
//! models are small.
#![cfg(all(feature = "flex", any(feature = "wgpu", feature = "ndarray")))]

use burn::tensor::Device;
use data::{ClassNames, Samples, Targets};
use models::{DeviceChoice, ModelSpec, Network, Shape, select_device};
use trainer::{FitConfig, Loss, OptimizerSpec, evaluate, fit};

/// Largest relative difference allowed between the two backends' training losses, per epoch.
const LOSS_TOLERANCE: f64 = 0.02;
/// Largest difference allowed between the two backends' test accuracies.
const ACCURACY_TOLERANCE: f64 = 0.02;

/// Noisy 8x8 pictures of three shapes: a horizontal bar, a vertical bar, a diagonal.
fn pictures(n: usize, seed: u64) -> Samples {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let mut features = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 3;
        let at = (i / 3) % 6 + 1;
        for row in 0..8 {
            for col in 0..8 {
                let on = match class {
                    0 => row == at,
                    1 => col == at,
                    _ => row == col,
                };
                features.push(if on { 1.0 } else { 0.0 } + 1.6 * noise());
            }
        }
        labels.push(class);
    }
    Samples::new(
        features,
        vec![1, 8, 8],
        vec![],
        Targets::Classes {
            labels,
            classes: ClassNames::numbered(3),
        },
    )
    .unwrap()
}

fn train_on(device: &Device, layers: &str, train: &Samples, test: &Samples) -> (Vec<f64>, f64) {
    let shape = Shape::Image {
        channels: 1,
        height: 8,
        width: 8,
    };
    let spec = ModelSpec::parse("parity", shape, layers).unwrap();
    let network = Network::new(&spec, 7, device).unwrap();
    let mut config = FitConfig::new(6, 32, OptimizerSpec::adam(0.01), Loss::CrossEntropy);
    config.seed = 11;
    let result = fit(network, train, None, &config, device).unwrap();
    let losses = result.history.epochs.iter().map(|r| r.loss).collect();
    let accuracy = evaluate(&result.network, test, Loss::CrossEntropy, device).score;
    (losses, accuracy)
}

const MLP: &str = "flatten; dense(32, relu); dropout(0.2); dense(3, softmax)";
const CNN: &str =
    "conv(4, 3x3, same, relu); batchnorm; maxpool(2); flatten; dense(16, relu); dense(3, softmax)";
/// Convolutions followed directly by max pools: on flex each pair runs as one fused
/// operation (convolution, ReLU and pool), elsewhere as Burn's three.
const CONV_POOL: &str = "conv(4, 3x3, same, relu); maxpool(2); conv(8, 3x3, same, relu); \
                         maxpool(3, stride 3, same); flatten; dense(3, softmax)";

fn assert_same_training(layers: &str, other: DeviceChoice) {
    let train = pictures(300, 1);
    let test = pictures(150, 2);
    let cpu = select_device(DeviceChoice::Cpu).unwrap();
    let them = select_device(other).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{layers}\n  flex: {}\n  other: {}",
        cpu.description, them.description
    );
    let (cpu_losses, cpu_accuracy) = train_on(&cpu.device, layers, &train, &test);
    let (their_losses, their_accuracy) = train_on(&them.device, layers, &train, &test);
    println!("  losses flex  {cpu_losses:.5?}\n  losses other {their_losses:.5?}");
    println!("  test accuracy flex {cpu_accuracy:.4}, other {their_accuracy:.4}");
    for (epoch, (c, g)) in cpu_losses.iter().zip(&their_losses).enumerate() {
        let relative = (c - g).abs() / c.abs().max(1e-6);
        assert!(
            relative <= LOSS_TOLERANCE,
            "epoch {}: loss {c} on flex, {g} on {} ({:.2} % apart)",
            epoch + 1,
            them.description,
            relative * 100.0
        );
    }
    assert!(
        (cpu_accuracy - their_accuracy).abs() <= ACCURACY_TOLERANCE,
        "test accuracy {cpu_accuracy} on flex, {their_accuracy} on {}",
        them.description
    );
    // Both learned: a tie at chance would pass the comparison too.
    assert!(
        cpu_accuracy > 0.75,
        "flex only reached {cpu_accuracy} (chance: 0.33)"
    );
}

#[cfg(feature = "wgpu")]
mod gpu {
    use super::*;

    #[test]
    fn mlp_trains_alike_on_flex_and_wgpu() {
        assert_same_training(MLP, DeviceChoice::Gpu);
    }

    #[test]
    fn cnn_trains_alike_on_flex_and_wgpu() {
        assert_same_training(CNN, DeviceChoice::Gpu);
    }

    #[test]
    fn fused_conv_pool_trains_alike_on_flex_and_wgpu() {
        assert_same_training(CONV_POOL, DeviceChoice::Gpu);
    }
}

#[cfg(feature = "ndarray")]
mod ndarray {
    use super::*;

    #[test]
    fn mlp_trains_alike_on_flex_and_ndarray() {
        assert_same_training(MLP, DeviceChoice::Ndarray);
    }

    #[test]
    fn cnn_trains_alike_on_flex_and_ndarray() {
        assert_same_training(CNN, DeviceChoice::Ndarray);
    }

    #[test]
    fn fused_conv_pool_trains_alike_on_flex_and_ndarray() {
        assert_same_training(CONV_POOL, DeviceChoice::Ndarray);
    }
}
