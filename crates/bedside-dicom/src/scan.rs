//! A structure scan of encoded DICOM that checks every declared length against the bytes that
//! are really there, before a full parser allocates anything.
//!
//! Full parsers allocate a value's buffer from its declared length; a malformed 4 KB file that
//! declares a 4 GB element then costs 4 GB of memory. Scanning first bounds memory by the file's
//! size: after [`scan_dataset`] succeeds, every defined length fits in its enclosing item or
//! the file.

/// Why the structure is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// An element header or value runs past the end of its container.
    #[error(
        "element ({group:04X},{element:04X}) at byte {offset} declares {declared} bytes, {available} remain"
    )]
    Truncated {
        /// Group of the element.
        group: u16,
        /// Element number.
        element: u16,
        /// Offset of the element header in the data set.
        offset: usize,
        /// Declared value length.
        declared: u64,
        /// Bytes left in the container.
        available: u64,
    },
    /// The data set ends in the middle of an element header.
    #[error("data set ends inside an element header at byte {offset}")]
    ShortHeader {
        /// Offset of the header.
        offset: usize,
    },
    /// Sequences nest deeper than any real object.
    #[error("sequences nested deeper than {limit} levels at byte {offset}")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
        /// Where the limit was hit.
        offset: usize,
    },
    /// An explicit VR is not one of the standard two-letter codes.
    #[error("invalid value representation {vr:?} for ({group:04X},{element:04X}) at byte {offset}")]
    BadVr {
        /// Group of the element.
        group: u16,
        /// Element number.
        element: u16,
        /// The two bytes found.
        vr: [u8; 2],
        /// Offset of the element header.
        offset: usize,
    },
    /// A binary value's length is not a whole number of its values.
    #[error(
        "element ({group:04X},{element:04X}) at byte {offset} declares {declared} bytes, not a multiple of {unit}"
    )]
    BadLength {
        /// Group of the element.
        group: u16,
        /// Element number.
        element: u16,
        /// Offset of the element header.
        offset: usize,
        /// Declared value length.
        declared: u64,
        /// Size of one value.
        unit: u32,
    },
    /// A sequence holds something other than items.
    #[error("({group:04X},{element:04X}) at byte {offset} stands where a sequence item must")]
    NotAnItem {
        /// Group of the element.
        group: u16,
        /// Element number.
        element: u16,
        /// Where it is.
        offset: usize,
    },
    /// A sequence or item of undefined length is never closed.
    #[error("undefined-length {what} starting at byte {offset} is never closed")]
    Unclosed {
        /// `sequence` or `item`.
        what: &'static str,
        /// Where it starts.
        offset: usize,
    },
}

/// Encoding of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// Explicit VR (else implicit).
    pub explicit_vr: bool,
    /// Little endian (else big endian).
    pub little_endian: bool,
}

impl Encoding {
    /// Explicit VR little endian (the file meta group and most files).
    pub const EXPLICIT_LE: Encoding = Encoding {
        explicit_vr: true,
        little_endian: true,
    };
    /// Implicit VR little endian.
    pub const IMPLICIT_LE: Encoding = Encoding {
        explicit_vr: false,
        little_endian: true,
    };

    /// The encoding of a transfer syntax UID; `None` for deflated syntaxes (whose data set must
    /// be inflated first) and unknown ones are treated as explicit little endian.
    pub fn of_transfer_syntax(uid: &str) -> Option<Encoding> {
        match uid.trim_end_matches(['\0', ' ']) {
            "1.2.840.10008.1.2" => Some(Encoding::IMPLICIT_LE),
            "1.2.840.10008.1.2.2" => Some(Encoding {
                explicit_vr: true,
                little_endian: false,
            }),
            "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" => None,
            _ => Some(Encoding::EXPLICIT_LE),
        }
    }
}

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Deepest sequence nesting accepted.
pub const MAX_DEPTH: usize = 32;

/// Every value representation of the standard (PS3.5 table 6.2-1).
const KNOWN_VRS: [&[u8; 2]; 34] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
];

const LONG_VRS: [&[u8; 2]; 13] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV",
];

struct Scanner<'a> {
    buf: &'a [u8],
    enc: Encoding,
}

