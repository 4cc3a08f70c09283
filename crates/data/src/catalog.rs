//! The datasets the reports use: where their files come from, their published checksums,
//! and how each one loads into train and test [`Samples`].

use std::path::{Path, PathBuf};

use crate::cifar;
use crate::delimited::{DelimitedFormat, Separator, TargetColumn, TargetKind, load_delimited};
use crate::error::{DataError, Result};
use crate::idx::load_idx_images;
use crate::image_folder::{Channels, load_image_folder};
use crate::samples::{ClassNames, Samples};

/// One of the six datasets of the reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetName {
    /// MNIST handwritten digits, 28x28 grey.
    Mnist,
    /// Fashion-MNIST clothing images, 28x28 grey.
    FashionMnist,
    /// CIFAR-10, 32x32 RGB.
    Cifar10,
    /// Fisher's iris, 4 features, 3 classes.
    Iris,
    /// Statlog (Landsat Satellite), 36 features, 6 classes labelled 1,2,3,4,5,7.
    Statlog,
    /// Diabetes (Efron et al. 2004), 10 features, regression target `Y`.
    Diabetes,
}

/// A file of a dataset with its published checksum.
#[derive(Debug, Clone, Copy)]
pub struct DataFile {
    /// Path inside the dataset's folder.
    pub name: &'static str,
    /// SHA-256 of the content (of the decompressed content for a gzip file).
    pub sha256: &'static str,
    /// Official download address; one ending in `/` is a folder the file's name is appended
    /// to.
    pub url: &'static str,
}

/// An archive that unpacks into a dataset folder.
#[derive(Debug, Clone, Copy)]
pub struct Archive {
    /// File name (in a mirror's dataset folder, or the last part of `url`).
    pub name: &'static str,
    /// SHA-256 of the archive file.
    pub sha256: &'static str,
    /// Download address, empty for an archive that only mirrors hold.
    pub url: &'static str,
    /// The folder the archive unpacks to.
    pub unpacks_to: &'static str,
}

/// The official CIFAR-10 binary archive.
pub const CIFAR10_OFFICIAL: Archive = Archive {
    name: "cifar-10-binary.tar.gz",
    sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    unpacks_to: "cifar-10-batches-bin",
};

/// The JPEG re-encoding of CIFAR-10 that offline mirrors hold.
pub const CIFAR10_MIRROR: Archive = Archive {
    name: "cifar10-jpeg.tar.xz",
    sha256: "e016f210c3d329e3663f2bb56e83a128dbf717c38412103f9d663c7700c8dc1b",
    url: "",
    unpacks_to: "cifar10-jpeg",
};

const MNIST_URL: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";
const FASHION_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";

const MNIST_FILES: [DataFile; 4] = [
    DataFile {
        name: "train-images-idx3-ubyte.gz",
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        url: MNIST_URL,
    },
    DataFile {
        name: "train-labels-idx1-ubyte.gz",
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        url: MNIST_URL,
    },
    DataFile {
        name: "t10k-images-idx3-ubyte.gz",
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        url: MNIST_URL,
    },
    DataFile {
        name: "t10k-labels-idx1-ubyte.gz",
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        url: MNIST_URL,
    },
];

const FASHION_FILES: [DataFile; 4] = [
    DataFile {
        name: "train-images-idx3-ubyte.gz",
        sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        url: FASHION_URL,
    },
    DataFile {
        name: "train-labels-idx1-ubyte.gz",
        sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        url: FASHION_URL,
    },
    DataFile {
        name: "t10k-images-idx3-ubyte.gz",
        sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        url: FASHION_URL,
    },
    DataFile {
        name: "t10k-labels-idx1-ubyte.gz",
        sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        url: FASHION_URL,
    },
];

const IRIS_FILES: [DataFile; 1] = [DataFile {
    name: "iris.data",
    sha256: "36f668d1cbc29a8c2c1128c5d2f0d400fa04ed4dc62d12246f44ce9360360cc0",
    url: "https://archive.ics.uci.edu/ml/machine-learning-databases/iris/iris.data",
}];

