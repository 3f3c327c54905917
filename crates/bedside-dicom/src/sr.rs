//! DICOM Structured Reports: a content tree of coded items written as a Comprehensive SR
//! (PS3.3 A.35.3) with the SR Document General and SR Document Content modules.
//!
//! The tree is built from [`ContentItem`]s (CONTAINER, CODE, NUM with UCUM units, TEXT,
//! UIDREF, PNAME, IMAGE with frame numbers, SCOORD with its graph type and data);
//! [`SrDocument::to_object`] turns it into a data set with the patient and study
//! attributes copied from the source instances, a new series, and the evidence sequence listing
//! every referenced instance. Templates such as TID 1500 are trees of these items, so the
//! annotation exports and the inference service share this writer.
//!
//! ```
//! use bedside_dicom::sr::{Code, ContentItem, Relationship, SrDocument, SourceStudy};
//! let root = ContentItem::container(Code::new("126000", "DCM", "Imaging Measurement Report"))
//!     .with_child(Relationship::Contains, ContentItem::text(
//!         Code::new("121106", "DCM", "Comment"), "synthetic"));
//! let study = SourceStudy { study_instance_uid: "2.25.3".into(), ..SourceStudy::default() };
//! let doc = SrDocument::new(study, root, "2.25.1", "2.25.2");
//! let obj = doc.to_object().unwrap();
//! assert!(obj.element(dicom_dictionary_std::tags::CONTENT_SEQUENCE).is_ok());
//! ```

use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::elements::{code_item, format_ds, put_empty, put_f64, put_is, put_seq, put_str};

/// SOP Class UID of Comprehensive SR Storage.
pub const COMPREHENSIVE_SR: &str = "1.2.840.10008.5.1.4.1.1.88.33";

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SrError {
    /// The root of the content tree is not a CONTAINER.
    #[error("the root content item must be a CONTAINER")]
    RootNotContainer,
    /// A UID is not a valid DICOM UID.
    #[error("invalid UID for {0}")]
    InvalidUid(&'static str),
    /// A numeric value is not finite.
    #[error("numeric value of `{0}` is not finite")]
    NotFinite(String),
    /// An item that needs a concept name has none.
    #[error("a {0} content item needs a concept name")]
    MissingConcept(&'static str),
    /// A SCOORD has the wrong number of points for its graph type, or a point that is not
    /// finite.
    #[error("a {graph} SCOORD cannot have these {points} points")]
    BadCoordinates {
        /// The graph type.
        graph: &'static str,
        /// Number of points given.
        points: usize,
    },
}

/// A coded concept (code value, coding scheme designator, code meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// Code Value.
    pub value: String,
    /// Coding Scheme Designator (`DCM`, `SCT`, `UCUM`, `99…` for private schemes).
    pub scheme: String,
    /// Code Meaning.
    pub meaning: String,
}

impl Code {
    /// A code.
    pub fn new(value: &str, scheme: &str, meaning: &str) -> Self {
        Self {
            value: value.into(),
            scheme: scheme.into(),
            meaning: meaning.into(),
        }
    }

    /// A UCUM unit (the meaning defaults to the code itself).
    pub fn ucum(unit: &str, meaning: &str) -> Self {
        Self::new(unit, "UCUM", meaning)
    }

    /// No concept name: the item is written without a Concept Name Code Sequence, which
    /// PS3.3 C.17.3 allows for SCOORD and IMAGE items (and nothing else; [`SrDocument`]
    /// refuses it elsewhere).
    pub fn none() -> Self {
        Self::new("", "", "")
    }

    /// Whether this is [`Code::none`].
    pub fn is_none(&self) -> bool {
        self.value.is_empty() && self.scheme.is_empty()
    }

    fn item(&self) -> InMemDicomObject {
        code_item(&self.value, &self.scheme, &self.meaning)
    }
}

/// Relationship of a content item to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relationship {
    /// CONTAINS.
    Contains,
    /// HAS PROPERTIES.
    HasProperties,
    /// HAS OBS CONTEXT.
    HasObsContext,
    /// HAS CONCEPT MOD.
    HasConceptMod,
    /// INFERRED FROM.
    InferredFrom,
    /// SELECTED FROM.
    SelectedFrom,
    /// HAS ACQ CONTEXT.
    HasAcqContext,
}

