//! Training for the `models` crate: `fit` with the reports' optimizers (including Nadam and
//! Adadelta written for Burn's optimizer machinery), losses, L2 regularisation and Keras'
//! callbacks; the per-epoch history; evaluation and scikit-learn's metrics; and the trained
//! model users keep: preprocessing, prediction on raw inputs, save and load.

pub mod as_written;
pub mod callbacks;
pub mod checkpoint;
pub mod estimator;
pub mod fit;
pub mod fused_adam;
pub mod metrics;
pub mod mlp;
pub mod optim;
pub mod stacked;

/// The version of training's numbers: raised by a change that alters what training
/// computes (an initialiser, a kernel's summation order, an optimizer step), so that a stored
/// result made before it is not taken as current. Part of every result key.
pub const NUMERICS_VERSION: u32 = 1;

pub use callbacks::{EarlyStopping, Monitor, ReduceLrOnPlateau};
pub use checkpoint::{CheckpointError, Checkpointing, Progress};
pub use data::Task;
pub use estimator::{
    InputScaling, ModelCard, ModelError, Outputs, Predictions, Preprocessing, TrainedModel,
    train_model,
};
pub use fit::{
    EpochRecord, Evaluation, FitConfig, FitError, FitResult, HeldOut, History, HistoryCsvError,
    Loss, Outcome, Verbosity, evaluate, fit, predict_outputs,
};
pub use metrics::{ClassificationReport, accuracy, confusion_matrix, log_loss, r2_score};
pub use mlp::Mlp;
pub use optim::OptimizerSpec;
