//! Preprocessing fitted on training data and reused, unchanged, on validation, test and
//! prediction inputs. Every fitted transform is serialisable, so a saved model can carry it
//! and standardise a raw input exactly as in training.

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::samples::{Samples, Targets};

/// A per-feature affine map `x -> (x - offset) / scale`, fitted on training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeatureScaler {
    /// Divide every value by one constant (pixels: 255, giving [0, 1]).
    Constant {
        /// The divisor.
        divisor: f32,
    },
    /// Subtract the training mean and divide by the training standard deviation, per
    /// feature (population standard deviation; a constant feature is divided by 1).
    Standard {
        /// Mean of each feature.
        mean: Vec<f32>,
        /// Standard deviation of each feature.
        std: Vec<f32>,
    },
    /// Map each feature's training range onto [0, 1] (a constant feature maps to 0).
    MinMax {
        /// Minimum of each feature.
        min: Vec<f32>,
        /// Maximum minus minimum of each feature.
        range: Vec<f32>,
    },
}

/// Mean and population standard deviation of each column of a row-major block.
fn column_moments(values: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = (values.len() / width).max(1) as f64;
    let mut sum = vec![0f64; width];
    for row in values.chunks_exact(width) {
        for (s, &v) in sum.iter_mut().zip(row) {
            *s += v as f64;
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / rows).collect();
    let mut var = vec![0f64; width];
    for row in values.chunks_exact(width) {
        for ((acc, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *acc += (v as f64 - m).powi(2);
        }
    }
    let std = var
        .iter()
        .map(|v| {
            let s = (v / rows).sqrt();
            if s > 1e-12 { s as f32 } else { 1.0 }
        })
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), std)
}

impl FeatureScaler {
    /// Scales raw pixel values 0..=255 to [0, 1].
    pub fn pixels() -> Self {
        FeatureScaler::Constant { divisor: 255.0 }
    }

    /// Fits per-feature standardisation on `train`.
    pub fn fit_standard(train: &Samples) -> Result<Self> {
        non_empty(train)?;
        let (mean, std) = column_moments(&train.features, train.item_len());
        Ok(FeatureScaler::Standard { mean, std })
    }

    /// Fits per-feature min-max scaling on `train`.
    pub fn fit_min_max(train: &Samples) -> Result<Self> {
        non_empty(train)?;
        let width = train.item_len();
        let mut min = vec![f32::INFINITY; width];
        let mut max = vec![f32::NEG_INFINITY; width];
        for row in train.features.chunks_exact(width) {
            for i in 0..width {
                min[i] = min[i].min(row[i]);
                max[i] = max[i].max(row[i]);
            }
        }
        let range = min
            .iter()
            .zip(&max)
            .map(|(lo, hi)| if hi > lo { hi - lo } else { 1.0 })
            .collect();
        Ok(FeatureScaler::MinMax { min, range })
    }

    /// Number of features the scaler was fitted on (`None` for a constant divisor).
    pub fn width(&self) -> Option<usize> {
        match self {
            FeatureScaler::Constant { .. } => None,
            FeatureScaler::Standard { mean, .. } => Some(mean.len()),
            FeatureScaler::MinMax { min, .. } => Some(min.len()),
        }
    }

    /// Transforms a block of items (row-major, `item_len` values each) in place.
    pub fn apply(&self, features: &mut [f32], item_len: usize) -> Result<()> {
        if let Some(width) = self.width()
            && width != item_len
        {
            return Err(DataError::Invalid(format!(
                "the scaler was fitted on {width} features, the input has {item_len}"
            )));
        }
        match self {
            FeatureScaler::Constant { divisor } => features.iter_mut().for_each(|v| *v /= divisor),
            FeatureScaler::Standard {
                mean: offset,
                std: scale,
            }
            | FeatureScaler::MinMax {
                min: offset,
                range: scale,
            } => {
                for row in features.chunks_exact_mut(item_len) {
                    for ((v, o), s) in row.iter_mut().zip(offset).zip(scale) {
                        *v = (*v - o) / s;
                    }
                }
            }
        }
        Ok(())
    }

    /// Transforms the features of `samples` in place.
    pub fn transform(&self, samples: &mut Samples) -> Result<()> {
        let n = samples.item_len();
        self.apply(&mut samples.features, n)
    }
}

fn non_empty(train: &Samples) -> Result<()> {
    if train.is_empty() {
        Err(DataError::Invalid("cannot fit a scaler on no data".into()))
    } else {
        Ok(())
    }
}

