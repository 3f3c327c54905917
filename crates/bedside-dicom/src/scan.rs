//! A structure scan of encoded DICOM that checks every declared length against the bytes that
//! are really there, before a full parser allocates anything.
//!
//! Full parsers allocate a value's buffer from its declared length; a malformed 4 KB file that
//! declares a 4 GB element then costs 4 GB of memory. Scanning first bounds memory by the file's
//! size: after [`scan_dataset`] succeeds, every defined length fits in its enclosing item or
//! the file, the parser (dicom-rs) is known to walk the same element boundaries as the scan,
//! and the memory the parsed object will take is estimated and within [`budget`].
//!
//! Walking the *same* boundaries is what makes the length checks mean anything: dicom-rs reads
//! from a stream and trusts every length it meets, so one byte of disagreement (an implicit-VR
//! `US or SS` value of odd length, read as whole 16-bit words; a stray item delimiter whose
//! length it ignores) shifts it onto bytes the scan never checked, where it finds a garbage
//! length and reserves that much. The scan therefore resolves value representations exactly as
//! dicom-rs does and refuses every construct the two might read differently.

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
    /// A delimiter or item stands where a data element must.
    #[error(
        "({group:04X},{element:04X}) at byte {offset} is a delimiter outside the item it would close"
    )]
    StrayDelimiter {
        /// Group of the element (FFFE).
        group: u16,
        /// Element number.
        element: u16,
        /// Where it is.
        offset: usize,
    },
    /// Parsing would take far more memory than the file's size justifies (for example tens of
    /// thousands of empty multi-valued strings, each of which becomes a separate value).
    #[error(
        "parsing would need about {estimated} bytes of memory for a {size}-byte data set (limit {limit})"
    )]
    TooCostly {
        /// Estimated bytes the parsed object takes.
        estimated: u64,
        /// Size of the scanned data set.
        size: usize,
        /// The budget for that size.
        limit: u64,
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

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Deepest sequence nesting accepted.
pub const MAX_DEPTH: usize = 32;

/// Memory a parsed data set may take, per byte of its encoding.
pub const BUDGET_PER_BYTE: u64 = 14;
/// Memory any data set may take regardless of its size, so small files are never refused for
/// density (a few hundred kilobytes of structured report fit in it).
pub const BUDGET_BASE: u64 = 3 << 20;

/// The memory budget, in bytes, of parsing a data set of `size` bytes.
pub fn budget(size: usize) -> u64 {
    BUDGET_BASE + BUDGET_PER_BYTE * size as u64
}

// What dicom-object 0.10 takes, measured with a counting allocator and the kernel's peak
// resident set on element-dense inputs (tests/bounded_memory.rs, the fuzz harness), rounded up.
/// One element: header and value enum in its data set's B-tree, node share included.
const ELEMENT_COST: u64 = 200;
/// One item's own object, before its first element.
const ITEM_COST: u64 = 64;
/// The first element of a data set or item allocates a whole B-tree leaf (eleven slots).
const NODE_COST: u64 = 1_280;
/// One value of a multi-valued string: its `String` (allocations are at least 32 bytes) and
/// its slot in a `SmallVec` that grows by doubling.
const STRING_VALUE_COST: u64 = 80;
/// Decoded text takes at most this many bytes per encoded byte (UTF-8 of single-byte
/// character sets and of two-byte sets like GB18030).
const TEXT_EXPANSION: u64 = 3;

/// Every value representation of the standard (PS3.5 table 6.2-1).
const KNOWN_VRS: [&[u8; 2]; 34] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
];

/// Explicit VRs whose header has a 4-byte length (PS3.5 7.1.2; what dicom-rs reads as such).
pub(crate) const LONG_VRS: [&[u8; 2]; 13] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV",
];

/// Whether `code` is a standard explicit VR.
pub(crate) fn is_known_vr(code: &[u8; 2]) -> bool {
    KNOWN_VRS.contains(&code)
}

/// The VR dicom-rs gives an element in implicit VR: the dictionary's, with the ambiguous
/// ones (`US or SS`, `OB or OW`, ...) relaxed the way dicom-rs relaxes them, and UN for
/// tags it does not know.
fn implicit_vr(tag: Tag) -> VR {
    if tag == Tag(0x7FE0, 0x0010) || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
        return VR::OW;
    }
    StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.vr().relaxed())
        .unwrap_or(VR::UN)
}

/// Size of one binary value: dicom-rs reads `len / unit` whole values and moves on by `len`,
/// so any remainder would leave it out of step with the bytes.
fn unit(vr: VR) -> u32 {
    match vr {
        VR::SS | VR::US | VR::OW => 2,
        VR::SL | VR::UL | VR::FL | VR::AT | VR::OL | VR::OF => 4,
        VR::FD | VR::SV | VR::UV | VR::OD | VR::OV => 8,
        _ => 1,
    }
}

/// Whether dicom-object reads a value of `vr` as text split on backslashes, one `String` per
/// part.
pub(crate) fn splits_on_backslash(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::IS
            | VR::LO
            | VR::PN
            | VR::SH
            | VR::TM
            | VR::UC
            | VR::UI
    )
}

/// Memory dicom-object takes for a value of `vr` encoded as `value` (beyond the element).
fn value_cost(vr: VR, value: &[u8]) -> u64 {
    let len = value.len() as u64;
    match vr {
        // Read "preserved": each backslash-separated part becomes its own `String`.
        vr if splits_on_backslash(vr) => {
            let parts = 1 + value.iter().filter(|&&b| b == b'\\').count() as u64;
            TEXT_EXPANSION * len + STRING_VALUE_COST * parts
        }
        VR::LT | VR::ST | VR::UR | VR::UT => TEXT_EXPANSION * len,
        _ => len,
    }
}

