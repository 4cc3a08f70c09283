//! IDX files (the MNIST format): a magic number giving the element type and the number of
//! dimensions, the dimensions as big-endian `u32`s, then the elements.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::io::read_maybe_gzip;
use crate::samples::{ClassNames, Samples, Targets};

/// Element type code of unsigned bytes, the only one MNIST-style files use.
const UBYTE: u8 = 0x08;

/// The content of an IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, the first being the item count.
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

/// Parses IDX bytes read from `path` (used only in messages).
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    if bytes.is_empty() {
        return Err(DataError::format(path, "file is empty"));
    }
    if bytes.len() < 4 {
        return Err(DataError::format(
            path,
            format!(
                "truncated: {} bytes, shorter than the 4-byte magic number",
                bytes.len()
            ),
        ));
    }
    let magic = &bytes[..4];
    if magic[0] != 0 || magic[1] != 0 || magic[3] == 0 {
        return Err(DataError::format(
            path,
            format!(
                "wrong magic number {:02x}{:02x}{:02x}{:02x} at byte 0: not an IDX file",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != UBYTE {
        return Err(DataError::format(
            path,
            format!(
                "element type 0x{:02x} in the magic number is not supported (only unsigned bytes, 0x08)",
                magic[2]
            ),
        ));
    }
    let ndims = magic[3] as usize;
    let header_len = 4 + 4 * ndims;
    if bytes.len() < header_len {
        return Err(DataError::format(
            path,
            format!(
                "truncated header: {ndims} dimensions need {header_len} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::format(path, format!("dimensions {dims:?} overflow")))?;
    let found = bytes.len() - header_len;
    if found != expected {
        let what = if found < expected {
            "truncated"
        } else {
            "too long"
        };
        return Err(DataError::format(
            path,
            format!(
                "{what}: header says {} items of shape {:?} ({expected} bytes of data after the \
                 {header_len}-byte header), the file has {found}",
                dims[0],
                &dims[1..]
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// Reads an IDX file, raw or gzip-compressed.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let bytes = read_maybe_gzip(path)?;
    parse_idx(path, &bytes)
}

/// Loads an image file and its label file (MNIST, Fashion-MNIST) as samples of shape
/// `[1, rows, cols]` with raw pixel values 0..=255, checking that the counts agree and that
/// every label names one of `classes`.
pub fn load_idx_images(images: &Path, labels: &Path, classes: ClassNames) -> Result<Samples> {
    let image_array = read_idx(images)?;
    if image_array.dims.len() != 3 {
        return Err(DataError::format(
            images,
            format!(
                "expected 3 dimensions (items, rows, columns), found {}",
                image_array.dims.len()
            ),
        ));
    }
    let label_array = read_idx(labels)?;
    if label_array.dims.len() != 1 {
        return Err(DataError::format(
            labels,
            format!(
                "expected 1 dimension (items), found {}",
                label_array.dims.len()
            ),
        ));
    }
    let (count, rows, cols) = (
        image_array.dims[0],
        image_array.dims[1],
        image_array.dims[2],
    );
    if label_array.dims[0] != count {
        return Err(DataError::format(
            labels,
            format!(
                "{} labels, but {} holds {count} images",
                label_array.dims[0],
                images.display()
            ),
        ));
    }
    let mut targets = Vec::with_capacity(count);
    for (i, &label) in label_array.data.iter().enumerate() {
        if label as usize >= classes.len() {
            return Err(DataError::format(
                labels,
                format!(
                    "label {label} of item {i} (byte {}) is not one of the {} classes",
                    8 + i,
                    classes.len()
                ),
            ));
        }
        targets.push(label as usize);
    }
    let features = image_array.data.iter().map(|&p| p as f32).collect();
    Samples::new(
        features,
        vec![1, rows, cols],
        Vec::new(),
        Targets::Classes {
            labels: targets,
            classes,
        },
    )
}

/// Encodes an array as IDX bytes (used to write test fixtures and by tools that export data).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, UBYTE, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn fixture(dir: &tempfile::TempDir, gz: bool) -> (std::path::PathBuf, std::path::PathBuf) {
        let pixels: Vec<u8> = (0..3 * 2 * 2).map(|v| v as u8 * 10).collect();
        let mut images = encode_idx(&[3, 2, 2], &pixels);
        let mut labels = encode_idx(&[3], &[2, 0, 1]);
        if gz {
            images = gzip(&images);
            labels = gzip(&labels);
        }
        (write(dir, "img", &images), write(dir, "lbl", &labels))
    }

    #[test]
    fn loads_raw_and_gzip_pairs() {
        let dir = tempfile::tempdir().unwrap();
        for gz in [false, true] {
            let (img, lbl) = fixture(&dir, gz);
            let s = load_idx_images(&img, &lbl, ClassNames::numbered(3)).unwrap();
            assert_eq!(s.len(), 3);
            assert_eq!(s.shape, [1, 2, 2]);
            assert_eq!(s.item(1), [40., 50., 60., 70.]);
            assert_eq!(s.targets.labels().unwrap(), [2, 0, 1]);
        }
    }

    #[test]
    fn rejects_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "empty", &[]);
        let err = read_idx(&p).unwrap_err().to_string();
        assert!(err.contains("empty") && err.contains("empty"), "{err}");
    }

    #[test]
    fn rejects_wrong_magic() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_idx(&[1], &[0]);
        bytes[0] = 8;
        let p = write(&dir, "bad", &bytes);
        let err = read_idx(&p).unwrap_err().to_string();
        assert!(
            err.contains("wrong magic number") && err.contains("bad"),
            "{err}"
        );
        let mut bytes = encode_idx(&[1], &[0]);
        bytes[2] = 0x0D;
        let p = write(&dir, "float", &bytes);
        assert!(read_idx(&p).unwrap_err().to_string().contains("0x0d"));
    }

    #[test]
    fn rejects_truncated_data_and_header() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode_idx(&[3, 2, 2], &[0; 12]);
        let p = write(&dir, "short", &bytes[..bytes.len() - 1]);
        let err = read_idx(&p).unwrap_err().to_string();
        assert!(
            err.contains("truncated") && err.contains("3 items"),
            "{err}"
        );
        let p = write(&dir, "header", &bytes[..9]);
        let err = read_idx(&p).unwrap_err().to_string();
        assert!(err.contains("truncated header"), "{err}");
        let p = write(&dir, "long", &[bytes.as_slice(), &[0]].concat());
        assert!(read_idx(&p).unwrap_err().to_string().contains("too long"));
    }

    #[test]
    fn rejects_truncated_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let gz = gzip(&encode_idx(&[100], &[1; 100]));
        let p = write(&dir, "cut.gz", &gz[..gz.len() / 2]);
        let err = read_idx(&p).unwrap_err().to_string();
        assert!(err.contains("gzip") && err.contains("cut.gz"), "{err}");
    }

    #[test]
    fn rejects_count_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let img = write(&dir, "img", &encode_idx(&[3, 1, 1], &[0; 3]));
        let lbl = write(&dir, "lbl", &encode_idx(&[2], &[0; 2]));
        let err = load_idx_images(&img, &lbl, ClassNames::numbered(3))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2 labels, but") && err.contains("3 images"),
            "{err}"
        );
    }

    #[test]
    fn rejects_label_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let img = write(&dir, "img", &encode_idx(&[2, 1, 1], &[0; 2]));
        let lbl = write(&dir, "lbl", &encode_idx(&[2], &[1, 9]));
        let err = load_idx_images(&img, &lbl, ClassNames::numbered(3))
            .unwrap_err()
            .to_string();
        assert!(err.contains("label 9 of item 1"), "{err}");
    }

    #[test]
    fn rejects_wrong_rank() {
        let dir = tempfile::tempdir().unwrap();
        let img = write(&dir, "img", &encode_idx(&[2], &[0; 2]));
        let lbl = write(&dir, "lbl", &encode_idx(&[2], &[0; 2]));
        let err = load_idx_images(&img, &lbl, ClassNames::numbered(3))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 3 dimensions"), "{err}");
    }
}
