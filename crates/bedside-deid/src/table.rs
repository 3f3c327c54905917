//! The attribute table of the Application Level Confidentiality Profile (PS3.15 Annex E,
//! table E.1-1), loaded from the data file embedded in this crate.

use serde::Deserialize;

use crate::error::DeidError;

/// The table as shipped with the crate (TOML).
pub const STANDARD_TABLE_TOML: &str = include_str!("../data/confidentiality_profile.toml");

/// An action code of table E.1-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum Action {
    /// Replace with a non-zero-length dummy value consistent with the VR.
    #[serde(rename = "D")]
    Dummy,
    /// Replace with a zero-length value (or a dummy value).
    #[serde(rename = "Z")]
    Zero,
    /// Remove the attribute (and for a sequence, all its items).
    #[serde(rename = "X")]
    Remove,
    /// Keep (unchanged for non-sequences, cleaned for sequences).
    #[serde(rename = "K")]
    Keep,
    /// Clean: replace with values of similar meaning known not to identify.
    #[serde(rename = "C")]
    Clean,
    /// Replace with a non-zero-length UID that is internally consistent.
    #[serde(rename = "U")]
    Uid,
    /// Z unless D is required to maintain IOD conformance.
    #[serde(rename = "Z/D")]
    ZeroOrDummy,
    /// X unless Z is required to maintain IOD conformance.
    #[serde(rename = "X/Z")]
    RemoveOrZero,
    /// X unless D is required to maintain IOD conformance.
    #[serde(rename = "X/D")]
    RemoveOrDummy,
    /// X unless Z or D is required to maintain IOD conformance.
    #[serde(rename = "X/Z/D")]
    RemoveOrZeroOrDummy,
    /// X unless Z or replacement of contained instance UIDs (U) is required.
    #[serde(rename = "X/Z/U*")]
    RemoveOrZeroOrUids,
}

impl Action {
    /// The code as printed in table E.1-1 (`"X/Z/D"`, …).
    pub fn code(self) -> &'static str {
        match self {
            Action::Dummy => "D",
            Action::Zero => "Z",
            Action::Remove => "X",
            Action::Keep => "K",
            Action::Clean => "C",
            Action::Uid => "U",
            Action::ZeroOrDummy => "Z/D",
            Action::RemoveOrZero => "X/Z",
            Action::RemoveOrDummy => "X/D",
            Action::RemoveOrZeroOrDummy => "X/Z/D",
            Action::RemoveOrZeroOrUids => "X/Z/U*",
        }
    }

    /// Parses a code as printed in table E.1-1.
    pub fn from_code(code: &str) -> Option<Action> {
        Some(match code {
            "D" => Action::Dummy,
            "Z" => Action::Zero,
            "X" => Action::Remove,
            "K" => Action::Keep,
            "C" => Action::Clean,
            "U" => Action::Uid,
            "Z/D" => Action::ZeroOrDummy,
            "X/Z" => Action::RemoveOrZero,
            "X/D" => Action::RemoveOrDummy,
            "X/Z/D" => Action::RemoveOrZeroOrDummy,
            "X/Z/U*" => Action::RemoveOrZeroOrUids,
            _ => return None,
        })
    }
}

/// A tag or a family of tags: `(value & mask) == (tag & mask)`.
///
/// Written `GGGGEEEE` in hex; an `x` stands for a nibble that may take any value, as in
/// `60xx3000` (overlay data of every overlay group) or `50xxxxxx` (curve data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagPattern {
    /// The tag bits that must match, `group << 16 | element`.
    pub value: u32,
    /// Which bits are compared.
    pub mask: u32,
}

impl TagPattern {
    /// Parses `GGGGEEEE` (hex digits or `x`), with optional `(`, `,` and `)` as in `(0010,0010)`.
    pub fn parse(text: &str) -> Option<TagPattern> {
        let digits: Vec<char> = text
            .chars()
            .filter(|c| !matches!(c, '(' | ')' | ',' | ' '))
            .collect();
        if digits.len() != 8 {
            return None;
        }
        let mut value = 0u32;
        let mut mask = 0u32;
        for c in digits {
            value <<= 4;
            mask <<= 4;
            if c == 'x' || c == 'X' {
                continue;
            }
            value |= c.to_digit(16)?;
            mask |= 0xF;
        }
        Some(TagPattern { value, mask })
    }

