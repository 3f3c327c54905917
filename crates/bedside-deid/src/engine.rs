//! The de-identification engine: applies a compiled profile to an in-memory DICOM object,
//! recursively inside every sequence.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bedside_core::phi::Phi;
use dicom_core::dictionary::DataDictionary;
use dicom_core::header::Header;
use dicom_core::value::{C, DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

use crate::error::DeidError;
use crate::profile::{Longitudinal, Mode, Profile, RuleAction};
use crate::report::{ActionTaken, ObjectReport, PatientKeySource, Warning};
use crate::secret::SiteSecret;
use crate::table::{Action, ConfidentialityTable, OptionColumn, TagPattern};
use crate::temporal;

/// What the engine does with one attribute, resolved from the table, options and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Keep (sequences: recurse into the items).
    Keep,
    /// Keep because an option or a rule retains a table attribute.
    Retain,
    /// Remove.
    Remove,
    /// Remove a sequence that has items; keep one that is already empty.
    RemoveUnlessEmpty,
    /// Keep with an empty value.
    Empty,
    /// Replace with a dummy value consistent with the VR.
    Dummy,
    /// Replace every UID with its keyed `2.25.` UID.
    Uid,
    /// Keep a sequence and de-identify its items (X/Z/U*).
    Recurse,
    /// Clean free text; recurse into sequences.
    Clean,
    /// Shift dates by the patient's offset (times are kept; a whole-day shift leaves them valid).
    Shift,
    /// Replace with a keyed pseudonym of the value.
    Hash,
    /// Replace with the patient's pseudonym.
    Patient,
    /// Replace with the n-th replacement value of the profile.
    Replace(usize),
}

/// Extra facts about one object that the header engine cannot see for itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectContext {
    /// The caller cleaned burned-in identifying text from the pixel data (Clean Pixel Data
    /// Option, code 113101).
    pub pixel_data_cleaned: bool,
}

/// Kinds of crosswalk entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrosswalkKind {
    /// Patient key (PatientID or its fallback) → patient pseudonym.
    Patient,
    /// UID → `2.25.` UID.
    Uid,
    /// Another identifier (accession number, study ID, …) → pseudonym.
    Identifier,
}

impl CrosswalkKind {
    /// A short name for files.
    pub fn name(self) -> &'static str {
        match self {
            CrosswalkKind::Patient => "patient",
            CrosswalkKind::Uid => "uid",
            CrosswalkKind::Identifier => "identifier",
        }
    }
}

/// Original → pseudonym pairs, kept only when a crosswalk was asked for.
#[derive(Debug, Default)]
pub struct Crosswalk {
    entries: BTreeMap<(CrosswalkKind, Phi<String>), String>,
}

impl Crosswalk {
    /// Number of distinct pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pairs: kind, original (PHI) and pseudonym.
    pub fn iter(&self) -> impl Iterator<Item = (CrosswalkKind, &Phi<String>, &str)> {
        self.entries.iter().map(|((k, o), p)| (*k, o, p.as_str()))
    }

    /// CSV text `kind,original,pseudonym` (originals are PHI: store it apart from the outputs).
    pub fn to_csv(&self) -> String {
        let mut s = String::from("kind,original,pseudonym\n");
        for (kind, original, pseudonym) in self.iter() {
            s.push_str(kind.name());
            s.push(',');
            s.push_str(&csv_field(original.expose()));
            s.push(',');
            s.push_str(&csv_field(pseudonym));
            s.push('\n');
        }
        s
    }

