//! Files and byte buffers: read the header up to the pixel data, de-identify it, and copy the
//! pixel data element through byte for byte.

use std::io::Cursor;
use std::path::Path;

use bedside_core::phi::Phi;
use dicom_core::Tag;
use dicom_core::header::Header;
use dicom_encoding::TransferSyntaxIndex;
use dicom_encoding::transfer_syntax::{Codec, Endianness, TransferSyntax};
use dicom_object::meta::FileMetaTable;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::engine::{Deidentifier, ObjectContext};
use crate::error::DeidError;
use crate::report::ObjectReport;

/// Implementation class UID written into the file meta of de-identified files.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.196370917351146526455327389457227463681";
/// Implementation version name written into the file meta.
pub const IMPLEMENTATION_VERSION_NAME: &str = "BEDSIDE_DEID";

const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";

/// A de-identified file: its bytes and the report.
#[derive(Debug)]
pub struct Deidentified {
    /// The complete file: preamble, file meta, data set.
    pub bytes: Vec<u8>,
    /// What was done.
    pub report: ObjectReport,
}

fn not_dicom(reason: &'static str, detail: impl std::fmt::Display) -> DeidError {
    DeidError::NotDicom {
        reason,
        detail: Phi::new(detail.to_string()),
    }
}

fn u16_at(b: &[u8], pos: usize, little: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(pos..pos + 2)?.try_into().ok()?;
    Some(if little {
        u16::from_le_bytes(s)
    } else {
        u16::from_be_bytes(s)
    })
}

fn u32_at(b: &[u8], pos: usize, little: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(pos..pos + 4)?.try_into().ok()?;
    Some(if little {
        u32::from_le_bytes(s)
    } else {
        u32::from_be_bytes(s)
    })
}

fn has_long_length(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"UC" | b"UN" | b"UR" | b"UT" | b"SV" | b"UV"
    )
}

/// How the data set is encoded, for the byte scanner.
#[derive(Debug, Clone, Copy)]
struct Encoding {
    explicit: bool,
    little: bool,
}

/// One element header read by the scanner: tag, where its value starts, its length
/// (`None` = undefined) and whether it is a sequence or UN.
struct RawHeader {
    group: u16,
    element: u16,
    value_start: usize,
    length: Option<u32>,
    implicit_inside: bool,
}

fn read_header(b: &[u8], pos: usize, enc: Encoding) -> Option<RawHeader> {
    let group = u16_at(b, pos, enc.little)?;
    let element = u16_at(b, pos + 2, enc.little)?;
    if group == 0xFFFE {
        let len = u32_at(b, pos + 4, enc.little)?;
        return Some(RawHeader {
            group,
            element,
            value_start: pos + 8,
            length: (len != u32::MAX).then_some(len),
            implicit_inside: false,
        });
    }
    if enc.explicit {
        let vr: [u8; 2] = b.get(pos + 4..pos + 6)?.try_into().ok()?;
        if has_long_length(vr) {
            let len = u32_at(b, pos + 8, enc.little)?;
            Some(RawHeader {
                group,
                element,
                value_start: pos + 12,
                length: (len != u32::MAX).then_some(len),
                implicit_inside: &vr == b"UN",
            })
        } else {
            let len = u32::from(u16_at(b, pos + 6, enc.little)?);
            Some(RawHeader {
                group,
                element,
                value_start: pos + 8,
                length: Some(len),
                implicit_inside: false,
            })
        }
    } else {
        let len = u32_at(b, pos + 4, enc.little)?;
        Some(RawHeader {
            group,
            element,
            value_start: pos + 8,
            length: (len != u32::MAX).then_some(len),
            implicit_inside: false,
        })
    }
}

