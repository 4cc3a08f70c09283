//! CIFAR-10 in its official binary form: batch files of 3073-byte records (one label byte,
//! then 1024 red, 1024 green and 1024 blue pixel bytes) and `batches.meta.txt`, one class
//! name per line.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::samples::{ClassNames, Samples, Targets};

/// Side of a CIFAR image.
pub const SIDE: usize = 32;
/// Bytes of pixels in one record.
pub const PIXELS: usize = 3 * SIDE * SIDE;
/// Bytes in one record: the label byte and the pixels.
pub const RECORD: usize = 1 + PIXELS;

/// Training batch file names, in order.
pub const TRAIN_BATCHES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// Test batch file name.
pub const TEST_BATCH: &str = "test_batch.bin";
/// Class name file.
pub const META: &str = "batches.meta.txt";

/// Reads `batches.meta.txt`: one class name per non-blank line.
pub fn read_meta(path: &Path) -> Result<ClassNames> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Err(DataError::format(path, "no class names"));
    }
    if names.len() > 256 {
        return Err(DataError::format(
            path,
            format!(
                "{} class names; a label byte can name at most 256",
                names.len()
            ),
        ));
    }
    Ok(ClassNames(names))
}

/// Appends the records of one batch file to `features` and `labels`.
fn read_batch(
    path: &Path,
    classes: &ClassNames,
    features: &mut Vec<f32>,
    labels: &mut Vec<usize>,
) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.is_empty() {
        return Err(DataError::format(path, "file is empty"));
    }
    if bytes.len() % RECORD != 0 {
        return Err(DataError::format(
            path,
            format!(
                "length {} is not a multiple of the {RECORD}-byte record: truncated or not a \
                 CIFAR-10 batch ({} whole records, {} bytes left over)",
                bytes.len(),
                bytes.len() / RECORD,
                bytes.len() % RECORD
            ),
        ));
    }
    features.reserve(bytes.len() / RECORD * PIXELS);
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        let label = record[0] as usize;
        if label >= classes.len() {
            return Err(DataError::format(
                path,
                format!(
                    "label byte {label} of record {i} (byte {}) is out of range for {} classes",
                    i * RECORD,
                    classes.len()
                ),
            ));
        }
        labels.push(label);
        features.extend(record[1..].iter().map(|&p| p as f32));
    }
    Ok(())
}

/// Loads batch files as samples of shape `[3, 32, 32]` with raw pixel values 0..=255.
pub fn load_batches(paths: &[&Path], classes: &ClassNames) -> Result<Samples> {
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        read_batch(path, classes, &mut features, &mut labels)?;
    }
    Samples::new(
        features,
        vec![3, SIDE, SIDE],
        Vec::new(),
        Targets::Classes {
            labels,
            classes: classes.clone(),
        },
    )
}

/// Loads the official directory `cifar-10-batches-bin`: `(train, test)`.
pub fn load_binary_dir(dir: &Path) -> Result<(Samples, Samples)> {
    let classes = read_meta(&dir.join(META))?;
    let train_paths: Vec<_> = TRAIN_BATCHES.iter().map(|n| dir.join(n)).collect();
    let train_refs: Vec<&Path> = train_paths.iter().map(|p| p.as_path()).collect();
    let train = load_batches(&train_refs, &classes)?;
    let test = load_batches(&[&dir.join(TEST_BATCH)], &classes)?;
    Ok((train, test))
}

/// Encodes samples of shape `[3, 32, 32]` (pixel values 0..=255) as one batch file's bytes.
pub fn encode_batch(samples: &Samples) -> Vec<u8> {
    let labels = samples.targets.labels().unwrap_or(&[]);
    let mut out = Vec::with_capacity(samples.len() * RECORD);
    for (i, &label) in labels.iter().enumerate() {
        out.push(label as u8);
        out.extend(samples.item(i).iter().map(|&p| p.clamp(0.0, 255.0) as u8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(fill, PIXELS));
        r
    }

    fn classes() -> ClassNames {
        ClassNames(
            ["airplane", "automobile", "bird"]
                .map(String::from)
                .to_vec(),
        )
    }

    #[test]
    fn loads_records_and_planes() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = record(2, 0);
        bytes[1] = 255; // first red pixel
        bytes[1 + 1024] = 7; // first green pixel
        bytes.extend(record(0, 9));
        let path = dir.path().join("b.bin");
        std::fs::write(&path, &bytes).unwrap();
        let s = load_batches(&[&path], &classes()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.shape, [3, 32, 32]);
        assert_eq!(s.targets.labels().unwrap(), [2, 0]);
        assert_eq!(s.item(0)[0], 255.);
        assert_eq!(s.item(0)[1024], 7.);
        assert_eq!(s.item(1)[3071], 9.);
        // Round trip through the encoder.
        assert_eq!(encode_batch(&s), bytes);
    }

    #[test]
    fn loads_a_binary_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(META), "airplane\nautomobile\nbird\n\n").unwrap();
        for (i, name) in TRAIN_BATCHES.iter().enumerate() {
            std::fs::write(dir.path().join(name), record(i as u8 % 3, i as u8)).unwrap();
        }
        std::fs::write(
            dir.path().join(TEST_BATCH),
            [record(1, 1), record(2, 2)].concat(),
        )
        .unwrap();
        let (train, test) = load_binary_dir(dir.path()).unwrap();
        assert_eq!((train.len(), test.len()), (5, 2));
        assert_eq!(train.targets.labels().unwrap(), [0, 1, 2, 0, 1]);
        assert_eq!(train.targets.classes().unwrap(), &classes());
    }

    #[test]
    fn rejects_length_not_multiple_of_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.bin");
        let bytes = [record(0, 0), record(1, 0)].concat();
        std::fs::write(&path, &bytes[..RECORD + 100]).unwrap();
        let err = load_batches(&[&path], &classes()).unwrap_err().to_string();
        assert!(
            err.contains("cut.bin") && err.contains("not a multiple of the 3073"),
            "{err}"
        );
        assert!(err.contains("100 bytes left over"), "{err}");
    }

    #[test]
    fn rejects_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.bin");
        std::fs::write(&path, []).unwrap();
        let err = load_batches(&[&path], &classes()).unwrap_err().to_string();
        assert!(err.contains("empty.bin: file is empty"), "{err}");
    }

    #[test]
    fn rejects_label_byte_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.bin");
        std::fs::write(&path, [record(1, 0), record(3, 0)].concat()).unwrap();
        let err = load_batches(&[&path], &classes()).unwrap_err().to_string();
        assert!(err.contains("label byte 3 of record 1"), "{err}");
        assert!(err.contains(&format!("byte {RECORD}")), "{err}");
    }

    #[test]
    fn rejects_missing_file_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_binary_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains(META), "{err}");
    }
}
