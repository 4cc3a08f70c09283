//! Fetching: from a mirror folder and over HTTP (a server on the loopback address, never the
//! internet), with checksum verification and no half files left behind.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread;

use data::catalog::{Archive, DatasetName};
use data::fetch::{fetch_archive, sha256_hex, unpack_archive, verify_manifest};
use data::{FetchOutcome, FetchSource, fetch_dataset, verify_dataset};

fn committed_iris() -> Vec<u8> {
    let path = data::locate::repository_datasets().join("iris/iris.data");
    std::fs::read(path).expect("the repository's datasets/iris/iris.data is committed")
}

/// Serves `responses` (raw HTTP bytes), one per connection, on a loopback port.
fn serve(responses: Vec<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for response in responses {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(&response);
        }
    });
    format!("http://{address}")
}

fn ok_response(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn fetches_from_a_mirror_folder_then_skips_verified_files() {
    let mirror = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(mirror.path().join("iris")).unwrap();
    std::fs::write(mirror.path().join("iris/iris.data"), committed_iris()).unwrap();
    let target = tempfile::tempdir().unwrap();
    let source = FetchSource::MirrorDir(mirror.path().to_path_buf());

    let outcome = fetch_dataset(DatasetName::Iris, target.path(), &source, false).unwrap();
    assert_eq!(outcome, FetchOutcome::Fetched(1));
    assert_eq!(
        verify_dataset(DatasetName::Iris, &target.path().join("iris")).unwrap(),
        1
    );
    let again = fetch_dataset(DatasetName::Iris, target.path(), &source, false).unwrap();
    assert_eq!(again, FetchOutcome::AlreadyPresent);
}

#[test]
fn fetches_over_http_and_verifies() {
    let url = serve(vec![ok_response(&committed_iris())]);
    let target = tempfile::tempdir().unwrap();
    let outcome = fetch_dataset(
        DatasetName::Iris,
        target.path(),
        &FetchSource::MirrorUrl(url),
        false,
    )
    .unwrap();
    assert_eq!(outcome, FetchOutcome::Fetched(1));
    assert_eq!(names_in(&target.path().join("iris")), ["iris.data"]);
}

#[test]
fn checksum_mismatch_leaves_no_file() {
    let mut bad = committed_iris();
    bad[0] ^= 1;
    let url = serve(vec![ok_response(&bad)]);
    let target = tempfile::tempdir().unwrap();
    let err = fetch_dataset(
        DatasetName::Iris,
        target.path(),
        &FetchSource::MirrorUrl(url),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("SHA-256 mismatch") && err.contains("iris.data"),
        "{err}"
    );
    assert!(names_in(&target.path().join("iris")).is_empty());
}

#[test]
fn interrupted_download_leaves_no_file() {
    let body = committed_iris();
    let mut cut = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    cut.extend_from_slice(&body[..body.len() / 2]);
    let url = serve(vec![cut]);
    let target = tempfile::tempdir().unwrap();
    let result = fetch_dataset(
        DatasetName::Iris,
        target.path(),
        &FetchSource::MirrorUrl(url),
        false,
    );
    assert!(result.is_err());
    assert!(names_in(&target.path().join("iris")).is_empty());
}

#[test]
fn http_error_status_names_the_url() {
    let url = serve(vec![
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    ]);
    let target = tempfile::tempdir().unwrap();
    let err = fetch_dataset(
        DatasetName::Iris,
        target.path(),
        &FetchSource::MirrorUrl(url.clone()),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("{url}/iris/iris.data")) && err.contains("404"),
        "{err}"
    );
}

#[test]
fn missing_mirror_file_is_named() {
    let mirror = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let err = fetch_dataset(
        DatasetName::Statlog,
        target.path(),
        &FetchSource::MirrorDir(mirror.path().to_path_buf()),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("statlog-satimage/sat.trn"), "{err}");
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for (name, content) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *content).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn unpacks_archives_atomically_with_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let archive_path: PathBuf = dir.path().join("a.tar.gz");
    std::fs::write(
        &archive_path,
        tar_gz(&[("top/x/1.bin", b"one"), ("top/2.bin", b"two")]),
    )
    .unwrap();
    let archive = Archive {
        name: "a.tar.gz",
        sha256: "",
        url: "",
        unpacks_to: "top",
    };
    let folder = dir.path().join("out");
    std::fs::create_dir_all(&folder).unwrap();
    unpack_archive(&archive_path, &archive, &folder, false).unwrap();
    assert_eq!(names_in(&folder), ["top", "top.sha256"]);
    assert_eq!(verify_manifest(&folder, "top").unwrap(), 2);
    std::fs::write(folder.join("top/2.bin"), b"changed").unwrap();
    let err = verify_manifest(&folder, "top").unwrap_err().to_string();
    assert!(err.contains("2.bin"), "{err}");

    let wrong = Archive {
        unpacks_to: "elsewhere",
        ..archive
    };
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let err = unpack_archive(&archive_path, &wrong, &other, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no top folder elsewhere"), "{err}");
    assert!(names_in(&other).is_empty(), "{:?}", names_in(&other));
}

#[test]
fn tar_gz_archives_are_checked_by_their_own_checksum() {
    // The official CIFAR-10 archive is a .tar.gz whose published SHA-256 is of the
    // compressed file, not of the tar inside.
    let bytes = tar_gz(&[("top/data_batch_1.bin", b"records")]);
    let sha = sha256_hex(bytes.as_slice()).unwrap();
    let archive = Archive {
        name: "a.tar.gz",
        sha256: Box::leak(sha.into_boxed_str()),
        url: "",
        unpacks_to: "top",
    };
    let url = serve(vec![ok_response(&bytes)]);
    let folder = tempfile::tempdir().unwrap();
    fetch_archive(
        &archive,
        "cifar10",
        folder.path(),
        &FetchSource::MirrorUrl(url),
        false,
    )
    .unwrap();
    assert_eq!(names_in(folder.path()), ["top", "top.sha256"]);

    let wrong = Archive {
        sha256: "0000",
        unpacks_to: "elsewhere",
        ..archive
    };
    let url = serve(vec![ok_response(&bytes)]);
    let other = tempfile::tempdir().unwrap();
    let err = fetch_archive(
        &wrong,
        "cifar10",
        other.path(),
        &FetchSource::MirrorUrl(url),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("SHA-256 mismatch") && err.contains("cifar10/a.tar.gz"),
        "{err}"
    );
    assert!(names_in(other.path()).is_empty());
}