impl Relationship {
    fn as_str(self) -> &'static str {
        match self {
            Self::Contains => "CONTAINS",
            Self::HasProperties => "HAS PROPERTIES",
            Self::HasObsContext => "HAS OBS CONTEXT",
            Self::HasConceptMod => "HAS CONCEPT MOD",
            Self::InferredFrom => "INFERRED FROM",
            Self::SelectedFrom => "SELECTED FROM",
            Self::HasAcqContext => "HAS ACQ CONTEXT",
        }
    }
}

/// A reference to one stored instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    /// Study Instance UID.
    pub study_instance_uid: String,
    /// Series Instance UID.
    pub series_instance_uid: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
}

/// The value of a content item.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A CONTAINER; `separate` is the Continuity Of Content (SEPARATE or CONTINUOUS).
    Container {
        /// SEPARATE (true) or CONTINUOUS.
        separate: bool,
        /// Template identifier and mapping resource (e.g. `("1500", "DCMR")`).
        template: Option<(String, String)>,
    },
    /// A CODE.
    Code(Code),
    /// A NUM with its UCUM unit.
    Num {
        /// The value.
        value: f64,
        /// The unit (UCUM).
        unit: Code,
    },
    /// A TEXT.
    Text(String),
    /// A UIDREF.
    UidRef(String),
    /// A PNAME (a person's name in DICOM PN form, e.g. `DOE^JANE` or a login name).
    PName(String),
    /// A SCOORD: image-relative spatial coordinates (column, row pairs, (0, 0) being the
    /// top left corner of the top left pixel). The image it applies to is an IMAGE child
    /// by SELECTED FROM.
    Scoord {
        /// How the points are joined.
        graph_type: GraphType,
        /// Column, row pairs.
        points: Vec<[f64; 2]>,
    },
    /// An IMAGE reference, optionally to some frames (1-based).
    Image {
        /// The image.
        instance: InstanceRef,
        /// Referenced frame numbers (empty: the whole image).
        frames: Vec<u32>,
    },
}

/// Graphic Type (0070,0023) of a SCOORD (PS3.3 C.18.6.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphType {
    /// One point.
    Point,
    /// Several unconnected points.
    Multipoint,
    /// Connected segments; a closed polygon repeats its first point at the end.
    Polyline,
    /// A circle: centre, then a point on the circle.
    Circle,
    /// An ellipse: the end points of the major axis, then of the minor axis.
    Ellipse,
}

impl GraphType {
    /// The Graphic Type code string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Point => "POINT",
            Self::Multipoint => "MULTIPOINT",
            Self::Polyline => "POLYLINE",
            Self::Circle => "CIRCLE",
            Self::Ellipse => "ELLIPSE",
        }
    }

    fn points_ok(self, n: usize) -> bool {
        match self {
            Self::Point => n == 1,
            Self::Multipoint => n >= 1,
            Self::Polyline => n >= 2,
            Self::Circle => n == 2,
            Self::Ellipse => n == 4,
        }
    }
}

/// One node of the content tree.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentItem {
    /// Concept Name.
    pub concept: Code,
    /// Value.
    pub value: Value,
    /// Children with their relationship to this item.
    pub children: Vec<(Relationship, ContentItem)>,
}

impl ContentItem {
    fn leaf(concept: Code, value: Value) -> Self {
        Self {
            concept,
            value,
            children: Vec::new(),
        }
    }

    /// A SEPARATE container.
    pub fn container(concept: Code) -> Self {
        Self::leaf(
            concept,
            Value::Container {
                separate: true,
                template: None,
            },
        )
    }

    /// A CODE item.
    pub fn code(concept: Code, value: Code) -> Self {
        Self::leaf(concept, Value::Code(value))
    }

    /// A NUM item with a UCUM unit.
    pub fn num(concept: Code, value: f64, unit: Code) -> Self {
        Self::leaf(concept, Value::Num { value, unit })
    }

    /// A TEXT item.
    pub fn text(concept: Code, text: &str) -> Self {
        Self::leaf(concept, Value::Text(text.into()))
    }

    /// A UIDREF item.
    pub fn uid_ref(concept: Code, uid: &str) -> Self {
        Self::leaf(concept, Value::UidRef(uid.into()))
    }

    /// A PNAME item (for example Person Observer Name).
    pub fn pname(concept: Code, name: &str) -> Self {
        Self::leaf(concept, Value::PName(name.into()))
    }

