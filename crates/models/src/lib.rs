//! Models: MLPs and CNNs written as Burn modules, described as a readable list of layers
//! ([`ModelSpec`]) with a Keras-style `summary()`; and the one place that picks the compute
//! device ([`select_device`]).

pub mod device;
#[cfg(feature = "flex")]
pub mod flex_batch_norm;
#[cfg(feature = "flex")]
pub mod flex_kernels;
pub mod network;
pub mod spec;

pub use device::{DeviceChoice, DeviceError, SelectedDevice, select_device};
pub use network::{Network, activate};
pub use spec::{Activation, Init, Layer, ModelSpec, Padding, PoolKind, Shape, SpecError};