/// Skips the value of an undefined-length element (a sequence, UN or encapsulated pixel data)
/// starting at `pos`; returns the position after its sequence delimitation item.
fn skip_undefined(b: &[u8], mut pos: usize, enc: Encoding, depth: u32) -> Option<usize> {
    if depth > 64 {
        return None;
    }
    loop {
        let h = read_header(b, pos, enc)?;
        if h.group != 0xFFFE {
            return None;
        }
        match (h.element, h.length) {
            (0xE0DD, _) => return Some(h.value_start),
            (0xE000, Some(len)) => pos = h.value_start.checked_add(len as usize)?,
            (0xE000, None) => {
                // An item of undefined length: elements until the item delimiter.
                pos = h.value_start;
                loop {
                    let e = read_header(b, pos, enc)?;
                    if e.group == 0xFFFE && e.element == 0xE00D {
                        pos = e.value_start;
                        break;
                    }
                    pos = match e.length {
                        Some(len) => e.value_start.checked_add(len as usize)?,
                        None => {
                            let inner = if e.implicit_inside {
                                Encoding {
                                    explicit: false,
                                    little: true,
                                }
                            } else {
                                enc
                            };
                            skip_undefined(b, e.value_start, inner, depth + 1)?
                        }
                    };
                }
            }
            _ => return None,
        }
        if pos > b.len() {
            return None;
        }
    }
}

/// Finds the top-level Pixel Data element in the data set `b`: `(start, end)` byte offsets.
fn find_pixel_data(b: &[u8], enc: Encoding) -> Option<(usize, usize)> {
    let mut pos = 0usize;
    while pos < b.len() {
        let h = read_header(b, pos, enc)?;
        let end = match h.length {
            Some(len) => h.value_start.checked_add(len as usize)?,
            None => {
                let inner = if h.implicit_inside {
                    Encoding {
                        explicit: false,
                        little: true,
                    }
                } else {
                    enc
                };
                skip_undefined(b, h.value_start, inner, 0)?
            }
        };
        if end > b.len() {
            return None;
        }
        let tag = (u32::from(h.group) << 16) | u32::from(h.element);
        if tag == 0x7FE0_0010 {
            return Some((pos, end));
        }
        if tag > 0x7FE0_0010 {
            return None;
        }
        pos = end;
    }
    None
}

/// Where the file meta group starts (at `DICM`) and where the data set starts.
fn locate(bytes: &[u8]) -> Result<(Option<usize>, usize), DeidError> {
    let magic = if bytes.get(128..132) == Some(b"DICM") {
        Some(128)
    } else if bytes.get(0..4) == Some(b"DICM") {
        Some(0)
    } else {
        None
    };
    let Some(m) = magic else {
        return Ok((None, 0));
    };
    let enc = Encoding {
        explicit: true,
        little: true,
    };
    let mut pos = m + 4;
    loop {
        match u16_at(bytes, pos, true) {
            Some(2) => {}
            Some(_) | None => break,
        }
        let h = read_header(bytes, pos, enc)
            .ok_or_else(|| not_dicom("truncated file meta group", "header"))?;
        let len = h
            .length
            .ok_or_else(|| not_dicom("undefined length in file meta group", "length"))?;
        pos = h.value_start + len as usize;
        if pos > bytes.len() {
            return Err(not_dicom("truncated file meta group", "value"));
        }
    }
    Ok((Some(m), pos))
}

fn lookup_ts(uid: &str) -> Result<&'static TransferSyntax, DeidError> {
    let uid = uid.trim_end_matches(['\0', ' ']);
    TransferSyntaxRegistry
        .get(uid)
        .ok_or_else(|| DeidError::UnsupportedTransferSyntax {
            uid: Phi::new(uid.to_string()),
        })
}

fn read_dataset(bytes: &[u8], ts: &TransferSyntax) -> Result<InMemDicomObject, DeidError> {
    InMemDicomObject::read_dataset_with_ts(Cursor::new(bytes), ts)
        .map_err(|e| not_dicom("malformed data set", e))
}

fn write_dataset(
    obj: &InMemDicomObject,
    out: &mut Vec<u8>,
    ts: &TransferSyntax,
) -> Result<(), DeidError> {
    obj.write_dataset_with_ts(&mut *out, ts)
        .map_err(|e| DeidError::Encode {
            reason: "data set",
            detail: Phi::new(e.to_string()),
        })
}

fn guess_raw_encoding(bytes: &[u8]) -> &'static str {
    // A raw data set (no usable file meta): explicit VR when bytes 4..6 read as a VR; big endian
    // when the first group number reads smaller that way (data sets start with low groups).
    let explicit = bytes
        .get(4..6)
        .is_some_and(|vr| vr.iter().all(|c| c.is_ascii_uppercase()));
    let big = match (u16_at(bytes, 0, true), u16_at(bytes, 0, false)) {
        (Some(le), Some(be)) => be < le,
        _ => false,
    };
    match (explicit, big) {
        (true, true) => EXPLICIT_VR_BE,
        (true, false) => EXPLICIT_VR_LE,
        (false, _) => IMPLICIT_VR_LE,
    }
}