    /// A SCOORD item without a concept name (as in TID 320, the spatial coordinates a
    /// measurement is INFERRED FROM); give it its image with [`ContentItem::selected_from`].
    pub fn scoord(graph_type: GraphType, points: Vec<[f64; 2]>) -> Self {
        Self::leaf(Code::none(), Value::Scoord { graph_type, points })
    }

    /// A SCOORD with its image: a SELECTED FROM child IMAGE (without a concept name)
    /// referencing `instance` and, for multi-frame images, `frames`.
    pub fn selected_from(mut self, instance: InstanceRef, frames: Vec<u32>) -> Self {
        self.push(
            Relationship::SelectedFrom,
            Self::leaf(Code::none(), Value::Image { instance, frames }),
        );
        self
    }

    /// A CONTAINER that follows a template (e.g. `("1500", "DCMR")`).
    pub fn container_with_template(concept: Code, template: (&str, &str)) -> Self {
        Self::leaf(
            concept,
            Value::Container {
                separate: true,
                template: Some((template.0.into(), template.1.into())),
            },
        )
    }

    /// An IMAGE reference.
    pub fn image(concept: Code, instance: InstanceRef, frames: Vec<u32>) -> Self {
        Self::leaf(concept, Value::Image { instance, frames })
    }

    /// Adds a child.
    pub fn with_child(mut self, relationship: Relationship, child: ContentItem) -> Self {
        self.children.push((relationship, child));
        self
    }

    /// Adds a child in place.
    pub fn push(&mut self, relationship: Relationship, child: ContentItem) {
        self.children.push((relationship, child));
    }

    fn images(&self, out: &mut Vec<InstanceRef>) {
        if let Value::Image { instance, .. } = &self.value
            && !out.contains(instance)
        {
            out.push(instance.clone());
        }
        for (_, c) in &self.children {
            c.images(out);
        }
    }

