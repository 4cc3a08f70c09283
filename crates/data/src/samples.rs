//! The in-memory form every loader produces: a block of `f32` features, one item shape, and
//! targets (class indices with their names, or regression values).

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// Names of the classes of a classification target, in index order.
///
/// Loaders map whatever the file holds (`Iris-setosa`, statlog's `7`) to `0..n`; this keeps
/// the way back, so reports can print the original labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassNames(pub Vec<String>);

impl ClassNames {
    /// Class names `"0"`, `"1"`, ... for datasets whose labels are already indices.
    pub fn numbered(count: usize) -> Self {
        ClassNames((0..count).map(|i| i.to_string()).collect())
    }

    /// Builds the mapping from raw labels: numeric order when every label is a number (so
    /// statlog's 1,2,3,4,5,7 become 0..5 in that order), otherwise lexicographic order.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a str>) -> Self {
        let mut unique: Vec<String> = Vec::new();
        for label in labels {
            if !unique.iter().any(|known| known == label) {
                unique.push(label.to_string());
            }
        }
        let numeric: Option<Vec<f64>> = unique.iter().map(|l| l.parse::<f64>().ok()).collect();
        match numeric {
            Some(values) => {
                let mut pairs: Vec<(f64, String)> = values.into_iter().zip(unique).collect();
                pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
                ClassNames(pairs.into_iter().map(|(_, name)| name).collect())
            }
            None => {
                unique.sort();
                ClassNames(unique)
            }
        }
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no classes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The index of a raw label, if it is one of the classes.
    pub fn index_of(&self, label: &str) -> Option<usize> {
        self.0.iter().position(|name| name == label)
    }

    /// The name of class `index`.
    pub fn name(&self, index: usize) -> &str {
        &self.0[index]
    }
}

/// What a dataset asks the model to predict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Targets {
    /// One class index per item, below `classes.len()`.
    Classes {
        /// Class index of each item.
        labels: Vec<usize>,
        /// Names of the classes, in index order.
        classes: ClassNames,
    },
    /// `width` real values per item, row-major.
    Values {
        /// The values, `len() * width` of them.
        values: Vec<f32>,
        /// Values per item.
        width: usize,
        /// Names of the target columns.
        names: Vec<String>,
    },
}

impl Targets {
    /// Number of items the targets describe.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Values { values, width, .. } => values.len() / (*width).max(1),
        }
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class labels, or `None` for a regression target.
    pub fn labels(&self) -> Option<&[usize]> {
        match self {
            Targets::Classes { labels, .. } => Some(labels),
            Targets::Values { .. } => None,
        }
    }

    /// The class names, or `None` for a regression target.
    pub fn classes(&self) -> Option<&ClassNames> {
        match self {
            Targets::Classes { classes, .. } => Some(classes),
            Targets::Values { .. } => None,
        }
    }

    fn subset(&self, indices: &[usize]) -> Targets {
        match self {
            Targets::Classes { labels, classes } => Targets::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                classes: classes.clone(),
            },
            Targets::Values {
                values,
                width,
                names,
            } => Targets::Values {
                values: indices
                    .iter()
                    .flat_map(|&i| values[i * width..(i + 1) * width].iter().copied())
                    .collect(),
                width: *width,
                names: names.clone(),
            },
        }
    }
}

/// A decoded dataset held in memory: `len()` items of shape `shape`, their features stored
/// contiguously as `f32`, and their targets.
///
/// Images are stored channel-first (`[channels, height, width]`), the layout of Burn's
/// convolutions and of the CIFAR-10 binary format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    /// Features, `len() * item_len()` values, item after item.
    pub features: Vec<f32>,
    /// Shape of one item: `[features]` for tables, `[channels, height, width]` for images.
    pub shape: Vec<usize>,
    /// Names of the feature columns (empty for images).
    pub feature_names: Vec<String>,
    /// What to predict.
    pub targets: Targets,
}

impl Samples {
    /// Checks that features and targets agree in count and builds the value.
    pub fn new(
        features: Vec<f32>,
        shape: Vec<usize>,
        feature_names: Vec<String>,
        targets: Targets,
    ) -> Result<Self> {
        let item_len: usize = shape.iter().product();
        if item_len == 0 {
            return Err(DataError::Invalid(format!(
                "item shape {shape:?} has no elements"
            )));
        }
        if !features.len().is_multiple_of(item_len) || features.len() / item_len != targets.len() {
            return Err(DataError::Invalid(format!(
                "{} feature values do not make {} items of shape {shape:?}",
                features.len(),
                targets.len()
            )));
        }
        if let Targets::Classes { labels, classes } = &targets
            && let Some(bad) = labels.iter().find(|&&l| l >= classes.len())
        {
            return Err(DataError::Invalid(format!(
                "label {bad} is out of range for {} classes",
                classes.len()
            )));
        }
        Ok(Samples {
            features,
            shape,
            feature_names,
            targets,
        })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of `f32` values in one item.
    pub fn item_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The features of item `index`.
    pub fn item(&self, index: usize) -> &[f32] {
        let n = self.item_len();
        &self.features[index * n..(index + 1) * n]
    }

    /// Number of classes, or `None` for a regression target.
    pub fn num_classes(&self) -> Option<usize> {
        self.targets.classes().map(ClassNames::len)
    }

    /// The items at `indices`, in that order (repeats allowed).
    pub fn subset(&self, indices: &[usize]) -> Samples {
        let n = self.item_len();
        let mut features = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            features.extend_from_slice(self.item(i));
        }
        Samples {
            features,
            shape: self.shape.clone(),
            feature_names: self.feature_names.clone(),
            targets: self.targets.subset(indices),
        }
    }

    /// Items per class (empty for a regression target).
    pub fn class_counts(&self) -> Vec<usize> {
        match &self.targets {
            Targets::Classes { labels, classes } => {
                let mut counts = vec![0; classes.len()];
                for &l in labels {
                    counts[l] += 1;
                }
                counts
            }
            Targets::Values { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Samples {
        Samples::new(
            vec![0., 1., 2., 3., 4., 5.],
            vec![2],
            vec!["a".into(), "b".into()],
            Targets::Classes {
                labels: vec![0, 1, 0],
                classes: ClassNames::numbered(2),
            },
        )
        .unwrap()
    }

    #[test]
    fn class_names_sort_numbers_numerically() {
        let names = ClassNames::from_labels(["7", "10", "2", "7", "1"]);
        assert_eq!(names.0, ["1", "2", "7", "10"]);
        let names = ClassNames::from_labels(["b", "a", "c"]);
        assert_eq!(names.0, ["a", "b", "c"]);
        assert_eq!(names.index_of("c"), Some(2));
        assert_eq!(names.index_of("d"), None);
    }

    #[test]
    fn subset_keeps_features_and_targets_together() {
        let s = tiny().subset(&[2, 0]);
        assert_eq!(s.features, [4., 5., 0., 1.]);
        assert_eq!(s.targets.labels().unwrap(), [0, 0]);
    }

    #[test]
    fn new_rejects_count_mismatch_and_bad_label() {
        let err = Samples::new(
            vec![0.; 5],
            vec![2],
            vec![],
            Targets::Classes {
                labels: vec![0, 1],
                classes: ClassNames::numbered(2),
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("do not make 2 items"), "{err}");
        let err = Samples::new(
            vec![0.; 4],
            vec![2],
            vec![],
            Targets::Classes {
                labels: vec![0, 2],
                classes: ClassNames::numbered(2),
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("label 2 is out of range"), "{err}");
    }

    #[test]
    fn class_counts_count() {
        assert_eq!(tiny().class_counts(), [2, 1]);
    }
}