/// Standardisation of a regression target, with its inverse so that predictions can be
/// reported in the target's own units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetScaler {
    /// Mean of each target column on the training data.
    pub mean: Vec<f32>,
    /// Standard deviation of each target column on the training data.
    pub std: Vec<f32>,
}

impl TargetScaler {
    /// Fits on the targets of `train`; an error for class targets.
    pub fn fit(train: &Samples) -> Result<Self> {
        match &train.targets {
            Targets::Values { values, width, .. } if !values.is_empty() => {
                let (mean, std) = column_moments(values, *width);
                Ok(TargetScaler { mean, std })
            }
            Targets::Values { .. } => Err(DataError::Invalid(
                "cannot fit a target scaler on no data".into(),
            )),
            Targets::Classes { .. } => Err(DataError::Invalid(
                "target scaling applies to regression targets, not classes".into(),
            )),
        }
    }

    /// Standardises row-major target values in place.
    pub fn apply(&self, values: &mut [f32]) {
        let w = self.mean.len();
        for row in values.chunks_exact_mut(w) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
    }

    /// Maps standardised values back to the target's units, in place.
    pub fn inverse(&self, values: &mut [f32]) {
        let w = self.mean.len();
        for row in values.chunks_exact_mut(w) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = *v * s + m;
            }
        }
    }

    /// Standardises the targets of `samples` in place (no-op for class targets).
    pub fn transform(&self, samples: &mut Samples) {
        if let Targets::Values { values, .. } = &mut samples.targets {
            self.apply(values);
        }
    }
}

/// One-hot encodes class indices: `labels.len() * num_classes` values, row-major.
pub fn one_hot(labels: &[usize], num_classes: usize) -> Vec<f32> {
    let mut out = vec![0.0; labels.len() * num_classes];
    for (row, &label) in labels.iter().enumerate() {
        out[row * num_classes + label] = 1.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::ClassNames;

    fn table(features: Vec<f32>, width: usize) -> Samples {
        let n = features.len() / width;
        Samples::new(
            features,
            vec![width],
            vec![],
            Targets::Values {
                values: (0..n).map(|i| i as f32 * 10.0).collect(),
                width: 1,
                names: vec!["y".into()],
            },
        )
        .unwrap()
    }

    #[test]
    fn standard_scaler_uses_training_statistics_only() {
        let train = table(vec![1., 5., 3., 5.], 2);
        let scaler = FeatureScaler::fit_standard(&train).unwrap();
        assert_eq!(
            scaler,
            FeatureScaler::Standard {
                mean: vec![2., 5.],
                std: vec![1., 1.]
            }
        );
        let mut test = table(vec![4., 7.], 2);
        scaler.transform(&mut test).unwrap();
        assert_eq!(test.features, [2., 2.]);
        let mut wrong = table(vec![1., 2., 3.], 3);
        assert!(scaler.transform(&mut wrong).is_err());
    }

    #[test]
    fn min_max_and_pixels() {
        let train = table(vec![0., 2., 10., 2.], 2);
        let scaler = FeatureScaler::fit_min_max(&train).unwrap();
        let mut x = vec![5., 2.];
        scaler.apply(&mut x, 2).unwrap();
        assert_eq!(x, [0.5, 0.]);
        let mut p = vec![255., 51.];
        FeatureScaler::pixels().apply(&mut p, 2).unwrap();
        assert_eq!(p, [1., 0.2]);
    }

    #[test]
    fn target_scaler_round_trips() {
        let train = table(vec![0.; 4], 1); // targets 0, 10, 20, 30
        let scaler = TargetScaler::fit(&train).unwrap();
        assert_eq!(scaler.mean, [15.]);
        let mut v = vec![15., 30.];
        scaler.apply(&mut v);
        assert_eq!(v[0], 0.);
        scaler.inverse(&mut v);
        assert!((v[1] - 30.).abs() < 1e-5);
        let classes = Samples::new(
            vec![0.],
            vec![1],
            vec![],
            Targets::Classes {
                labels: vec![0],
                classes: ClassNames::numbered(1),
            },
        )
        .unwrap();
        assert!(TargetScaler::fit(&classes).is_err());
    }

    #[test]
    fn one_hot_encodes() {
        assert_eq!(one_hot(&[2, 0], 3), [0., 0., 1., 1., 0., 0.]);
    }

    #[test]
    fn scalers_serialise() {
        let s = FeatureScaler::fit_standard(&table(vec![1., 2., 3., 4.], 2)).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<FeatureScaler>(&json).unwrap(), s);
    }
}