    /// Value Type, Concept Name and value attributes of this item (no relationship, no
    /// children).
    fn fill(&self, item: &mut InMemDicomObject) -> Result<(), SrError> {
        if self.concept.is_none() {
            match &self.value {
                Value::Scoord { .. } | Value::Image { .. } => {}
                Value::Container { .. } => return Err(SrError::MissingConcept("CONTAINER")),
                Value::Code(_) => return Err(SrError::MissingConcept("CODE")),
                Value::Num { .. } => return Err(SrError::MissingConcept("NUM")),
                Value::Text(_) => return Err(SrError::MissingConcept("TEXT")),
                Value::UidRef(_) => return Err(SrError::MissingConcept("UIDREF")),
                Value::PName(_) => return Err(SrError::MissingConcept("PNAME")),
            }
        } else {
            put_seq(
                item,
                tags::CONCEPT_NAME_CODE_SEQUENCE,
                vec![self.concept.item()],
            );
        }
        match &self.value {
            Value::Container { separate, template } => {
                put_str(item, tags::VALUE_TYPE, VR::CS, "CONTAINER");
                put_str(
                    item,
                    tags::CONTINUITY_OF_CONTENT,
                    VR::CS,
                    if *separate { "SEPARATE" } else { "CONTINUOUS" },
                );
                if let Some((id, resource)) = template {
                    let mut t = InMemDicomObject::new_empty();
                    put_str(&mut t, tags::MAPPING_RESOURCE, VR::CS, resource);
                    put_str(&mut t, tags::TEMPLATE_IDENTIFIER, VR::CS, id);
                    put_seq(item, tags::CONTENT_TEMPLATE_SEQUENCE, vec![t]);
                }
            }
            Value::Code(code) => {
                put_str(item, tags::VALUE_TYPE, VR::CS, "CODE");
                put_seq(item, tags::CONCEPT_CODE_SEQUENCE, vec![code.item()]);
            }
            Value::Num { value, unit } => {
                if !value.is_finite() {
                    return Err(SrError::NotFinite(self.concept.meaning.clone()));
                }
                put_str(item, tags::VALUE_TYPE, VR::CS, "NUM");
                let mut m = InMemDicomObject::new_empty();
                put_seq(
                    &mut m,
                    tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
                    vec![unit.item()],
                );
                put_str(&mut m, tags::NUMERIC_VALUE, VR::DS, &format_ds(*value));
                // The DS string holds at most 16 characters: the exact double goes beside it.
                put_f64(&mut m, tags::FLOATING_POINT_VALUE, &[*value]);
                put_seq(item, tags::MEASURED_VALUE_SEQUENCE, vec![m]);
            }
            Value::Text(text) => {
                put_str(item, tags::VALUE_TYPE, VR::CS, "TEXT");
                put_str(item, tags::TEXT_VALUE, VR::UT, text);
            }
            Value::UidRef(uid) => {
                if !crate::uid::is_valid(uid) {
                    return Err(SrError::InvalidUid("UIDREF"));
                }
                put_str(item, tags::VALUE_TYPE, VR::CS, "UIDREF");
                put_str(item, tags::UID, VR::UI, uid);
            }
            Value::PName(name) => {
                put_str(item, tags::VALUE_TYPE, VR::CS, "PNAME");
                put_str(item, tags::PERSON_NAME, VR::PN, name);
            }
            Value::Scoord { graph_type, points } => {
                let bad = || SrError::BadCoordinates {
                    graph: graph_type.as_str(),
                    points: points.len(),
                };
                if !graph_type.points_ok(points.len()) {
                    return Err(bad());
                }
                let mut data = Vec::with_capacity(points.len() * 2);
                for p in points {
                    for v in p {
                        let f = *v as f32;
                        if !f.is_finite() {
                            return Err(bad());
                        }
                        data.push(f);
                    }
                }
                put_str(item, tags::VALUE_TYPE, VR::CS, "SCOORD");
                item.put(dicom_core::DataElement::new(
                    tags::GRAPHIC_DATA,
                    VR::FL,
                    dicom_core::value::PrimitiveValue::F32(data.into_iter().collect()),
                ));
                put_str(item, tags::GRAPHIC_TYPE, VR::CS, graph_type.as_str());
            }
            Value::Image { instance, frames } => {
                put_str(item, tags::VALUE_TYPE, VR::CS, "IMAGE");
                let mut r = InMemDicomObject::new_empty();
                put_str(
                    &mut r,
                    tags::REFERENCED_SOP_CLASS_UID,
                    VR::UI,
                    &instance.sop_class_uid,
                );
                put_str(
                    &mut r,
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    &instance.sop_instance_uid,
                );
                if !frames.is_empty() {
                    let text = frames
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join("\\");
                    put_str(&mut r, tags::REFERENCED_FRAME_NUMBER, VR::IS, &text);
                }
                put_seq(item, tags::REFERENCED_SOP_SEQUENCE, vec![r]);
            }
        }
        if !self.children.is_empty() {
            let mut items = Vec::with_capacity(self.children.len());
            for (rel, child) in &self.children {
                let mut c = InMemDicomObject::new_empty();
                put_str(&mut c, tags::RELATIONSHIP_TYPE, VR::CS, rel.as_str());
                child.fill(&mut c)?;
                items.push(c);
            }
            put_seq(item, tags::CONTENT_SEQUENCE, items);
        }
        Ok(())
    }
}

/// Patient and study attributes copied from the source (absent values are written empty, as
/// the type 2 attributes of the Patient and General Study modules allow).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStudy {
    /// Patient's Name.
    pub patient_name: String,
    /// Patient ID.
    pub patient_id: String,
    /// Patient's Birth Date.
    pub patient_birth_date: String,
    /// Patient's Sex.
    pub patient_sex: String,
    /// Study Instance UID (empty: a new one is needed; [`SrDocument::to_object`] refuses it).
    pub study_instance_uid: String,
    /// Study Date.
    pub study_date: String,
    /// Study Time.
    pub study_time: String,
    /// Study ID.
    pub study_id: String,
    /// Accession Number.
    pub accession_number: String,
    /// Referring Physician's Name.
    pub referring_physician_name: String,
}

impl SourceStudy {
    /// Reads the patient and study attributes of `obj`.
    pub fn from_object(obj: &InMemDicomObject) -> Self {
        let text = |tag| {
            obj.element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_str().ok())
                .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
                .unwrap_or_default()
        };
        Self {
            patient_name: text(tags::PATIENT_NAME),
            patient_id: text(tags::PATIENT_ID),
            patient_birth_date: text(tags::PATIENT_BIRTH_DATE),
            patient_sex: text(tags::PATIENT_SEX),
            study_instance_uid: text(tags::STUDY_INSTANCE_UID),
            study_date: text(tags::STUDY_DATE),
            study_time: text(tags::STUDY_TIME),
            study_id: text(tags::STUDY_ID),
            accession_number: text(tags::ACCESSION_NUMBER),
            referring_physician_name: text(tags::REFERRING_PHYSICIAN_NAME),
        }
    }
}

