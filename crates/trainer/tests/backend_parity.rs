//! The same model, seed and data trained on `flex` (CPU) and on `wgpu` reach the same result.
//!
//! Weights, shuffles and dropout masks come from the project's own seeded generators, so the
//! two runs differ only by floating-point rounding (summation order inside the kernels). The
//! tolerances below say how much of that a user may see: every epoch's training loss within
//! 2 % (relative) and the test accuracy within 2 points.
//!
//! Built only with both backends (`--features wgpu`, flex being the default). CI runs it on
//! Mesa's lavapipe, a software Vulkan device, so the models are small.
#![cfg(all(feature = "flex", feature = "wgpu"))]

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

fn assert_same_training(layers: &str) {
    let train = pictures(300, 1);
    let test = pictures(150, 2);
    let cpu = select_device(DeviceChoice::Cpu).unwrap();
    let gpu = select_device(DeviceChoice::Gpu).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{layers}\n  cpu: {}\n  gpu: {}",
        cpu.description, gpu.description
    );
    let (cpu_losses, cpu_accuracy) = train_on(&cpu.device, layers, &train, &test);
    let (gpu_losses, gpu_accuracy) = train_on(&gpu.device, layers, &train, &test);
    println!("  losses flex {cpu_losses:.5?}\n  losses wgpu {gpu_losses:.5?}");
    println!("  test accuracy flex {cpu_accuracy:.4}, wgpu {gpu_accuracy:.4}");
    for (epoch, (c, g)) in cpu_losses.iter().zip(&gpu_losses).enumerate() {
        let relative = (c - g).abs() / c.abs().max(1e-6);
        assert!(
            relative <= LOSS_TOLERANCE,
            "epoch {}: loss {c} on flex, {g} on wgpu ({:.2} % apart)",
            epoch + 1,
            relative * 100.0
        );
    }
    assert!(
        (cpu_accuracy - gpu_accuracy).abs() <= ACCURACY_TOLERANCE,
        "test accuracy {cpu_accuracy} on flex, {gpu_accuracy} on wgpu"
    );
    // Both learned: a tie at chance would pass the comparison too.
    assert!(
        cpu_accuracy > 0.75,
        "flex only reached {cpu_accuracy} (chance: 0.33)"
    );
}

#[test]
fn mlp_trains_alike_on_flex_and_wgpu() {
    assert_same_training("flatten; dense(32, relu); dropout(0.2); dense(3, softmax)");
}

#[test]
fn cnn_trains_alike_on_flex_and_wgpu() {
    assert_same_training(
        "conv(4, 3x3, same, relu); batchnorm; maxpool(2); flatten; dense(16, relu); dense(3, softmax)",
    );
}

/// Convolutions followed directly by max pools: on flex each pair runs as one fused
/// operation (convolution, ReLU and pool), on wgpu as Burn's three.
#[test]
fn fused_conv_pool_trains_alike_on_flex_and_wgpu() {
    assert_same_training(
        "conv(4, 3x3, same, relu); maxpool(2); conv(8, 3x3, same, relu); maxpool(3, stride 3, same); flatten; dense(3, softmax)",
    );
}
