//! NumPy `.npy` and `.npz` writers, so arrays open with `numpy.load` and nothing else.
//!
//! `.npy` follows format version 1.0 (little-endian, C order, header padded to 64 bytes);
//! `.npz` is a zip of `.npy` members, deflate-compressed like `numpy.savez_compressed`.

use std::io::{Seek, Write};

/// Element types this writer emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `uint8`
    U8,
    /// `uint16`
    U16,
    /// `int16`
    I16,
    /// `float32`
    F32,
    /// `float64`
    F64,
}

impl Dtype {
    /// NumPy's `descr` string.
    pub fn descr(self) -> &'static str {
        match self {
            Dtype::U8 => "|u1",
            Dtype::U16 => "<u2",
            Dtype::I16 => "<i2",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::U16 | Dtype::I16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// Builds the `.npy` header (magic, version, padded dictionary) for an array.
pub fn header(dtype: Dtype, shape: &[usize]) -> Vec<u8> {
    let shape_txt = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        dtype.descr(),
        shape_txt
    );
    // magic(6) + version(2) + header length(2) + dict + '\n' must be a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    dict.extend(std::iter::repeat_n(' ', pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes a complete `.npy` stream; `data` holds little-endian elements in C order.
pub fn write_npy<W: Write>(
    w: &mut W,
    dtype: Dtype,
    shape: &[usize],
    data: &[u8],
) -> std::io::Result<()> {
    let expected: usize = shape.iter().product::<usize>() * dtype.size();
    if expected != data.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "array data has {} bytes, shape needs {expected}",
                data.len()
            ),
        ));
    }
    w.write_all(&header(dtype, shape))?;
    w.write_all(data)
}

/// One member of an `.npz` archive.
pub struct NpzMember<'a> {
    /// Name without the `.npy` suffix (what `np.load(f)[name]` uses).
    pub name: &'a str,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, C order.
    pub shape: &'a [usize],
    /// Little-endian element bytes.
    pub data: &'a [u8],
}

/// Writes a deflate-compressed `.npz` archive (ZIP64 headers, so members may exceed 4 GiB).
pub fn write_npz<W: Write + Seek>(w: W, members: &[NpzMember<'_>]) -> std::io::Result<()> {
    let mut zip = zip::ZipWriter::new(w);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        // Level 1: masks and label arrays are mostly runs; higher levels cost time, not bytes.
        .compression_level(Some(1))
        .large_file(true);
    for m in members {
        zip.start_file(format!("{}.npy", m.name), options)
            .map_err(std::io::Error::other)?;
        write_npy(&mut zip, m.dtype, m.shape, m.data)?;
    }
    zip.finish().map_err(std::io::Error::other)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_parsable() {
        for shape in [&[3usize][..], &[2, 3, 4], &[0, 5]] {
            let h = header(Dtype::F32, shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
            let text = std::str::from_utf8(&h[10..]).unwrap();
            assert!(text.contains("'<f4'"));
            assert!(text.ends_with('\n'));
        }
        let h = header(Dtype::U8, &[7]);
        assert!(std::str::from_utf8(&h[10..]).unwrap().contains("(7,)"));
    }

    #[test]
    fn size_mismatch_is_an_error() {
        let mut v = Vec::new();
        assert!(write_npy(&mut v, Dtype::U16, &[2, 2], &[0u8; 6]).is_err());
    }

    #[test]
    fn npz_is_a_zip_of_npy() {
        let mut buf = std::io::Cursor::new(Vec::new());
        let data = [1u8, 2, 3, 4];
        write_npz(
            &mut buf,
            &[NpzMember {
                name: "mask",
                dtype: Dtype::U8,
                shape: &[2, 2],
                data: &data,
            }],
        )
        .unwrap();
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(buf.into_inner())).unwrap();
        let mut f = z.by_name("mask.npy").unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut bytes).unwrap();
        assert_eq!(&bytes[bytes.len() - 4..], &data);
    }
}
