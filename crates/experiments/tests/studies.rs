//! Every study file in `experiments/`, checked without data or training: it parses, and every
//! model, grid trial, published row and final model builds for its dataset's items; and the
//! report rows the files list are exactly the checked-in list `experiments/rows.txt` (135
//! rows), so a row cannot silently appear or vanish from the results book.

use std::path::{Path, PathBuf};

use data::{ClassNames, Samples, Targets};
use models::Shape;

fn experiments_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments")
}

/// One item shaped like each dataset's, with its kind of target.
fn like(dataset: &str) -> Samples {
    let (shape, classes): (Vec<usize>, Option<usize>) = match dataset {
        "iris" => (vec![4], Some(3)),
        "statlog" => (vec![36], Some(6)),
        "mnist" | "fashion-mnist" => (vec![1, 28, 28], Some(10)),
        "cifar10" => (vec![3, 32, 32], Some(10)),
        "diabetes" => (vec![10], None),
        other => panic!("unknown dataset {other}"),
    };
    let len = shape.iter().product();
    let targets = match classes {
        Some(k) => Targets::Classes {
            labels: vec![0],
            classes: ClassNames::numbered(k),
        },
        None => Targets::Values {
            values: vec![0.0],
            width: 1,
            names: vec!["y".into()],
        },
    };
    Samples::new(vec![0.0; len], shape, vec![], targets).unwrap()
}

fn studies() -> Vec<(String, PathBuf, toml::Table)> {
    let mut out: Vec<(String, PathBuf, toml::Table)> = std::fs::read_dir(experiments_dir())
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_stem()?.to_str()?.to_string();
            (path.extension()? == "toml" && name != "bench" && name != experiments::book::FIGURES)
                .then_some((name, path))
        })
        .map(|(name, path)| {
            let table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            (name, path, table)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_study_file_builds_every_model() {
    let studies = studies();
    assert_eq!(studies.len(), 11, "the eleven report binaries' studies");
    for (name, path, table) in studies {
        let dataset = table["dataset"].as_str().unwrap();
        let item = like(dataset);
        let trained = if table.contains_key("section") {
            let input = Shape::from_dims(&item.shape).unwrap();
            experiments::model_table::check_study(&path, input)
        } else {
            experiments::mlp_table::check_study(&path, &item)
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(trained > 0, "{name} trains nothing");
    }
}

#[test]
fn the_report_rows_are_the_checked_in_list() {
    let mut listed = String::new();
    for (name, path, _) in studies() {
        let text = std::fs::read_to_string(&path).unwrap();
        let study = experiments::book::Study::parse(&text, &path).unwrap();
        for row in experiments::book::study_rows(&study) {
            listed.push_str(&format!("{name}\t{}\t{}\n", row.table, row.row));
        }
    }
    let path = experiments_dir().join("rows.txt");
    if std::env::var_os("UPDATE_ROWS").is_some() {
        std::fs::write(&path, &listed).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        listed, committed,
        "the study files' rows differ from experiments/rows.txt (rerun with UPDATE_ROWS=1 after \
         checking the difference)"
    );
    assert_eq!(listed.lines().count(), 135, "the four reports' table rows");
}