    /// Writes the CSV atomically, readable by the owner only.
    pub fn write_csv(&self, path: &std::path::Path) -> Result<(), DeidError> {
        bedside_core::fsio::write_atomic(path, self.to_csv().as_bytes()).map_err(|source| {
            DeidError::WriteFile {
                path: path.to_path_buf(),
                source,
            }
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| DeidError::WriteFile {
                    path: path.to_path_buf(),
                    source,
                },
            )?;
        }
        Ok(())
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The CID 7050 code of each method, with its meaning.
const METHOD_BASIC: (&str, &str) = ("113100", "Basic Application Confidentiality Profile");
const METHOD_CLEAN_PIXEL: (&str, &str) = ("113101", "Clean Pixel Data Option");
const METHOD_CLEAN_GRAPHICS: (&str, &str) = ("113103", "Clean Graphics Option");
const METHOD_CLEAN_STRUCTURED: (&str, &str) = ("113104", "Clean Structured Content Option");
const METHOD_CLEAN_DESCRIPTORS: (&str, &str) = ("113105", "Clean Descriptors Option");
const METHOD_FULL_DATES: (&str, &str) = (
    "113106",
    "Retain Longitudinal Temporal Information Full Dates Option",
);
const METHOD_MODIFIED_DATES: (&str, &str) = (
    "113107",
    "Retain Longitudinal Temporal Information Modified Dates Option",
);
const METHOD_PATIENT_CHARS: (&str, &str) = ("113108", "Retain Patient Characteristics Option");
const METHOD_DEVICE: (&str, &str) = ("113109", "Retain Device Identity Option");
const METHOD_UIDS: (&str, &str) = ("113110", "Retain UIDs Option");
const METHOD_SAFE_PRIVATE: (&str, &str) = ("113111", "Retain Safe Private Option");
const METHOD_INSTITUTION: (&str, &str) = ("113112", "Retain Institution Identity Option");

/// Attributes whose compound action resolves to a dummy value rather than an empty one, because
/// some IODs make them Type 1 (Enhanced General Equipment: DeviceSerialNumber).
const DUMMY_PREFERRED: [u32; 1] = [0x0018_1000];

/// Attributes always kept in safe-list mode (UIDs still remapped), besides group 0028 and the
/// pixel data.
const SAFE_LIST_STRUCTURAL: [(u32, Plan); 8] = [
    (0x0008_0005, Plan::Keep), // SpecificCharacterSet
    (0x0008_0016, Plan::Keep), // SOPClassUID
    (0x0008_0018, Plan::Uid),  // SOPInstanceUID
    (0x0008_0060, Plan::Keep), // Modality
    (0x0020_000D, Plan::Uid),  // StudyInstanceUID
    (0x0020_000E, Plan::Uid),  // SeriesInstanceUID
    (0x0020_0052, Plan::Uid),  // FrameOfReferenceUID
    (0x0020_0013, Plan::Keep), // InstanceNumber
];

const PATIENT_ID: u32 = 0x0010_0020;
const PATIENT_NAME: u32 = 0x0010_0010;
const PATIENT_BIRTH_DATE: u32 = 0x0010_0030;
const ACCESSION_NUMBER: u32 = 0x0008_0050;
const STUDY_ID: u32 = 0x0020_0010;
const PIXEL_DATA: u32 = 0x7FE0_0010;

/// A de-identifier: a compiled profile plus the site secret.
///
/// Cheap to share between threads (`&Deidentifier` is `Sync`); one instance serves a whole run
/// so that UIDs, pseudonyms and date offsets agree across files.
#[derive(Debug)]
pub struct Deidentifier {
    profile: Profile,
    table: ConfidentialityTable,
    secret: SiteSecret,
    exact: HashMap<u32, Plan>,
    patterns: Vec<(TagPattern, Plan, ActionTaken)>,
    replacements: Vec<String>,
    safe_private: Vec<(u16, String, u8)>,
    overlays_removed: bool,
    claims_basic: bool,
    crosswalk: Option<Mutex<Crosswalk>>,
}

fn tag_u32(tag: Tag) -> u32 {
    (u32::from(tag.group()) << 16) | u32::from(tag.element())
}

/// Sequences whose X/Z action resolves to an empty sequence rather than removal, because IODs
/// make them Type 2 (Acquisition Context Module). Every other X/Z or X/Z/D sequence is removed
/// when it has items (an empty Type 3 sequence is not allowed) and kept when it is already empty
/// (the writer used it as Type 2, as SR documents do with Referenced Performed Procedure Step
/// Sequence).
const EMPTY_PREFERRED_SEQUENCES: [u32; 1] = [0x0040_0555];

fn is_sequence_tag(tag: u32) -> bool {
    StandardDataDictionary
        .by_tag(Tag((tag >> 16) as u16, tag as u16))
        .is_some_and(|e| e.vr.relaxed() == VR::SQ)
}

fn basic_plan(action: Action, tag: u32, vr_temporal: bool) -> Plan {
    if matches!(action, Action::RemoveOrZero | Action::RemoveOrZeroOrDummy)
        && is_sequence_tag(tag)
        && !EMPTY_PREFERRED_SEQUENCES.contains(&tag)
    {
        return Plan::RemoveUnlessEmpty;
    }
    match action {
        Action::Dummy => Plan::Dummy,
        Action::Zero => Plan::Empty,
        Action::Remove => Plan::Remove,
        Action::Keep => Plan::Keep,
        Action::Clean => Plan::Clean,
        Action::Uid => Plan::Uid,
        Action::ZeroOrDummy | Action::RemoveOrZero | Action::RemoveOrZeroOrDummy => {
            if DUMMY_PREFERRED.contains(&tag) {
                Plan::Dummy
            } else {
                Plan::Empty
            }
        }
        Action::RemoveOrDummy => {
            if vr_temporal || DUMMY_PREFERRED.contains(&tag) {
                Plan::Dummy
            } else {
                Plan::Remove
            }
        }
        Action::RemoveOrZeroOrUids => Plan::Recurse,
    }
}

fn is_temporal_keyword(tag: u32) -> bool {
    let Some(entry) = StandardDataDictionary.by_tag(Tag((tag >> 16) as u16, tag as u16)) else {
        return false;
    };
    let vr = entry.vr.relaxed();
    matches!(vr, VR::DA | VR::DT | VR::TM)
}

impl Deidentifier {
    /// Compiles a profile against the standard table.
    pub fn new(profile: Profile, secret: SiteSecret) -> Result<Deidentifier, DeidError> {
        let table = ConfidentialityTable::standard()?;
        Deidentifier::with_table(profile, table, secret)
    }

    /// Compiles a profile against a given table.
    pub fn with_table(
        profile: Profile,
        table: ConfidentialityTable,
        secret: SiteSecret,
    ) -> Result<Deidentifier, DeidError> {
        use bedside_core::config::Validate;
        profile
            .validate()
            .map_err(|(key, message)| DeidError::Profile {
                origin: "profile".into(),
                key,
                message,
            })?;
        let o = &profile.options;
        let enabled = |c: OptionColumn| match c {
            OptionColumn::RetainSafePrivate => o.retain_safe_private,
            OptionColumn::RetainUids => o.retain_uids,
            OptionColumn::RetainDeviceIdentity => o.retain_device_identity,
            OptionColumn::RetainInstitutionIdentity => o.retain_institution_identity,
            OptionColumn::RetainPatientCharacteristics => o.retain_patient_characteristics,
            OptionColumn::RetainLongitudinalFullDates => {
                o.retain_longitudinal == Longitudinal::Full
            }
            OptionColumn::RetainLongitudinalModifiedDates => {
                o.retain_longitudinal == Longitudinal::Modified
            }
            OptionColumn::CleanDescriptors => o.clean_descriptors,
            OptionColumn::CleanStructuredContent => o.clean_structured_content,
            OptionColumn::CleanGraphics => o.clean_graphics,
        };
        let mut exact = HashMap::new();
        let mut patterns = Vec::new();
        let mut table_plans: HashMap<u32, Plan> = HashMap::new();
        if profile.mode == Mode::Standard {
            for row in &table.rows {
                let mut keep = false;
                let mut shift = false;
                let mut clean = false;
                let mut remove = false;
                for c in OptionColumn::ALL {
                    if !enabled(c) {
                        continue;
                    }
                    match row.option(c) {
                        Some(Action::Keep) => keep = true,
                        Some(Action::Clean)
                            if c == OptionColumn::RetainLongitudinalModifiedDates =>
                        {
                            shift = true
                        }
                        Some(Action::Clean) => clean = true,
                        Some(Action::Remove) => remove = true,
                        _ => {}
                    }
                }
                let temporal = row.tag.is_exact() && is_temporal_keyword(row.tag.value);
                let plan = if keep {
                    Plan::Retain
                } else if shift {
                    Plan::Shift
                } else if clean {
                    Plan::Clean
                } else if remove {
                    Plan::Remove
                } else {
                    basic_plan(row.basic, row.tag.value, temporal)
                };
                if row.tag.is_exact() {
                    exact.insert(row.tag.value, plan);
                    table_plans.insert(row.tag.value, plan);
                } else {
                    let taken = if row.tag.value >> 24 == 0x50 {
                        ActionTaken::CurveRemoved
                    } else if row.tag.value >> 24 == 0x60 {
                        ActionTaken::OverlayRemoved
                    } else {
                        ActionTaken::Removed
                    };
                    patterns.push((row.tag, plan, taken));
                }
            }
            if profile.pseudonymize_identifiers {
                exact.insert(PATIENT_ID, Plan::Patient);
                exact.insert(PATIENT_NAME, Plan::Patient);
                exact.insert(ACCESSION_NUMBER, Plan::Hash);
                exact.insert(STUDY_ID, Plan::Hash);
            }
        } else {
            for (tag, plan) in SAFE_LIST_STRUCTURAL {
                let plan = if plan == Plan::Uid && o.retain_uids {
                    Plan::Keep
                } else {
                    plan
                };
                exact.insert(tag, plan);
            }
        }
        let mut replacements = Vec::new();
        let mut claims_basic = profile.mode == Mode::Standard;
        for rule in &profile.rule {
            let Some(pattern) = rule.pattern() else {
                continue;
            };
            let plan = match rule.action {
                RuleAction::Keep => Plan::Retain,
                RuleAction::Remove => Plan::Remove,
                RuleAction::Empty => Plan::Empty,
                RuleAction::Replace => {
                    replacements.push(rule.value.clone().unwrap_or_default());
                    Plan::Replace(replacements.len() - 1)
                }
                RuleAction::Hash => Plan::Hash,
                RuleAction::Patient => Plan::Patient,
                RuleAction::Shift => Plan::Shift,
                RuleAction::Uid => Plan::Uid,
                RuleAction::Clean => Plan::Clean,
            };
            if pattern.is_exact() {
                if plan == Plan::Retain
                    && table_plans
                        .get(&pattern.value)
                        .is_some_and(|p| !matches!(p, Plan::Keep | Plan::Retain))
                {
                    claims_basic = false;
                }
                exact.insert(pattern.value, plan);
            } else {
                patterns.insert(0, (pattern, plan, ActionTaken::Removed));
            }
        }
        let overlay_plan = patterns
            .iter()
            .find(|(p, _, _)| p.matches_repeating(0x6000_3000))
            .map(|(_, plan, _)| *plan);
        // When overlay data goes, the rest of each overlay group (rows, columns, origin, …) goes
        // with it: an overlay plane without its bitmap is malformed.
        let overlays_removed = overlay_plan.is_none_or(|p| p == Plan::Remove);
        let safe_private = if o.retain_safe_private {
            profile
                .safe_private
                .iter()
                .filter_map(|s| {
                    Some((
                        u16::from_str_radix(&s.group, 16).ok()?,
                        s.creator.trim().to_string(),
                        u8::from_str_radix(&s.element, 16).ok()?,
                    ))
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Deidentifier {
            profile,
            table,
            secret,
            exact,
            patterns,
            replacements,
            safe_private,
            overlays_removed,
            claims_basic,
            crosswalk: None,
        })
    }

    /// Keeps a crosswalk (original → pseudonym) of everything pseudonymised from now on.
    pub fn with_crosswalk(mut self) -> Deidentifier {
        self.crosswalk = Some(Mutex::new(Crosswalk::default()));
        self
    }

    /// Takes the crosswalk collected so far (empty when none was asked for).
    pub fn take_crosswalk(&self) -> Crosswalk {
        match &self.crosswalk {
            Some(m) => match m.lock() {
                Ok(mut g) => std::mem::take(&mut *g),
                Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
            },
            None => Crosswalk::default(),
        }
    }

    /// The profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The table in use.
    pub fn table(&self) -> &ConfidentialityTable {
        &self.table
    }

    /// The keyed `2.25.` UID that replaces `uid` (also what references to it become).
    pub fn map_uid(&self, uid: &str) -> String {
        self.secret.uid(uid)
    }

    /// The date offset in days of a patient key, as used for its dates.
    pub fn day_offset_for_key(&self, patient_key: &str) -> i32 {
        self.secret.day_offset(
            patient_key,
            self.profile.dates.min_days,
            self.profile.dates.max_days,
        )
    }

    fn note(&self, kind: CrosswalkKind, original: &str, pseudonym: &str) {
        if let Some(m) = &self.crosswalk {
            let mut guard = match m.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            guard
                .entries
                .entry((kind, Phi::new(original.to_string())))
                .or_insert_with(|| pseudonym.to_string());
        }
    }

    fn plan_for(&self, tag: u32) -> Option<Plan> {
        if let Some(p) = self.exact.get(&tag) {
            return Some(*p);
        }
        self.patterns
            .iter()
            .find(|(p, _, _)| p.matches_repeating(tag))
            .map(|(_, plan, _)| *plan)
    }

    fn pattern_taken(&self, tag: u32) -> ActionTaken {
        self.patterns
            .iter()
            .find(|(p, _, _)| p.matches_repeating(tag))
            .map_or(ActionTaken::Removed, |(_, _, t)| *t)
    }

    /// De-identifies a data set in place (the top level of an instance) and reports what was
    /// done. Adds PatientIdentityRemoved, DeidentificationMethod and its code sequence, and
    /// LongitudinalTemporalInformationModified.
    pub fn deidentify_object(
        &self,
        obj: &mut InMemDicomObject,
        context: ObjectContext,
    ) -> ObjectReport {
        let mut report = ObjectReport::default();
        let (key, source) = patient_key(obj);
        report.patient_key_source = Some(source);
        if source != PatientKeySource::PatientId {
            report.warn(Warning::PatientKeyFallback { source });
        }
        let day_offset = self.day_offset_for_key(&key);
        let time_offset = self.secret.time_offset(&key);
        let patient_pseudonym =
            self.secret
                .pseudonym("patient", &key, &self.profile.pseudonym_prefix);
        self.note(CrosswalkKind::Patient, &key, &patient_pseudonym);
        let scrub = if self.needs_scrub_tokens() {
            scrub_tokens(obj, self)
        } else {
            Vec::new()
        };
        let mut run = Run {
            d: self,
            report,
            day_offset,
            time_offset,
            patient_pseudonym,
            scrub,
            path: Vec::new(),
            dummy_depth: 0,
            clean_depth: 0,
        };
        let taken = std::mem::replace(obj, InMemDicomObject::new_empty());
        let mut processed = run.dataset(taken);
        let mut report = run.report;
        self.add_method_attributes(&mut processed, &mut report, context);
        *obj = processed;
        report
    }

    fn needs_scrub_tokens(&self) -> bool {
        let o = &self.profile.options;
        o.clean_descriptors
            || o.clean_structured_content
            || o.clean_graphics
            || o.retain_patient_characteristics
            || self
                .profile
                .rule
                .iter()
                .any(|r| r.action == RuleAction::Clean)
    }

    fn add_method_attributes(
        &self,
        obj: &mut InMemDicomObject,
        report: &mut ObjectReport,
        context: ObjectContext,
    ) {
        let o = &self.profile.options;
        let mut methods: Vec<(&str, &str)> = Vec::new();
        let mut text: Vec<String> = Vec::new();
        if self.claims_basic {
            methods.push(METHOD_BASIC);
            text.push(format!("PS3.15 E.1-1 {} Basic Profile", self.table.edition));
        } else if self.profile.mode == Mode::SafeList {
            text.push("Bedside safe-list profile".to_string());
        } else {
            report.warn(Warning::BasicProfileNotClaimed);
            text.push("Bedside profile with retained attributes".to_string());
        }
        // In safe-list mode the rules, not the table's option columns, decide what survives, so
        // only the options that still act there are claimed (pixel cleaning, retained UIDs).
        let standard = self.profile.mode == Mode::Standard;
        let mut option = |enabled: bool, m: (&'static str, &'static str), t: &str| {
            if enabled && (standard || m == METHOD_CLEAN_PIXEL || m == METHOD_UIDS) {
                methods.push(m);
                text.push(t.to_string());
            }
        };
        option(
            context.pixel_data_cleaned,
            METHOD_CLEAN_PIXEL,
            "Clean Pixel Data",
        );
        option(o.clean_graphics, METHOD_CLEAN_GRAPHICS, "Clean Graphics");
        option(
            o.clean_structured_content,
            METHOD_CLEAN_STRUCTURED,
            "Clean Structured Content",
        );
        option(
            o.clean_descriptors,
            METHOD_CLEAN_DESCRIPTORS,
            "Clean Descriptors",
        );
        option(
            o.retain_longitudinal == Longitudinal::Full,
            METHOD_FULL_DATES,
            "Retain Longitudinal Full Dates",
        );
        option(
            o.retain_longitudinal == Longitudinal::Modified,
            METHOD_MODIFIED_DATES,
            "Retain Longitudinal Modified Dates",
        );
        option(
            o.retain_patient_characteristics,
            METHOD_PATIENT_CHARS,
            "Retain Patient Characteristics",
        );
        option(
            o.retain_device_identity,
            METHOD_DEVICE,
            "Retain Device Identity",
        );
        option(o.retain_uids, METHOD_UIDS, "Retain UIDs");
        option(
            o.retain_safe_private,
            METHOD_SAFE_PRIVATE,
            "Retain Safe Private",
        );
        option(
            o.retain_institution_identity,
            METHOD_INSTITUTION,
            "Retain Institution Identity",
        );
        let items: Vec<InMemDicomObject> = methods
            .iter()
            .map(|(code, meaning)| {
                InMemDicomObject::from_element_iter([
                    DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(*code)),
                    DataElement::new(
                        tags::CODING_SCHEME_DESIGNATOR,
                        VR::SH,
                        PrimitiveValue::from("DCM"),
                    ),
                    DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(*meaning)),
                ])
            })
            .collect();
        report.method_codes = methods.iter().map(|(c, _)| (*c).to_string()).collect();
        obj.put(DataElement::new(
            tags::PATIENT_IDENTITY_REMOVED,
            VR::CS,
            PrimitiveValue::from("YES"),
        ));
        obj.put(DataElement::new(
            tags::DEIDENTIFICATION_METHOD,
            VR::LO,
            PrimitiveValue::Strs(text.into_iter().collect()),
        ));
        let has_codes = !items.is_empty();
        if has_codes {
            obj.put(DataElement::new(
                tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
                VR::SQ,
                DataSetSequence::new(items, Length::UNDEFINED),
            ));
        } else {
            obj.remove_element(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE);
        }
        let longitudinal = match (self.profile.mode, o.retain_longitudinal) {
            (Mode::SafeList, _) => {
                if self
                    .profile
                    .rule
                    .iter()
                    .any(|r| r.action == RuleAction::Shift)
                {
                    "MODIFIED"
                } else {
                    "UNMODIFIED"
                }
            }
            (Mode::Standard, Longitudinal::Full) => "UNMODIFIED",
            (Mode::Standard, Longitudinal::Modified) => "MODIFIED",
            (Mode::Standard, Longitudinal::Off) => "REMOVED",
        };
        obj.put(DataElement::new(
            tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
            VR::CS,
            PrimitiveValue::from(longitudinal),
        ));
        for t in [
            tags::PATIENT_IDENTITY_REMOVED,
            tags::DEIDENTIFICATION_METHOD,
            tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
        ] {
            report.record(&[], tag_u32(t), ActionTaken::Added);
        }
        if has_codes {
            report.record(
                &[],
                tag_u32(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE),
                ActionTaken::Added,
            );
        }
    }
}

/// The string values of an element; UN values of standard attributes are read as text.
pub(crate) fn element_strings(e: &InMemElement) -> Option<Vec<String>> {
    match (e.vr(), e.value()) {
        (VR::UN, Value::Primitive(p)) => {
            let bytes = p.to_bytes();
            let text = String::from_utf8_lossy(&bytes);
            Some(
                text.split('\\')
                    .map(|s| s.trim_matches([' ', '\0']).to_string())
                    .collect(),
            )
        }
        (_, v) => v.to_multi_str().ok().map(|v| {
            v.iter()
                .map(|s| s.trim_matches([' ', '\0']).to_string())
                .collect()
        }),
    }
}

/// The dictionary VR of a standard attribute when it is a string VR.
fn dictionary_string_vr(tag: Tag) -> Option<VR> {
    let vr = StandardDataDictionary.by_tag(tag)?.vr.relaxed();
    (is_text_vr(vr)
        || matches!(
            vr,
            VR::DA | VR::DT | VR::TM | VR::UI | VR::AS | VR::DS | VR::IS
        ))
    .then_some(vr)
}

fn dictionary_is_sequence(tag: Tag) -> bool {
    StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| e.vr.relaxed() == VR::SQ)
}

/// Reads a sequence that was written as UN (its value is encoded in Implicit VR Little Endian).
fn un_as_sequence(e: &InMemElement) -> Option<InMemElement> {
    let Value::Primitive(p) = e.value() else {
        return None;
    };
    let value = p.to_bytes();
    let tag = e.tag();
    let mut bytes = Vec::with_capacity(value.len() + 8);
    bytes.extend_from_slice(&tag.group().to_le_bytes());
    bytes.extend_from_slice(&tag.element().to_le_bytes());
    bytes.extend_from_slice(&u32::try_from(value.len()).ok()?.to_le_bytes());
    bytes.extend_from_slice(&value);
    let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let obj = InMemDicomObject::read_dataset_with_ts(std::io::Cursor::new(bytes), &ts).ok()?;
    let parsed = obj.into_iter().next()?;
    (parsed.vr() == VR::SQ).then_some(parsed)
}

/// The key that ties an object to its patient, and where it came from.
fn patient_key(obj: &InMemDicomObject) -> (String, PatientKeySource) {
    let text = |t: Tag| -> Option<String> {
        let s = element_strings(obj.get(t)?)?.join("\\");
        (!s.is_empty()).then_some(s)
    };
    if let Some(id) = text(tags::PATIENT_ID) {
        return (format!("id:{id}"), PatientKeySource::PatientId);
    }
    if let (Some(name), Some(birth)) = (text(tags::PATIENT_NAME), text(tags::PATIENT_BIRTH_DATE)) {
        return (
            format!("name-birth:{}|{birth}", name.to_uppercase()),
            PatientKeySource::NameAndBirthDate,
        );
    }
    if let Some(uid) = text(tags::STUDY_INSTANCE_UID) {
        return (format!("study:{uid}"), PatientKeySource::StudyInstanceUid);
    }
    if let Some(uid) = text(tags::SOP_INSTANCE_UID) {
        return (format!("sop:{uid}"), PatientKeySource::SopInstanceUid);
    }
    ("none".to_string(), PatientKeySource::None)
}

/// Identifying strings of the object (everything the profile removes or replaces, and the birth
/// date in common formats), upper-cased, longest first, for cleaning free text.
fn scrub_tokens(obj: &InMemDicomObject, d: &Deidentifier) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        let s = s.trim_matches([' ', '\0']);
        if s.chars().count() >= 3 {
            tokens.push(s.to_uppercase());
        }
    };
    for e in obj.iter() {
        let tag = tag_u32(e.tag());
        let vr = e.vr();
        if !matches!(
            vr,
            VR::PN | VR::LO | VR::SH | VR::AE | VR::DA | VR::DT | VR::UI
        ) {
            continue;
        }
        let acted = match d.plan_for(tag) {
            Some(Plan::Keep | Plan::Retain | Plan::Clean) => false,
            Some(_) => true,
            None => vr == VR::PN,
        };
        if !acted {
            continue;
        }
        let Some(values) = element_strings(e) else {
            continue;
        };
        for v in values.iter() {
            push(v);
            if vr == VR::PN {
                for part in v.split(['^', '=', ' ']) {
                    push(part);
                }
            }
            if (vr == VR::DA || tag == PATIENT_BIRTH_DATE)
                && let Some((y, m, dd)) = temporal::parse_date(v.trim())
            {
                {
                    for f in [
                        format!("{y:04}-{m:02}-{dd:02}"),
                        format!("{y:04}/{m:02}/{dd:02}"),
                        format!("{y:04}.{m:02}.{dd:02}"),
                        format!("{dd:02}/{m:02}/{y:04}"),
                        format!("{m:02}/{dd:02}/{y:04}"),
                        format!("{dd:02}.{m:02}.{y:04}"),
                        format!("{dd:02}-{m:02}-{y:04}"),
                    ] {
                        push(&f);
                    }
                }
            }
        }
    }
    tokens.sort_by_key(|t| std::cmp::Reverse(t.len()));
    tokens.dedup();
    tokens
}

