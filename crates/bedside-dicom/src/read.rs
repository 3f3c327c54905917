//! Reading DICOM with memory bounded by the input's size.
//!
//! [`read_bytes`] accepts Part 10 files with or without the 128-byte preamble and bare data sets
//! without a file meta group (implicit or explicit VR little endian), checks the structure with
//! [`crate::scan`] before parsing, and reports what is wrong in words a user can act on.

use dicom_dictionary_std::tags;
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
fn scan_meta(bytes: &[u8], start: usize) -> Result<(usize, Option<String>), ReadError> {
    let mut pos = start;
    let mut transfer_syntax = None;
    while pos + 8 <= bytes.len() && u16::from_le_bytes([bytes[pos], bytes[pos + 1]]) == 0x0002 {
        let element = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
        let vr = [bytes[pos + 4], bytes[pos + 5]];
        let (len, header) = if matches!(&vr, b"OB" | b"OW" | b"UN" | b"SQ" | b"UT" | b"UC" | b"UR")
        {
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
        if element == 0x0010 {
            let value = &bytes[pos + header..pos + header + len];
            transfer_syntax = Some(
                String::from_utf8_lossy(value)
                    .trim_end_matches(['\0', ' '])
                    .to_string(),
            );
        }
        pos += header + len;
    }
    Ok((pos, transfer_syntax))
}

/// Reads DICOM from bytes, checking the structure first (see the module documentation).
pub fn read_bytes(bytes: &[u8]) -> Result<DefaultDicomObject, ReadError> {
    match detect(bytes)? {
        layout @ (Layout::Part10 | Layout::Part10NoPreamble) => {
            let start = if layout == Layout::Part10 { 132 } else { 4 };
            let (end, ts) = scan_meta(bytes, start)?;
            let ts = ts.ok_or(ReadError::NotDicom(
                "file meta group has no transfer syntax",
            ))?;
            if let Some(enc) = Encoding::of_transfer_syntax(&ts) {
                scan::scan_dataset(&bytes[end..], enc)?;
            }
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
