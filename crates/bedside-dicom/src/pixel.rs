//! Pixel data encoding: encapsulation and JPEG baseline frames.

use dicom_core::value::{PixelFragmentSequence, Value};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The frame buffer does not match the stated size.
    #[error("frame has {actual} bytes, {rows}x{columns}x{samples} needs {expected}")]
    FrameSize {
        /// Rows.
        rows: usize,
        /// Columns.
        columns: usize,
        /// Samples per pixel.
        samples: usize,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The JPEG encoder failed.
    #[error("JPEG encoding failed: {0}")]
    Jpeg(String),
}

/// Builds an encapsulated Pixel Data element (OB, undefined length) with a basic offset table and
/// one fragment per frame. Odd-length fragments are padded to even length as the standard
/// requires.
pub fn encapsulated_pixel_data(mut frames: Vec<Vec<u8>>) -> InMemElement {
    let mut offsets = Vec::with_capacity(frames.len());
    let mut offset = 0u32;
    for f in frames.iter_mut() {
        if f.len() % 2 == 1 {
            f.push(0);
        }
        offsets.push(offset);
        offset = offset.saturating_add(8 + f.len() as u32);
    }
    DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        Value::from(PixelFragmentSequence::new(offsets, frames)),
    )
}

/// Builds a native (uncompressed) 8-bit Pixel Data element (OB) from concatenated frames.
pub fn native_pixel_data_8bit(mut bytes: Vec<u8>) -> InMemElement {
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        dicom_core::value::PrimitiveValue::U8(bytes.into()),
    )
}

fn check(len: usize, rows: usize, columns: usize, samples: usize) -> Result<(), EncodeError> {
    let expected = rows * columns * samples;
    if len != expected {
        return Err(EncodeError::FrameSize {
            rows,
            columns,
            samples,
            expected,
            actual: len,
        });
    }
    Ok(())
}

/// Encodes one 8-bit monochrome frame as JPEG baseline (ISO 10918-1 process 1).
pub fn jpeg_baseline_gray(
    pixels: &[u8],
    rows: usize,
    columns: usize,
    quality: u8,
) -> Result<Vec<u8>, EncodeError> {
    check(pixels.len(), rows, columns, 1)?;
    encode(
        pixels,
        rows,
        columns,
        quality,
        jpeg_encoder::ColorType::Luma,
        None,
    )
}

/// Encodes one interleaved RGB frame as JPEG baseline in YCbCr with 4:2:2 chroma subsampling,
/// which DICOM describes as PhotometricInterpretation `YBR_FULL_422`.
pub fn jpeg_baseline_ybr_full_422(
    rgb: &[u8],
    rows: usize,
    columns: usize,
    quality: u8,
) -> Result<Vec<u8>, EncodeError> {
    check(rgb.len(), rows, columns, 3)?;
    encode(
        rgb,
        rows,
        columns,
        quality,
        jpeg_encoder::ColorType::Rgb,
        Some(jpeg_encoder::SamplingFactor::F_2_1),
    )
}

fn encode(
    data: &[u8],
    rows: usize,
    columns: usize,
    quality: u8,
    color: jpeg_encoder::ColorType,
    sampling: Option<jpeg_encoder::SamplingFactor>,
) -> Result<Vec<u8>, EncodeError> {
    let width = u16::try_from(columns).map_err(|_| EncodeError::Jpeg("too wide".into()))?;
    let height = u16::try_from(rows).map_err(|_| EncodeError::Jpeg("too tall".into()))?;
    let mut out = Vec::with_capacity(data.len() / 8);
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
    if let Some(s) = sampling {
        enc.set_sampling_factor(s);
    }
    enc.encode(data, width, height, color)
        .map_err(|e| EncodeError::Jpeg(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_account_for_item_headers_and_padding() {
        let el = encapsulated_pixel_data(vec![vec![1, 2, 3], vec![4, 5], vec![6]]);
        let Value::PixelSequence(seq) = el.value() else {
            panic!("not encapsulated")
        };
        assert_eq!(seq.offset_table(), &[0, 12, 22]);
        assert!(seq.fragments().iter().all(|f| f.len() % 2 == 0));
    }

    #[test]
    fn jpeg_frames_start_and_end_with_markers() {
        let gray = vec![128u8; 16 * 24];
        let j = jpeg_baseline_gray(&gray, 16, 24, 90).unwrap();
        assert_eq!(&j[..2], &[0xFF, 0xD8]);
        assert_eq!(&j[j.len() - 2..], &[0xFF, 0xD9]);
        assert!(jpeg_baseline_gray(&gray, 16, 25, 90).is_err());
        let rgb = vec![10u8; 16 * 24 * 3];
        assert!(jpeg_baseline_ybr_full_422(&rgb, 16, 24, 90).is_ok());
    }
}
