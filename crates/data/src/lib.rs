//! Datasets for the project: loaders for IDX (MNIST, Fashion-MNIST), delimited text (iris,
//! statlog, diabetes, any CSV), CIFAR-10 binary batches and image folders; preprocessing
//! fitted on training data; seeded stratified splits and k-fold; Burn `Dataset` and
//! `Batcher` implementations; and the catalog that finds, fetches and verifies the six
//! datasets of the reports.
//!
//! Everything loads into [`Samples`], decoded once and held in memory. Every error is a
//! [`DataError`] naming the file and the position of the problem.

pub mod batcher;
pub mod catalog;
pub mod cifar;
pub mod delimited;
pub mod error;
pub mod fetch;
pub mod idx;
pub mod image_folder;
pub mod io;
pub mod locate;
pub mod preprocess;
pub mod samples;
pub mod split;
pub mod tabular;
pub mod user_data;

pub use batcher::{Batch, BatchTargets, Item, ItemBatcher, ItemTarget, SamplesDataset};
pub use catalog::{DataForm, DatasetName, DatasetParts, DatasetSize};
pub use error::{DataError, Result};
pub use fetch::{FetchOutcome, FetchSource, fetch_dataset, verify_dataset};
pub use locate::{DATA_DIR_ENV, DataDirs, Origin};
pub use preprocess::{FeatureScaler, TargetScaler, one_hot};
pub use samples::{ClassNames, Samples, Targets};
pub use split::{
    HoldOut, Split, TestSplit, shuffle_split, split_samples, stratified_k_fold, stratified_split,
};
pub use tabular::Task;