/// A Comprehensive SR document.
#[derive(Debug, Clone, PartialEq)]
pub struct SrDocument {
    /// Patient and study of the source.
    pub study: SourceStudy,
    /// Root CONTAINER.
    pub root: ContentItem,
    /// Series Instance UID of the report.
    pub series_instance_uid: String,
    /// SOP Instance UID of the report.
    pub sop_instance_uid: String,
    /// Series Number.
    pub series_number: i64,
    /// Instance Number.
    pub instance_number: i64,
    /// Series Description.
    pub series_description: String,
    /// Manufacturer (General Equipment).
    pub manufacturer: String,
    /// Software Versions.
    pub software_versions: String,
    /// Content Date (`YYYYMMDD`).
    pub content_date: String,
    /// Content Time (`HHMMSS`).
    pub content_time: String,
    /// COMPLETE (true) or PARTIAL.
    pub complete: bool,
    /// Instances referenced besides the IMAGE items (they all go into the evidence sequence).
    pub evidence: Vec<InstanceRef>,
    /// Private coding schemes used in the tree, described in the Coding Scheme
    /// Identification Sequence so a receiver can resolve their designators.
    pub coding_schemes: Vec<CodingScheme>,
}

/// A coding scheme described in the Coding Scheme Identification Sequence (0008,0110).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodingScheme {
    /// Coding Scheme Designator as used in the codes (e.g. `99ACME`).
    pub designator: String,
    /// Coding Scheme Name.
    pub name: String,
    /// Coding Scheme Version (empty: not written).
    pub version: String,
    /// Coding Scheme Responsible Organization.
    pub responsible_organization: String,
}

impl SrDocument {
    /// A COMPLETE, UNVERIFIED report with the given tree and UIDs; date and time empty
    /// until set (they are then taken from the study).
    pub fn new(study: SourceStudy, root: ContentItem, series_uid: &str, sop_uid: &str) -> Self {
        Self {
            study,
            root,
            series_instance_uid: series_uid.into(),
            sop_instance_uid: sop_uid.into(),
            series_number: 9001,
            instance_number: 1,
            series_description: String::new(),
            manufacturer: String::new(),
            software_versions: String::new(),
            content_date: String::new(),
            content_time: String::new(),
            complete: true,
            evidence: Vec::new(),
            coding_schemes: Vec::new(),
        }
    }

