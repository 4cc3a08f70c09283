//! Delimited text tables (CSV, whitespace- or tab-separated), with or without a header,
//! with one target column that is either a class label or a real value.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::samples::{ClassNames, Samples, Targets};

/// What separates the fields of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Separator {
    /// `,` (surrounding spaces are trimmed).
    Comma,
    /// One tab character.
    Tab,
    /// Any run of spaces or tabs.
    Whitespace,
    /// Any other single character.
    Char(char),
}

impl Separator {
    /// The fields of `line`, trimmed, a pair of surrounding double quotes removed (`"sepal
    /// length"` is the name `sepal length`). A separator inside quotes is not supported.
    fn split<'a>(&self, line: &'a str) -> Vec<&'a str> {
        let fields: Vec<&str> = match self {
            Separator::Comma => line.split(',').map(str::trim).collect(),
            Separator::Tab => line.split('\t').map(str::trim).collect(),
            Separator::Whitespace => line.split_whitespace().collect(),
            Separator::Char(c) => line.split(*c).map(str::trim).collect(),
        };
        fields.into_iter().map(unquote).collect()
    }
}

/// `"text"` as `text`; anything else as it is.
fn unquote(field: &str) -> &str {
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
}

/// Which column holds the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetColumn {
    /// The last field of each row.
    Last,
    /// A zero-based field index.
    Index(usize),
    /// The column with this header name (the file must have a header).
    Name(String),
}

/// Whether the target is a class label or a real value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetKind {
    /// Labels of any text, mapped to class indices.
    Class,
    /// Real numbers (regression).
    Value,
}

/// How to read a delimited file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelimitedFormat {
    /// Field separator.
    pub separator: Separator,
    /// Whether the first non-blank line names the columns.
    pub header: bool,
    /// Which column is the target.
    pub target: TargetColumn,
    /// Class label or real value.
    pub kind: TargetKind,
}

impl DelimitedFormat {
    /// Comma-separated, no header, class label in the last column (UCI `iris.data`).
    pub fn csv_class_last() -> Self {
        DelimitedFormat {
            separator: Separator::Comma,
            header: false,
            target: TargetColumn::Last,
            kind: TargetKind::Class,
        }
    }
}

/// Reads a delimited file. Blank lines are skipped. For a class target, `classes` gives the
/// mapping to use (a test file must use its training file's mapping, and a label outside it
/// is an error); `None` builds the mapping from this file's labels.
pub fn load_delimited(
    path: &Path,
    format: &DelimitedFormat,
    classes: Option<&ClassNames>,
) -> Result<Samples> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    parse_delimited(path, &text, format, classes)
}

/// What a file's data rows hold: the features row by row, and the target column's labels
/// (each with its line) or values.
#[derive(Default)]
struct Columns {
    features: Vec<f32>,
    labels: Vec<(usize, String)>,
    values: Vec<f32>,
}

impl Columns {
    /// Adds the row on `line` of `path`: field `target` as a label or value (by `kind`),
    /// every other field as a feature (a field that is not a finite number is an error).
    fn push_row(
        &mut self,
        path: &Path,
        line: usize,
        fields: &[&str],
        target: usize,
        kind: TargetKind,
    ) -> Result<()> {
        for (i, field) in fields.iter().enumerate() {
            if i != target {
                self.features.push(parse_number(path, line, i, field)?);
            } else if kind == TargetKind::Class {
                self.labels.push((line, field.to_string()));
            } else {
                self.values.push(parse_number(path, line, i, field)?);
            }
        }
        Ok(())
    }
}

