//! De-identification profiles as data (TOML): the standard profile with its options, per-tag
//! overrides, the Retain Safe Private list and the safe-list mode.
//!
//! ```toml
//! mode = "standard"                 # or "safe-list": only attributes named in [[rule]] survive
//! pseudonym_prefix = "BS"
//! pseudonymize_identifiers = true   # PatientID/PatientName/AccessionNumber/StudyID → pseudonyms
//!
//! [options]
//! retain_longitudinal = "modified"  # "off" | "full" | "modified" (dates shifted per patient)
//! retain_uids = false
//! clean_descriptors = true
//!
//! [dates]
//! min_days = -730
//! max_days = -1
//!
//! [[safe_private]]
//! group = "0019"
//! creator = "GEMS_ACQU_01"
//! element = "10"
//!
//! [[rule]]
//! keyword = "InstitutionName"
//! action = "replace"
//! value = "Research site"
//! ```

use std::path::Path;

use bedside_core::config::{self, Validate};
use dicom_core::dictionary::DataDictionary;
use dicom_dictionary_std::StandardDataDictionary;
use serde::{Deserialize, Serialize};

use crate::error::DeidError;
use crate::table::TagPattern;

/// Which attributes a profile starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Table E.1-1 with the chosen options, then the per-tag rules.
    #[default]
    Standard,
    /// Only attributes named by a rule survive (plus the image pixel description, the pixel data
    /// and the instance's identifying UIDs, remapped); everything else is removed.
    SafeList,
}

/// What to do with dates and times (Retain Longitudinal Temporal Information).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Longitudinal {
    /// Basic profile: dates and times removed or emptied.
    Off,
    /// Full Dates option: dates and times kept unchanged.
    Full,
    /// Modified Dates option: dates shifted by a keyed per-patient offset.
    #[default]
    Modified,
}

/// The profile options of table E.1-1.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileOptions {
    /// Retain Safe Private Option: keep the private attributes of [`Profile::safe_private`].
    pub retain_safe_private: bool,
    /// Retain UIDs Option: keep UIDs unchanged.
    pub retain_uids: bool,
    /// Retain Device Identity Option.
    pub retain_device_identity: bool,
    /// Retain Institution Identity Option.
    pub retain_institution_identity: bool,
    /// Retain Patient Characteristics Option (sex, age, size, weight, …).
    pub retain_patient_characteristics: bool,
    /// Retain Longitudinal Temporal Information (off, full dates, modified dates).
    pub retain_longitudinal: Longitudinal,
    /// Clean Descriptors Option: keep free-text descriptions after removing the object's own
    /// identifying values from them.
    pub clean_descriptors: bool,
    /// Clean Structured Content Option: keep SR content and acquisition context, cleaned.
    pub clean_structured_content: bool,
    /// Clean Graphics Option: keep graphic annotations, overlays and curves, cleaned.
    pub clean_graphics: bool,
}

/// The date shift range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DateShift {
    /// Smallest offset in days (inclusive).
    pub min_days: i32,
    /// Largest offset in days (inclusive).
    pub max_days: i32,
}

impl Default for DateShift {
    fn default() -> Self {
        DateShift {
            min_days: -730,
            max_days: -1,
        }
    }
}

/// One private attribute kept under the Retain Safe Private option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafePrivate {
    /// The odd group, four hex digits (e.g. `"0019"`).
    pub group: String,
    /// The private creator string that reserves the block (e.g. `"GEMS_ACQU_01"`).
    pub creator: String,
    /// The element offset within the block, two hex digits (e.g. `"10"` for `(0019,xx10)`).
    pub element: String,
}

/// What a per-tag rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    /// Keep the value unchanged (sequences: keep and de-identify their items).
    Keep,
    /// Remove the attribute.
    Remove,
    /// Keep the attribute with an empty value.
    Empty,
    /// Replace the value with `value`.
    Replace,
    /// Replace the value with a keyed pseudonym of it.
    Hash,
    /// Replace with the patient's pseudonym (the same for every attribute of the patient).
    Patient,
    /// Shift a date or date-time by the patient's offset.
    Shift,
    /// Replace each UID with its keyed `2.25.` UID.
    Uid,
    /// Keep, with the object's own identifying values removed from the text.
    Clean,
}