    /// The data set (no file meta group; write it with [`crate::write::encode_file`]).
    pub fn to_object(&self) -> Result<InMemDicomObject, SrError> {
        if !matches!(self.root.value, Value::Container { .. }) {
            return Err(SrError::RootNotContainer);
        }
        for (uid, what) in [
            (&self.sop_instance_uid, "SOP Instance UID"),
            (&self.series_instance_uid, "Series Instance UID"),
            (&self.study.study_instance_uid, "Study Instance UID"),
        ] {
            if !crate::uid::is_valid(uid) {
                return Err(SrError::InvalidUid(what));
            }
        }
        let mut obj =
            crate::sr::object_of_study(COMPREHENSIVE_SR, &self.sop_instance_uid, &self.study);
        let s = &self.study;
        // SR Document Series.
        crate::sr::put_series(
            &mut obj,
            "SR",
            &self.series_instance_uid,
            self.series_number,
            &self.series_description,
        );
        put_seq(
            &mut obj,
            tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
            Vec::new(),
        );
        // General Equipment.
        put_str(&mut obj, tags::MANUFACTURER, VR::LO, &self.manufacturer);
        if !self.software_versions.is_empty() {
            put_str(
                &mut obj,
                tags::SOFTWARE_VERSIONS,
                VR::LO,
                &self.software_versions,
            );
        }
        // SR Document General.
        put_is(&mut obj, tags::INSTANCE_NUMBER, self.instance_number);
        put_str(
            &mut obj,
            tags::COMPLETION_FLAG,
            VR::CS,
            if self.complete { "COMPLETE" } else { "PARTIAL" },
        );
        put_str(&mut obj, tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED");
        let (date, time) = if self.content_date.is_empty() {
            (s.study_date.as_str(), s.study_time.as_str())
        } else {
            (self.content_date.as_str(), self.content_time.as_str())
        };
        if date.is_empty() {
            put_empty(&mut obj, tags::CONTENT_DATE, VR::DA);
            put_empty(&mut obj, tags::CONTENT_TIME, VR::TM);
        } else {
            put_str(&mut obj, tags::CONTENT_DATE, VR::DA, date);
            put_str(&mut obj, tags::CONTENT_TIME, VR::TM, time);
        }
        put_seq(
            &mut obj,
            tags::PERFORMED_PROCEDURE_CODE_SEQUENCE,
            Vec::new(),
        );
        let mut refs = self.evidence.clone();
        self.root.images(&mut refs);
        refs.dedup();
        if !refs.is_empty() {
            put_seq(
                &mut obj,
                tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
                evidence_items(&refs),
            );
        }
        if !self.coding_schemes.is_empty() {
            let items = self
                .coding_schemes
                .iter()
                .map(|c| {
                    let mut item = InMemDicomObject::new_empty();
                    put_str(
                        &mut item,
                        tags::CODING_SCHEME_DESIGNATOR,
                        VR::SH,
                        &c.designator,
                    );
                    put_str(&mut item, tags::CODING_SCHEME_NAME, VR::ST, &c.name);
                    if !c.version.is_empty() {
                        put_str(&mut item, tags::CODING_SCHEME_VERSION, VR::SH, &c.version);
                    }
                    put_str(
                        &mut item,
                        tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION,
                        VR::ST,
                        &c.responsible_organization,
                    );
                    item
                })
                .collect();
            put_seq(&mut obj, tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE, items);
        }
        // SR Document Content: the root item's attributes sit in the data set itself.
        self.root.fill(&mut obj)?;
        Ok(obj)
    }
}

/// A new object with the SOP Common (UTF-8), Patient and General Study modules of a derived
/// instance (SR, SEG) filled from its source study.
pub(crate) fn object_of_study(
    sop_class: &str,
    sop_instance_uid: &str,
    study: &SourceStudy,
) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    let s = study;
    // SOP Common.
    put_str(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put_str(&mut obj, tags::SOP_CLASS_UID, VR::UI, sop_class);
    put_str(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, sop_instance_uid);
    // Patient.
    put_str(&mut obj, tags::PATIENT_NAME, VR::PN, &s.patient_name);
    put_str(&mut obj, tags::PATIENT_ID, VR::LO, &s.patient_id);
    put_str(
        &mut obj,
        tags::PATIENT_BIRTH_DATE,
        VR::DA,
        &s.patient_birth_date,
    );
    put_str(&mut obj, tags::PATIENT_SEX, VR::CS, &s.patient_sex);
    // General Study.
    put_str(
        &mut obj,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &s.study_instance_uid,
    );
    put_str(&mut obj, tags::STUDY_DATE, VR::DA, &s.study_date);
    put_str(&mut obj, tags::STUDY_TIME, VR::TM, &s.study_time);
    put_str(
        &mut obj,
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        &s.referring_physician_name,
    );
    put_str(&mut obj, tags::STUDY_ID, VR::SH, &s.study_id);
    put_str(
        &mut obj,
        tags::ACCESSION_NUMBER,
        VR::SH,
        &s.accession_number,
    );
    obj
}

/// The General Series attributes every object Bedside writes carries: modality, series UID
/// and number, and the description when there is one.
pub(crate) fn put_series(
    obj: &mut InMemDicomObject,
    modality: &str,
    series_instance_uid: &str,
    series_number: i64,
    series_description: &str,
) {
    put_str(obj, tags::MODALITY, VR::CS, modality);
    put_str(obj, tags::SERIES_INSTANCE_UID, VR::UI, series_instance_uid);
    put_is(obj, tags::SERIES_NUMBER, series_number);
    if !series_description.is_empty() {
        put_str(obj, tags::SERIES_DESCRIPTION, VR::LO, series_description);
    }
}

/// Hierarchical SOP Instance Reference Macro items: study → series → instances.
fn evidence_items(refs: &[InstanceRef]) -> Vec<InMemDicomObject> {
    let mut studies: Vec<(&str, SeriesRefs<'_>)> = Vec::new();
    for r in refs {
        let study = match studies
            .iter_mut()
            .position(|(s, _)| *s == r.study_instance_uid)
        {
            Some(i) => &mut studies[i].1,
            None => {
                studies.push((r.study_instance_uid.as_str(), Vec::new()));
                let last = studies.len() - 1;
                &mut studies[last].1
            }
        };
        match study.iter_mut().find(|(s, _)| *s == r.series_instance_uid) {
            Some((_, list)) => list.push(r),
            None => study.push((r.series_instance_uid.as_str(), vec![r])),
        }
    }
    studies
        .into_iter()
        .map(|(study, series)| {
            let mut item = InMemDicomObject::new_empty();
            let series_items = series
                .into_iter()
                .map(|(uid, list)| {
                    let mut se = InMemDicomObject::new_empty();
                    let sops = list
                        .into_iter()
                        .map(|r| {
                            let mut sop = InMemDicomObject::new_empty();
                            put_str(
                                &mut sop,
                                tags::REFERENCED_SOP_CLASS_UID,
                                VR::UI,
                                &r.sop_class_uid,
                            );
                            put_str(
                                &mut sop,
                                tags::REFERENCED_SOP_INSTANCE_UID,
                                VR::UI,
                                &r.sop_instance_uid,
                            );
                            sop
                        })
                        .collect();
                    put_seq(&mut se, tags::REFERENCED_SOP_SEQUENCE, sops);
                    put_str(&mut se, tags::SERIES_INSTANCE_UID, VR::UI, uid);
                    se
                })
                .collect();
            put_seq(&mut item, tags::REFERENCED_SERIES_SEQUENCE, series_items);
            put_str(&mut item, tags::STUDY_INSTANCE_UID, VR::UI, study);
            item
        })
        .collect()
}

/// Series of one study in the evidence sequence: series UID and its instances.
type SeriesRefs<'a> = Vec<(&'a str, Vec<&'a InstanceRef>)>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn source() -> InstanceRef {
        InstanceRef {
            study_instance_uid: "2.25.10".into(),
            series_instance_uid: "2.25.11".into(),
            sop_class_uid: crate::sop::US_MULTIFRAME.into(),
            sop_instance_uid: "2.25.12".into(),
        }
    }