/// Parses delimited text read from `path` (used only in messages); see [`load_delimited`].
pub fn parse_delimited(
    path: &Path,
    text: &str,
    format: &DelimitedFormat,
    classes: Option<&ClassNames>,
) -> Result<Samples> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());

    let header: Option<(usize, Vec<String>)> = if format.header {
        let (n, line) = lines
            .next()
            .ok_or_else(|| DataError::format(path, "file is empty: no header line"))?;
        let names = format.separator.split(line);
        Some((n, names.iter().map(|s| s.to_string()).collect()))
    } else {
        None
    };
    let mut width: Option<usize> = header.as_ref().map(|(_, h)| h.len());
    let mut target_index: Option<usize> = match &header {
        Some((line, names)) => Some(resolve_target(
            path,
            *line,
            &format.target,
            names.len(),
            Some(names),
        )?),
        None => None,
    };

    let mut columns = Columns::default();
    for (line_no, line) in lines {
        let fields = format.separator.split(line);
        let expected = *width.get_or_insert(fields.len());
        if fields.len() != expected {
            let message = format!(
                "{} fields, expected {expected} like the first row",
                fields.len()
            );
            return Err(DataError::line(path, line_no, message));
        }
        let target = match target_index {
            Some(t) => t,
            None => {
                let t = resolve_target(path, line_no, &format.target, expected, None)?;
                target_index = Some(t);
                t
            }
        };
        columns.push_row(path, line_no, &fields, target, format.kind)?;
    }
    let Columns {
        features,
        labels: raw_labels,
        values,
    } = columns;
    let (Some(width), Some(target)) = (width, target_index) else {
        return Err(DataError::format(path, "file is empty: no data rows"));
    };
    if width < 2 {
        return Err(DataError::format(
            path,
            "a row needs at least one feature and the target",
        ));
    }

    // The header's names, or x0, x1, ... without one.
    let mut feature_names: Vec<String> = match header {
        Some((_, names)) => names,
        None => (0..width).map(|i| format!("x{i}")).collect(),
    };
    let target_name = feature_names.remove(target);

    let targets = match format.kind {
        TargetKind::Class => class_targets(path, &raw_labels, classes, target)?,
        TargetKind::Value => Targets::Values {
            values,
            width: 1,
            names: vec![target_name],
        },
    };
    Samples::new(features, vec![width - 1], feature_names, targets)
}

/// The class targets of the labels read (each with its line), as indices into `classes`
/// when given (a label outside them is an error naming its line and field `target`), else
/// into the labels' own sorted set.
fn class_targets(
    path: &Path,
    raw_labels: &[(usize, String)],
    classes: Option<&ClassNames>,
    target: usize,
) -> Result<Targets> {
    let classes = match classes {
        Some(c) => c.clone(),
        None => ClassNames::from_labels(raw_labels.iter().map(|(_, l)| l.as_str())),
    };
    let mut labels = Vec::with_capacity(raw_labels.len());
    for (line_no, raw) in raw_labels {
        let index = classes.index_of(raw).ok_or_else(|| {
            DataError::line(
                path,
                *line_no,
                format!(
                    "unknown class {raw:?} in field {}; known classes: {}",
                    target + 1,
                    classes.0.join(", ")
                ),
            )
        })?;
        labels.push(index);
    }
    Ok(Targets::Classes { labels, classes })
}

fn resolve_target(
    path: &Path,
    line: usize,
    target: &TargetColumn,
    width: usize,
    header: Option<&Vec<String>>,
) -> Result<usize> {
    match target {
        TargetColumn::Last => Ok(width.saturating_sub(1)),
        TargetColumn::Index(i) if *i < width => Ok(*i),
        TargetColumn::Index(i) => Err(DataError::line(
            path,
            line,
            format!("target column {i} does not exist: rows have {width} fields"),
        )),
        TargetColumn::Name(name) => match header {
            Some(names) => names.iter().position(|n| n == name).ok_or_else(|| {
                DataError::line(
                    path,
                    line,
                    format!(
                        "no column named {name:?} in the header ({})",
                        names.join(", ")
                    ),
                )
            }),
            None => Err(DataError::Invalid(format!(
                "{}: target column {name:?} is named, but the format has no header",
                path.display()
            ))),
        },
    }
}

