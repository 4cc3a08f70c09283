//! Seeded splits: stratified train/validation, plain shuffled, and stratified k-fold.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::{DataError, Result};
use crate::samples::{Samples, Targets};

/// Where a run's test data comes from: the one split type of the workspace. Study files
/// write it as `[split]` with `kind` (`official`, `stratified` or `random`) and, for a
/// hold-out, `test_fraction` (default 0.2); result keys record it; [`split_samples`] makes
/// a hold-out's parts ([`Split`], sized by a [`HoldOut`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SplitFields", into = "SplitFields")]
pub enum TestSplit {
    /// The dataset's own test set.
    Official,
    /// A class-stratified hold-out of this fraction.
    Stratified(f64),
    /// A shuffled hold-out of this fraction (for values).
    Random(f64),
}

impl TestSplit {
    /// `official`, `stratified` or `random`, as study files and result keys write it.
    pub fn kind(self) -> &'static str {
        match self {
            TestSplit::Official => "official",
            TestSplit::Stratified(_) => "stratified",
            TestSplit::Random(_) => "random",
        }
    }

    /// The parts of `all` for a hold-out (its training and test items' positions, drawn
    /// with `seed`; stratified by class for [`TestSplit::Stratified`]); an error for
    /// [`TestSplit::Official`], which holds nothing out.
    pub fn hold_out(self, all: &Samples, seed: u64) -> Result<Split> {
        match self {
            TestSplit::Official => Err(DataError::Invalid(
                "the official split holds nothing out: its test set is the dataset's own".into(),
            )),
            TestSplit::Stratified(f) => split_samples(all, HoldOut::Fraction(f), true, seed),
            TestSplit::Random(f) => split_samples(all, HoldOut::Fraction(f), false, seed),
        }
    }

    /// The held-out fraction of a hold-out; `None` for the official test set.
    pub fn test_fraction(self) -> Option<f64> {
        match self {
            TestSplit::Official => None,
            TestSplit::Stratified(f) | TestSplit::Random(f) => Some(f),
        }
    }
}

/// [`TestSplit`] as study files write it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitFields {
    kind: SplitKindName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    test_fraction: Option<f64>,
}

#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum SplitKindName {
    Official,
    Stratified,
    Random,
}

impl TryFrom<SplitFields> for TestSplit {
    type Error = String;

    fn try_from(fields: SplitFields) -> std::result::Result<Self, String> {
        let fraction = fields.test_fraction.unwrap_or(0.2);
        match fields.kind {
            SplitKindName::Official if fields.test_fraction.is_some() => Err(
                "test_fraction is for a hold-out: kind \"official\" uses the dataset's own test set"
                    .into(),
            ),
            SplitKindName::Official => Ok(TestSplit::Official),
            _ if !(fraction > 0.0 && fraction < 1.0) => Err(format!(
                "test_fraction {fraction} is not between 0 and 1"
            )),
            SplitKindName::Stratified => Ok(TestSplit::Stratified(fraction)),
            SplitKindName::Random => Ok(TestSplit::Random(fraction)),
        }
    }
}

impl From<TestSplit> for SplitFields {
    fn from(split: TestSplit) -> Self {
        let kind = match split {
            TestSplit::Official => SplitKindName::Official,
            TestSplit::Stratified(_) => SplitKindName::Stratified,
            TestSplit::Random(_) => SplitKindName::Random,
        };
        SplitFields {
            kind,
            test_fraction: split.test_fraction(),
        }
    }
}

/// How much of the data goes to the held-out part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HoldOut {
    /// A fraction in (0, 1).
    Fraction(f64),
    /// An exact number of items.
    Count(usize),
}

impl HoldOut {
    fn count(self, total: usize) -> Result<usize> {
        let n = match self {
            HoldOut::Fraction(f) if f > 0.0 && f < 1.0 => (f * total as f64).round() as usize,
            HoldOut::Fraction(f) => {
                return Err(DataError::Invalid(format!(
                    "hold-out fraction {f} is not between 0 and 1"
                )));
            }
            HoldOut::Count(n) => n,
        };
        if n == 0 || n >= total {
            return Err(DataError::Invalid(format!(
                "a hold-out of {n} items out of {total} leaves one side empty"
            )));
        }
        Ok(n)
    }
}

