//! Image folders laid out as `<split>/<class>/<file>` (the layout of Keras'
//! `image_dataset_from_directory` and of the CIFAR-10 JPEG copy), decoded with `image`.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::samples::{ClassNames, Samples, Targets};

/// Colour channels to decode images into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// One grey channel.
    Grey,
    /// Red, green and blue planes.
    Rgb,
}

impl Channels {
    /// Number of planes.
    pub fn count(self) -> usize {
        match self {
            Channels::Grey => 1,
            Channels::Rgb => 3,
        }
    }
}

/// Decodes one image file into channel-first planes of raw values 0..=255, returning
/// `(width, height, planes)`.
pub fn decode_image(path: &Path, channels: Channels) -> Result<(u32, u32, Vec<f32>)> {
    let image = image::open(path)
        .map_err(|e| DataError::format(path, format!("cannot decode image: {e}")))?;
    Ok(planes_of(image, channels))
}

/// Decodes one image file of `width x height`. An image of another size is an error naming
/// both sizes, unless `resize` is set: then it is resized (bilinear, aspect ratio not kept),
/// a user's own picture made to look like a dataset's items.
pub fn decode_image_resized(
    path: &Path,
    channels: Channels,
    width: u32,
    height: u32,
    resize: bool,
) -> Result<Vec<f32>> {
    let image = image::open(path)
        .map_err(|e| DataError::format(path, format!("cannot decode image: {e}")))?;
    let image = if (image.width(), image.height()) == (width, height) {
        image
    } else if resize {
        image.resize_exact(width, height, image::imageops::FilterType::Triangle)
    } else {
        return Err(DataError::format(
            path,
            format!(
                "the image is {}x{} (width x height), the model takes {width}x{height}: pass \
                 --resize to resize it",
                image.width(),
                image.height()
            ),
        ));
    };
    Ok(planes_of(image, channels).2)
}

/// Grey for an image file with one (or grey and alpha) channel, RGB otherwise.
pub fn channels_of(path: &Path) -> Result<Channels> {
    let image = image::open(path)
        .map_err(|e| DataError::format(path, format!("cannot decode image: {e}")))?;
    Ok(if image.color().has_color() {
        Channels::Rgb
    } else {
        Channels::Grey
    })
}

/// The first image file under `dir/<class>/` (sorted), to learn a folder's size and colour.
pub fn first_image(dir: &Path) -> Result<PathBuf> {
    for class in sorted_entries(dir, true)? {
        if let Some(file) = sorted_entries(&class, false)?.into_iter().next() {
            return Ok(file);
        }
    }
    Err(DataError::format(
        dir,
        "no image files: expected <folder>/<class>/<image files>",
    ))
}

fn planes_of(image: image::DynamicImage, channels: Channels) -> (u32, u32, Vec<f32>) {
    let (w, h) = (image.width(), image.height());
    let plane = (w * h) as usize;
    let planes = match channels {
        Channels::Grey => image
            .to_luma8()
            .into_raw()
            .into_iter()
            .map(f32::from)
            .collect(),
        Channels::Rgb => {
            let rgb = image.to_rgb8().into_raw();
            let mut planes = vec![0f32; 3 * plane];
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    planes[c * plane + i] = px[c] as f32;
                }
            }
            planes
        }
    };
    (w, h, planes)
}