/// Reads the file meta group leniently (missing group length or transfer syntax tolerated).
fn lenient_meta(group: &[u8]) -> Option<(FileMetaTable, bool)> {
    let ts = lookup_ts(EXPLICIT_VR_LE).ok()?;
    let obj = InMemDicomObject::read_dataset_with_ts(Cursor::new(group), ts).ok()?;
    let text = |t: Tag| {
        obj.get(t)
            .and_then(|e| e.value().to_str().ok())
            .map(|s| s.trim_matches(['\0', ' ']).to_string())
            .filter(|s| !s.is_empty())
    };
    let ts_uid = text(Tag(0x0002, 0x0010));
    let has_ts = ts_uid.is_some();
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(text(Tag(0x0002, 0x0002)).unwrap_or_default())
        .media_storage_sop_instance_uid(text(Tag(0x0002, 0x0003)).unwrap_or_default())
        .transfer_syntax(ts_uid.unwrap_or_else(|| IMPLICIT_VR_LE.to_string()))
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .build()
        .ok()?;
    Some((meta, has_ts))
}

impl Deidentifier {
    /// De-identifies a file held in memory (with or without preamble and file meta group).
    ///
    /// The header is parsed up to the pixel data; the Pixel Data element is copied through
    /// byte for byte (its transfer syntax unchanged). Elements after the pixel data (trailing
    /// padding, signatures, private groups) go through the profile like any other.
    pub fn deidentify_bytes(
        &self,
        bytes: &[u8],
        context: ObjectContext,
    ) -> Result<Deidentified, DeidError> {
        let (magic, data_start) = locate(bytes)?;
        let mut ts_known = true;
        let mut meta = match magic {
            Some(m) => match FileMetaTable::from_reader(Cursor::new(&bytes[m..data_start])) {
                Ok(meta) => Some(meta),
                Err(e) => {
                    let (meta, has_ts) = lenient_meta(&bytes[m + 4..data_start])
                        .ok_or_else(|| not_dicom("malformed file meta group", e))?;
                    ts_known = has_ts;
                    Some(meta)
                }
            },
            None => None,
        };
        let ts_uid = match &meta {
            Some(m) if ts_known => m.transfer_syntax().to_string(),
            _ => guess_raw_encoding(&bytes[data_start..]).to_string(),
        };
        if let Some(m) = meta.as_mut() {
            if !ts_known {
                m.transfer_syntax = ts_uid.clone();
            }
        }
        let ts = lookup_ts(&ts_uid)?;
        if ts.is_unsupported() {
            return Err(DeidError::UnsupportedTransferSyntax {
                uid: Phi::new(ts_uid),
            });
        }
        let dataset = &bytes[data_start..];
        let adapted = matches!(ts.codec(), Codec::Dataset(_));
        // A deflated data set is written inflated (Explicit VR Little Endian): lossless, and
        // readable by every peer.
        let out_ts = if adapted {
            lookup_ts(EXPLICIT_VR_LE)?
        } else {
            ts
        };
        let enc = Encoding {
            explicit: ts.uid() != IMPLICIT_VR_LE,
            little: ts.endianness() == Endianness::Little,
        };
        let split = if adapted {
            None
        } else {
            find_pixel_data(dataset, enc)
        };
        let (mut obj, pixel) = match split {
            Some((start, end)) => {
                let mut head = read_dataset(&dataset[..start], ts)?;
                if end < dataset.len() {
                    let tail = read_dataset(&dataset[end..], ts)?;
                    for e in tail {
                        head.put(e);
                    }
                }
                (head, Some(&dataset[start..end]))
            }
            None => (read_dataset(dataset, ts)?, None),
        };
        let meta_class = meta
            .as_ref()
            .map(|m| m.media_storage_sop_class_uid.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default();
        if obj.get(dicom_dictionary_std::tags::SOP_CLASS_UID).is_none() && meta_class.is_empty() {
            return Err(not_dicom("no SOP Class UID", "missing"));
        }
        let mut report = self.deidentify_object(&mut obj, context);
        report.pixel_data_copied = pixel.is_some();
        let sop_instance = text_of(&obj, dicom_dictionary_std::tags::SOP_INSTANCE_UID);
        let mut sop_class = text_of(&obj, dicom_dictionary_std::tags::SOP_CLASS_UID);
        if sop_class.is_empty() {
            sop_class = meta_class;
        }
        let meta = match meta.take() {
            Some(mut m) => {
                m.media_storage_sop_instance_uid = if !sop_instance.is_empty() {
                    sop_instance
                } else if self.profile().options.retain_uids {
                    m.media_storage_sop_instance_uid.trim_end_matches(['\0', ' ']).to_string()
                } else {
                    self.map_uid(m.media_storage_sop_instance_uid.trim_end_matches(['\0', ' ']))
                };
                m.media_storage_sop_class_uid = sop_class;
                m.transfer_syntax = out_ts.uid().to_string();
                m.implementation_class_uid = IMPLEMENTATION_CLASS_UID.to_string();
                m.implementation_version_name = Some(IMPLEMENTATION_VERSION_NAME.to_string());
                m.source_application_entity_title = None;
                m.sending_application_entity_title = None;
                m.receiving_application_entity_title = None;
                m.private_information_creator_uid = None;
                m.private_information = None;
                m.update_information_group_length();
                m
            }
            None => FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(sop_class)
                .media_storage_sop_instance_uid(sop_instance)
                .transfer_syntax(out_ts.uid())
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
                .build()
                .map_err(|e| DeidError::Encode {
                    reason: "file meta group",
                    detail: Phi::new(e.to_string()),
                })?,
        };
        let mut out = Vec::with_capacity(bytes.len() + 256);
        out.extend_from_slice(&[0u8; 128]);
        out.extend_from_slice(b"DICM");
        meta.write(&mut out).map_err(|e| DeidError::Encode {
            reason: "file meta group",
            detail: Phi::new(e.to_string()),
        })?;
        match pixel {
            Some(raw) => {
                let pixel_tag = Tag(0x7FE0, 0x0010);
                let mut after = Vec::new();
                let mut before = InMemDicomObject::new_empty();
                for e in obj {
                    let t = e.tag();
                    if t == pixel_tag {
                        continue;
                    }
                    if t > pixel_tag {
                        after.push(e);
                    } else {
                        before.put(e);
                    }
                }
                write_dataset(&before, &mut out, out_ts)?;
                out.extend_from_slice(raw);
                if !after.is_empty() {
                    let tail = InMemDicomObject::from_element_iter(after);
                    write_dataset(&tail, &mut out, out_ts)?;
                }
            }
            None => write_dataset(&obj, &mut out, out_ts)?,
        }
        Ok(Deidentified { bytes: out, report })
    }

    /// De-identifies `input` into `output` (written atomically). The input is never modified.
    pub fn deidentify_file(
        &self,
        input: &Path,
        output: &Path,
        context: ObjectContext,
    ) -> Result<ObjectReport, DeidError> {
        let bytes = std::fs::read(input).map_err(|source| DeidError::ReadFile {
            path: input.to_path_buf(),
            source,
        })?;
        let done = self.deidentify_bytes(&bytes, context)?;
        bedside_core::fsio::write_atomic(output, &done.bytes).map_err(|source| {
            DeidError::WriteFile {
                path: output.to_path_buf(),
                source,
            }
        })?;
        Ok(done.report)
    }
}

fn text_of(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(crate::engine::element_strings)
        .map(|v| v.join("\\"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_skips_nested_undefined_sequences() {
        // Explicit VR LE: (0008,1140) SQ undefined, one undefined item holding (0008,1155) UI,
        // then (7FE0,0010) OB of 4 bytes.
        let mut b = Vec::new();
        b.extend_from_slice(&[0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        b.extend_from_slice(&[0x08, 0x00, 0x55, 0x11, b'U', b'I', 4, 0, b'1', b'.', b'2', 0]);
        b.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let start = b.len();
        b.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 4, 0, 0, 0, 1, 2, 3, 4]);
        let enc = Encoding {
            explicit: true,
            little: true,
        };
        assert_eq!(find_pixel_data(&b, enc), Some((start, b.len())));
        // Truncated: no panic, no split.
        assert_eq!(find_pixel_data(&b[..b.len() - 2], enc), None);
        assert_eq!(find_pixel_data(&b[..10], enc), None);
    }
}