/// DatasetParts `samples` in two: stratified by class when `stratify` is set and the targets
/// are classes, a plain shuffle otherwise (regression, or a deliberately random split).
pub fn split_samples(
    samples: &Samples,
    hold_out: HoldOut,
    stratify: bool,
    seed: u64,
) -> Result<Split> {
    match &samples.targets {
        Targets::Classes { labels, .. } if stratify => stratified_split(labels, hold_out, seed),
        _ => shuffle_split(samples.len(), hold_out, seed),
    }
}

/// Indices of the items kept for training and of those held out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training indices, ascending.
    pub train: Vec<usize>,
    /// Held-out indices, ascending.
    pub held_out: Vec<usize>,
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn by_class(labels: &[usize]) -> Vec<Vec<usize>> {
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut groups = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        groups[l].push(i);
    }
    groups
}

/// DatasetParts so that each class keeps its share on both sides (as scikit-learn's
/// `train_test_split(..., stratify=y)`); the same seed gives the same split.
pub fn stratified_split(labels: &[usize], hold_out: HoldOut, seed: u64) -> Result<Split> {
    let total = labels.len();
    let n_out = hold_out.count(total)?;
    let mut rng = rng(seed);
    let mut groups = by_class(labels);
    // Largest-remainder apportionment, so the held-out part has exactly n_out items.
    let exact: Vec<f64> = groups
        .iter()
        .map(|g| g.len() as f64 * n_out as f64 / total as f64)
        .collect();
    let mut take: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let mut missing = n_out - take.iter().sum::<usize>();
    for &c in order.iter().cycle().take(order.len() * 2) {
        if missing == 0 {
            break;
        }
        if take[c] < groups[c].len() {
            take[c] += 1;
            missing -= 1;
        }
    }
    let mut split = Split {
        train: Vec::with_capacity(total - n_out),
        held_out: Vec::with_capacity(n_out),
    };
    for (group, n) in groups.iter_mut().zip(take) {
        group.shuffle(&mut rng);
        split.held_out.extend_from_slice(&group[..n]);
        split.train.extend_from_slice(&group[n..]);
    }
    split.train.sort_unstable();
    split.held_out.sort_unstable();
    Ok(split)
}

/// DatasetParts `len` items at random (for regression targets).
pub fn shuffle_split(len: usize, hold_out: HoldOut, seed: u64) -> Result<Split> {
    let n_out = hold_out.count(len)?;
    let mut indices: Vec<usize> = (0..len).collect();
    indices.shuffle(&mut rng(seed));
    let mut held_out = indices[..n_out].to_vec();
    let mut train = indices[n_out..].to_vec();
    held_out.sort_unstable();
    train.sort_unstable();
    Ok(Split { train, held_out })
}