struct Run<'a> {
    d: &'a Deidentifier,
    report: ObjectReport,
    day_offset: i32,
    /// Rotation of times of day, seconds (keyed per patient like the day offset).
    time_offset: u32,
    patient_pseudonym: String,
    scrub: Vec<String>,
    path: Vec<u32>,
    /// Depth of sequences being replaced by dummies (D on a sequence): free text inside is
    /// replaced too.
    dummy_depth: u32,
    /// Depth of sequences being cleaned (C on a sequence): free text inside is cleaned.
    clean_depth: u32,
}

fn is_text_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE | VR::CS | VR::LO | VR::LT | VR::PN | VR::SH | VR::ST | VR::UC | VR::UT | VR::UR
    )
}

fn strings_value(values: Vec<String>) -> PrimitiveValue {
    if values.is_empty() {
        PrimitiveValue::Empty
    } else {
        PrimitiveValue::Strs(values.into_iter().collect::<C<String>>())
    }
}

impl Run<'_> {
    fn record(&mut self, tag: u32, action: ActionTaken) {
        let path = std::mem::take(&mut self.path);
        self.report.record(&path, tag, action);
        self.path = path;
    }

    fn dataset(&mut self, obj: InMemDicomObject) -> InMemDicomObject {
        // Private creators of this data set: (group, block) → creator.
        let mut creators: HashMap<(u16, u8), String> = HashMap::new();
        for e in obj.iter() {
            let t = e.tag();
            if t.group() % 2 == 1
                && (0x10..=0xFF).contains(&t.element())
                && let Ok(s) = e.value().to_str()
            {
                {
                    creators.insert(
                        (t.group(), t.element() as u8),
                        s.trim_matches([' ', '\0']).to_string(),
                    );
                }
            }
        }
        let mut out: Vec<InMemElement> = Vec::new();
        for e in obj {
            if let Some(e) = self.element(e, &creators) {
                out.push(e);
            }
        }
        InMemDicomObject::from_element_iter(out)
    }

    fn private_kept(&self, tag: Tag, creators: &HashMap<(u16, u8), String>) -> bool {
        if self.d.safe_private.is_empty() {
            return false;
        }
        let (g, el) = (tag.group(), tag.element());
        if (0x10..=0xFF).contains(&el) {
            // A creator element: kept when a retained element needs it.
            let Some(creator) = creators.get(&(g, el as u8)) else {
                return false;
            };
            return self
                .d
                .safe_private
                .iter()
                .any(|(sg, sc, _)| *sg == g && sc == creator);
        }
        if el < 0x1000 {
            return false;
        }
        let block = (el >> 8) as u8;
        let Some(creator) = creators.get(&(g, block)) else {
            return false;
        };
        self.d
            .safe_private
            .iter()
            .any(|(sg, sc, se)| *sg == g && sc == creator && *se == (el & 0xFF) as u8)
    }

    fn element(
        &mut self,
        e: InMemElement,
        creators: &HashMap<(u16, u8), String>,
    ) -> Option<InMemElement> {
        let tag = e.tag();
        let t = tag_u32(tag);
        // A standard attribute written as UN: read it with its dictionary VR.
        let e = match (e.vr(), tag.group() % 2) {
            (VR::UN, 0) => match (dictionary_string_vr(tag), element_strings(&e)) {
                (Some(vr), Some(values)) => DataElement::new(tag, vr, strings_value(values)),
                _ if dictionary_is_sequence(tag) => match un_as_sequence(&e) {
                    Some(seq) => seq,
                    None => {
                        // A sequence that cannot be read cannot be de-identified: drop it.
                        self.record(t, ActionTaken::Removed);
                        return None;
                    }
                },
                _ => e,
            },
            _ => e,
        };
        let vr = e.vr();
        if tag.element() == 0 && tag.group() != 0xFFFE {
            self.record(t, ActionTaken::GroupLengthRemoved);
            return None;
        }
        if tag.group() % 2 == 1 {
            if self.private_kept(tag, creators) {
                self.record(t, ActionTaken::PrivateKept);
                return self.keep(e);
            }
            self.record(t, ActionTaken::PrivateRemoved);
            return None;
        }
        let plan = match self.d.plan_for(t) {
            Some(p) => {
                if !self.d.exact.contains_key(&t) && p == Plan::Remove {
                    let taken = self.d.pattern_taken(t);
                    self.record(t, taken);
                    return None;
                }
                if !self.d.exact.contains_key(&t) && matches!(p, Plan::Retain | Plan::Clean) {
                    self.report.warn(Warning::GraphicsKeptUnexamined);
                }
                p
            }
            None => {
                let group = tag.group();
                if (0x6000..=0x601E).contains(&group) && group % 2 == 0 && self.d.overlays_removed {
                    self.record(t, ActionTaken::OverlayRemoved);
                    return None;
                }
                if self.d.profile.mode == Mode::SafeList {
                    if group == 0x0028 || t == PIXEL_DATA {
                        Plan::Keep
                    } else {
                        self.record(t, ActionTaken::Removed);
                        return None;
                    }
                } else {
                    self.unlisted_plan(t, vr, &e)
                }
            }
        };
        self.apply(plan, e)
    }

    /// Attributes that table E.1-1 does not list.
    fn unlisted_plan(&self, t: u32, vr: VR, e: &InMemElement) -> Plan {
        if self.dummy_depth > 0 && matches!(vr, VR::UT | VR::ST | VR::LT) {
            return Plan::Dummy;
        }
        if self.clean_depth > 0 && matches!(vr, VR::UT | VR::ST | VR::LT | VR::LO | VR::SH) {
            return Plan::Clean;
        }
        match vr {
            VR::DA | VR::DT => match self.d.profile.options.retain_longitudinal {
                Longitudinal::Full => Plan::Keep,
                Longitudinal::Modified => Plan::Shift,
                Longitudinal::Off => Plan::Empty,
            },
            VR::PN => Plan::Empty,
            VR::UI => {
                if self.d.profile.options.retain_uids || is_registry_uid_attribute(t, e) {
                    Plan::Keep
                } else {
                    Plan::Uid
                }
            }
            _ => Plan::Keep,
        }
    }

    fn keep(&mut self, e: InMemElement) -> Option<InMemElement> {
        let tag = e.tag();
        let vr = e.vr();
        match e.into_value() {
            Value::Sequence(seq) => {
                let items = self.items(tag_u32(tag), seq);
                Some(DataElement::new(tag, vr, items))
            }
            Value::Primitive(p) if vr == VR::AS => {
                let values: Vec<String> = p.to_multi_str().iter().cloned().collect();
                let mut capped = false;
                let out: Vec<String> = values
                    .iter()
                    .map(|v| match temporal::cap_age(v) {
                        Some((a, c)) => {
                            capped |= c;
                            a
                        }
                        None => v.clone(),
                    })
                    .collect();
                if capped {
                    self.record(tag_u32(tag), ActionTaken::AgeCapped);
                }
                Some(DataElement::new(tag, vr, strings_value(out)))
            }
            v => Some(DataElement::new(tag, vr, v)),
        }
    }

    fn items(
        &mut self,
        tag: u32,
        seq: DataSetSequence<InMemDicomObject>,
    ) -> DataSetSequence<InMemDicomObject> {
        self.path.push(tag);
        let items: Vec<InMemDicomObject> = seq
            .into_items()
            .into_iter()
            .map(|item| self.dataset(item))
            .collect();
        self.path.pop();
        DataSetSequence::new(items, Length::UNDEFINED)
    }

    fn apply(&mut self, plan: Plan, e: InMemElement) -> Option<InMemElement> {
        let tag = e.tag();
        let t = tag_u32(tag);
        let vr = e.vr();
        // Binary and unknown values cannot be rewritten meaningfully: remove them unless kept.
        let rewritable = is_text_vr(vr)
            || matches!(
                vr,
                VR::DA | VR::DT | VR::TM | VR::UI | VR::AS | VR::SQ | VR::DS | VR::IS
            );
        match plan {
            Plan::Keep => self.keep(e),
            Plan::Retain => {
                self.record(t, ActionTaken::Retained);
                self.keep(e)
            }
            Plan::Remove => {
                self.record(t, ActionTaken::Removed);
                None
            }
            Plan::RemoveUnlessEmpty => {
                if e.items().is_some_and(<[InMemDicomObject]>::is_empty) {
                    Some(e)
                } else {
                    self.record(t, ActionTaken::Removed);
                    None
                }
            }
            Plan::Empty => {
                self.record(t, ActionTaken::Emptied);
                if vr == VR::SQ {
                    Some(DataElement::new(
                        tag,
                        vr,
                        DataSetSequence::new(Vec::<InMemDicomObject>::new(), Length::UNDEFINED),
                    ))
                } else {
                    Some(DataElement::new(tag, vr, PrimitiveValue::Empty))
                }
            }
            Plan::Recurse => self.keep(e),
            _ if vr == VR::SQ => {
                // D, C, U and the pseudonym actions on a sequence: keep it, de-identify its items;
                // under D, free text inside is replaced as well.
                match plan {
                    Plan::Clean => self.record(t, ActionTaken::Cleaned),
                    Plan::Dummy => self.record(t, ActionTaken::Dummy),
                    _ => {}
                }
                let dummy = plan == Plan::Dummy;
                let clean = plan == Plan::Clean;
                self.dummy_depth += u32::from(dummy);
                self.clean_depth += u32::from(clean);
                let kept = self.keep(e);
                self.dummy_depth -= u32::from(dummy);
                self.clean_depth -= u32::from(clean);
                kept
            }
            _ if !rewritable => {
                if plan == Plan::Dummy {
                    self.record(t, ActionTaken::Dummy);
                    let v = match vr {
                        VR::US | VR::OW => PrimitiveValue::from(0u16),
                        VR::SS => PrimitiveValue::from(0i16),
                        VR::UL | VR::OL => PrimitiveValue::from(0u32),
                        VR::SL => PrimitiveValue::from(0i32),
                        VR::FL | VR::OF => PrimitiveValue::from(0f32),
                        VR::FD | VR::OD => PrimitiveValue::from(0f64),
                        _ => PrimitiveValue::U8([0u8, 0u8].into_iter().collect()),
                    };
                    Some(DataElement::new(tag, vr, v))
                } else if plan == Plan::Clean {
                    self.record(t, ActionTaken::CleanedUnchanged);
                    Some(e)
                } else {
                    self.record(t, ActionTaken::Removed);
                    None
                }
            }
            _ => {
                let Some(values) = element_strings(&e) else {
                    self.record(t, ActionTaken::Removed);
                    return None;
                };
                let out = self.rewrite(plan, t, vr, values)?;
                Some(DataElement::new(tag, vr, strings_value(out)))
            }
        }
    }

    fn dummy(&mut self, t: u32, vr: VR, value: &str) -> String {
        match vr {
            VR::DA => temporal::shift_da(value, self.day_offset)
                .filter(|s| !s.is_empty() && self.shifting())
                .unwrap_or_else(|| "19000101".to_string()),
            VR::DT => temporal::shift_dt_and_time(value, self.day_offset, self.time_offset)
                .filter(|s| !s.is_empty() && self.shifting())
                .unwrap_or_else(|| "19000101000000".to_string()),
            VR::TM => {
                if self.shifting() && !value.is_empty() {
                    temporal::shift_tm(value, self.time_offset)
                        .unwrap_or_else(|| "000000".to_string())
                } else {
                    "000000".to_string()
                }
            }
            VR::UI => self.uid(t, value),
            VR::AS => "000D".to_string(),
            VR::DS | VR::IS => "0".to_string(),
            VR::PN => "ANONYMIZED".to_string(),
            VR::UT | VR::ST | VR::LT => "ANONYMIZED".to_string(),
            _ => {
                let p = self
                    .d
                    .secret
                    .pseudonym("dummy", value, &self.d.profile.pseudonym_prefix);
                self.d.note(CrosswalkKind::Identifier, value, &p);
                p
            }
        }
    }

    fn shifting(&self) -> bool {
        self.d.profile.options.retain_longitudinal == Longitudinal::Modified
    }

    fn uid(&mut self, t: u32, value: &str) -> String {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            self.report.warn(Warning::MalformedUid { tag: t });
        }
        let mapped = self.d.secret.uid(value);
        self.d.note(CrosswalkKind::Uid, value, &mapped);
        mapped
    }

    fn rewrite(&mut self, plan: Plan, t: u32, vr: VR, values: Vec<String>) -> Option<Vec<String>> {
        let nonempty = values.iter().any(|v| !v.is_empty());
        Some(match plan {
            Plan::Dummy => {
                self.record(t, ActionTaken::Dummy);
                let base = if values.is_empty() {
                    vec![String::new()]
                } else {
                    values
                };
                base.iter().map(|v| self.dummy(t, vr, v)).collect()
            }
            Plan::Uid => {
                if vr != VR::UI {
                    self.record(t, ActionTaken::Dummy);
                    return Some(values.iter().map(|v| self.dummy(t, vr, v)).collect());
                }
                if !nonempty {
                    return Some(values);
                }
                self.record(t, ActionTaken::UidReplaced);
                values.iter().map(|v| self.uid(t, v)).collect()
            }
            Plan::Shift => {
                // Dates shift by the patient's keyed days; times of day rotate by its keyed
                // seconds (see `temporal::shift_tm`), inside date-times too.
                let (days, seconds) = (self.day_offset, self.time_offset);
                let shift: &dyn Fn(&str) -> Option<String> = match vr {
                    VR::DA => &|v| temporal::shift_da(v, days),
                    VR::DT => &|v| temporal::shift_dt_and_time(v, days, seconds),
                    VR::TM => &|v| temporal::shift_tm(v, seconds),
                    _ => {
                        self.record(t, ActionTaken::Removed);
                        return None;
                    }
                };
                let mut out = Vec::with_capacity(values.len());
                for v in &values {
                    match shift(v) {
                        Some(s) => out.push(s),
                        None => {
                            self.report.warn(Warning::UnparseableDate { tag: t });
                            self.record(t, ActionTaken::Emptied);
                            return Some(Vec::new());
                        }
                    }
                }
                if nonempty {
                    self.record(t, ActionTaken::DateShifted);
                }
                out
            }
            Plan::Clean => {
                if matches!(vr, VR::DA | VR::DT) && self.shifting() {
                    return self.rewrite(Plan::Shift, t, vr, values);
                }
                let mut changed = false;
                let out: Vec<String> = values
                    .iter()
                    .map(|v| {
                        let (s, c) = scrub(v, &self.scrub);
                        changed |= c;
                        s
                    })
                    .collect();
                self.record(
                    t,
                    if changed {
                        ActionTaken::Cleaned
                    } else {
                        ActionTaken::CleanedUnchanged
                    },
                );
                out
            }
            Plan::Hash => {
                if !nonempty {
                    return Some(values);
                }
                self.record(t, ActionTaken::Pseudonymized);
                values
                    .iter()
                    .map(|v| {
                        let p = self.d.secret.pseudonym(
                            "identifier",
                            v,
                            &self.d.profile.pseudonym_prefix,
                        );
                        self.d.note(CrosswalkKind::Identifier, v, &p);
                        p
                    })
                    .collect()
            }
            Plan::Patient => {
                self.record(t, ActionTaken::Pseudonymized);
                vec![self.patient_pseudonym.clone()]
            }
            Plan::Replace(i) => {
                self.record(t, ActionTaken::Replaced);
                let v = self.d.replacements.get(i).cloned().unwrap_or_default();
                if v.is_empty() { Vec::new() } else { vec![v] }
            }
            Plan::Keep
            | Plan::Retain
            | Plan::Recurse
            | Plan::Remove
            | Plan::RemoveUnlessEmpty
            | Plan::Empty => values,
        })
    }
}