fn parse_number(path: &Path, line: usize, field: usize, text: &str) -> Result<f32> {
    match text.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(DataError::line(
            path,
            line,
            format!("field {} is {text:?}, not a finite number", field + 1),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, format: &DelimitedFormat) -> Result<Samples> {
        parse_delimited(Path::new("t.csv"), text, format, None)
    }

    #[test]
    fn reads_csv_with_class_names_and_blank_lines() {
        let s = parse(
            "5.1,3.5,Iris-setosa\n\n6.2,2.9,Iris-virginica\n5.9,3.0,Iris-setosa\n\n",
            &DelimitedFormat::csv_class_last(),
        )
        .unwrap();
        assert_eq!(s.shape, [2]);
        assert_eq!(s.features, [5.1, 3.5, 6.2, 2.9, 5.9, 3.0]);
        assert_eq!(s.targets.labels().unwrap(), [0, 1, 0]);
        assert_eq!(
            s.targets.classes().unwrap().0,
            ["Iris-setosa", "Iris-virginica"]
        );
    }

    #[test]
    fn quoted_header_names_and_labels_lose_their_quotes() {
        let format = DelimitedFormat {
            header: true,
            target: TargetColumn::Name("species".into()),
            ..DelimitedFormat::csv_class_last()
        };
        let s = parse(
            "\"sepal length\", \"species\"\n5.1, \"setosa\"\n6.2,virginica\n",
            &format,
        )
        .unwrap();
        assert_eq!(s.feature_names, ["sepal length"]);
        assert_eq!(s.targets.classes().unwrap().0, ["setosa", "virginica"]);
    }

    #[test]
    fn reads_whitespace_with_numeric_labels_in_numeric_order() {
        let format = DelimitedFormat {
            separator: Separator::Whitespace,
            ..DelimitedFormat::csv_class_last()
        };
        let s = parse("1 2 7\n3  4 10\n5 6 1\n", &format).unwrap();
        assert_eq!(s.targets.classes().unwrap().0, ["1", "7", "10"]);
        assert_eq!(s.targets.labels().unwrap(), [1, 2, 0]);
    }

    #[test]
    fn reads_tab_header_regression_target_by_name() {
        let format = DelimitedFormat {
            separator: Separator::Tab,
            header: true,
            target: TargetColumn::Name("Y".into()),
            kind: TargetKind::Value,
        };
        let s = parse("AGE\tY\tBMI\n59\t151\t32.1\n48\t75\t21.6\n", &format).unwrap();
        assert_eq!(s.feature_names, ["AGE", "BMI"]);
        assert_eq!(s.features, [59., 32.1, 48., 21.6]);
        match s.targets {
            Targets::Values { values, names, .. } => {
                assert_eq!(values, [151., 75.]);
                assert_eq!(names, ["Y"]);
            }
            _ => panic!("expected values"),
        }
    }

    #[test]
    fn target_by_index() {
        let format = DelimitedFormat {
            target: TargetColumn::Index(0),
            ..DelimitedFormat::csv_class_last()
        };
        let s = parse("a,1,2\nb,3,4\n", &format).unwrap();
        assert_eq!(s.features, [1., 2., 3., 4.]);
        assert_eq!(s.targets.labels().unwrap(), [0, 1]);
        let format = DelimitedFormat {
            target: TargetColumn::Index(5),
            ..DelimitedFormat::csv_class_last()
        };
        let err = parse("a,1,2\n", &format).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("column 5"), "{err}");
    }

    #[test]
    fn rejects_ragged_row_naming_line() {
        let err = parse("1,2,a\n\n3,b\n", &DelimitedFormat::csv_class_last())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.csv, line 3") && err.contains("2 fields, expected 3"),
            "{err}"
        );
    }

    #[test]
    fn rejects_non_numeric_field_naming_line_and_field() {
        let err = parse("1,2,a\n3,x4,b\n", &DelimitedFormat::csv_class_last())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("field 2 is \"x4\""),
            "{err}"
        );
        let err = parse("1,NaN,a\n", &DelimitedFormat::csv_class_last())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a finite number"), "{err}");
    }

    #[test]
    fn rejects_unknown_class_against_training_mapping() {
        let classes = ClassNames::from_labels(["a", "b"]);
        let err = parse_delimited(
            Path::new("test.csv"),
            "1,a\n2,c\n",
            &DelimitedFormat::csv_class_last(),
            Some(&classes),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 2") && err.contains("unknown class \"c\""),
            "{err}"
        );
    }

    #[test]
    fn rejects_empty_file_and_missing_column_name() {
        let err = parse("\n\n", &DelimitedFormat::csv_class_last())
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
        let format = DelimitedFormat {
            header: true,
            target: TargetColumn::Name("Z".into()),
            ..DelimitedFormat::csv_class_last()
        };
        let err = parse("a,b\n1,2\n", &format).unwrap_err().to_string();
        assert!(err.contains("no column named \"Z\""), "{err}");
    }
}