/// Stratified k-fold: `k` splits whose held-out parts partition the data, each class dealt
/// evenly across folds (as scikit-learn's `StratifiedKFold(shuffle=True)`).
pub fn stratified_k_fold(labels: &[usize], k: usize, seed: u64) -> Result<Vec<Split>> {
    if k < 2 || k > labels.len() {
        return Err(DataError::Invalid(format!(
            "k-fold needs 2 <= k <= {} items, got k = {k}",
            labels.len()
        )));
    }
    let mut rng = rng(seed);
    let mut folds: Vec<Vec<usize>> = vec![Vec::new(); k];
    let mut next = 0;
    for mut group in by_class(labels) {
        group.shuffle(&mut rng);
        for i in group {
            folds[next].push(i);
            next = (next + 1) % k;
        }
    }
    Ok((0..k)
        .map(|f| {
            let mut held_out = folds[f].clone();
            held_out.sort_unstable();
            let mut train: Vec<usize> = folds
                .iter()
                .enumerate()
                .filter(|(g, _)| *g != f)
                .flat_map(|(_, v)| v.iter().copied())
                .collect();
            train.sort_unstable();
            Split { train, held_out }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_split_reads_as_study_files_write_it_and_refuses_what_cannot_be() {
        let read = |text: &str| serde_json::from_str::<TestSplit>(text).map_err(|e| e.to_string());
        assert_eq!(read(r#"{"kind": "official"}"#), Ok(TestSplit::Official));
        assert_eq!(
            read(r#"{"kind": "stratified"}"#),
            Ok(TestSplit::Stratified(0.2))
        );
        assert_eq!(
            read(r#"{"kind": "random", "test_fraction": 0.25}"#),
            Ok(TestSplit::Random(0.25))
        );
        for (bad, named) in [
            (
                r#"{"kind": "official", "test_fraction": 0.2}"#,
                "test_fraction",
            ),
            (r#"{"kind": "stratified", "test_fraction": 1.5}"#, "1.5"),
            (r#"{"kind": "stratified", "test_fraction": 0}"#, "0"),
            (r#"{"kind": "stratifed"}"#, "stratifed"),
            (
                r#"{"kind": "random", "test_fractoin": 0.2}"#,
                "test_fractoin",
            ),
        ] {
            let error = read(bad).unwrap_err();
            assert!(error.contains(named), "{bad}: {error}");
        }
        let written = serde_json::to_string(&TestSplit::Random(0.25)).unwrap();
        assert_eq!(written, r#"{"kind":"random","test_fraction":0.25}"#);
        assert_eq!(TestSplit::Official.test_fraction(), None);
        assert_eq!(TestSplit::Stratified(0.3).kind(), "stratified");
    }

    #[test]
    fn split_samples_stratifies_classes_only_when_asked() {
        let labels: Vec<usize> = (0..40).map(|i| usize::from(i >= 30)).collect();
        let samples = Samples::new(
            (0..40).map(|i| i as f32).collect(),
            vec![1],
            vec![],
            Targets::Classes {
                labels: labels.clone(),
                classes: crate::ClassNames::numbered(2),
            },
        )
        .unwrap();
        let split = split_samples(&samples, HoldOut::Count(8), true, 3).unwrap();
        let ones = split.held_out.iter().filter(|&&i| labels[i] == 1).count();
        assert_eq!((split.held_out.len(), ones), (8, 2), "a quarter of class 1");
        assert_eq!(
            split_samples(&samples, HoldOut::Count(8), false, 3).unwrap(),
            shuffle_split(40, HoldOut::Count(8), 3).unwrap()
        );
    }

    fn labels() -> Vec<usize> {
        // 60 of class 0, 30 of class 1, 10 of class 2
        (0..100)
            .map(|i| {
                if i < 60 {
                    0
                } else if i < 90 {
                    1
                } else {
                    2
                }
            })
            .collect()
    }

    fn count(indices: &[usize], labels: &[usize], class: usize) -> usize {
        indices.iter().filter(|&&i| labels[i] == class).count()
    }

    #[test]
    fn stratified_split_keeps_class_shares_and_is_seeded() {
        let y = labels();
        let s = stratified_split(&y, HoldOut::Fraction(0.2), 7).unwrap();
        assert_eq!(s.held_out.len(), 20);
        assert_eq!(s.train.len(), 80);
        assert_eq!([0, 1, 2].map(|c| count(&s.held_out, &y, c)), [12, 6, 2]);
        assert_eq!(s, stratified_split(&y, HoldOut::Fraction(0.2), 7).unwrap());
        assert_ne!(s, stratified_split(&y, HoldOut::Fraction(0.2), 8).unwrap());
        let mut all: Vec<usize> = s.train.iter().chain(&s.held_out).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn exact_counts_like_48000_12000() {
        let y: Vec<usize> = (0..1000).map(|i| i % 7).collect();
        let s = stratified_split(&y, HoldOut::Count(203), 1).unwrap();
        assert_eq!(s.held_out.len(), 203);
    }

    #[test]
    fn rejects_bad_hold_out() {
        let y = labels();
        assert!(stratified_split(&y, HoldOut::Fraction(1.5), 0).is_err());
        assert!(stratified_split(&y, HoldOut::Count(100), 0).is_err());
        assert!(shuffle_split(10, HoldOut::Fraction(0.0), 0).is_err());
    }

    #[test]
    fn shuffle_split_partitions() {
        let s = shuffle_split(10, HoldOut::Count(3), 3).unwrap();
        assert_eq!(s.held_out.len(), 3);
        assert_eq!(s.train.len(), 7);
        assert!(s.held_out.iter().all(|i| !s.train.contains(i)));
    }

    #[test]
    fn k_fold_partitions_and_stratifies() {
        let y = labels();
        let folds = stratified_k_fold(&y, 5, 0).unwrap();
        let mut seen: Vec<usize> = folds.iter().flat_map(|f| f.held_out.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        for f in &folds {
            assert_eq!(f.held_out.len() + f.train.len(), 100);
            assert_eq!(count(&f.held_out, &y, 0), 12);
            assert_eq!(count(&f.held_out, &y, 2), 2);
        }
        assert!(stratified_k_fold(&y, 1, 0).is_err());
    }
}
