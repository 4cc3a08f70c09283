//! Models: MLPs and CNNs written as Burn modules, described as a readable list of layers
//! ([`ModelSpec`]) with a Keras-style `summary()`; and the one place that picks the compute
//! device ([`select_device`]) and the thread a CPU computation runs on ([`threads`]), and
//! how much of the CPU other work takes ([`cpu_load`], for benchmarks). On
//! flex, layers call the project's own kernels (`flex-ops`); on every other backend,
//! Burn's operations.

pub mod cpu_load;
pub mod device;
pub mod network;
pub mod predictor;
pub mod spec;
pub mod threads;

pub use device::{DeviceChoice, DeviceError, SelectedDevice, select_device};
pub use network::{Network, activate};
pub use predictor::Predictor;
pub use spec::{Activation, Init, Layer, ModelSpec, Padding, PoolKind, Shape, SpecError};