    /// Whether the pattern names exactly one tag.
    pub fn is_exact(&self) -> bool {
        self.mask == u32::MAX
    }

    /// Whether `tag` (`group << 16 | element`) belongs to the pattern.
    pub fn matches(&self, tag: u32) -> bool {
        tag & self.mask == self.value
    }

    /// Whether this is a repeating-group pattern whose group must also be even and within the
    /// repeating range (`50xx`, `60xx`: groups 0x5000..=0x501E, 0x6000..=0x601E).
    pub fn matches_repeating(&self, tag: u32) -> bool {
        if !self.matches(tag) {
            return false;
        }
        if self.is_exact() {
            return true;
        }
        let group = tag >> 16;
        let base = self.value >> 16;
        group.is_multiple_of(2) && group >= base && group <= base + 0x1E
    }
}

impl std::fmt::Display for TagPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::with_capacity(11);
        s.push('(');
        for i in (0..8).rev() {
            if i == 3 {
                s.push(',');
            }
            let shift = i * 4;
            if (self.mask >> shift) & 0xF == 0 {
                s.push('x');
            } else {
                let d = (self.value >> shift) & 0xF;
                s.push(char::from_digit(d, 16).map_or('?', |c| c.to_ascii_uppercase()));
            }
        }
        s.push(')');
        f.write_str(&s)
    }
}

/// The option columns of table E.1-1, in the table's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OptionColumn {
    /// Retain Safe Private Option.
    RetainSafePrivate,
    /// Retain UIDs Option.
    RetainUids,
    /// Retain Device Identity Option.
    RetainDeviceIdentity,
    /// Retain Institution Identity Option.
    RetainInstitutionIdentity,
    /// Retain Patient Characteristics Option.
    RetainPatientCharacteristics,
    /// Retain Longitudinal Temporal Information with Full Dates Option.
    RetainLongitudinalFullDates,
    /// Retain Longitudinal Temporal Information with Modified Dates Option.
    RetainLongitudinalModifiedDates,
    /// Clean Descriptors Option.
    CleanDescriptors,
    /// Clean Structured Content Option.
    CleanStructuredContent,
    /// Clean Graphics Option.
    CleanGraphics,
}