/// A per-tag override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRule {
    /// The tag, `GGGGEEEE` or `(GGGG,EEEE)`; `x` for any nibble of a repeating group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The PS3.6 keyword (instead of `tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    /// What to do.
    pub action: RuleAction,
    /// The replacement for `action = "replace"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl TagRule {
    /// The tag pattern this rule names.
    pub fn pattern(&self) -> Option<TagPattern> {
        match (&self.tag, &self.keyword) {
            (Some(t), None) => TagPattern::parse(t),
            (None, Some(k)) => StandardDataDictionary.by_name(k).map(|e| {
                let t = e.tag.inner();
                TagPattern {
                    value: (u32::from(t.group()) << 16) | u32::from(t.element()),
                    mask: u32::MAX,
                }
            }),
            _ => None,
        }
    }
}

/// A complete de-identification profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// Standard (table E.1-1) or safe-list.
    pub mode: Mode,
    /// Profile options.
    pub options: ProfileOptions,
    /// Date shift range, used when dates are shifted.
    pub dates: DateShift,
    /// Prefix of identifier pseudonyms (letters and digits, at most 4).
    pub pseudonym_prefix: String,
    /// Replace PatientID, PatientName, AccessionNumber and StudyID with keyed pseudonyms (rather
    /// than emptying them), so instances of one patient and study stay linked. Standard mode
    /// only; in safe-list mode the rules decide.
    pub pseudonymize_identifiers: bool,
    /// Private attributes kept under the Retain Safe Private option.
    pub safe_private: Vec<SafePrivate>,
    /// Per-tag overrides, applied after the table and its options.
    pub rule: Vec<TagRule>,
    /// Burned-in text outside ultrasound, per modality (read when pixel data is cleaned).
    pub burned_in_text: BurnedInText,
}

/// What the OCR pass does with text burned into the pixels of one modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextRule {
    /// Mask words that match the file's own identifiers or date/ID patterns.
    #[default]
    Phi,
    /// Mask every word read.
    All,
    /// Do not read the pixels (unless the file declares BurnedInAnnotation = YES, which then
    /// gets `phi`).
    Off,
}

/// Per-modality policy for burned-in text outside ultrasound (CT, MR, XA, CR, SC, OT, …):
///
/// ```toml
/// [burned_in_text]
/// default = "phi"          # "phi" | "all" | "off"
/// [burned_in_text.modality]
/// SC = "all"               # secondary captures: mask every word
/// CT = "off"               # axial slices rarely carry text; skip OCR unless declared
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BurnedInText {
    /// Policy for modalities not listed.
    pub default: TextRule,
    /// Policy by Modality code (upper case, e.g. `CT`, `XA`).
    pub modality: std::collections::BTreeMap<String, TextRule>,
}

impl BurnedInText {
    /// The rule for a Modality code (case-insensitive).
    pub fn rule_for(&self, modality: &str) -> TextRule {
        let m = modality.trim();
        self.modality
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(m))
            .map(|(_, r)| *r)
            .unwrap_or(self.default)
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            mode: Mode::Standard,
            options: ProfileOptions::default(),
            dates: DateShift::default(),
            pseudonym_prefix: "BS".to_string(),
            pseudonymize_identifiers: true,
            safe_private: Vec::new(),
            rule: Vec::new(),
            burned_in_text: BurnedInText::default(),
        }
    }
}

