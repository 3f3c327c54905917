//! Reading DICOM with memory bounded by the input's size.
//!
//! [`read_bytes`] accepts Part 10 files with or without the 128-byte preamble and bare data sets
//! without a file meta group (implicit or explicit VR little endian), checks the structure with
//! [`crate::scan`] before parsing, and reports what is wrong in words a user can act on.

use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTable;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};

use crate::scan::{self, Encoding, ScanError};

/// Why bytes could not be read as DICOM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The bytes do not look like DICOM at all.
    #[error("not DICOM: {0}")]
    NotDicom(&'static str),
    /// The structure is malformed or truncated.
    #[error("malformed DICOM: {0}")]
    Malformed(#[from] ScanError),
    /// The file meta group is inconsistent.
    #[error("malformed file meta group: {0}")]
    BadMeta(&'static str),
    /// Something would grow past the limit set for this file's size.
    #[error("{what} exceeds the limit of {limit} bytes for this file")]
    TooLarge {
        /// What grew.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// Encapsulated pixel data whose declared geometry does not fit the bytes present.
    #[error("implausible pixel data: {0}")]
    BadPixelData(String),
    /// The parser rejected the content.
    #[error("unreadable DICOM: {0}")]
    Parse(String),
}

/// How the bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 128-byte preamble, `DICM`, file meta group, data set.
    Part10,
    /// `DICM` and the file meta group without the preamble.
    Part10NoPreamble,
    /// A bare data set without file meta group.
    BareDataset(Encoding),
}

/// Detects the layout, or says why these are not DICOM bytes.
pub fn detect(bytes: &[u8]) -> Result<Layout, ReadError> {
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        return Ok(Layout::Part10);
    }
    if bytes.len() >= 4 && &bytes[..4] == b"DICM" {
        return Ok(Layout::Part10NoPreamble);
    }
    if bytes.len() < 8 {
        return Err(ReadError::NotDicom("too short"));
    }
    let group = u16::from_le_bytes([bytes[0], bytes[1]]);
    let element = u16::from_le_bytes([bytes[2], bytes[3]]);
    // A bare data set starts with a low, even group (identifying, study or patient attributes).
    if group % 2 == 1 || !(0x0002..=0x0100).contains(&group) || element > 0x9FFF {
        return Err(ReadError::NotDicom(
            "no DICM marker and no plausible first element",
        ));
    }
    let vr = [bytes[4], bytes[5]];
    if vr.iter().all(|c| c.is_ascii_uppercase()) {
        Ok(Layout::BareDataset(Encoding::EXPLICIT_LE))
    } else {
        Ok(Layout::BareDataset(Encoding::IMPLICIT_LE))
    }
}

/// Walks the file meta group that starts at `start` (after `DICM`), checking every length:
/// returns where the group ends and its transfer syntax UID, if present.
///
/// dicom-object reads the meta group as far as its group length (0002,0000) says, so that
/// length must match the elements really there: a longer one makes it read data set elements
/// (maybe implicit VR) as explicit meta elements, a shorter one hands meta elements to the
/// data set parser; either way it reads lengths this walk never checked.
pub fn scan_meta(bytes: &[u8], start: usize) -> Result<(usize, Option<String>), ReadError> {
    let mut pos = start;
    let mut transfer_syntax = None;
    let mut group_length: Option<(usize, u32)> = None;
    while pos + 8 <= bytes.len() && u16::from_le_bytes([bytes[pos], bytes[pos + 1]]) == 0x0002 {
        let element = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
        let vr = [bytes[pos + 4], bytes[pos + 5]];
        if !scan::is_known_vr(&vr) {
            return Err(ReadError::Malformed(ScanError::BadVr {
                group: 0x0002,
                element,
                vr,
                offset: pos,
            }));
        }
        let (len, header) = if scan::LONG_VRS.contains(&&vr) {
            if pos + 12 > bytes.len() {
                return Err(ReadError::Malformed(ScanError::ShortHeader { offset: pos }));
            }
            let b = [
                bytes[pos + 8],
                bytes[pos + 9],
                bytes[pos + 10],
                bytes[pos + 11],
            ];
            (u32::from_le_bytes(b) as usize, 12)
        } else {
            (
                u16::from_le_bytes([bytes[pos + 6], bytes[pos + 7]]) as usize,
                8,
            )
        };
        let available = bytes.len() - pos - header;
        if len > available {
            return Err(ReadError::Malformed(ScanError::Truncated {
                group: 0x0002,
                element,
                offset: pos,
                declared: len as u64,
                available: available as u64,
            }));
        }
        let value = &bytes[pos + header..pos + header + len];
        match element {
            0x0000 if pos == start && len == 4 => {
                let v = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
                group_length = Some((pos + header + len, v));
            }
            0x0000 => return Err(ReadError::BadMeta("misplaced file meta group length")),
            0x0010 => {
                transfer_syntax = Some(
                    String::from_utf8_lossy(value)
                        .trim_end_matches(['\0', ' '])
                        .to_string(),
                );
            }
            _ => {}
        }
        pos += header + len;
    }
    match group_length {
        Some((after, declared)) if (pos - after) as u64 == declared as u64 => {
            Ok((pos, transfer_syntax))
        }
        Some(_) => Err(ReadError::BadMeta(
            "file meta group length does not match its elements",
        )),
        None => Err(ReadError::BadMeta(
            "file meta group does not start with its group length",
        )),
    }
}

/// A deflated data set may inflate to at most this many times the file's size; beyond that it
/// is refused as a possible decompression bomb.
pub const MAX_INFLATION: usize = 32;

/// Inflates a deflated data set, refusing one that grows beyond [`MAX_INFLATION`] times the
/// file's size (plus 1 MiB, so small files always fit).
fn inflate(deflated: &[u8], file_len: usize) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let cap = MAX_INFLATION * file_len + (1 << 20);
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(deflated)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| ReadError::BadMeta("deflated data set does not inflate"))?;
    if out.len() > cap {
        return Err(ReadError::TooLarge {
            limit: cap as u64,
            what: "inflated data set",
        });
    }
    Ok(out)
}