/// Replaces every occurrence (case-insensitive) of a token in `text` with `***`, then every
/// date-like or long number (a run of digits and `/ . -` holding at least 6 digits).
fn scrub(text: &str, tokens: &[String]) -> (String, bool) {
    let (s, a) = scrub_tokens_in(text, tokens);
    let (s, b) = scrub_numbers(&s);
    (s, a || b)
}

fn scrub_numbers(text: &str) -> (String, bool) {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let mut j = i;
            let mut last_digit = i;
            let mut digits = 0;
            while j < chars.len()
                && (chars[j].is_ascii_digit() || matches!(chars[j], '/' | '.' | '-'))
            {
                if chars[j].is_ascii_digit() {
                    digits += 1;
                    last_digit = j;
                }
                j += 1;
            }
            if digits >= 6 {
                out.push_str("***");
                changed = true;
            } else {
                out.extend(&chars[i..=last_digit]);
            }
            i = last_digit + 1;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    (out, changed)
}

fn scrub_tokens_in(text: &str, tokens: &[String]) -> (String, bool) {
    let mut s = text.to_string();
    let mut changed = false;
    for token in tokens {
        loop {
            let upper = s.to_uppercase();
            // Upper-casing may change byte lengths outside ASCII; only trust ASCII-aligned hits.
            let Some(pos) = upper.find(token.as_str()) else {
                break;
            };
            if upper.len() != s.len()
                || !s.is_char_boundary(pos)
                || !s.is_char_boundary(pos + token.len())
            {
                // Fall back to removing the whole value when positions cannot be mapped.
                return (String::new(), true);
            }
            s.replace_range(pos..pos + token.len(), "***");
            changed = true;
        }
    }
    (s, changed)
}