const STATLOG_FILES: [DataFile; 2] = [
    DataFile {
        name: "sat.trn",
        sha256: "e896dc88a960fa2404160fc4c3cb3dc53fcf4afd80ba920bf2d261bd42d12613",
        url: "https://archive.ics.uci.edu/ml/machine-learning-databases/statlog/satimage/sat.trn",
    },
    DataFile {
        name: "sat.tst",
        sha256: "4b9167b8a92baafafed7c8809aef86d0683a5e685c19d98d119fa6974f0f2479",
        url: "https://archive.ics.uci.edu/ml/machine-learning-databases/statlog/satimage/sat.tst",
    },
];

const DIABETES_FILES: [DataFile; 1] = [DataFile {
    name: "diabetes.tab.txt",
    sha256: "4733febee697862c22139cdac87478a300ce0d101593deb07ed6c0f3328a99cd",
    url: "https://www4.stat.ncsu.edu/~boos/var.select/diabetes.tab.txt",
}];

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

impl DataFile {
    /// Whether the file is stored gzip-compressed (its checksum is of the decompressed data).
    pub fn is_gzip(&self) -> bool {
        self.name.ends_with(".gz")
    }

    /// The address to download the file from.
    pub fn download_url(&self) -> String {
        if self.url.ends_with('/') {
            format!("{}{}", self.url, self.name)
        } else {
            self.url.to_string()
        }
    }
}

/// How big a dataset is: [`DatasetName::size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetSize {
    /// Items in the training split (the whole file where there is no official split).
    pub train: usize,
    /// Items in the official test split, if there is one.
    pub test: Option<usize>,
    /// The shape of one item (`[channels, height, width]` for images).
    pub shape: &'static [usize],
}

/// Which form of a dataset was read, for a dataset that has more than one (CIFAR-10: the
/// official binary batches, or the JPEG re-encoding offline mirrors hold, whose pixels differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataForm {
    /// The official files.
    Official,
    /// CIFAR-10's JPEG re-encoding (`cifar10-jpeg`): lossy, so not the official pixels.
    JpegMirror,
}

impl DataForm {
    /// The form's part of a result key: `official` for the official CIFAR-10 batches, and
    /// nothing for the JPEG mirror, the form every stored CIFAR-10 result so far was made
    /// from (so their keys stay as they were), so that results of the two never mix.
    pub fn key(self) -> Option<&'static str> {
        match self {
            DataForm::Official => Some("official"),
            DataForm::JpegMirror => None,
        }
    }

    /// The form in words, for tables.
    pub fn describe(self) -> &'static str {
        match self {
            DataForm::Official => "the official binary batches",
            DataForm::JpegMirror => {
                "the JPEG re-encoding of the mirror (cifar10-jpeg; lossy, so its pixels are not \
                 the official ones)"
            }
        }
    }
}

/// A dataset's training and test parts (`test` is `None` where the dataset has no
/// published test split: iris and diabetes).
#[derive(Debug, Clone)]
pub struct DatasetParts {
    /// Training items.
    pub train: Samples,
    /// Test items, when the dataset defines them.
    pub test: Option<Samples>,
    /// Which form was read, for a dataset that has more than one (CIFAR-10).
    pub form: Option<DataForm>,
}

impl DatasetName {
    /// All six, in the order of the reports.
    pub const ALL: [DatasetName; 6] = [
        DatasetName::Iris,
        DatasetName::Statlog,
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Diabetes,
    ];

