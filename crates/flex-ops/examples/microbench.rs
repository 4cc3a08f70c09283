//! Each kernel of this crate beside Burn's own operations for the same work, on flex, at a
//! shape from the reports' models (forward only; inference mode): the median of `--runs`
//! timed calls after two warm-up calls. Run it on an idle machine:
//!
//! ```text
//! cargo run --release -p flex-ops --example microbench [-- --runs 20]
//! ```

use std::time::Instant;

use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Distribution, Tensor};
use flex_ops::kernels::{self, Window};

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn line(name: &str, ours: f64, burns: f64) {
    println!(
        "{name:<48} ours {ours:>8.2} ms   Burn {burns:>8.2} ms   {:.2}x",
        burns / ours
    );
}

fn main() {
    let runs = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let device = Device::flex();
    let normal = Distribution::Normal(0.0, 1.0);
    // Report 004's second convolution: 128 images of 32 x 14 x 14, 64 filters of 3 x 3.
    let x = Tensor::<4>::random([128, 32, 14, 14], normal, &device);
    let w = Tensor::<4>::random([64, 32, 3, 3], normal, &device);
    let b = Tensor::<1>::random([64], normal, &device);
    let same = Window {
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(1, 1), (1, 1)],
    };
    let sync = |t: Tensor<4>| drop(t.into_data());
    let ours = median_ms(runs, || {
        sync(kernels::conv2d(x.clone(), w.clone(), b.clone(), same, true))
    });
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let burns = median_ms(runs, || {
        sync(burn::tensor::activation::relu(conv2d(
            x.clone(),
            w.clone(),
            Some(b.clone()),
            options.clone(),
        )))
    });
    line("conv 3x3 same + ReLU, 128x32x14x14 -> 64", ours, burns);
    let pool = Window {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [(0, 0), (0, 0)],
    };
    let ours = median_ms(runs, || sync(kernels::max_pool2d(x.clone(), pool)));
    let options = MaxPoolOptions {
        kernel_size: [2, 2],
        stride: [2, 2],
        padding: [(0, 0), (0, 0)],
        dilation: [1, 1],
        ceil_mode: false,
    };
    let burns = median_ms(runs, || sync(max_pool2d(x.clone(), options.clone())));
    line("max pool 2x2, 128x32x14x14", ours, burns);
    // Report 002's MLP at inference: 1,000 rows of 784 into 768 ReLU units.
    let rows = Tensor::<2>::random([1000, 784], normal, &device);
    let dense_w = Tensor::<2>::random([784, 768], normal, &device);
    let dense_b = Tensor::<1>::random([768], normal, &device);
    let sync2 = |t: Tensor<2>| drop(t.into_data());
    let ours = median_ms(runs, || {
        sync2(kernels::dense(
            rows.clone(),
            dense_w.clone(),
            dense_b.clone(),
            true,
        ))
    });
    let burns = median_ms(runs, || {
        sync2(burn::tensor::activation::relu(
            rows.clone().matmul(dense_w.clone()) + dense_b.clone().unsqueeze(),
        ))
    });
    line("dense 1000x784 -> 768 + ReLU (inference)", ours, burns);
}
