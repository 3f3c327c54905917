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

fn is_known_vr(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FD"
            | b"FL"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SQ"
            | b"SS"
            | b"ST"
            | b"SV"
            | b"TM"
            | b"UC"
            | b"UI"
            | b"UL"
            | b"UN"
            | b"UR"
            | b"US"
            | b"UT"
            | b"UV"
    )
}

fn has_long_length(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"SV"
            | b"UV"
    )
}

/// How the data set is encoded, for the byte scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Encoding {
    explicit: bool,
    little: bool,
}

/// One element header read by the scanner: tag, VR (explicit syntaxes), where its value starts
/// and its length (`None` = undefined).
struct RawHeader {
    group: u16,
    element: u16,
    vr: Option<[u8; 2]>,
    value_start: usize,
    length: Option<u32>,
}

fn read_header(b: &[u8], pos: usize, enc: Encoding) -> Option<RawHeader> {
    let group = u16_at(b, pos, enc.little)?;
    let element = u16_at(b, pos + 2, enc.little)?;
    if group == 0xFFFE || !enc.explicit {
        let len = u32_at(b, pos + 4, enc.little)?;
        return Some(RawHeader {
            group,
            element,
            vr: None,
            value_start: pos + 8,
            length: (len != u32::MAX).then_some(len),
        });
    }
    let vr: [u8; 2] = b.get(pos + 4..pos + 6)?.try_into().ok()?;
    if has_long_length(vr) {
        let len = u32_at(b, pos + 8, enc.little)?;
        Some(RawHeader {
            group,
            element,
            vr: Some(vr),
            value_start: pos + 12,
            length: (len != u32::MAX).then_some(len),
        })
    } else {
        Some(RawHeader {
            group,
            element,
            vr: Some(vr),
            value_start: pos + 8,
            length: Some(u32::from(u16_at(b, pos + 6, enc.little)?)),
        })
    }
}

const MAX_DEPTH: u32 = 64;
const EXPLICIT_LE: Encoding = Encoding {
    explicit: true,
    little: true,
};
const IMPLICIT_LE: Encoding = Encoding {
    explicit: false,
    little: true,
};

fn is_sequence(h: &RawHeader) -> bool {
    match h.vr {
        Some(vr) => &vr == b"SQ",
        None => {
            use dicom_core::dictionary::DataDictionary;
            dicom_dictionary_std::StandardDataDictionary
                .by_tag(Tag(h.group, h.element))
                .is_some_and(|e| e.vr.relaxed() == dicom_core::VR::SQ)
        }
    }
}

/// Walks the elements of a data set or item in `b[pos..end]`, checking that every length stays
/// inside its container, so that no later parse can be asked to allocate more than the file
/// holds. With `until_delimiter`, the walk ends at an item delimitation item. Records the
/// top-level Pixel Data element's extent. Returns where the walk ended.
fn walk_elements(
    b: &[u8],
    mut pos: usize,
    end: usize,
    enc: Encoding,
    depth: u32,
    until_delimiter: bool,
    pixel: &mut Option<(usize, usize)>,
) -> Result<usize, &'static str> {
    if depth > MAX_DEPTH {
        return Err("sequences nested too deeply");
    }
    loop {
        if pos == end && !until_delimiter {
            return Ok(pos);
        }
        if pos >= end {
            return Err("truncated data set");
        }
        let h = read_header(b, pos, enc).ok_or("truncated element header")?;
        if h.value_start > end {
            return Err("truncated element header");
        }
        if h.vr.is_some_and(|vr| !is_known_vr(vr)) {
            return Err("unknown value representation");
        }
        if h.group == 0xFFFE {
            if h.element == 0xE00D && until_delimiter {
                return Ok(h.value_start);
            }
            return Err("misplaced delimiter");
        }
        let tag = (u32::from(h.group) << 16) | u32::from(h.element);
        let value_end = match h.length {
            Some(len) => {
                let value_end = h
                    .value_start
                    .checked_add(len as usize)
                    .ok_or("length overflow")?;
                if value_end > end {
                    return Err("a length runs past the end of its container");
                }
                if is_sequence(&h) && len > 0 {
                    walk_items(b, h.value_start, value_end, enc, depth + 1, true)?;
                }
                value_end
            }
            None if tag == 0x7FE0_0010 => walk_fragments(b, h.value_start, end, enc)?,
            None => {
                let inner = if h.vr == Some(*b"UN") {
                    IMPLICIT_LE
                } else {
                    enc
                };
                walk_items(b, h.value_start, end, inner, depth + 1, false)?
            }
        };
        if tag == 0x7FE0_0010 && depth == 0 {
            *pixel = Some((pos, value_end));
        }
        pos = value_end;
    }
}