/// UI attributes that hold registry UIDs (SOP classes, transfer syntaxes, coding schemes, …),
/// which identify no one and must be kept.
fn is_registry_uid_attribute(t: u32, e: &InMemElement) -> bool {
    if let Some(entry) = StandardDataDictionary.by_tag(Tag((t >> 16) as u16, t as u16)) {
        let alias = entry.alias;
        if alias.ends_with("ClassUID")
            || alias.contains("TransferSyntax")
            || alias.contains("CodingScheme")
            || alias.ends_with("ContextGroupExtensionCreatorUID")
            || alias == "ContextUID"
            || alias == "MappingResourceUID"
            || alias == "ImplementationClassUID"
        {
            return true;
        }
    }
    match e.value().to_multi_str() {
        Ok(values) => values
            .iter()
            .all(|v| v.trim_matches([' ', '\0']).starts_with("1.2.840.10008.")),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_case_insensitively() {
        let tokens = vec!["DOE".to_string(), "12345".to_string()];
        assert_eq!(
            scrub("Scan of Doe, id 12345", &tokens),
            ("Scan of ***, id ***".to_string(), true)
        );
        assert_eq!(
            scrub("nothing here", &tokens),
            ("nothing here".to_string(), false)
        );
        assert_eq!(
            scrub("seen 10/01/2024 and 2024-01-10, 3.5 mm, 120 kV", &[]),
            ("seen *** and ***, 3.5 mm, 120 kV".to_string(), true)
        );
    }

    #[test]
    fn a_deidentifier_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Deidentifier>();
    }

    #[test]
    fn crosswalk_csv_quotes_fields() {
        let mut c = Crosswalk::default();
        c.entries.insert(
            (CrosswalkKind::Patient, Phi::new("id:A,B".into())),
            "BS1".into(),
        );
        assert_eq!(
            c.to_csv(),
            "kind,original,pseudonym\npatient,\"id:A,B\",BS1\n"
        );
    }
}
