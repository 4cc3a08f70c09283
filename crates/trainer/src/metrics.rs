//! Scores computed on the host from predictions: accuracy, R², log loss, the confusion
//! matrix and scikit-learn's classification report.

use serde::{Deserialize, Serialize};

/// Fraction of `predicted` equal to `truth`.
pub fn accuracy(predicted: &[usize], truth: &[usize]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let right = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
    right as f64 / truth.len() as f64
}

/// Coefficient of determination of `predicted` against `truth` (1 is perfect; 0 is as
/// good as predicting the mean), averaged uniformly over output columns as scikit-learn
/// does.
pub fn r2_score(predicted: &[f32], truth: &[f32], width: usize) -> f64 {
    let width = width.max(1);
    let mut ss_res = vec![0.0; width];
    for (i, (p, t)) in predicted.iter().zip(truth).enumerate() {
        ss_res[i % width] += ((t - p) as f64).powi(2);
    }
    r2_from_sums(&ss_res, &total_sum_of_squares(truth, width))
}

/// Sum of squared deviations from the mean of each column of `truth` (row-major).
pub fn total_sum_of_squares(truth: &[f32], width: usize) -> Vec<f64> {
    let width = width.max(1);
    let rows = (truth.len() / width).max(1) as f64;
    let mut mean = vec![0.0; width];
    for (i, t) in truth.iter().enumerate() {
        mean[i % width] += *t as f64 / rows;
    }
    let mut ss_tot = vec![0.0; width];
    for (i, t) in truth.iter().enumerate() {
        ss_tot[i % width] += (*t as f64 - mean[i % width]).powi(2);
    }
    ss_tot
}

/// R² averaged over columns from their residual and total sums of squares (a constant
/// column scores 1 when predicted exactly, else 0, as scikit-learn).
pub fn r2_from_sums(ss_res: &[f64], ss_tot: &[f64]) -> f64 {
    if ss_tot.is_empty() {
        return 0.0;
    }
    let per_column = ss_res.iter().zip(ss_tot).map(|(res, tot)| {
        if *tot > 0.0 {
            1.0 - res / tot
        } else if *res == 0.0 {
            1.0
        } else {
            0.0
        }
    });
    per_column.sum::<f64>() / ss_tot.len() as f64
}

/// Mean squared error.
pub fn mean_squared_error(predicted: &[f32], truth: &[f32]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    predicted
        .iter()
        .zip(truth)
        .map(|(p, t)| ((p - t) as f64).powi(2))
        .sum::<f64>()
        / truth.len() as f64
}

/// Mean absolute error.
pub fn mean_absolute_error(predicted: &[f32], truth: &[f32]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    predicted
        .iter()
        .zip(truth)
        .map(|(p, t)| (p - t).abs() as f64)
        .sum::<f64>()
        / truth.len() as f64
}

/// Mean cross-entropy of class probabilities (`rows x classes`, row-major) against the true
/// classes, with probabilities clipped to [1e-15, 1 - 1e-15] as scikit-learn's `log_loss`.
pub fn log_loss(probabilities: &[f32], classes: usize, truth: &[usize]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let eps = 1e-15f64;
    truth
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            -(probabilities[i * classes + t] as f64)
                .clamp(eps, 1.0 - eps)
                .ln()
        })
        .sum::<f64>()
        / truth.len() as f64
}

/// Index of the largest value of each row.
pub fn argmax_rows(values: &[f32], width: usize) -> Vec<usize> {
    values
        .chunks_exact(width.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0
        })
        .collect()
}

/// `matrix[truth][predicted]` counts.
pub fn confusion_matrix(predicted: &[usize], truth: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut matrix = vec![vec![0; classes]; classes];
    for (&p, &t) in predicted.iter().zip(truth) {
        if p < classes && t < classes {
            matrix[t][p] += 1;
        }
    }
    matrix
}

/// Precision, recall, F1 and support of one class (or an average).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// Of the items predicted as this class, the fraction that are.
    pub precision: f64,
    /// Of the items of this class, the fraction predicted as it.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Items of this class.
    pub support: usize,
}

/// scikit-learn's `classification_report`: per-class scores, accuracy, macro and weighted
/// averages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Class names, in index order.
    pub names: Vec<String>,
    /// Scores of each class.
    pub classes: Vec<ClassScores>,
    /// Overall accuracy.
    pub accuracy: f64,
    /// Unweighted mean over classes.
    pub macro_avg: ClassScores,
    /// Mean over classes weighted by support.
    pub weighted_avg: ClassScores,
}