/// Decoded pixel data may be at most this many times its encapsulated size (plus 256 MiB):
/// above the best lossless ratios on blank images, far below what a forged Rows × Columns ×
/// Number of Frames would make a decoder allocate.
pub const MAX_DECODE_RATIO: u64 = 1024;

/// Refuses encapsulated pixel data whose declared geometry a decoder would allocate far beyond
/// the bytes present: more frames than fragments (each frame takes at least one), or a decoded
/// size past [`MAX_DECODE_RATIO`].
fn check_pixel_geometry(obj: &DefaultDicomObject) -> Result<(), ReadError> {
    let Ok(pixels) = obj.element(tags::PIXEL_DATA) else {
        return Ok(());
    };
    let Some(fragments) = pixels.value().fragments() else {
        return Ok(());
    };
    let int = |tag| obj.element(tag).ok().and_then(|e| e.to_int::<u64>().ok());
    let encoded: u64 = fragments.iter().map(|f| f.len() as u64).sum();
    check_encapsulated_geometry(
        EncapsulatedGeometry {
            frames: int(tags::NUMBER_OF_FRAMES),
            rows: int(tags::ROWS),
            columns: int(tags::COLUMNS),
            samples_per_pixel: int(tags::SAMPLES_PER_PIXEL),
            bits_allocated: int(tags::BITS_ALLOCATED),
        },
        fragments.len(),
        encoded,
    )
}

/// What the header of an object with encapsulated pixel data declares about its frames (each
/// as the attribute's first value, read as an unsigned integer, when present and readable).
#[derive(Debug, Clone, Copy, Default)]
pub struct EncapsulatedGeometry {
    /// Number of Frames.
    pub frames: Option<u64>,
    /// Rows.
    pub rows: Option<u64>,
    /// Columns.
    pub columns: Option<u64>,
    /// Samples per Pixel.
    pub samples_per_pixel: Option<u64>,
    /// Bits Allocated.
    pub bits_allocated: Option<u64>,
}

/// The rule [`read_bytes`] applies to encapsulated pixel data of `fragments` fragments (the
/// offset table not counted) holding `encoded` bytes: no more frames than fragments, and a
/// decoded size within [`MAX_DECODE_RATIO`] of the encoded one.
pub fn check_encapsulated_geometry(
    g: EncapsulatedGeometry,
    fragments: usize,
    encoded: u64,
) -> Result<(), ReadError> {
    let frames = g.frames.unwrap_or(1);
    if frames > fragments as u64 {
        return Err(ReadError::BadPixelData(format!(
            "{frames} frames declared, {fragments} fragments present"
        )));
    }
    // Saturating: forged values must not overflow into a small size (or a panic).
    let decoded = g
        .rows
        .unwrap_or(0)
        .saturating_mul(g.columns.unwrap_or(0))
        .saturating_mul(g.samples_per_pixel.unwrap_or(1))
        .saturating_mul(g.bits_allocated.unwrap_or(8).div_ceil(8))
        .saturating_mul(frames);
    let limit = MAX_DECODE_RATIO * encoded + (256 << 20);
    if decoded > limit {
        return Err(ReadError::BadPixelData(format!(
            "declared geometry decodes to {decoded} bytes from {encoded} encoded (limit {limit})"
        )));
    }
    Ok(())
}