/// Walks the items of a sequence: up to `end` when the sequence has a defined length, else up
/// to the sequence delimitation item. Returns the position after the sequence.
fn walk_items(
    b: &[u8],
    mut pos: usize,
    end: usize,
    enc: Encoding,
    depth: u32,
    defined: bool,
) -> Result<usize, &'static str> {
    let mut unused = None;
    loop {
        if defined && pos == end {
            return Ok(pos);
        }
        let h = read_header(b, pos, enc).ok_or("truncated sequence")?;
        if h.value_start > end || h.group != 0xFFFE {
            return Err("malformed sequence");
        }
        match (h.element, h.length) {
            (0xE0DD, _) if !defined => return Ok(h.value_start),
            (0xE000, Some(len)) => {
                let item_end = h
                    .value_start
                    .checked_add(len as usize)
                    .ok_or("length overflow")?;
                if item_end > end {
                    return Err("an item runs past the end of its sequence");
                }
                walk_elements(b, h.value_start, item_end, enc, depth, false, &mut unused)?;
                pos = item_end;
            }
            (0xE000, None) => {
                pos = walk_elements(b, h.value_start, end, enc, depth, true, &mut unused)?;
            }
            _ => return Err("malformed sequence"),
        }
    }
}

/// Walks the fragments of encapsulated pixel data up to the sequence delimiter.
fn walk_fragments(
    b: &[u8],
    mut pos: usize,
    end: usize,
    enc: Encoding,
) -> Result<usize, &'static str> {
    loop {
        let h = read_header(b, pos, enc).ok_or("truncated pixel data")?;
        if h.value_start > end || h.group != 0xFFFE {
            return Err("malformed pixel data fragments");
        }
        match (h.element, h.length) {
            (0xE0DD, _) => return Ok(h.value_start),
            (0xE000, Some(len)) => {
                pos = h
                    .value_start
                    .checked_add(len as usize)
                    .ok_or("length overflow")?;
                if pos > end {
                    return Err("a fragment runs past the end of the file");
                }
            }
            _ => return Err("malformed pixel data fragments"),
        }
    }
}

/// Checks the whole data set's structure and finds the top-level Pixel Data element.
fn scan(b: &[u8], enc: Encoding) -> Result<Option<(usize, usize)>, &'static str> {
    let mut pixel = None;
    walk_elements(b, 0, b.len(), enc, 0, false, &mut pixel)?;
    Ok(pixel)
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
    while let Some(2) = u16_at(bytes, pos, true) {
        let h = read_header(bytes, pos, enc)
            .ok_or_else(|| not_dicom("truncated file meta group", "header"))?;
        if h.vr.is_some_and(|vr| !is_known_vr(vr)) {
            return Err(not_dicom(
                "unknown value representation in file meta group",
                "",
            ));
        }
        let len = h
            .length
            .ok_or_else(|| not_dicom("undefined length in file meta group", "length"))?;
        pos = h.value_start + len as usize;
        if pos > bytes.len() {
            return Err(not_dicom("truncated file meta group", "value"));
        }
        if pos - m > 1 << 20 {
            return Err(not_dicom("file meta group larger than 1 MiB", ""));
        }
    }
    Ok((Some(m), pos))
}

/// Most a deflated data set may inflate to, relative to its compressed size (plus 16 MiB), so
/// that memory stays bounded by the file's size.
const MAX_INFLATE_RATIO: u64 = 200;

