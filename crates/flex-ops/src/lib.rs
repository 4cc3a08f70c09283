//! The project's own CPU kernels for Burn's flex backend, kept apart from the models that
//! use them: convolution, non-overlapping max pooling and the two fused (`kernels`),
//! dense inference on weights packed once (`packed_dense`, plain AVX-512 code with `gemm`'s
//! sums rather than an extension),
//! training-mode batch normalisation (`batch_norm`), Adam's update in one pass (`adam`),
//! stacked SGD with momentum in one pass (`sgd`)
//! and tanh (`activation`). Each is a Burn backend extension with a hand-written backward where it needs
//! one, so gradients flow through it as through Burn's own operations; `models` and
//! `trainer` call them only when a tensor lives on flex ([`kernels::runs_on_flex`]) and use
//! Burn's operations on every other backend. Their tests compare values and gradients with
//! Burn's; `cargo run --release -p flex-ops --example microbench` times each against Burn's.
//! One module is plain loops rather than an extension: `stacked_mlp` trains many small MLPs
//! at once on their own buffers (report 001's grids, through `trainer::stacked`), its tests
//! holding its steps to Burn's autodiff and SGD.

pub mod activation;
pub mod adam;
pub mod batch_norm;
mod buffer;
pub mod kernels;
pub mod packed_dense;
pub mod sgd;
pub mod stacked_mlp;

/// Whether the CPU has AVX-512F, for the loops compiled for it besides the baseline build
/// (the crates are built for baseline x86-64; the check is cached by the standard library).
pub(crate) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