    fn tree() -> ContentItem {
        let mut root = ContentItem::container(Code::new("RPT", "99TEST", "Report"));
        root.push(
            Relationship::Contains,
            ContentItem::num(
                Code::new("EF", "99TEST", "Ejection fraction"),
                55.123456789012345,
                Code::ucum("%", "percent"),
            )
            .with_child(
                Relationship::InferredFrom,
                ContentItem::image(
                    Code::new("121112", "DCM", "Source of Measurement"),
                    source(),
                    vec![1, 2],
                ),
            ),
        );
        root.push(
            Relationship::HasObsContext,
            ContentItem::uid_ref(Code::new("UID", "99TEST", "Some UID"), "2.25.99"),
        );
        root
    }

    #[test]
    fn tree_becomes_nested_items_and_evidence() {
        let study = SourceStudy {
            study_instance_uid: "2.25.10".into(),
            ..SourceStudy::default()
        };
        let doc = SrDocument::new(study, tree(), "2.25.20", "2.25.21");
        let obj = doc.to_object().unwrap();
        let text = |o: &InMemDicomObject, t| o.element(t).unwrap().to_str().unwrap().to_string();
        assert_eq!(text(&obj, tags::VALUE_TYPE), "CONTAINER");
        assert_eq!(text(&obj, tags::SOP_CLASS_UID), COMPREHENSIVE_SR);
        let items = obj
            .element(tags::CONTENT_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(text(&items[0], tags::RELATIONSHIP_TYPE), "CONTAINS");
        let m = &items[0]
            .element(tags::MEASURED_VALUE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert!(text(m, tags::NUMERIC_VALUE).len() <= 16);
        assert_eq!(
            m.element(tags::FLOATING_POINT_VALUE)
                .unwrap()
                .to_float64()
                .unwrap(),
            55.123456789012345
        );
        let image = &items[0]
            .element(tags::CONTENT_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert_eq!(text(image, tags::VALUE_TYPE), "IMAGE");
        let ev = obj
            .element(tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(text(&ev[0], tags::STUDY_INSTANCE_UID), "2.25.10");
        // Encodes as a Part 10 file that reads back.
        let bytes = crate::write::encode_file(obj, crate::ts::EXPLICIT_VR_LE).unwrap();
        crate::read::read_bytes(&bytes).unwrap();
    }

    #[test]
    fn refuses_bad_roots_uids_and_values() {
        let study = SourceStudy {
            study_instance_uid: "2.25.10".into(),
            ..SourceStudy::default()
        };
        let leaf = ContentItem::text(Code::new("T", "99TEST", "Text"), "x");
        let doc = SrDocument::new(study.clone(), leaf, "2.25.20", "2.25.21");
        assert!(matches!(doc.to_object(), Err(SrError::RootNotContainer)));
        let doc = SrDocument::new(SourceStudy::default(), tree(), "2.25.20", "2.25.21");
        assert!(matches!(doc.to_object(), Err(SrError::InvalidUid(_))));
        let nan = ContentItem::container(Code::new("R", "99TEST", "R")).with_child(
            Relationship::Contains,
            ContentItem::num(
                Code::new("N", "99TEST", "N"),
                f64::NAN,
                Code::ucum("1", "no units"),
            ),
        );
        let doc = SrDocument::new(study, nan, "2.25.20", "2.25.21");
        assert!(matches!(doc.to_object(), Err(SrError::NotFinite(_))));
    }
    #[test]
    fn scoord_and_pname_items() {
        let study = SourceStudy {
            study_instance_uid: "2.25.10".into(),
            ..SourceStudy::default()
        };
        let mut root = ContentItem::container_with_template(
            Code::new("126000", "DCM", "Imaging Measurement Report"),
            ("1500", "DCMR"),
        );
        root.push(
            Relationship::HasObsContext,
            ContentItem::pname(Code::new("121008", "DCM", "Person Observer Name"), "alice"),
        );
        root.push(
            Relationship::Contains,
            ContentItem::num(
                Code::new("410668003", "SCT", "Length"),
                90.0,
                Code::ucum("mm", "millimeter"),
            )
            .with_child(
                Relationship::InferredFrom,
                ContentItem::scoord(GraphType::Polyline, vec![[1.5, 2.0], [91.5, 2.0]])
                    .selected_from(source(), vec![7]),
            ),
        );
        let obj = SrDocument::new(study.clone(), root, "2.25.20", "2.25.21")
            .to_object()
            .unwrap();
        let bytes = crate::write::encode_file(obj, crate::ts::EXPLICIT_VR_LE).unwrap();
        let back = crate::read::read_bytes(&bytes).unwrap();
        let text = |o: &InMemDicomObject, t| o.element(t).unwrap().to_str().unwrap().to_string();
        let items = back
            .element(tags::CONTENT_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        assert_eq!(text(&items[0], tags::VALUE_TYPE), "PNAME");
        assert_eq!(text(&items[0], tags::PERSON_NAME), "alice");
        let scoord = &items[1]
            .element(tags::CONTENT_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert_eq!(text(scoord, tags::RELATIONSHIP_TYPE), "INFERRED FROM");
        assert_eq!(text(scoord, tags::GRAPHIC_TYPE), "POLYLINE");
        assert!(scoord.element(tags::CONCEPT_NAME_CODE_SEQUENCE).is_err());
        let data = scoord
            .element(tags::GRAPHIC_DATA)
            .unwrap()
            .to_multi_float32()
            .unwrap();
        assert_eq!(data, vec![1.5, 2.0, 91.5, 2.0]);
        let image = &scoord
            .element(tags::CONTENT_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert_eq!(text(image, tags::RELATIONSHIP_TYPE), "SELECTED FROM");
        let sop = &image
            .element(tags::REFERENCED_SOP_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert_eq!(text(sop, tags::REFERENCED_FRAME_NUMBER), "7");
        // The referenced image lands in the evidence.
        assert!(
            back.element(tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE)
                .is_ok()
        );
        // Wrong point counts and missing concepts are refused.
        let bad = ContentItem::container(Code::new("R", "99TEST", "R")).with_child(
            Relationship::Contains,
            ContentItem::scoord(GraphType::Ellipse, vec![[0.0, 0.0]]),
        );
        let doc = SrDocument::new(study.clone(), bad, "2.25.20", "2.25.21");
        assert!(matches!(
            doc.to_object(),
            Err(SrError::BadCoordinates { .. })
        ));
        let bad = ContentItem::container(Code::new("R", "99TEST", "R"))
            .with_child(Relationship::Contains, ContentItem::text(Code::none(), "x"));
        let doc = SrDocument::new(study, bad, "2.25.20", "2.25.21");
        assert!(matches!(
            doc.to_object(),
            Err(SrError::MissingConcept("TEXT"))
        ));
    }
}
