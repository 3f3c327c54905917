//! What was done to one object: actions per tag, counts per action, warnings.
//!
//! A report holds tags, action names and fixed messages only, never a value read from the file,
//! so it can be logged and shipped with the outputs.

use std::collections::BTreeMap;

use serde::Serialize;

/// One kind of action taken on an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionTaken {
    /// Removed (X).
    Removed,
    /// Kept with an empty value (Z).
    Emptied,
    /// Replaced with a dummy value (D).
    Dummy,
    /// UIDs replaced with keyed `2.25.` UIDs (U).
    UidReplaced,
    /// Replaced with a keyed pseudonym.
    Pseudonymized,
    /// Replaced with a value given by the profile.
    Replaced,
    /// Dates shifted by the patient's offset.
    DateShifted,
    /// Free text cleaned of the object's identifying values (C).
    Cleaned,
    /// Free text that was examined by cleaning and needed no change.
    CleanedUnchanged,
    /// An age over 89 years capped at 90.
    AgeCapped,
    /// A private attribute removed.
    PrivateRemoved,
    /// A private attribute kept under the Retain Safe Private option.
    PrivateKept,
    /// An element of an overlay group removed.
    OverlayRemoved,
    /// An element of a curve group removed.
    CurveRemoved,
    /// A group length element dropped (recomputed on writing).
    GroupLengthRemoved,
    /// A table attribute kept because an option or rule retains it.
    Retained,
    /// An attribute added by de-identification (PatientIdentityRemoved, method, …).
    Added,
}

/// Where the key for the patient's pseudonym and date offset came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatientKeySource {
    /// PatientID.
    PatientId,
    /// PatientName with PatientBirthDate (PatientID missing or empty).
    NameAndBirthDate,
    /// StudyInstanceUID (no patient identifiers).
    StudyInstanceUid,
    /// SOPInstanceUID (no patient or study identifiers): the offset is per instance.
    SopInstanceUid,
    /// Nothing identifying at all: a fixed key, shared by every such object.
    None,
}

/// A condition worth a human's attention. Never carries a value from the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Warning {
    /// PatientID was missing; the patient key fell back to another source.
    PatientKeyFallback {
        /// The source used.
        source: PatientKeySource,
    },
    /// A date could not be parsed, so it was emptied rather than shifted.
    UnparseableDate {
        /// The tag, `group << 16 | element`.
        tag: u32,
    },
    /// A UID attribute held an empty or malformed value.
    MalformedUid {
        /// The tag.
        tag: u32,
    },
    /// The data set was encoded in Implicit VR Little Endian although the file meta declared an
    /// explicit VR transfer syntax; it was read as found and written as declared.
    DeclaredTransferSyntaxMismatch,
    /// Overlays or curves were kept under Clean Graphics without examining their bitmaps.
    GraphicsKeptUnexamined,
    /// A per-tag rule keeps an attribute the Basic Profile acts on, so the Basic Profile code is
    /// not claimed in the DeidentificationMethodCodeSequence.
    BasicProfileNotClaimed,
}

/// One action on one attribute, at a path of enclosing sequence tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagAction {
    /// Tags of the enclosing sequences, outermost first (empty at the top level).
    pub path: Vec<u32>,
    /// The attribute's tag, `group << 16 | element`.
    pub tag: u32,
    /// What was done.
    pub action: ActionTaken,
}

/// The report of one de-identified object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectReport {
    /// How many attributes each action touched.
    pub counts: BTreeMap<ActionTaken, u32>,
    /// Every attribute acted upon.
    pub actions: Vec<TagAction>,
    /// Warnings.
    pub warnings: Vec<Warning>,
    /// Where the patient key came from.
    pub patient_key_source: Option<PatientKeySource>,
    /// The CID 7050 codes written to DeidentificationMethodCodeSequence.
    pub method_codes: Vec<String>,
    /// Whether the pixel data bytes were copied through unchanged.
    pub pixel_data_copied: bool,
}

impl ObjectReport {
    /// Records an action on a tag.
    pub fn record(&mut self, path: &[u32], tag: u32, action: ActionTaken) {
        *self.counts.entry(action).or_insert(0) += 1;
        self.actions.push(TagAction {
            path: path.to_vec(),
            tag,
            action,
        });
    }

    /// How many attributes an action touched.
    pub fn count(&self, action: ActionTaken) -> u32 {
        self.counts.get(&action).copied().unwrap_or(0)
    }

    /// Adds a warning once.
    pub fn warn(&mut self, warning: Warning) {
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    /// The action recorded for a top-level tag, if any.
    pub fn action_for(&self, tag: u32) -> Option<ActionTaken> {
        self.actions
            .iter()
            .find(|a| a.path.is_empty() && a.tag == tag)
            .map(|a| a.action)
    }
}

/// Formats a tag as `(GGGG,EEEE)`.
pub fn tag_string(tag: u32) -> String {
    format!("({:04X},{:04X})", tag >> 16, tag & 0xFFFF)
}