    /// The name users type.
    pub fn id(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Iris => "iris",
            DatasetName::Statlog => "statlog",
            DatasetName::Diabetes => "diabetes",
        }
    }

    /// Parses a name users type (a few aliases accepted).
    pub fn parse(text: &str) -> Result<Self> {
        let lower = text.to_ascii_lowercase();
        let found = match lower.as_str() {
            "mnist" => DatasetName::Mnist,
            "fashion-mnist" | "fashion" | "fashion_mnist" => DatasetName::FashionMnist,
            "cifar10" | "cifar-10" => DatasetName::Cifar10,
            "iris" => DatasetName::Iris,
            "statlog" | "statlog-satimage" | "satimage" => DatasetName::Statlog,
            "diabetes" => DatasetName::Diabetes,
            _ => {
                return Err(DataError::Invalid(format!(
                    "unknown dataset {text:?}; known: {}",
                    DatasetName::ALL.map(DatasetName::id).join(", ")
                )));
            }
        };
        Ok(found)
    }

    /// The folder holding the dataset, inside a data directory or a mirror.
    pub fn folder(self) -> &'static str {
        match self {
            DatasetName::Statlog => "statlog-satimage",
            other => other.id(),
        }
    }

    /// The files checked against published checksums (none for CIFAR-10, which comes as an
    /// archive).
    pub fn files(self) -> &'static [DataFile] {
        match self {
            DatasetName::Mnist => &MNIST_FILES,
            DatasetName::FashionMnist => &FASHION_FILES,
            DatasetName::Cifar10 => &[],
            DatasetName::Iris => &IRIS_FILES,
            DatasetName::Statlog => &STATLOG_FILES,
            DatasetName::Diabetes => &DIABETES_FILES,
        }
    }

    /// The number of training and test items and the shape of one item, as the official
    /// files hold them: for estimates made without the files (a test checks them against
    /// the loaded data).
    pub fn size(self) -> DatasetSize {
        let (train, test, shape): (usize, Option<usize>, &'static [usize]) = match self {
            DatasetName::Mnist | DatasetName::FashionMnist => (60_000, Some(10_000), &[1, 28, 28]),
            DatasetName::Cifar10 => (50_000, Some(10_000), &[3, 32, 32]),
            DatasetName::Iris => (150, None, &[4]),
            DatasetName::Statlog => (4_435, Some(2_000), &[36]),
            DatasetName::Diabetes => (442, None, &[10]),
        };
        DatasetSize { train, test, shape }
    }

    /// Whether the dataset is small enough to be committed in the repository's `datasets/`.
    pub fn is_committed(self) -> bool {
        matches!(
            self,
            DatasetName::Iris | DatasetName::Statlog | DatasetName::Diabetes
        )
    }

    /// The files (relative to the dataset folder) whose presence means the dataset can load.
    pub fn required_files(self) -> Vec<String> {
        match self {
            DatasetName::Cifar10 => Vec::new(),
            other => other.files().iter().map(|f| f.name.to_string()).collect(),
        }
    }

    /// Whether `folder` (this dataset's folder in some data directory) holds a loadable copy.
    pub fn is_present_in(self, folder: &Path) -> bool {
        match self {
            DatasetName::Cifar10 => {
                folder.join(CIFAR10_OFFICIAL.unpacks_to).is_dir()
                    || folder.join(CIFAR10_MIRROR.unpacks_to).is_dir()
            }
            other => other
                .files()
                .iter()
                .all(|f| present_file(&folder.join(f.name)).is_some()),
        }
    }

    /// Loads the dataset from its folder in a data directory. Pixels keep their raw values
    /// 0..=255; scale them with [`crate::FeatureScaler::pixels`].
    pub fn load_from(self, folder: &Path) -> Result<DatasetParts> {
        let file = |name: &str| -> Result<PathBuf> {
            let path = folder.join(name);
            present_file(&path).ok_or_else(|| {
                DataError::Missing(format!(
                    "{}: no such file (nor without .gz)",
                    path.display()
                ))
            })
        };
        match self {
            DatasetName::Mnist => load_idx_pairs(&file, ClassNames::numbered(10)),
            DatasetName::FashionMnist => load_idx_pairs(
                &file,
                ClassNames(FASHION_CLASSES.map(String::from).to_vec()),
            ),
            DatasetName::Cifar10 => load_cifar10(folder),
            // The documented classes: a label outside them (a typo such as
            // "Iris-setosaa") is an error naming its line, not a new class.
            DatasetName::Iris => Ok(DatasetParts {
                train: load_delimited(
                    &file("iris.data")?,
                    &DelimitedFormat::csv_class_last(),
                    Some(&names(&[
                        "Iris-setosa",
                        "Iris-versicolor",
                        "Iris-virginica",
                    ])),
                )?,
                test: None,
                form: None,
            }),
            DatasetName::Statlog => load_statlog(&file),
            DatasetName::Diabetes => {
                let format = DelimitedFormat {
                    separator: Separator::Tab,
                    header: true,
                    target: TargetColumn::Name("Y".into()),
                    kind: TargetKind::Value,
                };
                Ok(DatasetParts {
                    train: load_delimited(&file("diabetes.tab.txt")?, &format, None)?,
                    test: None,
                    form: None,
                })
            }
        }
    }
}

