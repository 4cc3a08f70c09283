//! Fetching datasets from their official addresses or from a mirror, verifying them by
//! SHA-256, and writing them atomically: a file appears under its final name only once it is
//! complete and verified, so a failed or interrupted fetch leaves no half file behind.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::catalog::{
    Archive, CIFAR10_MIRROR, CIFAR10_OFFICIAL, DataFile, DatasetName, present_file,
};
use crate::error::{DataError, Result};
use crate::io::open_maybe_gzip;

/// Prefix of the temporary files and folders a fetch writes before moving them into place.
const PARTIAL: &str = ".partial-";

/// Where to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchSource {
    /// The datasets' official download addresses.
    Official,
    /// A local folder laid out like `../shared/datasets` (`<dataset folder>/<file>`).
    MirrorDir(PathBuf),
    /// An HTTP(S) base address laid out like `../shared/datasets`.
    MirrorUrl(String),
}

/// What a fetch did for one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Everything was there already and verified.
    AlreadyPresent,
    /// This many files (or archives) were fetched and verified.
    Fetched(usize),
}

/// SHA-256 of everything `reader` yields, as lowercase hex.
pub fn sha256_hex(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// SHA-256 of a file's content, decompressed first if it is gzip.
pub fn file_sha256(path: &Path) -> Result<String> {
    let (stream, _) = open_maybe_gzip(path)?;
    sha256_hex(stream)
        .map_err(|e| DataError::format(path, format!("cannot read for checksum: {e}")))
}

/// Checks `path` against a published checksum.
pub fn verify(path: &Path, expected: &str) -> Result<()> {
    let found = file_sha256(path)?;
    if found == expected {
        Ok(())
    } else {
        Err(DataError::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            found,
        })
    }
}

/// Name of the manifest written beside an unpacked archive folder.
pub fn manifest_name(unpacked: &str) -> String {
    format!("{unpacked}.sha256")
}

/// Writes `<sha256>  <relative path>` lines for every file under `root`, sorted.
fn manifest_of(root: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect_files(root, &mut files)?;
    files.sort();
    let mut out = String::new();
    for file in files {
        let digest = sha256_hex(BufReader::new(
            File::open(&file).map_err(|e| DataError::io(&file, e))?,
        ))
        .map_err(|e| DataError::io(&file, e))?;
        let rel = file.strip_prefix(root).unwrap_or(&file);
        out.push_str(&format!("{digest}  {}\n", rel.display()));
    }
    Ok(out)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Checks the files of an unpacked archive against the manifest written when it was
/// unpacked from a verified archive; returns the number of files checked.
pub fn verify_manifest(folder: &Path, unpacked: &str) -> Result<usize> {
    let manifest_path = folder.join(manifest_name(unpacked));
    let expected =
        std::fs::read_to_string(&manifest_path).map_err(|e| DataError::io(&manifest_path, e))?;
    let found = manifest_of(&folder.join(unpacked))?;
    if expected != found {
        let first_bad = expected
            .lines()
            .zip(found.lines())
            .find(|(a, b)| a != b)
            .map(|(a, _)| a.split_whitespace().last().unwrap_or("").to_string())
            .unwrap_or_else(|| "a file was added or removed".into());
        return Err(DataError::format(
            folder.join(unpacked),
            format!(
                "content differs from {}: {first_bad}",
                manifest_path.display()
            ),
        ));
    }
    Ok(expected.lines().count())
}

/// Removes temporary files left by an interrupted fetch.
fn remove_partials(folder: &Path) {
    if let Ok(entries) = std::fs::read_dir(folder) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(PARTIAL) {
                let path = entry.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
    }
}

fn byte_bar(show: bool, len: Option<u64>, message: String) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:32} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// Opens one source file, returning a reader, its length if known and a description for
/// messages.
fn open_source(
    source: &FetchSource,
    folder: &str,
    name: &str,
    official_url: &str,
) -> Result<(Box<dyn Read>, Option<u64>, String)> {
    match source {
        FetchSource::MirrorDir(root) => {
            let path = root.join(folder).join(name);
            let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
            let len = file.metadata().ok().map(|m| m.len());
            Ok((
                Box::new(BufReader::new(file)),
                len,
                path.display().to_string(),
            ))
        }
        FetchSource::MirrorUrl(base) => {
            let url = format!("{}/{folder}/{name}", base.trim_end_matches('/'));
            http_get(&url)
        }
        FetchSource::Official => http_get(official_url),
    }
}

