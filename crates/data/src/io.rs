//! Reading files, transparently decompressing gzip, with errors that name the file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, Result};

/// The two bytes every gzip stream starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens a file as a stream, decompressed on the fly if it is gzip (whatever its name);
/// the flag says whether it was.
pub fn open_maybe_gzip(path: &Path) -> Result<(Box<dyn Read>, bool)> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let is_gzip = reader
        .fill_buf()
        .map_err(|e| DataError::io(path, e))?
        .starts_with(&GZIP_MAGIC);
    let stream: Box<dyn Read> = if is_gzip {
        Box::new(MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    Ok((stream, is_gzip))
}

/// Reads a file into memory, decompressing it first if it is gzip (whatever its name).
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let (mut stream, is_gzip) = open_maybe_gzip(path)?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).map_err(|e| {
        if is_gzip {
            DataError::format(path, format!("corrupt or truncated gzip data: {e}"))
        } else {
            DataError::io(path, e)
        }
    })?;
    Ok(out)
}