/// The MNIST-style IDX files (train and t10k images and labels) through `file`, which finds
/// each in the dataset's folder.
fn load_idx_pairs(
    file: &dyn Fn(&str) -> Result<PathBuf>,
    classes: ClassNames,
) -> Result<DatasetParts> {
    let train = load_idx_images(
        &file("train-images-idx3-ubyte.gz")?,
        &file("train-labels-idx1-ubyte.gz")?,
        classes.clone(),
    )?;
    let test = load_idx_images(
        &file("t10k-images-idx3-ubyte.gz")?,
        &file("t10k-labels-idx1-ubyte.gz")?,
        classes,
    )?;
    Ok(DatasetParts {
        train,
        test: Some(test),
        form: None,
    })
}

/// CIFAR-10 from its official binary batches where unpacked in `folder`, else from the JPEG
/// mirror's class folders.
fn load_cifar10(folder: &Path) -> Result<DatasetParts> {
    let binary = folder.join(CIFAR10_OFFICIAL.unpacks_to);
    if binary.is_dir() {
        let (train, test) = cifar::load_binary_dir(&binary)?;
        return Ok(DatasetParts {
            train,
            test: Some(test),
            form: Some(DataForm::Official),
        });
    }
    let jpeg = folder.join(CIFAR10_MIRROR.unpacks_to);
    let train = load_image_folder(&jpeg.join("train"), None, Channels::Rgb)?;
    let classes = train.targets.classes().cloned();
    let test = load_image_folder(&jpeg.join("test"), classes.as_ref(), Channels::Rgb)?;
    Ok(DatasetParts {
        train,
        test: Some(test),
        form: Some(DataForm::JpegMirror),
    })
}

/// Statlog (Landsat Satellite): whitespace-separated, the class last, its six documented
/// labels (there is no class 6).
fn load_statlog(file: &dyn Fn(&str) -> Result<PathBuf>) -> Result<DatasetParts> {
    let format = DelimitedFormat {
        separator: Separator::Whitespace,
        ..DelimitedFormat::csv_class_last()
    };
    let known = names(&["1", "2", "3", "4", "5", "7"]);
    let train = load_delimited(&file("sat.trn")?, &format, Some(&known))?;
    let classes = train.targets.classes().cloned();
    let test = load_delimited(&file("sat.tst")?, &format, classes.as_ref())?;
    Ok(DatasetParts {
        train,
        test: Some(test),
        form: None,
    })
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.id())
    }
}

impl std::str::FromStr for DatasetName {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        DatasetName::parse(s)
    }
}

/// Class names from text.
fn names(names: &[&str]) -> ClassNames {
    ClassNames(names.iter().map(|n| n.to_string()).collect())
}

/// `path` if it exists, else `path` without its `.gz` suffix if that exists (a user may keep
/// IDX files decompressed).
pub fn present_file(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    let name = path.file_name()?.to_str()?;
    let plain = path.with_file_name(name.strip_suffix(".gz")?);
    plain.is_file().then_some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases() {
        for name in DatasetName::ALL {
            assert_eq!(DatasetName::parse(name.id()).unwrap(), name);
        }
        assert_eq!(
            DatasetName::parse("satimage").unwrap(),
            DatasetName::Statlog
        );
        let err = DatasetName::parse("imagenet").unwrap_err().to_string();
        assert!(
            err.contains("unknown dataset") && err.contains("cifar10"),
            "{err}"
        );
    }

    #[test]
    fn urls_end_with_file_names() {
        assert_eq!(
            MNIST_FILES[0].download_url(),
            "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
        );
        assert!(STATLOG_FILES[1].download_url().ends_with("/sat.tst"));
    }

    #[test]
    fn a_label_typo_in_iris_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let rows = "5.1,3.5,1.4,0.2,Iris-setosa\n7.0,3.2,4.7,1.4,Iris-versicolor\n\
                    6.3,3.3,6.0,2.5,Iris-virginica\n5.0,3.6,1.4,0.2,Iris-setosaa\n";
        std::fs::write(dir.path().join("iris.data"), rows).unwrap();
        let err = DatasetName::Iris
            .load_from(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 4") && err.contains("Iris-setosaa"),
            "{err}"
        );
    }

    #[test]
    fn present_file_accepts_decompressed_copies() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a-ubyte"), b"x").unwrap();
        assert_eq!(
            present_file(&dir.path().join("a-ubyte.gz")),
            Some(dir.path().join("a-ubyte"))
        );
        assert_eq!(present_file(&dir.path().join("b.gz")), None);
    }
}