fn http_get(url: &str) -> Result<(Box<dyn Read>, Option<u64>, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| DataError::Download {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    let len = response.body().content_length();
    let reader = response.into_body().into_reader();
    Ok((Box::new(reader), len, url.to_string()))
}

/// Copies `reader` into a new temporary file in `folder`, with a progress bar.
fn download_to_temp(
    mut reader: Box<dyn Read>,
    len: Option<u64>,
    what: &str,
    folder: &Path,
    progress: bool,
) -> Result<NamedTempFile> {
    let mut temp = tempfile::Builder::new()
        .prefix(PARTIAL)
        .tempfile_in(folder)
        .map_err(|e| DataError::io(folder, e))?;
    let bar = byte_bar(progress, len, short(what));
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| DataError::Download {
            url: what.to_string(),
            message: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        temp.write_all(&buf[..n])
            .map_err(|e| DataError::io(temp.path(), e))?;
        bar.inc(n as u64);
    }
    temp.flush().map_err(|e| DataError::io(temp.path(), e))?;
    bar.finish_and_clear();
    if let Some(expected) = len {
        let written = temp.as_file().metadata().map(|m| m.len()).unwrap_or(0);
        if written != expected {
            return Err(DataError::Download {
                url: what.to_string(),
                message: format!("received {written} of {expected} bytes"),
            });
        }
    }
    Ok(temp)
}

fn short(what: &str) -> String {
    what.rsplit('/').next().unwrap_or(what).to_string()
}

fn fetch_file(
    file: &DataFile,
    folder_name: &str,
    folder: &Path,
    source: &FetchSource,
    progress: bool,
) -> Result<bool> {
    let dest = folder.join(file.name);
    if let Some(existing) = present_file(&dest)
        && verify(&existing, file.sha256).is_ok()
    {
        return Ok(false);
    }
    let wanted = Wanted {
        folder_name,
        name: file.name,
        url: &file.download_url(),
        sha256: file.sha256,
        // Published checksums of .gz files are of their decompressed payload.
        decompressed: true,
    };
    let temp = fetch_verified(&wanted, source, folder, progress)?;
    temp.persist(&dest)
        .map_err(|e| DataError::io(&dest, e.error))?;
    Ok(true)
}

/// Unpacks a verified `.tar.gz` or `.tar.xz` into `folder`, moving its top folder into place
/// only once everything is out, and writes the manifest of what it unpacked.
pub fn unpack_archive(
    archive_path: &Path,
    archive: &Archive,
    folder: &Path,
    progress: bool,
) -> Result<()> {
    let file = File::open(archive_path).map_err(|e| DataError::io(archive_path, e))?;
    let reader: Box<dyn Read> = if archive.name.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(GzDecoder::new(BufReader::new(file)))
    };
    let staging = tempfile::Builder::new()
        .prefix(PARTIAL)
        .tempdir_in(folder)
        .map_err(|e| DataError::io(folder, e))?;
    let bar = if progress {
        let bar = ProgressBar::new_spinner();
        bar.set_message(format!("unpacking {}", archive.name));
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut tar = tar::Archive::new(reader);
    let entries = tar
        .entries()
        .map_err(|e| DataError::format(archive_path, format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| DataError::format(archive_path, format!("corrupt archive: {e}")))?;
        entry
            .unpack_in(staging.path())
            .map_err(|e| DataError::format(archive_path, format!("cannot unpack: {e}")))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let unpacked = staging.path().join(archive.unpacks_to);
    if !unpacked.is_dir() {
        return Err(DataError::format(
            archive_path,
            format!("the archive has no top folder {}", archive.unpacks_to),
        ));
    }
    let manifest = manifest_of(&unpacked)?;
    let mut manifest_file = tempfile::Builder::new()
        .prefix(PARTIAL)
        .tempfile_in(folder)
        .map_err(|e| DataError::io(folder, e))?;
    manifest_file
        .write_all(manifest.as_bytes())
        .map_err(|e| DataError::io(manifest_file.path(), e))?;
    let target = folder.join(archive.unpacks_to);
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| DataError::io(&target, e))?;
    }
    std::fs::rename(&unpacked, &target).map_err(|e| DataError::io(&target, e))?;
    let manifest_path = folder.join(manifest_name(archive.unpacks_to));
    manifest_file
        .persist(&manifest_path)
        .map_err(|e| DataError::io(&manifest_path, e.error))?;
    Ok(())
}