fn sorted_entries(dir: &Path, want_dirs: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() == want_dirs {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Loads every image under `split_dir/<class>/`, classes in sorted order (or in the order of
/// `classes`, which a test split must share with its training split). Every image must have
/// the size of the first one; `channels` picks grey or RGB decoding.
pub fn load_image_folder(
    split_dir: &Path,
    classes: Option<&ClassNames>,
    channels: Channels,
) -> Result<Samples> {
    load_image_folder_sized(split_dir, classes, channels, None)
}

/// The image files under `split_dir`'s class folders, each with its class index, and the
/// classes: `classes` when given (a folder of another name is an error), else the folders'
/// names in order.
fn class_files(
    split_dir: &Path,
    classes: Option<&ClassNames>,
) -> Result<(Vec<(PathBuf, usize)>, ClassNames)> {
    let class_dirs = sorted_entries(split_dir, true)?;
    if class_dirs.is_empty() {
        return Err(DataError::format(
            split_dir,
            "no class folders: expected <split>/<class>/<image files>",
        ));
    }
    let found = ClassNames(
        class_dirs
            .iter()
            .map(|d| {
                d.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
    );
    let classes = match classes {
        Some(known) => {
            if let Some(odd) = found.0.iter().find(|c| known.index_of(c).is_none()) {
                return Err(DataError::format(
                    split_dir.join(odd),
                    format!(
                        "unknown class folder; known classes: {}",
                        known.0.join(", ")
                    ),
                ));
            }
            known.clone()
        }
        None => found,
    };

    let mut files: Vec<(PathBuf, usize)> = Vec::new();
    for dir in &class_dirs {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let label = classes.index_of(&name).unwrap_or_default();
        for file in sorted_entries(dir, false)? {
            files.push((file, label));
        }
    }
    if files.is_empty() {
        return Err(DataError::format(
            split_dir,
            "no image files in any class folder",
        ));
    }

    Ok((files, classes))
}

/// As [`load_image_folder`], with `size`: `None` requires every image to have the first
/// one's size (an error naming both sizes otherwise); `Some((width, height))` resizes every
/// image of another size to it (bilinear, aspect ratio not kept).
pub fn load_image_folder_sized(
    split_dir: &Path,
    classes: Option<&ClassNames>,
    channels: Channels,
    size: Option<(u32, u32)>,
) -> Result<Samples> {
    let (files, classes) = class_files(split_dir, classes)?;
    let (w0, h0) = match size {
        Some(size) => size,
        None => {
            let (w, h, _) = decode_image(&files[0].0, channels)?;
            (w, h)
        }
    };
    let decoded: Vec<Vec<f32>> = files
        .par_iter()
        .map(|(path, _)| decode_image_resized(path, channels, w0, h0, size.is_some()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| match e {
            DataError::Format { path, message } if message.contains("--resize") => {
                let (w, h) = image::image_dimensions(&path).unwrap_or_default();
                DataError::format(
                    &path,
                    format!(
                        "image is {w}x{h}, but {} is {w0}x{h0}: all images must have one size \
                         (pass --resize to resize them to the first one's)",
                        files[0].0.display()
                    ),
                )
            }
            other => other,
        })?;
    let mut features = Vec::with_capacity(decoded.len() * decoded[0].len());
    for planes in decoded {
        features.extend(planes);
    }
    Samples::new(
        features,
        vec![channels.count(), h0 as usize, w0 as usize],
        Vec::new(),
        Targets::Classes {
            labels: files.iter().map(|(_, l)| *l).collect(),
            classes,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
            .save(path)
            .unwrap();
    }

    #[test]
    fn loads_classes_in_sorted_order_channel_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("train");
        save(&root.join("cat/1.png"), 2, 3, [10, 20, 30]);
        save(&root.join("airplane/1.png"), 2, 3, [1, 2, 3]);
        save(&root.join("airplane/2.png"), 2, 3, [4, 5, 6]);
        let s = load_image_folder(&root, None, Channels::Rgb).unwrap();
        assert_eq!(s.shape, [3, 3, 2]);
        assert_eq!(s.targets.classes().unwrap().0, ["airplane", "cat"]);
        assert_eq!(s.targets.labels().unwrap(), [0, 0, 1]);
        assert_eq!(&s.item(2)[..6], [10.; 6]);
        assert_eq!(&s.item(2)[6..12], [20.; 6]);
        let grey = load_image_folder(&root, None, Channels::Grey).unwrap();
        assert_eq!(grey.shape, [1, 3, 2]);
    }

    #[test]
    fn rejects_mixed_sizes_naming_the_odd_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("train");
        save(&root.join("a/1.png"), 4, 4, [0, 0, 0]);
        save(&root.join("b/odd.png"), 5, 4, [0, 0, 0]);
        let err = load_image_folder(&root, None, Channels::Rgb)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("odd.png") && err.contains("5x4") && err.contains("4x4"),
            "{err}"
        );
        let resized = load_image_folder_sized(&root, None, Channels::Grey, Some((4, 4))).unwrap();
        assert_eq!(resized.shape, [1, 4, 4]);
        assert_eq!(resized.len(), 2);
        assert_eq!(first_image(&root).unwrap(), root.join("a/1.png"));
        assert_eq!(channels_of(&root.join("a/1.png")).unwrap(), Channels::Rgb);
    }

    #[test]
    fn rejects_unreadable_image_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("train");
        save(&root.join("a/1.png"), 4, 4, [0, 0, 0]);
        std::fs::write(root.join("a/2.jpg"), b"not a jpeg").unwrap();
        let err = load_image_folder(&root, None, Channels::Rgb)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2.jpg") && err.contains("cannot decode"),
            "{err}"
        );
    }

    #[test]
    fn rejects_unknown_class_folder_and_empty_split() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("test");
        save(&root.join("zebra/1.png"), 1, 1, [0, 0, 0]);
        let known = ClassNames(vec!["cat".into()]);
        let err = load_image_folder(&root, Some(&known), Channels::Rgb)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("zebra") && err.contains("unknown class"),
            "{err}"
        );
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let err = load_image_folder(&empty, None, Channels::Rgb)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no class folders"), "{err}");
    }
}