impl Validate for Profile {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.dates.min_days > self.dates.max_days {
            return Err((
                "dates.min_days".into(),
                "must not be greater than dates.max_days".into(),
            ));
        }
        if self.dates.min_days < -36_500 || self.dates.max_days > 36_500 {
            return Err(("dates".into(), "offsets must be within ±100 years".into()));
        }
        if self.pseudonym_prefix.len() > 4
            || !self
                .pseudonym_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        {
            return Err((
                "pseudonym_prefix".into(),
                "at most 4 ASCII letters or digits".into(),
            ));
        }
        for (i, sp) in self.safe_private.iter().enumerate() {
            let group = u16::from_str_radix(&sp.group, 16).ok();
            if sp.group.len() != 4 || group.is_none_or(|g| g % 2 == 0) {
                return Err((
                    format!("safe_private[{i}].group"),
                    "four hex digits of an odd group".into(),
                ));
            }
            if sp.element.len() != 2 || u8::from_str_radix(&sp.element, 16).is_err() {
                return Err((
                    format!("safe_private[{i}].element"),
                    "two hex digits (the element within the private block)".into(),
                ));
            }
            if sp.creator.trim().is_empty() {
                return Err((
                    format!("safe_private[{i}].creator"),
                    "must not be empty".into(),
                ));
            }
        }
        for (i, r) in self.rule.iter().enumerate() {
            if r.tag.is_some() == r.keyword.is_some() {
                return Err((
                    format!("rule[{i}]"),
                    "give exactly one of `tag` or `keyword`".into(),
                ));
            }
            if r.pattern().is_none() {
                return Err((
                    format!("rule[{i}]"),
                    "unknown keyword or malformed tag".into(),
                ));
            }
            if (r.action == RuleAction::Replace) != r.value.is_some() {
                return Err((
                    format!("rule[{i}].value"),
                    "required with action \"replace\" and only there".into(),
                ));
            }
        }
        Ok(())
    }
}

impl Profile {
    /// Parses and validates a profile from TOML text; missing keys take their defaults.
    pub fn from_toml(text: &str, origin: &str) -> Result<Profile, DeidError> {
        config::from_str::<Profile>(text, origin).map_err(|e| match e {
            config::ConfigError::Invalid {
                origin,
                key,
                message,
            } => DeidError::Profile {
                origin,
                key,
                message,
            },
            other => DeidError::Profile {
                origin: origin.to_string(),
                key: String::new(),
                message: other.to_string(),
            },
        })
    }

    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Profile, DeidError> {
        let text = std::fs::read_to_string(path).map_err(|source| DeidError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        Profile::from_toml(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses() {
        let text = r#"
            mode = "standard"
            [options]
            retain_longitudinal = "full"
            clean_descriptors = true
            [dates]
            min_days = -100
            max_days = -50
            [[safe_private]]
            group = "0019"
            creator = "GEMS_ACQU_01"
            element = "10"
            [[rule]]
            keyword = "InstitutionName"
            action = "replace"
            value = "Research site"
        "#;
        let p = Profile::from_toml(text, "example").expect("parses");
        assert_eq!(p.options.retain_longitudinal, Longitudinal::Full);
        assert!(p.options.clean_descriptors);
        assert_eq!(p.rule[0].pattern().map(|t| t.value), Some(0x0008_0080));
        assert_eq!(p.pseudonym_prefix, "BS");
    }

    #[test]
    fn errors_name_the_key() {
        let bad = Profile::from_toml("[dates]\nmin_days = 5\nmax_days = 1\n", "p.toml");
        assert!(
            matches!(&bad, Err(DeidError::Profile { key, .. }) if key == "dates.min_days"),
            "{bad:?}"
        );
        let bad = Profile::from_toml(
            "[[rule]]\nkeyword = \"NoSuchThing\"\naction = \"keep\"\n",
            "p",
        );
        assert!(
            matches!(&bad, Err(DeidError::Profile { key, .. }) if key == "rule[0]"),
            "{bad:?}"
        );
        let bad = Profile::from_toml("[options]\nretain_uid = true\n", "p");
        assert!(
            matches!(&bad, Err(DeidError::Profile { key, .. }) if key.contains("retain_uid")),
            "{bad:?}"
        );
    }
}
