//! The six datasets as the reports use them, from wherever the lookup order finds them
//! (nothing is fetched here). The small ones are committed and always checked; the large
//! ones are checked when present, and must be present when `REQUIRE_DATASETS` is set (CI
//! fetches them from the local mirror first).

use data::{DataDirs, DatasetName, Targets, verify_dataset};

fn check(
    name: DatasetName,
    train: usize,
    test: Option<usize>,
    shape: &[usize],
    classes: Option<usize>,
) {
    let size = name.size();
    assert_eq!(
        (size.train, size.test, size.shape),
        (train, test, shape),
        "{name}: DatasetName::size"
    );
    let dirs = DataDirs::new(None);
    let folder = match dirs.find(name) {
        Ok((folder, _)) => folder,
        Err(e) if name.is_committed() || std::env::var_os("REQUIRE_DATASETS").is_some() => {
            panic!("{e}")
        }
        Err(_) => {
            eprintln!("{name} is not present: not checked (set REQUIRE_DATASETS to require it)");
            return;
        }
    };
    verify_dataset(name, &folder).unwrap();
    let splits = name.load_from(&folder).unwrap();
    assert_eq!(splits.train.len(), train);
    assert_eq!(splits.test.as_ref().map(|t| t.len()), test);
    assert_eq!(splits.train.shape, shape);
    assert_eq!(splits.train.num_classes(), classes);
    if let Some(test) = &splits.test {
        assert_eq!(test.shape, shape);
        assert_eq!(test.targets.classes(), splits.train.targets.classes());
    }
}

#[test]
fn iris() {
    check(DatasetName::Iris, 150, None, &[4], Some(3));
}

#[test]
fn statlog_keeps_its_labels() {
    check(DatasetName::Statlog, 4435, Some(2000), &[36], Some(6));
    let splits = DataDirs::new(None).load(DatasetName::Statlog).unwrap();
    assert_eq!(
        splits.train.targets.classes().unwrap().0,
        ["1", "2", "3", "4", "5", "7"]
    );
}

#[test]
fn diabetes_is_a_regression_on_y() {
    check(DatasetName::Diabetes, 442, None, &[10], None);
    let splits = DataDirs::new(None).load(DatasetName::Diabetes).unwrap();
    match &splits.train.targets {
        Targets::Values { names, .. } => assert_eq!(names, &["Y"]),
        Targets::Classes { .. } => panic!("diabetes has a real target"),
    }
}

#[test]
fn mnist() {
    check(
        DatasetName::Mnist,
        60000,
        Some(10000),
        &[1, 28, 28],
        Some(10),
    );
}

#[test]
fn fashion_mnist() {
    check(
        DatasetName::FashionMnist,
        60000,
        Some(10000),
        &[1, 28, 28],
        Some(10),
    );
}

#[test]
fn cifar10() {
    check(
        DatasetName::Cifar10,
        50000,
        Some(10000),
        &[3, 32, 32],
        Some(10),
    );
}