impl ClassificationReport {
    /// Computes the report (a class never predicted has precision 0, as scikit-learn's
    /// `zero_division=0`).
    pub fn new(predicted: &[usize], truth: &[usize], names: &[String]) -> Self {
        let n = names.len();
        let matrix = confusion_matrix(predicted, truth, n);
        let classes: Vec<ClassScores> = (0..n)
            .map(|c| {
                let tp = matrix[c][c] as f64;
                let predicted_c: usize = (0..n).map(|t| matrix[t][c]).sum();
                let support: usize = matrix[c].iter().sum();
                let precision = if predicted_c > 0 {
                    tp / predicted_c as f64
                } else {
                    0.0
                };
                let recall = if support > 0 {
                    tp / support as f64
                } else {
                    0.0
                };
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassScores {
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        let total: usize = classes.iter().map(|c| c.support).sum();
        let average = |weight: &dyn Fn(&ClassScores) -> f64| {
            let w: f64 = classes
                .iter()
                .map(weight)
                .sum::<f64>()
                .max(f64::MIN_POSITIVE);
            ClassScores {
                precision: classes.iter().map(|c| c.precision * weight(c)).sum::<f64>() / w,
                recall: classes.iter().map(|c| c.recall * weight(c)).sum::<f64>() / w,
                f1: classes.iter().map(|c| c.f1 * weight(c)).sum::<f64>() / w,
                support: total,
            }
        };
        ClassificationReport {
            names: names.to_vec(),
            accuracy: accuracy(predicted, truth),
            macro_avg: average(&|_| 1.0),
            weighted_avg: average(&|c| c.support as f64),
            classes,
        }
    }

    /// The report as scikit-learn prints it.
    pub fn to_text(&self) -> String {
        let width = self
            .names
            .iter()
            .map(|n| n.len())
            .max()
            .unwrap_or(0)
            .max(12);
        let mut out = format!(
            "{:>width$} {:>9} {:>9} {:>9} {:>9}\n\n",
            "", "precision", "recall", "f1-score", "support"
        );
        let row = |name: &str, s: &ClassScores| {
            format!(
                "{name:>width$} {:>9.2} {:>9.2} {:>9.2} {:>9}\n",
                s.precision, s.recall, s.f1, s.support
            )
        };
        for (name, s) in self.names.iter().zip(&self.classes) {
            out.push_str(&row(name, s));
        }
        out.push_str(&format!(
            "\n{:>width$} {:>9} {:>9} {:>9.2} {:>9}\n",
            "accuracy", "", "", self.accuracy, self.macro_avg.support
        ));
        out.push_str(&row("macro avg", &self.macro_avg));
        out.push_str(&row("weighted avg", &self.weighted_avg));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_argmax() {
        assert_eq!(argmax_rows(&[0.1, 0.9, 0.8, 0.2], 2), [1, 0]);
        assert_eq!(accuracy(&[1, 0, 1], &[1, 1, 1]), 2.0 / 3.0);
    }

    #[test]
    fn r2_matches_hand_computation() {
        // truth mean 2; ss_tot = 2; ss_res = 0.25 + 0 + 0.25 = 0.5; r2 = 0.75
        let r2 = r2_score(&[1.5, 2.0, 2.5], &[1.0, 2.0, 3.0], 1);
        assert!((r2 - 0.75).abs() < 1e-12);
        assert_eq!(r2_score(&[1.0, 2.0], &[1.0, 2.0], 1), 1.0);
        // A constant target: exact predictions score 1, others 0.
        assert_eq!(r2_from_sums(&[0.0, 1.0], &[0.0, 0.0]), 0.5);
        // Two columns average: (1 - 0.5/2) and (1 - 0/8).
        let r2 = r2_score(
            &[1.5, 0.0, 2.0, 2.0, 2.5, 4.0],
            &[1.0, 0.0, 2.0, 2.0, 3.0, 4.0],
            2,
        );
        assert!((r2 - (0.75 + 1.0) / 2.0).abs() < 1e-12, "{r2}");
        assert!((mean_squared_error(&[1.5, 2.0], &[1.0, 2.0]) - 0.125).abs() < 1e-12);
    }

    #[test]
    fn log_loss_matches_scikit_learn() {
        // sklearn.metrics.log_loss([0, 1], [[0.9, 0.1], [0.2, 0.8]]) = 0.164252033486018
        let l = log_loss(&[0.9, 0.1, 0.2, 0.8], 2, &[0, 1]);
        assert!((l - 0.164252033486018).abs() < 1e-6, "{l}");
    }

    #[test]
    fn classification_report_matches_scikit_learn() {
        // y_true = [0, 0, 1, 1, 2, 2, 2], y_pred = [0, 1, 1, 1, 2, 0, 2]
        let truth = [0, 0, 1, 1, 2, 2, 2];
        let predicted = [0, 1, 1, 1, 2, 0, 2];
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let r = ClassificationReport::new(&predicted, &truth, &names);
        // class a: precision 1/2, recall 1/2; b: 2/3, 1; c: 1, 2/3
        assert!((r.classes[0].precision - 0.5).abs() < 1e-12);
        assert!((r.classes[1].recall - 1.0).abs() < 1e-12);
        assert!((r.classes[2].f1 - 0.8).abs() < 1e-12);
        assert!((r.accuracy - 5.0 / 7.0).abs() < 1e-12);
        // macro precision = (0.5 + 0.6667 + 1) / 3
        assert!((r.macro_avg.precision - (0.5 + 2.0 / 3.0 + 1.0) / 3.0).abs() < 1e-12);
        // weighted recall = (2*0.5 + 2*1 + 3*(2/3)) / 7 = accuracy
        assert!((r.weighted_avg.recall - 5.0 / 7.0).abs() < 1e-12);
        assert_eq!(confusion_matrix(&predicted, &truth, 3)[2], [1, 0, 2]);
        assert!(r.to_text().contains("weighted avg"));
    }
}
