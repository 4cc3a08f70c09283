//! The output folder of a run, and how values are written in tables.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A folder a run writes into (created if needed).
#[derive(Debug, Clone)]
pub struct Output {
    /// The folder.
    pub dir: PathBuf,
}

impl Output {
    /// Creates `dir` (and its parents) if needed.
    pub fn create(dir: &Path) -> Result<Self, crate::Error> {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        Ok(Output {
            dir: dir.to_path_buf(),
        })
    }

    /// A path inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `text` to `name` inside the folder.
    pub fn write(&self, name: &str, text: &str) -> Result<(), crate::Error> {
        let path = self.path(name);
        std::fs::write(&path, text).map_err(|e| crate::Error::io(&path, e))
    }

    /// A sub-folder.
    pub fn subdir(&self, name: &str) -> Result<Output, crate::Error> {
        Output::create(&self.path(name))
    }
}

/// A parameter value as the reports write it: lists as `(10, 10, 5)`, text unquoted.
pub fn format_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(format_value).collect();
            if inner.len() == 1 {
                format!("({},)", inner[0])
            } else {
                format!("({})", inner.join(", "))
            }
        }
        // An optimizer as `sgd(lr 0.01, momentum 0.9)`.
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "name")
                .map(|(k, v)| format!("{k} {}", format_value(v)))
                .collect();
            let name = map.get("name").map_or(String::new(), format_value);
            format!("{name}({})", inner.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_the_reports_write_them() {
        assert_eq!(format_value(&serde_json::json!([10, 10, 5])), "(10, 10, 5)");
        assert_eq!(format_value(&serde_json::json!([32])), "(32,)");
        assert_eq!(format_value(&serde_json::json!("relu")), "relu");
        assert_eq!(format_value(&serde_json::json!(0.01)), "0.01");
        assert_eq!(
            format_value(&serde_json::json!({"name": "sgd", "lr": 0.01, "nesterov": true})),
            "sgd(lr 0.01, nesterov true)"
        );
    }
}