impl OptionColumn {
    /// Every column, in the table's order.
    pub const ALL: [OptionColumn; 10] = [
        OptionColumn::RetainSafePrivate,
        OptionColumn::RetainUids,
        OptionColumn::RetainDeviceIdentity,
        OptionColumn::RetainInstitutionIdentity,
        OptionColumn::RetainPatientCharacteristics,
        OptionColumn::RetainLongitudinalFullDates,
        OptionColumn::RetainLongitudinalModifiedDates,
        OptionColumn::CleanDescriptors,
        OptionColumn::CleanStructuredContent,
        OptionColumn::CleanGraphics,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One row of table E.1-1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRow {
    /// The attribute's tag (or a repeating-group pattern).
    pub tag: TagPattern,
    /// The PS3.6 keyword.
    pub keyword: String,
    /// The Basic Profile action.
    pub basic: Action,
    options: [Option<Action>; 10],
    /// Whether the option columns were assigned by rule rather than transcribed.
    pub options_inferred: bool,
}

impl TableRow {
    /// The action under an option column, if the table gives one.
    pub fn option(&self, column: OptionColumn) -> Option<Action> {
        self.options[column.index()]
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    edition: String,
    attribute: Vec<RawRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRow {
    tag: String,
    keyword: String,
    basic: Action,
    retain_safe_private: Option<Action>,
    retain_uids: Option<Action>,
    retain_device_identity: Option<Action>,
    retain_institution_identity: Option<Action>,
    retain_patient_characteristics: Option<Action>,
    retain_long_full_dates: Option<Action>,
    retain_long_modified_dates: Option<Action>,
    clean_descriptors: Option<Action>,
    clean_structured_content: Option<Action>,
    clean_graphics: Option<Action>,
    #[serde(default)]
    options_inferred: bool,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

/// Table E.1-1 as data.
#[derive(Debug, Clone)]
pub struct ConfidentialityTable {
    /// The edition of PS3.15 the table follows (e.g. `2026c`).
    pub edition: String,
    /// The rows, in tag order.
    pub rows: Vec<TableRow>,
}

impl ConfidentialityTable {
    /// The table embedded in the crate.
    pub fn standard() -> Result<ConfidentialityTable, DeidError> {
        ConfidentialityTable::from_toml(STANDARD_TABLE_TOML)
    }

    /// Parses a table in the format of the embedded one.
    pub fn from_toml(text: &str) -> Result<ConfidentialityTable, DeidError> {
        let raw: RawTable = toml::from_str(text).map_err(|e| DeidError::Table {
            message: e.to_string(),
        })?;
        let mut rows = Vec::with_capacity(raw.attribute.len());
        for r in raw.attribute {
            let tag = TagPattern::parse(&r.tag).ok_or_else(|| DeidError::Table {
                message: format!("bad tag `{}` for {}", r.tag, r.keyword),
            })?;
            rows.push(TableRow {
                tag,
                keyword: r.keyword,
                basic: r.basic,
                options: [
                    r.retain_safe_private,
                    r.retain_uids,
                    r.retain_device_identity,
                    r.retain_institution_identity,
                    r.retain_patient_characteristics,
                    r.retain_long_full_dates,
                    r.retain_long_modified_dates,
                    r.clean_descriptors,
                    r.clean_structured_content,
                    r.clean_graphics,
                ],
                options_inferred: r.options_inferred,
            });
        }
        Ok(ConfidentialityTable {
            edition: raw.edition,
            rows,
        })
    }

    /// The row for a tag: an exact row first, then a repeating-group pattern.
    pub fn row_for(&self, tag: u32) -> Option<&TableRow> {
        self.rows
            .iter()
            .find(|r| r.tag.is_exact() && r.tag.value == tag)
            .or_else(|| {
                self.rows
                    .iter()
                    .find(|r| !r.tag.is_exact() && r.tag.matches_repeating(tag))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_parses_with_unique_tags() {
        let table = ConfidentialityTable::standard().expect("embedded table parses");
        assert!(table.rows.len() > 600, "{} rows", table.rows.len());
        let mut seen = std::collections::HashSet::new();
        for r in &table.rows {
            assert!(
                seen.insert((r.tag.value, r.tag.mask)),
                "duplicate {}",
                r.tag
            );
        }
    }

    #[test]
    fn patterns_match_repeating_groups_only() {
        let overlay = TagPattern::parse("60xx3000").expect("pattern");
        assert!(overlay.matches_repeating(0x6000_3000));
        assert!(overlay.matches_repeating(0x601E_3000));
        assert!(!overlay.matches_repeating(0x6001_3000));
        assert!(!overlay.matches_repeating(0x6020_3000));
        assert!(!overlay.matches_repeating(0x6000_0010));
        let curve = TagPattern::parse("50xxxxxx").expect("pattern");
        assert!(curve.matches_repeating(0x5002_0110));
        assert_eq!(curve.to_string(), "(50xx,xxxx)");
        assert_eq!(
            TagPattern::parse("(0010,0010)").map(|p| p.value),
            Some(0x0010_0010)
        );
    }

    #[test]
    fn well_known_rows_have_the_standard_actions() {
        let t = ConfidentialityTable::standard().expect("table");
        let row = |tag: u32| t.row_for(tag).expect("row");
        assert_eq!(row(0x0010_0010).basic, Action::Zero);
        assert_eq!(row(0x0020_000D).basic, Action::Uid);
        assert_eq!(
            row(0x0020_000D).option(OptionColumn::RetainUids),
            Some(Action::Keep)
        );
        assert_eq!(row(0x0008_0080).basic, Action::RemoveOrZeroOrDummy);
        assert_eq!(
            row(0x0008_0080).option(OptionColumn::RetainInstitutionIdentity),
            Some(Action::Keep)
        );
        assert_eq!(row(0x0008_1140).basic, Action::RemoveOrZeroOrUids);
        assert_eq!(
            row(0x0008_0020).option(OptionColumn::RetainLongitudinalModifiedDates),
            Some(Action::Clean)
        );
        assert_eq!(row(0x6002_3000).keyword, "OverlayData");
    }
}
