//! Result keys. A stored result is found again by the hash of a canonical, versioned form of
//! everything that determines it: the trial's parameters and its configuration (model,
//! optimizer and its settings, epochs, batch size, seed, dataset, split, subset,
//! preprocessing, numerics version). A changed configuration gives another key, so it
//! trains anew instead of reusing figures of something else.
//!
//! The canonical form is plain JSON with object keys sorted and whole numbers written as
//! integers (`128.0` and `128` are one value). Callers build it from explicit names, not
//! from the serde form of their own structs, so renaming a Rust field does not move a key;
//! the tests pin the key of a fixed configuration, so a change of the form fails them and
//! must come with a new [`KEY_VERSION`].

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The version of the canonical form. Part of every key: raising it retires every stored
/// result made under the old form (they are shown as stale, never reused).
pub const KEY_VERSION: u32 = 1;

/// `value` with every object's keys sorted and whole floating-point numbers (below 2^53)
/// written as integers.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let sorted: Map<String, Value> = keys
                .into_iter()
                .map(|k| (k.clone(), canonical(&map[k])))
                .collect();
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            Some(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 => {
                Value::from(x as i64)
            }
            _ => value.clone(),
        },
        other => other.clone(),
    }
}

/// The key of a configuration: `v<KEY_VERSION>-` and the first 16 bytes of the SHA-256 of
/// its canonical JSON, in hex.
pub fn config_key(config: &Value) -> String {
    let text = canonical(config).to_string();
    let digest = Sha256::digest(format!("v{KEY_VERSION}\n{text}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("v{KEY_VERSION}-{hex}")
}

/// What a run's data is, the `data` part of every result key: one form for `grid` and the
/// report binaries, so a result is never reused on other data (split, seed, subset).
#[derive(Debug, Clone, PartialEq)]
pub struct DataKey<'a> {
    /// The dataset's name.
    pub dataset: &'a str,
    /// Class targets (else real values).
    pub classification: bool,
    /// The train/test split.
    pub split: data::TestSplit,
    /// The split's seed.
    pub split_seed: u64,
    /// `--quick`'s subset: training and test items kept (0: all).
    pub subset: Option<(usize, usize)>,
    /// The validation part's fraction of the training data, where the run states one.
    pub validation_fraction: Option<f64>,
    /// Which form of the dataset was read, where it has more than one and the form has a
    /// key (`data::DataForm::key`).
    pub form: Option<&'a str>,
}

impl DataKey<'_> {
    /// The canonical JSON of [`DataKey`].
    pub fn to_value(&self) -> Value {
        let mut value = json!({
            "dataset": self.dataset,
            "task": if self.classification { "classification" } else { "regression" },
            // As study files write it: kind, and test_fraction for a hold-out.
            "split": self.split,
            "split_seed": self.split_seed,
            "subset": self.subset.map(|(train, test)| json!({
                "train_items": train,
                "test_items": test,
            })),
        });
        if let Some(f) = self.validation_fraction {
            value["validation_fraction"] = Value::from(f);
        }
        if let Some(form) = self.form {
            value["form"] = Value::from(form);
        }
        value
    }
}

/// The commit this program was built from (`git rev-parse HEAD` when it was built; edits
/// not yet committed are not marked), or `unknown` outside a git checkout.
pub fn commit() -> &'static str {
    env!("BURN_REPORTS_COMMIT")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn order_and_number_spelling_do_not_move_a_key() {
        let a = json!({"epochs": 10, "optimizer": {"name": "adam", "lr": 0.001}, "units": [128.0]});
        let b = json!({"units": [128], "optimizer": {"lr": 0.001, "name": "adam"}, "epochs": 10.0});
        assert_eq!(config_key(&a), config_key(&b));
    }

    #[test]
    fn every_value_moves_a_key() {
        let base = json!({"epochs": 10, "seed": 0, "dataset": "iris", "lr": 0.001});
        let key = config_key(&base);
        for (field, value) in [
            ("epochs", json!(11)),
            ("seed", json!(1)),
            ("dataset", json!("statlog")),
            ("lr", json!(0.0011)),
            ("extra", json!(null)),
        ] {
            let mut changed = base.clone();
            changed[field] = value;
            assert_ne!(config_key(&changed), key, "{field}");
        }
    }

    #[test]
    fn the_data_part_names_everything_that_picks_the_items() {
        let key = DataKey {
            dataset: "diabetes",
            classification: false,
            split: data::TestSplit::Random(0.2),
            split_seed: 0,
            subset: Some((100, 30)),
            validation_fraction: Some(0.2),
            form: None,
        };
        assert_eq!(
            key.to_value(),
            json!({"dataset": "diabetes", "task": "regression",
                   "split": {"kind": "random", "test_fraction": 0.2}, "split_seed": 0,
                   "subset": {"train_items": 100, "test_items": 30}, "validation_fraction": 0.2})
        );
        let plain = DataKey {
            split: data::TestSplit::Official,
            subset: None,
            validation_fraction: None,
            ..key
        };
        assert_eq!(plain.to_value()["subset"], Value::Null);
        assert!(plain.to_value().get("validation_fraction").is_none());
        assert!(plain.to_value().get("form").is_none());
        let official = DataKey {
            form: Some("official"),
            ..plain.clone()
        };
        assert_eq!(official.to_value()["form"], "official");
    }

    /// The pinned key of a fixed configuration: if this fails, the canonical form or the
    /// hash changed, and every stored result would silently be orphaned. Raise
    /// KEY_VERSION on purpose and update the pin. (The pin is what Python gives for
    /// `"v1-" + sha256(b"v1\n" + json.dumps(config, sort_keys=True, separators=(",", ":")))`.)
    #[test]
    fn the_key_of_a_fixed_configuration_is_pinned() {
        let config = json!({"params": {"eta": 0.01, "hidden_layer": [10, 10, 5]},
                            "config": {"dataset": "iris", "seed": 0}});
        assert_eq!(config_key(&config), "v1-ed2e2e46bf800caa70561ebed5987707");
    }
}
