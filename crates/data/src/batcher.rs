//! Burn integration: [`Samples`] as a Burn [`Dataset`], and a [`Batcher`] that stacks items
//! into tensors on the chosen device. Items are copied out of memory that was decoded once;
//! no file is read again.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{DataError, Result};
use crate::samples::{Samples, Targets};

/// What one item asks the model to predict.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemTarget {
    /// A class index.
    Class(usize),
    /// Real values (regression).
    Values(Vec<f32>),
}

/// One item of a [`SamplesDataset`].
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The item's features, flattened.
    pub features: Vec<f32>,
    /// Its target.
    pub target: ItemTarget,
}

/// Shared, read-only in-memory samples as a Burn dataset.
#[derive(Debug, Clone)]
pub struct SamplesDataset(pub Arc<Samples>);

impl SamplesDataset {
    /// Wraps samples.
    pub fn new(samples: Samples) -> Self {
        SamplesDataset(Arc::new(samples))
    }
}

impl Dataset<Item> for SamplesDataset {
    fn get(&self, index: usize) -> std::result::Result<Item, DatasetError> {
        let samples = &self.0;
        assert!(index < samples.len(), "index {index} >= {}", samples.len());
        let target = match &samples.targets {
            Targets::Classes { labels, .. } => ItemTarget::Class(labels[index]),
            Targets::Values { values, width, .. } => {
                ItemTarget::Values(values[index * width..(index + 1) * width].to_vec())
            }
        };
        Ok(Item {
            features: samples.item(index).to_vec(),
            target,
        })
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Targets of a batch.
#[derive(Debug, Clone)]
pub enum BatchTargets {
    /// Class indices, `[batch]`.
    Classes(Tensor<1, Int>),
    /// Real values, `[batch, width]`.
    Values(Tensor<2>),
}

/// A batch: inputs of rank `D` (`[batch, features]` for tables, `[batch, channels, height,
/// width]` for images) and their targets.
#[derive(Debug, Clone)]
pub struct Batch<const D: usize> {
    /// Inputs, first dimension the batch.
    pub inputs: Tensor<D>,
    /// Targets.
    pub targets: BatchTargets,
}

/// Stacks items of one shape into a [`Batch`] of rank `D`.
#[derive(Debug, Clone)]
pub struct ItemBatcher<const D: usize> {
    item_shape: Vec<usize>,
}

impl<const D: usize> ItemBatcher<D> {
    /// A batcher for items of `item_shape`, which must have `D - 1` dimensions. Pass
    /// `[features]` with `D = 2` to flatten images for an MLP.
    pub fn new(item_shape: &[usize]) -> Result<Self> {
        if item_shape.len() + 1 != D {
            return Err(DataError::Invalid(format!(
                "items of shape {item_shape:?} cannot make batches of rank {D}"
            )));
        }
        Ok(ItemBatcher {
            item_shape: item_shape.to_vec(),
        })
    }

    /// Builds a batch straight from `samples` at `indices`, without per-item copies.
    pub fn batch_indices(&self, samples: &Samples, indices: &[usize], device: &Device) -> Batch<D> {
        let n = samples.item_len();
        let mut flat = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            flat.extend_from_slice(samples.item(i));
        }
        let targets = match &samples.targets {
            Targets::Classes { labels, .. } => {
                BatchTargets::Classes(classes_tensor(indices.iter().map(|&i| labels[i]), device))
            }
            Targets::Values { values, width, .. } => {
                let mut v = Vec::with_capacity(indices.len() * width);
                for &i in indices {
                    v.extend_from_slice(&values[i * width..(i + 1) * width]);
                }
                BatchTargets::Values(values_tensor(v, indices.len(), *width, device))
            }
        };
        Batch {
            inputs: self.inputs_tensor(flat, indices.len(), device),
            targets,
        }
    }

    fn inputs_tensor(&self, flat: Vec<f32>, count: usize, device: &Device) -> Tensor<D> {
        let mut shape = Vec::with_capacity(D);
        shape.push(count);
        shape.extend_from_slice(&self.item_shape);
        Tensor::from_data(TensorData::new(flat, shape), device)
    }
}

fn classes_tensor(labels: impl Iterator<Item = usize>, device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = labels.map(|l| l as i64).collect();
    let n = labels.len();
    Tensor::from_data(TensorData::new(labels, [n]), device)
}

fn values_tensor(values: Vec<f32>, count: usize, width: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [count, width]), device)
}