fn inflate(compressed: &[u8]) -> Result<Vec<u8>, DeidError> {
    use std::io::Read;
    let limit = (compressed.len() as u64)
        .saturating_mul(MAX_INFLATE_RATIO)
        .saturating_add(16 << 20);
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(compressed)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| not_dicom("malformed deflated data set", e))?;
    if out.len() as u64 > limit {
        return Err(not_dicom(
            "deflated data set inflates beyond the size limit",
            "",
        ));
    }
    Ok(out)
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
        let mut out = Vec::with_capacity(bytes.len() + 256);
        let report = self.deidentify_to(bytes, context, &mut out)?;
        Ok(Deidentified { bytes: out, report })
    }

    /// Like [`Deidentifier::deidentify_bytes`], writing the de-identified file into `out` as it
    /// goes (the pixel data is written straight from `bytes`, never copied in memory). On error,
    /// `out` may hold a partial file.
    pub fn deidentify_to<W: std::io::Write>(
        &self,
        bytes: &[u8],
        context: ObjectContext,
        out: &mut W,
    ) -> Result<ObjectReport, DeidError> {
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
        if let Some(m) = meta.as_mut()
            && !ts_known
        {
            m.transfer_syntax = ts_uid.clone();
        }
        // Every transfer syntax the registry knows is handled: the only data set codec is
        // deflate, which is inflated below.
        let ts = lookup_ts(&ts_uid)?;
        // A deflated data set is inflated here (with a bound on its size) and then handled, and
        // written, as Explicit VR Little Endian: lossless, and readable by every peer.
        let inflated;
        let (dataset, ts) = if matches!(ts.codec(), Codec::Dataset(_)) {
            inflated = inflate(&bytes[data_start..])?;
            (inflated.as_slice(), lookup_ts(EXPLICIT_VR_LE)?)
        } else {
            (&bytes[data_start..], ts)
        };
        let out_ts = ts;
        let enc = Encoding {
            explicit: ts.uid() != IMPLICIT_VR_LE,
            little: ts.endianness() == Endianness::Little,
        };
        // Some writers declare an explicit VR syntax but encode the data set in Implicit VR
        // Little Endian; read it as it is and write it as declared.
        let (split, enc, ts, mismatch) = match scan(dataset, enc) {
            Ok(split) => (split, enc, ts, false),
            Err(reason) => match (enc == EXPLICIT_LE).then(|| scan(dataset, IMPLICIT_LE)) {
                Some(Ok(split)) => (split, IMPLICIT_LE, lookup_ts(IMPLICIT_VR_LE)?, true),
                _ => return Err(not_dicom(reason, "")),
            },
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
            .map(|m| {
                m.media_storage_sop_class_uid
                    .trim_end_matches(['\0', ' '])
                    .to_string()
            })
            .unwrap_or_default();
        if obj.get(dicom_dictionary_std::tags::SOP_CLASS_UID).is_none() && meta_class.is_empty() {
            return Err(not_dicom("no SOP Class UID", "missing"));
        }
        let bits_allocated = obj
            .get(dicom_dictionary_std::tags::BITS_ALLOCATED)
            .and_then(|e| e.to_int::<u16>().ok())
            .unwrap_or(8);
        let mut report = self.deidentify_object(&mut obj, context);
        report.pixel_data_copied = pixel.is_some();
        if mismatch {
            report.warn(crate::report::Warning::DeclaredTransferSyntaxMismatch);
        }
        let sop_instance = text_of(&obj, dicom_dictionary_std::tags::SOP_INSTANCE_UID);
        let mut sop_class = text_of(&obj, dicom_dictionary_std::tags::SOP_CLASS_UID);
        if sop_class.is_empty() {
            sop_class = meta_class;
        }
        let meta = match meta.take() {
            Some(mut m) => {
                m.transfer_syntax = out_ts.uid().to_string();
                self.deidentify_file_meta(&mut m, &obj);
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
        let mut head = Vec::with_capacity(1024);
        head.extend_from_slice(&[0u8; 128]);
        head.extend_from_slice(b"DICM");
        meta.write(&mut head).map_err(|e| DeidError::Encode {
            reason: "file meta group",
            detail: Phi::new(e.to_string()),
        })?;
        match pixel {
            Some(raw) => {
                let pixel_tag = Tag(0x7FE0, 0x0010);
                // Elements after the pixel data (rare) are written after it.
                let mut after = Vec::new();
                let before = if obj.iter().any(|e| e.tag() >= pixel_tag) {
                    let mut before = InMemDicomObject::new_empty();
                    for e in obj {
                        let t = e.tag();
                        if t > pixel_tag {
                            after.push(e);
                        } else if t < pixel_tag {
                            before.put(e);
                        }
                    }
                    before
                } else {
                    obj
                };
                write_dataset(&before, &mut head, out_ts)?;
                if mismatch {
                    // Re-head the element in the declared encoding; its value is copied as is.
                    let h = read_header(raw, 0, enc)
                        .ok_or_else(|| not_dicom("truncated pixel data", ""))?;
                    let vr: &[u8; 2] = if h.length.is_none() || bits_allocated <= 8 {
                        b"OB"
                    } else {
                        b"OW"
                    };
                    head.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00]);
                    head.extend_from_slice(vr);
                    head.extend_from_slice(&[0, 0]);
                    head.extend_from_slice(&h.length.unwrap_or(u32::MAX).to_le_bytes());
                    emit(out, &head)?;
                    emit(out, &raw[h.value_start..])?;
                } else {
                    emit(out, &head)?;
                    emit(out, raw)?;
                }
                if !after.is_empty() {
                    let tail = InMemDicomObject::from_element_iter(after);
                    let mut tail_bytes = Vec::new();
                    write_dataset(&tail, &mut tail_bytes, out_ts)?;
                    emit(out, &tail_bytes)?;
                }
            }
            None => {
                write_dataset(&obj, &mut head, out_ts)?;
                emit(out, &head)?;
            }
        }
        Ok(report)
    }

    /// Brings a file meta group in line with its de-identified data set: Media Storage SOP
    /// Class and Instance UIDs follow the data set (the instance UID is remapped when the data
    /// set has none), the implementation identifies Bedside, and the application entity titles
    /// and private information are removed. The transfer syntax is left as it is.
    pub fn deidentify_file_meta(&self, meta: &mut FileMetaTable, deidentified: &InMemDicomObject) {
        let sop_instance = text_of(deidentified, dicom_dictionary_std::tags::SOP_INSTANCE_UID);
        let sop_class = text_of(deidentified, dicom_dictionary_std::tags::SOP_CLASS_UID);
        let old_instance = meta
            .media_storage_sop_instance_uid
            .trim_end_matches(['\0', ' '])
            .to_string();
        meta.media_storage_sop_instance_uid = if !sop_instance.is_empty() {
            sop_instance
        } else if self.profile().options.retain_uids || old_instance.is_empty() {
            old_instance
        } else {
            self.map_uid(&old_instance)
        };
        if !sop_class.is_empty() {
            meta.media_storage_sop_class_uid = sop_class;
        }
        meta.implementation_class_uid = IMPLEMENTATION_CLASS_UID.to_string();
        meta.implementation_version_name = Some(IMPLEMENTATION_VERSION_NAME.to_string());
        meta.source_application_entity_title = None;
        meta.sending_application_entity_title = None;
        meta.receiving_application_entity_title = None;
        meta.private_information_creator_uid = None;
        meta.private_information = None;
        meta.update_information_group_length();
    }

    /// De-identifies a whole file object (data set and file meta group) in place.
    pub fn deidentify_file_object(
        &self,
        file: &mut dicom_object::FileDicomObject<InMemDicomObject>,
        context: ObjectContext,
    ) -> ObjectReport {
        let report = self.deidentify_object(file, context);
        let mut meta = file.meta().clone();
        self.deidentify_file_meta(&mut meta, file);
        *file.meta_mut() = meta;
        report
    }

    /// De-identifies `input` into `output` (written atomically). The input is never modified.
    pub fn deidentify_file(
        &self,
        input: &Path,
        output: &Path,
        context: ObjectContext,
    ) -> Result<ObjectReport, DeidError> {
        let same = match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Err(DeidError::WriteFile {
                path: output.to_path_buf(),
                source: std::io::Error::other("the output would replace the input"),
            });
        }
        let bytes = std::fs::read(input).map_err(|source| DeidError::ReadFile {
            path: input.to_path_buf(),
            source,
        })?;
        let mut outcome: Option<Result<ObjectReport, DeidError>> = None;
        let written = bedside_core::fsio::write_atomic_with(output, |w| {
            let result = self.deidentify_to(&bytes, context, w);
            let failed = result.is_err();
            outcome = Some(result);
            if failed {
                // Abandon the temporary file; the real error is returned below.
                Err(std::io::Error::other("de-identification failed"))
            } else {
                Ok(())
            }
        });
        match (outcome, written) {
            (Some(Err(e)), _) => Err(e),
            (_, Err(source)) => Err(DeidError::WriteFile {
                path: output.to_path_buf(),
                source,
            }),
            (Some(Ok(report)), Ok(())) => Ok(report),
            (None, Ok(())) => Err(DeidError::WriteFile {
                path: output.to_path_buf(),
                source: std::io::Error::other("nothing was written"),
            }),
        }
    }
}

fn emit<W: std::io::Write>(out: &mut W, bytes: &[u8]) -> Result<(), DeidError> {
    out.write_all(bytes)
        .map_err(|source| DeidError::Output { source })
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
        b.extend_from_slice(&[
            0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        b.extend_from_slice(&[
            0x08, 0x00, 0x55, 0x11, b'U', b'I', 4, 0, b'1', b'.', b'2', 0,
        ]);
        b.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let start = b.len();
        b.extend_from_slice(&[
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 4, 0, 0, 0, 1, 2, 3, 4,
        ]);
        let enc = Encoding {
            explicit: true,
            little: true,
        };
        assert_eq!(scan(&b, enc), Ok(Some((start, b.len()))));
        // Truncated or lying about a length: an error, never a panic.
        assert!(scan(&b[..b.len() - 2], enc).is_err());
        assert!(scan(&b[..10], enc).is_err());
        let mut long = b.clone();
        long[8..12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        assert!(scan(&long, enc).is_err());
    }
}