/// What a walk of a data set meets, in encoded order, for readers that want values without
/// building an object (see [`scan_dataset_visit`]). Every slice handed over lies within bounds
/// the scan has already checked; the default methods ignore everything.
pub trait Visitor<'a> {
    /// An element nested in `level` sequences (0 at the top), before anything inside it:
    /// `value` holds a defined-length value that is not a sequence, and is `None` for sequences
    /// and undefined-length values (whose items follow).
    fn element(&mut self, level: usize, tag: Tag, vr: VR, value: Option<&'a [u8]>) {
        let _ = (level, tag, vr, value);
    }
    /// An item of a sequence begins; its elements are at `level`.
    fn item(&mut self, level: usize) {
        let _ = level;
    }
    /// An item of encapsulated pixel data found at `level` (the first one is the Basic Offset
    /// Table).
    fn fragment(&mut self, level: usize, bytes: &'a [u8]) {
        let _ = (level, bytes);
    }
}

/// The visitor of a plain scan.
struct Ignore;

impl Visitor<'_> for Ignore {}

struct Scanner<'a, 'v, V: Visitor<'a>> {
    buf: &'a [u8],
    enc: Encoding,
    cost: u64,
    visit: &'v mut V,
}

impl<'a, V: Visitor<'a>> Scanner<'a, '_, V> {
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
        &mut self,
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
        let mut first = true;
        while pos < end {
            if end - pos < 8 {
                return Err(ScanError::ShortHeader { offset: pos });
            }
            let group = self.u16_at(pos);
            let element = self.u16_at(pos + 2);
            if group == 0xFFFE {
                // Delimiters are always implicit: tag + 4-byte length. dicom-rs ignores the
                // length of an item delimiter and reads other FFFE tags as values, so only the
                // one use both readers agree on is accepted: closing an undefined-length item.
                if element == 0xE00D && undefined_item {
                    return Ok(pos + 8);
                }
                return Err(ScanError::StrayDelimiter {
                    group,
                    element,
                    offset: pos,
                });
            }
            let tag = Tag(group, element);
            let (vr, len, header) = if self.enc.explicit_vr {
                let code = [self.buf[pos + 4], self.buf[pos + 5]];
                // An unknown VR leaves the length layout unknown (parsers guess differently), so
                // it is rejected rather than guessed.
                let vr = match VR::from_binary(code) {
                    Some(vr) if is_known_vr(&code) => vr,
                    _ => {
                        return Err(ScanError::BadVr {
                            group,
                            element,
                            vr: code,
                            offset: pos,
                        });
                    }
                };
                if LONG_VRS.contains(&&code) {
                    if end - pos < 12 {
                        return Err(ScanError::ShortHeader { offset: pos });
                    }
                    (vr, self.u32_at(pos + 8), 12)
                } else {
                    (vr, self.u16_at(pos + 6) as u32, 8)
                }
            } else {
                (implicit_vr(tag), self.u32_at(pos + 4), 8)
            };
            self.cost += ELEMENT_COST;
            if first {
                self.cost += NODE_COST;
                first = false;
            }
            let start = pos + header;
            let level = depth / 2;
            if len == UNDEFINED {
                self.visit.element(level, tag, vr, None);
                // A sequence, or encapsulated pixel data (items of fragments); dicom-rs reads
                // any other undefined-length element as a sequence too. Both are lists of
                // items closed by a sequence delimiter.
                let fragments = tag == Tag(0x7FE0, 0x0010);
                pos = self.items(start, end, depth + 1, fragments, true)?;
                continue;
            }
            let unit = unit(vr);
            if len % unit != 0 {
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
            if vr == VR::SQ {
                self.visit.element(level, tag, vr, None);
                self.items(start, value_end, depth + 1, false, false)?;
            } else {
                let value = &self.buf[start..value_end];
                self.visit.element(level, tag, vr, Some(value));
                self.cost += value_cost(vr, value);
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
        &mut self,
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
            self.cost += ITEM_COST;
            match (group, element) {
                (0xFFFE, 0xE0DD) if undefined => return Ok(pos),
                (0xFFFE, 0xE000) if len == UNDEFINED && !fragments => {
                    self.visit.item(depth.div_ceil(2));
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
                    if fragments {
                        // A fragment (or the offset table, read as 32-bit offsets).
                        self.cost += len as u64;
                        self.visit
                            .fragment(depth / 2, &self.buf[pos..pos + len as usize]);
                    } else {
                        self.visit.item(depth.div_ceil(2));
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

/// Scans an encoded data set (without preamble and file meta group): every length, the
/// element boundaries dicom-rs will walk, and the memory the parsed object will take (at most
/// [`budget`] of the data set's size).
pub fn scan_dataset(bytes: &[u8], encoding: Encoding) -> Result<(), ScanError> {
    scan_dataset_visit(bytes, encoding, &mut Ignore)
}

/// [`scan_dataset`], handing every element, item and pixel data fragment to `visit` as the scan
/// meets it. The scan may still fail after the visitor has seen part of the data set: what it
/// gathered is only to be used when this returns `Ok`.
pub fn scan_dataset_visit<'a, V: Visitor<'a>>(
    bytes: &'a [u8],
    encoding: Encoding,
    visit: &mut V,
) -> Result<(), ScanError> {
    let mut s = Scanner {
        buf: bytes,
        enc: encoding,
        cost: 0,
        visit,
    };
    s.dataset(0, bytes.len(), 0, false)?;
    let limit = budget(bytes.len());
    if s.cost > limit {
        return Err(ScanError::TooCostly {
            estimated: s.cost,
            size: bytes.len(),
            limit,
        });
    }
    Ok(())
}
