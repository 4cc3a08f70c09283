//! Keras' two callbacks the reports use: early stopping and ReduceLROnPlateau.

use serde::{Deserialize, Serialize};

/// A quantity recorded each epoch that a callback watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Training loss (lower is better).
    Loss,
    /// Training accuracy or R² (higher is better).
    #[serde(alias = "accuracy", alias = "r2")]
    Score,
    /// Validation loss (lower is better).
    ValLoss,
    /// Validation accuracy or R² (higher is better).
    #[serde(alias = "val_accuracy", alias = "val_r2")]
    ValScore,
}

impl Monitor {
    /// Whether larger values are better (Keras' `mode="auto"`).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Monitor::Score | Monitor::ValScore)
    }

    /// Whether it needs a validation set.
    pub fn needs_validation(self) -> bool {
        matches!(self, Monitor::ValLoss | Monitor::ValScore)
    }

    /// True when `value` beats `best` by more than `min_delta`.
    pub fn improves(self, value: f64, best: Option<f64>, min_delta: f64) -> bool {
        match best {
            None => value.is_finite(),
            Some(best) if self.higher_is_better() => value > best + min_delta,
            Some(best) => value < best - min_delta,
        }
    }
}

/// Stops training when the monitored quantity has not improved for `patience` epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// What to watch.
    pub monitor: Monitor,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    #[serde(default)]
    pub min_delta: f64,
    /// Put back the weights of the best epoch when training ends.
    #[serde(default)]
    pub restore_best_weights: bool,
}

/// Multiplies the learning rate by `factor` when the monitored quantity has not improved
/// for `patience` epochs, then waits `cooldown` epochs before watching again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReduceLrOnPlateau {
    /// What to watch.
    pub monitor: Monitor,
    /// Multiplier, in (0, 1).
    pub factor: f64,
    /// Epochs without improvement before reducing.
    pub patience: usize,
    /// Epochs to wait after a reduction.
    #[serde(default)]
    pub cooldown: usize,
    /// The learning rate never goes below this.
    #[serde(default)]
    pub min_lr: f64,
    /// Smallest change that counts as an improvement (Keras: 1e-4).
    #[serde(default = "plateau_min_delta")]
    pub min_delta: f64,
}

fn plateau_min_delta() -> f64 {
    1e-4
}

/// The running state of [`EarlyStopping`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingState {
    /// Best value so far.
    pub best: Option<f64>,
    /// Epoch (0-based) of the best value.
    pub best_epoch: usize,
    /// Epochs since the best value.
    pub wait: usize,
}

impl EarlyStoppingState {
    /// Records one epoch's value; returns (improved, stop).
    pub fn update(&mut self, rule: &EarlyStopping, epoch: usize, value: f64) -> (bool, bool) {
        if rule.monitor.improves(value, self.best, rule.min_delta) {
            self.best = Some(value);
            self.best_epoch = epoch;
            self.wait = 0;
            (true, false)
        } else {
            self.wait += 1;
            (false, self.wait >= rule.patience)
        }
    }
}

/// The running state of [`ReduceLrOnPlateau`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlateauState {
    best: Option<f64>,
    wait: usize,
    cooldown: usize,
}

impl PlateauState {
    /// Records one epoch's value; returns the learning rate for the next epoch.
    pub fn update(&mut self, rule: &ReduceLrOnPlateau, value: f64, lr: f64) -> f64 {
        if self.cooldown > 0 {
            self.cooldown -= 1;
            self.wait = 0;
        }
        if rule.monitor.improves(value, self.best, rule.min_delta) {
            self.best = Some(value);
            self.wait = 0;
            return lr;
        }
        if self.cooldown > 0 {
            return lr;
        }
        self.wait += 1;
        if self.wait >= rule.patience && lr > rule.min_lr {
            self.cooldown = rule.cooldown;
            self.wait = 0;
            return (lr * rule.factor).max(rule.min_lr);
        }
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_waits_patience_epochs() {
        let rule = EarlyStopping {
            monitor: Monitor::ValLoss,
            patience: 2,
            min_delta: 0.0,
            restore_best_weights: true,
        };
        let mut s = EarlyStoppingState::default();
        assert_eq!(s.update(&rule, 0, 1.0), (true, false));
        assert_eq!(s.update(&rule, 1, 0.5), (true, false));
        assert_eq!(s.update(&rule, 2, 0.6), (false, false));
        assert_eq!(s.update(&rule, 3, 0.5), (false, true));
        assert_eq!(s.best_epoch, 1);
    }

    #[test]
    fn early_stopping_on_accuracy_maximises() {
        let rule = EarlyStopping {
            monitor: Monitor::ValScore,
            patience: 1,
            min_delta: 0.01,
            restore_best_weights: false,
        };
        let mut s = EarlyStoppingState::default();
        s.update(&rule, 0, 0.80);
        assert_eq!(s.update(&rule, 1, 0.805), (false, true));
    }

    #[test]
    fn plateau_reduces_then_cools_down() {
        let rule = ReduceLrOnPlateau {
            monitor: Monitor::ValLoss,
            factor: 0.1,
            patience: 2,
            cooldown: 2,
            min_lr: 1e-4,
            min_delta: 0.0,
        };
        let mut s = PlateauState::default();
        let mut lr = 0.1;
        let mut seen = Vec::new();
        for value in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0] {
            lr = s.update(&rule, value, lr);
            seen.push(lr);
        }
        // As Keras: epoch 0 sets the best; 1, 2 wait and 2 reduces; 3 and 4 count the
        // cooldown down (4 already waits again); 5 reduces; 6, 7 cool down; 8 reduces to the
        // floor.
        let expected = [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.0001];
        for (a, b) in seen.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{seen:?}");
        }
    }
}