impl Scanner<'_> {
    fn u16_at(&self, at: usize) -> u16 {
        let b = [self.buf[at], self.buf[at + 1]];
        if self.enc.little_endian {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    }

    fn u32_at(&self, at: usize) -> u32 {
        let b = [
            self.buf[at],
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
        ];
        if self.enc.little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    }

    /// Scans elements in `[pos, end)`; stops early at an item delimiter when `in_item`.
    /// Returns the position after the last element (after the delimiter when one ended it).
    fn dataset(
        &self,
        mut pos: usize,
        end: usize,
        depth: usize,
        undefined_item: bool,
    ) -> Result<usize, ScanError> {
        if depth > MAX_DEPTH {
            return Err(ScanError::TooDeep {
                limit: MAX_DEPTH,
                offset: pos,
            });
        }
        while pos < end {
            if end - pos < 8 {
                return Err(ScanError::ShortHeader { offset: pos });
            }
            let group = self.u16_at(pos);
            let element = self.u16_at(pos + 2);
            if group == 0xFFFE {
                // Delimiters are always implicit: tag + 4-byte length.
                if element == 0xE00D && undefined_item {
                    return Ok(pos + 8);
                }
                let len = self.u32_at(pos + 4) as u64;
                if len > (end - pos - 8) as u64 {
                    return Err(ScanError::Truncated {
                        group,
                        element,
                        offset: pos,
                        declared: len,
                        available: (end - pos - 8) as u64,
                    });
                }
                pos += 8 + len as usize;
                continue;
            }
            let mut vr_code: Option<[u8; 2]> = None;
            let (len, header, is_sq) = if self.enc.explicit_vr {
                let vr = [self.buf[pos + 4], self.buf[pos + 5]];
                vr_code = Some(vr);
                // An unknown VR leaves the length layout unknown (parsers guess differently), so
                // it is rejected rather than guessed.
                if !KNOWN_VRS.contains(&&vr) {
                    return Err(ScanError::BadVr {
                        group,
                        element,
                        vr,
                        offset: pos,
                    });
                }
                if LONG_VRS.contains(&&vr) {
                    if end - pos < 12 {
                        return Err(ScanError::ShortHeader { offset: pos });
                    }
                    (self.u32_at(pos + 8), 12, &vr == b"SQ")
                } else {
                    (self.u16_at(pos + 6) as u32, 8, false)
                }
            } else {
                // Implicit VR: parsers take the VR from the dictionary, so a sequence must be
                // recognised the same way to check what it holds.
                let known = StandardDataDictionary
                    .by_tag(dicom_core::Tag(group, element))
                    .map(|e| e.vr());
                if let Some(VirtualVr::Exact(vr)) = known {
                    let code = vr.to_string().as_bytes().to_owned();
                    if code.len() == 2 {
                        vr_code = Some([code[0], code[1]]);
                    }
                }
                let is_sq = known == Some(VirtualVr::Exact(dicom_core::VR::SQ));
                (self.u32_at(pos + 4), 8, is_sq)
            };
            let start = pos + header;
            if len == UNDEFINED {
                // A sequence, or encapsulated pixel data (items of fragments); both are lists of
                // items closed by a sequence delimiter.
                pos = self.items(start, end, depth + 1, group == 0x7FE0, true)?;
                continue;
            }
            // Binary values come in whole numbers; a parser reading a partial one loses its place
            // in the stream and reads garbage lengths next.
            let unit = match vr_code.as_ref().map(|v| &v[..]) {
                Some(b"SS" | b"US" | b"OW") => 2,
                Some(b"SL" | b"UL" | b"FL" | b"AT" | b"OL" | b"OF") => 4,
                Some(b"FD" | b"SV" | b"UV" | b"OD" | b"OV") => 8,
                _ => 1,
            };
            if len != UNDEFINED && len % unit != 0 {
                return Err(ScanError::BadLength {
                    group,
                    element,
                    offset: pos,
                    declared: len as u64,
                    unit,
                });
            }
            let available = (end - start) as u64;
            if len as u64 > available {
                return Err(ScanError::Truncated {
                    group,
                    element,
                    offset: pos,
                    declared: len as u64,
                    available,
                });
            }
            let value_end = start + len as usize;
            if is_sq {
                self.items(start, value_end, depth + 1, false, false)?;
            }
            pos = value_end;
        }
        if undefined_item {
            return Err(ScanError::Unclosed {
                what: "item",
                offset: pos,
            });
        }
        Ok(pos)
    }

    /// Scans items in `[pos, end)` until a sequence delimiter (`undefined`) or `end`.
    fn items(
        &self,
        mut pos: usize,
        end: usize,
        depth: usize,
        fragments: bool,
        undefined: bool,
    ) -> Result<usize, ScanError> {
        if depth > MAX_DEPTH {
            return Err(ScanError::TooDeep {
                limit: MAX_DEPTH,
                offset: pos,
            });
        }
        let open = pos;
        while pos < end {
            if end - pos < 8 {
                return Err(ScanError::ShortHeader { offset: pos });
            }
            let group = self.u16_at(pos);
            let element = self.u16_at(pos + 2);
            let len = self.u32_at(pos + 4);
            pos += 8;
            match (group, element) {
                (0xFFFE, 0xE0DD) => return Ok(pos),
                (0xFFFE, 0xE000) if len == UNDEFINED && !fragments => {
                    pos = self.dataset(pos, end, depth + 1, true)?;
                }
                (0xFFFE, 0xE000) => {
                    let available = (end - pos) as u64;
                    if len as u64 > available {
                        return Err(ScanError::Truncated {
                            group,
                            element,
                            offset: pos - 8,
                            declared: len as u64,
                            available,
                        });
                    }
                    if !fragments {
                        self.dataset(pos, pos + len as usize, depth + 1, false)?;
                    }
                    pos += len as usize;
                }
                _ => {
                    return Err(ScanError::NotAnItem {
                        group,
                        element,
                        offset: pos - 8,
                    });
                }
            }
        }
        if undefined {
            return Err(ScanError::Unclosed {
                what: "sequence",
                offset: open,
            });
        }
        Ok(pos)
    }
}

/// Scans an encoded data set (without preamble and file meta group).
pub fn scan_dataset(bytes: &[u8], encoding: Encoding) -> Result<(), ScanError> {
    let s = Scanner {
        buf: bytes,
        enc: encoding,
    };
    s.dataset(0, bytes.len(), 0, false).map(|_| ())
}