/// One file to fetch and how to check it.
struct Wanted<'a> {
    /// The dataset's folder name (in a mirror).
    folder_name: &'a str,
    /// The file's name.
    name: &'a str,
    /// Its official address.
    url: &'a str,
    /// Its published SHA-256.
    sha256: &'a str,
    /// Whether the checksum is of the decompressed content (gzip files) rather than of the
    /// file itself (archives).
    decompressed: bool,
}

/// Downloads or copies `wanted` into a temporary file in `folder` and checks its checksum;
/// on a mismatch the temporary file is removed.
fn fetch_verified(
    wanted: &Wanted,
    source: &FetchSource,
    folder: &Path,
    progress: bool,
) -> Result<NamedTempFile> {
    let (reader, len, what) = open_source(source, wanted.folder_name, wanted.name, wanted.url)?;
    let temp = download_to_temp(reader, len, &what, folder, progress)?;
    let found = if wanted.decompressed {
        file_sha256(temp.path())?
    } else {
        let file = File::open(temp.path()).map_err(|e| DataError::io(temp.path(), e))?;
        sha256_hex(BufReader::new(file)).map_err(|e| DataError::io(temp.path(), e))?
    };
    if found != wanted.sha256 {
        return Err(DataError::Checksum {
            path: PathBuf::from(what),
            expected: wanted.sha256.to_string(),
            found,
        });
    }
    Ok(temp)
}

/// Fetches `archive` (a file of the mirror folder `folder_name`, or its official address),
/// checks the archive's own SHA-256, and unpacks it into `folder`.
pub fn fetch_archive(
    archive: &Archive,
    folder_name: &str,
    folder: &Path,
    source: &FetchSource,
    progress: bool,
) -> Result<()> {
    let wanted = Wanted {
        folder_name,
        name: archive.name,
        url: archive.url,
        sha256: archive.sha256,
        decompressed: false,
    };
    let temp = fetch_verified(&wanted, source, folder, progress)?;
    unpack_archive(temp.path(), archive, folder, progress)
}

fn fetch_cifar10(folder: &Path, source: &FetchSource, progress: bool) -> Result<bool> {
    for archive in [CIFAR10_OFFICIAL, CIFAR10_MIRROR] {
        if folder.join(archive.unpacks_to).is_dir()
            && verify_manifest(folder, archive.unpacks_to).is_ok()
        {
            return Ok(false);
        }
    }
    let archive = match source {
        FetchSource::Official => CIFAR10_OFFICIAL,
        FetchSource::MirrorDir(root) => {
            let dir = root.join(DatasetName::Cifar10.folder());
            if dir.join(CIFAR10_MIRROR.name).is_file() {
                CIFAR10_MIRROR
            } else {
                CIFAR10_OFFICIAL
            }
        }
        FetchSource::MirrorUrl(_) => CIFAR10_MIRROR,
    };
    fetch_archive(
        &archive,
        DatasetName::Cifar10.folder(),
        folder,
        source,
        progress,
    )?;
    Ok(true)
}

/// Fetches one dataset into `data_dir/<its folder>`, skipping files that are already there
/// and verified.
pub fn fetch_dataset(
    name: DatasetName,
    data_dir: &Path,
    source: &FetchSource,
    progress: bool,
) -> Result<FetchOutcome> {
    let folder = data_dir.join(name.folder());
    std::fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
    remove_partials(&folder);
    let mut fetched = 0;
    if name == DatasetName::Cifar10 {
        fetched += fetch_cifar10(&folder, source, progress)? as usize;
    } else {
        for file in name.files() {
            fetched += fetch_file(file, name.folder(), &folder, source, progress)? as usize;
        }
    }
    Ok(if fetched == 0 {
        FetchOutcome::AlreadyPresent
    } else {
        FetchOutcome::Fetched(fetched)
    })
}

/// Verifies a present dataset folder: published checksums for plain files, the unpacking
/// manifest for CIFAR-10. Returns the number of files checked.
pub fn verify_dataset(name: DatasetName, folder: &Path) -> Result<usize> {
    if name == DatasetName::Cifar10 {
        for archive in [CIFAR10_OFFICIAL, CIFAR10_MIRROR] {
            if folder.join(archive.unpacks_to).is_dir() {
                return verify_manifest(folder, archive.unpacks_to);
            }
        }
        return Err(DataError::Missing(format!(
            "{}: no unpacked CIFAR-10",
            folder.display()
        )));
    }
    for file in name.files() {
        let path = present_file(&folder.join(file.name)).ok_or_else(|| {
            DataError::Missing(format!("{}: missing", folder.join(file.name).display()))
        })?;
        verify(&path, file.sha256)?;
    }
    Ok(name.files().len())
}
