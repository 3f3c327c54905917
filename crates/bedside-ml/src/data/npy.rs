//! NumPy `.npy` reader (format versions 1–3, little-endian, C order).

use std::path::{Path, PathBuf};

/// Errors reading a `.npy` file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a `.npy` array this reader supports.
    #[error("{path} is not a supported .npy array: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// An array read from `.npy`, converted to `f32` (exact for the integer types written by
/// `bedside curate`).
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Shape in C order.
    pub shape: Vec<usize>,
    /// Elements in C order.
    pub data: Vec<f32>,
}

/// Read a `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_npy(&bytes).map_err(|message| NpyError::Format {
        path: path.to_path_buf(),
        message,
    })
}

fn header_value<'a>(header: &'a str, key: &str) -> Result<&'a str, String> {
    let pattern = format!("'{key}':");
    let start = header
        .find(&pattern)
        .ok_or_else(|| format!("header lacks '{key}'"))?
        + pattern.len();
    Ok(header[start..].trim_start())
}

/// What a `.npy` header says: element type, shape, and where the elements start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NpyHeader {
    /// The `descr` dtype string (`<u2`, `|u1`, …), one this reader supports.
    pub descr: String,
    /// Shape in C order.
    pub shape: Vec<usize>,
    /// Byte offset of the first element.
    pub data_offset: usize,
    /// Bytes per element.
    pub item_size: usize,
}

impl NpyHeader {
    /// Bytes the elements take.
    pub fn body_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.item_size
    }
}

/// The first bytes of a file a header can be located from (magic, version, length).
pub(crate) const NPY_PREFIX_LEN: usize = 12;

/// Byte offset where the header ends, from the file's first bytes (at least 10, or 12 for
/// format versions 2 and 3).
pub(crate) fn header_end(prefix: &[u8]) -> Result<usize, String> {
    if prefix.len() < 10 || &prefix[..6] != b"\x93NUMPY" {
        return Err("missing the \\x93NUMPY magic".into());
    }
    let major = prefix[6];
    let (header_len, offset) = match major {
        1 => (u16::from_le_bytes([prefix[8], prefix[9]]) as usize, 10),
        2 | 3 if prefix.len() >= 12 => (
            u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize,
            12,
        ),
        _ => return Err(format!("unsupported format version {major}")),
    };
    Ok(offset + header_len)
}

/// Parse the header at the start of `bytes` (which must reach at least [`header_end`]).
pub(crate) fn parse_header(bytes: &[u8]) -> Result<NpyHeader, String> {
    let end = header_end(bytes)?;
    let offset = if bytes[6] == 1 { 10 } else { 12 };
    let header = bytes
        .get(offset..end)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or non-text header")?;
    let descr = header_value(header, "descr")?;
    let descr = descr
        .trim_start_matches('\'')
        .split('\'')
        .next()
        .unwrap_or_default();
    if header_value(header, "fortran_order")?.starts_with("True") {
        return Err("Fortran-order arrays are not supported".into());
    }
    let shape_text = header_value(header, "shape")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("malformed shape")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad dimension `{s}`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let item_size = match descr {
        "|u1" | "<u1" | "|i1" => 1,
        "<u2" | "<i2" => 2,
        "<f4" => 4,
        "<f8" => 8,
        other => return Err(format!("unsupported dtype `{other}`")),
    };
    Ok(NpyHeader {
        descr: descr.to_string(),
        shape,
        data_offset: end,
        item_size,
    })
}

/// Parse the bytes of a `.npy` file.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, String> {
    let header = parse_header(bytes)?;
    let body = &bytes[header.data_offset.min(bytes.len())..];
    if body.len() != header.body_len() {
        return Err(format!(
            "shape {:?} of {} needs {} bytes, the file holds {}",
            header.shape,
            header.descr,
            header.body_len(),
            body.len()
        ));
    }
    let NpyHeader { descr, shape, .. } = header;
    let data: Vec<f32> = match descr.as_str() {
        "|u1" | "<u1" => body.iter().map(|&b| f32::from(b)).collect(),
        "|i1" => body.iter().map(|&b| f32::from(b as i8)).collect(),
        "<u2" => body
            .chunks_exact(2)
            .map(|c| f32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        "<i2" => body
            .chunks_exact(2)
            .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])))
            .collect(),
        "<f4" => body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        _ => body
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
    };
    Ok(NpyArray { shape, data })
}