impl<const D: usize> Batcher<Item, Batch<D>> for ItemBatcher<D> {
    fn batch(&self, items: Vec<Item>, device: &Device) -> Batch<D> {
        let count = items.len();
        let mut flat = Vec::with_capacity(count * self.item_shape.iter().product::<usize>());
        for item in &items {
            flat.extend_from_slice(&item.features);
        }
        let targets = match items.first().map(|i| &i.target) {
            Some(ItemTarget::Values(first)) => {
                let width = first.len();
                let mut v = Vec::with_capacity(count * width);
                for item in &items {
                    if let ItemTarget::Values(values) = &item.target {
                        v.extend_from_slice(values);
                    }
                }
                BatchTargets::Values(values_tensor(v, count, width, device))
            }
            _ => BatchTargets::Classes(classes_tensor(
                items.iter().map(|item| match item.target {
                    ItemTarget::Class(c) => c,
                    ItemTarget::Values(_) => 0,
                }),
                device,
            )),
        };
        Batch {
            inputs: self.inputs_tensor(flat, count, device),
            targets,
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::samples::ClassNames;

    fn images() -> Samples {
        Samples::new(
            (0..3 * 4).map(|v| v as f32).collect(),
            vec![1, 2, 2],
            vec![],
            Targets::Classes {
                labels: vec![1, 0, 1],
                classes: ClassNames::numbered(2),
            },
        )
        .unwrap()
    }

    #[test]
    fn dataset_and_batcher_build_tensors() {
        let device = Device::flex();
        let dataset = SamplesDataset::new(images());
        assert_eq!(dataset.len(), 3);
        let items = dataset.get_many(vec![2, 0]).unwrap();
        let batch = ItemBatcher::<4>::new(&[1, 2, 2])
            .unwrap()
            .batch(items, &device);
        assert_eq!(batch.inputs.dims(), [2, 1, 2, 2]);
        let v: Vec<f32> = batch.inputs.into_data().try_to_vec().unwrap();
        assert_eq!(v, [8., 9., 10., 11., 0., 1., 2., 3.]);
        match batch.targets {
            BatchTargets::Classes(t) => {
                let l: Vec<i64> = t.into_data().convert::<i64>().try_to_vec().unwrap();
                assert_eq!(l, [1, 1]);
            }
            BatchTargets::Values(_) => panic!("expected classes"),
        }
    }

    #[test]
    fn flat_batches_for_mlps_and_regression_targets() {
        let device = Device::flex();
        let samples = Samples::new(
            vec![1., 2., 3., 4.],
            vec![2],
            vec![],
            Targets::Values {
                values: vec![10., 20.],
                width: 1,
                names: vec!["y".into()],
            },
        )
        .unwrap();
        let batch = ItemBatcher::<2>::new(&[2])
            .unwrap()
            .batch_indices(&samples, &[1], &device);
        assert_eq!(batch.inputs.dims(), [1, 2]);
        match batch.targets {
            BatchTargets::Values(t) => {
                assert_eq!(t.into_data().try_to_vec::<f32>().unwrap(), [20.])
            }
            BatchTargets::Classes(_) => panic!("expected values"),
        }
        let flat = ItemBatcher::<2>::new(&[4]).unwrap();
        let b = flat.batch_indices(&images(), &[0, 1], &device);
        assert_eq!(b.inputs.dims(), [2, 4]);
    }

    #[test]
    fn batcher_rejects_wrong_rank() {
        assert!(ItemBatcher::<2>::new(&[1, 28, 28]).is_err());
    }
}