/// The data set of a Part 10 file, located without parsing it (see [`part10_dataset`]).
#[derive(Debug, Clone)]
pub struct Part10Dataset<'a> {
    /// Transfer syntax UID as the file meta group states it, padding removed.
    pub transfer_syntax: String,
    /// How the data set is encoded.
    pub encoding: Encoding,
    /// The encoded data set (everything after the file meta group).
    pub dataset: &'a [u8],
}

/// Finds the data set of a Part 10 file (with or without the preamble) after checking its file
/// meta group as [`read_bytes`] does, without scanning or parsing the data set itself: callers
/// walk it with [`scan::scan_dataset_visit`], which checks it. `Ok(None)` for what this does
/// not cover and [`read_bytes`] may still read: bare data sets, deflated data sets, transfer
/// syntaxes the parser does not know, and transfer syntax UIDs that are not plain digits and dots.
pub fn part10_dataset(bytes: &[u8]) -> Result<Option<Part10Dataset<'_>>, ReadError> {
    let start = match detect(bytes)? {
        Layout::Part10 => 132,
        Layout::Part10NoPreamble => 4,
        Layout::BareDataset(_) => return Ok(None),
    };
    let (end, ts) = scan_meta(bytes, start)?;
    let ts = ts.ok_or(ReadError::NotDicom(
        "file meta group has no transfer syntax",
    ))?;
    if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Ok(None);
    }
    let Some(encoding) = Encoding::of_transfer_syntax(&ts) else {
        return Ok(None);
    };
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex as _;
    if dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(&ts)
        .is_none()
    {
        return Ok(None);
    }
    Ok(Some(Part10Dataset {
        transfer_syntax: ts,
        encoding,
        dataset: &bytes[end..],
    }))
}

/// Reads DICOM from bytes, checking the structure first (see the module documentation), and
/// refusing encapsulated pixel data whose declared geometry would decode far beyond its size.
pub fn read_bytes(bytes: &[u8]) -> Result<DefaultDicomObject, ReadError> {
    let obj = read_unchecked(bytes)?;
    check_pixel_geometry(&obj)?;
    Ok(obj)
}

fn read_unchecked(bytes: &[u8]) -> Result<DefaultDicomObject, ReadError> {
    match detect(bytes)? {
        layout @ (Layout::Part10 | Layout::Part10NoPreamble) => {
            let start = if layout == Layout::Part10 { 132 } else { 4 };
            let (end, ts) = scan_meta(bytes, start)?;
            let ts = ts.ok_or(ReadError::NotDicom(
                "file meta group has no transfer syntax",
            ))?;
            let Some(enc) = Encoding::of_transfer_syntax(&ts) else {
                // Deflated: inflate here, bounded, so the scan sees what the parser will.
                let inflated = inflate(&bytes[end..], bytes.len())?;
                scan::scan_dataset(&inflated, Encoding::EXPLICIT_LE)?;
                let meta = FileMetaTable::from_reader(&bytes[start - 4..end])
                    .map_err(|e| ReadError::Parse(e.to_string()))?;
                let ts =
                    dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
                let obj = InMemDicomObject::read_dataset_with_ts(&inflated[..], &ts)
                    .map_err(|e| ReadError::Parse(e.to_string()))?;
                return Ok(obj.with_exact_meta(meta));
            };
            scan::scan_dataset(&bytes[end..], enc)?;
            OpenFileOptions::new()
                .from_reader(&bytes[start - 4..])
                .map_err(|e| ReadError::Parse(e.to_string()))
        }
        Layout::BareDataset(enc) => {
            scan::scan_dataset(bytes, enc)?;
            let ts = if enc.explicit_vr {
                dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased()
            } else {
                dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased()
            };
            let obj = InMemDicomObject::read_dataset_with_ts(bytes, &ts)
                .map_err(|e| ReadError::Parse(e.to_string()))?;
            let text = |tag| {
                obj.element(tag).ok().and_then(|e| {
                    e.to_str()
                        .ok()
                        .map(|s| s.trim_end_matches('\0').to_string())
                })
            };
            let class = text(tags::SOP_CLASS_UID)
                .ok_or(ReadError::NotDicom("bare data set without SOP Class UID"))?;
            let instance = text(tags::SOP_INSTANCE_UID).ok_or(ReadError::NotDicom(
                "bare data set without SOP Instance UID",
            ))?;
            Ok(obj.with_exact_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(ts.uid())
                    .media_storage_sop_class_uid(class)
                    .media_storage_sop_instance_uid(instance)
                    .implementation_class_uid(crate::write::IMPLEMENTATION_CLASS_UID)
                    .build()
                    .map_err(|e| ReadError::Parse(e.to_string()))?,
            ))
        }
    }
}
