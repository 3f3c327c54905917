//! DICOM exports of a project's annotations, and the masks as arrays and images.
//!
//! - **SR** ([`sr_files`]): one Comprehensive SR per study and reader following TID 1500
//!   (Imaging Measurement Report): language, observer context (TID 1002: Observer Type
//!   Person, Person Observer Name = the reader's account name as the family name,
//!   `dr.alice^`), Procedure Reported (from the
//!   modality), an Image Library of every referenced instance, and under Imaging Measurements
//!   one Measurement Group (TID 1501) per measurement or below-study label, with Tracking
//!   Identifier (`name #id`) and Tracking Unique Identifier (stable per annotation), the
//!   measurement's name as Finding (private scheme `99BEDSIDE`, declared in the Coding Scheme
//!   Identification Sequence), and per quantity a NUM (Length SCT 410668003, Area SCT
//!   42798000, Perimeter SCT 131191004) in the UCUM unit the server computed (`mm`, `mm2`;
//!   `{pixels}` and `{square_pixels}` when the image carries no calibration), INFERRED FROM a
//!   SCOORD (POLYLINE for lengths, closed POLYLINE for areas and polygons, ELLIPSE) SELECTED
//!   FROM the IMAGE with its Referenced Frame Number. Labels are CODE items (label name as
//!   concept, chosen option as value): study labels under Qualitative Evaluations, the others
//!   in a Measurement Group INFERRED FROM their image and frame (instance and frame labels) or
//!   with the series UID as a property (series labels). Masks go to SEG, not to the SR.
//! - **SEG** ([`seg_files`]): one binary Segmentation per source instance and reader, one
//!   segment per mask name (masks of the same name on one frame are merged), one SEG frame per
//!   annotated source frame referencing it (Derivation Image, Referenced Frame Number),
//!   Content Creator's Name = the reader.
//! - **Masks** ([`mask_files`]): per instance, mask name and reader, a NumPy `.npy` array of
//!   frames × rows × columns `uint8` covering every frame of the instance (index = frame − 1;
//!   the drawn values, 0 outside) and one 8-bit PNG per annotated frame (255 inside, 0
//!   outside).
//!
//! UIDs are derived from the project, the study or instance, the reader and the annotations'
//! ids and versions: exporting unchanged annotations again gives the same UIDs; a change gives
//! a new SOP Instance UID in the same series. Points are written as the annotations hold them
//! (image pixel coordinates, column then row).

use std::collections::{BTreeMap, HashMap};

use bedside_dicom::seg::{Segment, SegmentAlgorithm, SegmentFrame, Segmentation, SourceImage};
use bedside_dicom::sr::{
    Code, CodingScheme, ContentItem, GraphType, InstanceRef, Relationship, SourceStudy, SrDocument,
};
use bedside_dicomweb::{Scope, StoreError, StudyStore};
use dicom_core::VR;
use dicom_dictionary_std::tags;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::db::{Annotation, Project};

/// The private coding scheme of names chosen in label schemas.
pub const PRIVATE_SCHEME: &str = "99BEDSIDE";

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The request cannot be answered as asked (unknown format, packaging).
    #[error("{0}")]
    Invalid(String),
    /// The data folder could not be opened.
    #[error(transparent)]
    Open(#[from] crate::store::OpenError),
    /// The study store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] crate::db::DbError),
    /// A referenced instance could not be read.
    #[error("instance {sop}: {why}")]
    Source {
        /// SOP Instance UID.
        sop: String,
        /// Why.
        why: String,
    },
    /// The SR could not be built.
    #[error("SR: {0}")]
    Sr(#[from] bedside_dicom::sr::SrError),
    /// The SEG could not be built.
    #[error("SEG: {0}")]
    Seg(#[from] bedside_dicom::seg::SegError),
    /// Encoding failed.
    #[error("encoding: {0}")]
    Write(#[from] bedside_dicom::write::WriteError),
    /// Packing the files failed.
    #[error("packing: {0}")]
    Pack(String),
}

/// One file of an export.
#[derive(Debug, Clone)]
pub struct ExportFile {
    /// Path inside the archive.
    pub name: String,
    /// Content.
    pub bytes: Vec<u8>,
    /// What the manifest says of it.
    pub about: Value,
}

/// What one referenced instance contributes.
#[derive(Debug, Clone)]
struct Source {
    reference: InstanceRef,
    study: SourceStudy,
    modality: String,
    frames: u32,
    rows: u64,
    columns: u64,
    /// The SEG source, or why there is none.
    image: Result<SourceImage, String>,
}

/// Reads referenced instances from the store once each.
pub struct Sources<'a> {
    store: &'a dyn StudyStore,
    by_sop: HashMap<String, Source>,
    first_of_study: HashMap<String, String>,
}

impl std::fmt::Debug for Sources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("read", &self.by_sop.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Sources<'a> {
    /// Reads from `store`.
    pub fn new(store: &'a dyn StudyStore) -> Self {
        Self {
            store,
            by_sop: HashMap::new(),
            first_of_study: HashMap::new(),
        }
    }

    fn get(&mut self, study: &str, series: &str, sop: &str) -> Result<&Source, ExportError> {
        if !self.by_sop.contains_key(sop) {
            let scope = Scope {
                study_instance_uid: Some(study.into()),
                series_instance_uid: Some(series.into()),
                sop_instance_uid: Some(sop.into()),
            };
            let loc = self
                .store
                .locate(&scope)?
                .into_iter()
                .next()
                .ok_or_else(|| ExportError::Source {
                    sop: sop.into(),
                    why: "not in the store".into(),
                })?;
            let bytes = self.store.read(&loc)?;
            let obj = bedside_dicom::read::read_bytes(&bytes).map_err(|e| ExportError::Source {
                sop: sop.into(),
                why: e.to_string(),
            })?;
            let text = |tag| {
                obj.element_opt(tag)
                    .ok()
                    .flatten()
                    .and_then(|e| e.to_str().ok())
                    .map(|v| v.trim_end_matches(['\0', ' ']).trim().to_string())
                    .unwrap_or_default()
            };
            let int = |tag| {
                obj.element_opt(tag)
                    .ok()
                    .flatten()
                    .and_then(|e| e.to_int::<u64>().ok())
            };
            let source = Source {
                reference: InstanceRef {
                    study_instance_uid: loc.study_instance_uid.clone(),
                    series_instance_uid: loc.series_instance_uid.clone(),
                    sop_class_uid: loc.sop_class_uid.clone(),
                    sop_instance_uid: loc.sop_instance_uid.clone(),
                },
                study: SourceStudy::from_object(&obj),
                modality: text(tags::MODALITY),
                frames: int(tags::NUMBER_OF_FRAMES)
                    .unwrap_or(1)
                    .clamp(1, u64::from(u32::MAX)) as u32,
                rows: int(tags::ROWS).unwrap_or(0),
                columns: int(tags::COLUMNS).unwrap_or(0),
                image: SourceImage::from_object(&obj).map_err(|e| e.to_string()),
            };
            self.by_sop.insert(sop.to_string(), source);
        }
        self.by_sop.get(sop).ok_or_else(|| ExportError::Source {
            sop: sop.into(),
            why: "not read".into(),
        })
    }

    /// Any instance of the study (for study-level annotations).
    fn any_of_study(&mut self, study: &str) -> Result<&Source, ExportError> {
        if !self.first_of_study.contains_key(study) {
            let scope = Scope {
                study_instance_uid: Some(study.into()),
                ..Scope::default()
            };
            let loc = self
                .store
                .locate(&scope)?
                .into_iter()
                .next()
                .ok_or_else(|| ExportError::Source {
                    sop: study.into(),
                    why: "the study has no instance in the store".into(),
                })?;
            self.get(study, &loc.series_instance_uid, &loc.sop_instance_uid)?;
            self.first_of_study
                .insert(study.into(), loc.sop_instance_uid.clone());
        }
        let sop = self.first_of_study[study].clone();
        self.by_sop.get(&sop).ok_or_else(|| ExportError::Source {
            sop,
            why: "not read".into(),
        })
    }
}

/// An account name as a Person Name: the family name component, with the caret that marks it
/// as one (a name without any is the retired free-text form, which validators flag).
pub fn person_name(account: &str) -> String {
    if account.contains('^') {
        account.to_string()
    } else {
        format!("{account}^")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Up to `max` characters of `s` (LO values hold 64).
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The private code of a schema name (`kind` keeps labels, options, measurements and masks
/// apart): a 12-character value from the SHA-256 of the name, the name as meaning.
pub fn private_code(kind: &str, name: &str) -> Code {
    let digest = Sha256::digest(format!("{kind}\u{0}{name}").as_bytes());
    Code::new(&hex(&digest[..6]), PRIVATE_SCHEME, &clip(name, 64))
}

fn coding_scheme() -> CodingScheme {
    CodingScheme {
        designator: PRIVATE_SCHEME.into(),
        name: "Bedside annotation schema names".into(),
        version: String::new(),
        responsible_organization: "Bedside".into(),
    }
}

fn uid(parts: &[&str]) -> String {
    bedside_dicom::uid::from_hash(
        format!("bedside-annotate\u{0}{}", parts.join("\u{0}")).as_bytes(),
    )
}

/// A digest of the annotations' ids and versions (new content, new SOP Instance UID).
fn content_digest(list: &[&Annotation]) -> String {
    let mut ids: Vec<String> = list
        .iter()
        .map(|a| format!("{}@{}", a.id, a.version))
        .collect();
    ids.sort();
    hex(&Sha256::digest(ids.join(",").as_bytes())[..16])
}

/// `YYYYMMDD` and `HHMMSS` (UTC) of the latest change.
fn content_date_time(list: &[&Annotation]) -> (String, String) {
    let ms = list.iter().map(|a| a.updated_at).max().unwrap_or(0);
    let iso = crate::export::iso8601(ms);
    (iso[..10].replace('-', ""), iso[11..19].replace(':', ""))
}

/// The UCUM code of a unit the server computes.
pub fn ucum(unit: &str) -> Code {
    match unit {
        "mm" => Code::ucum("mm", "millimeter"),
        "cm" => Code::ucum("cm", "centimeter"),
        "mm2" => Code::ucum("mm2", "square millimeter"),
        "cm2" => Code::ucum("cm2", "square centimeter"),
        "px2" => Code::ucum("{square_pixels}", "square pixels"),
        _ => Code::ucum("{pixels}", "pixels"),
    }
}

/// The concept of a quantity the server computes.
pub fn quantity_concept(quantity: &str) -> Option<Code> {
    match quantity {
        "length" => Some(Code::new("410668003", "SCT", "Length")),
        "area" => Some(Code::new("42798000", "SCT", "Area")),
        "perimeter" => Some(Code::new("131191004", "SCT", "Perimeter")),
        _ => None,
    }
}

fn procedure(modality: &str) -> Code {
    match modality {
        "US" => Code::new("16310003", "SCT", "Ultrasonography"),
        "CT" => Code::new("77477000", "SCT", "Computed Tomography"),
        "MR" => Code::new("113091000", "SCT", "Magnetic Resonance Imaging"),
        _ => Code::new("363679005", "SCT", "Imaging procedure"),
    }
}

fn point(v: &Value) -> Option<[f64; 2]> {
    let a = v.as_array()?;
    Some([a.first()?.as_f64()?, a.get(1)?.as_f64()?])
}

/// The SCOORD of a measurement's payload.
fn scoord_of(a: &Annotation) -> Option<ContentItem> {
    match a.kind.as_str() {
        "ellipse" => {
            let c = point(a.payload.get("center")?)?;
            let r = point(a.payload.get("radii")?)?;
            let x = [[c[0] - r[0], c[1]], [c[0] + r[0], c[1]]];
            let y = [[c[0], c[1] - r[1]], [c[0], c[1] + r[1]]];
            // Major axis first.
            let pts = if r[0] >= r[1] {
                [x[0], x[1], y[0], y[1]]
            } else {
                [y[0], y[1], x[0], x[1]]
            };
            Some(ContentItem::scoord(GraphType::Ellipse, pts.to_vec()))
        }
        kind => {
            let mut pts: Vec<[f64; 2]> = a
                .payload
                .get("points")?
                .as_array()?
                .iter()
                .map(point)
                .collect::<Option<_>>()?;
            if kind != "length" {
                // A closed outline: the first point again at the end.
                let first = *pts.first()?;
                pts.push(first);
            }
            Some(ContentItem::scoord(GraphType::Polyline, pts))
        }
    }
}

fn frames_of(a: &Annotation, source: &Source) -> Vec<u32> {
    match a.location.frame {
        Some(f) if source.frames > 1 && f >= 1 => vec![f as u32],
        _ => Vec::new(),
    }
}

fn tracking(group: &mut ContentItem, project: &Project, a: &Annotation) {
    group.push(
        Relationship::Contains,
        ContentItem::text(
            Code::new("112039", "DCM", "Tracking Identifier"),
            &format!("{} #{}", a.name, a.id),
        ),
    );
    group.push(
        Relationship::Contains,
        ContentItem::uid_ref(
            Code::new("112040", "DCM", "Tracking Unique Identifier"),
            &uid(&["annotation", &project.id.to_string(), &a.id]),
        ),
    );
}

fn measurement_group() -> ContentItem {
    ContentItem::container_with_template(
        Code::new("125007", "DCM", "Measurement Group"),
        ("1501", "DCMR"),
    )
}

fn label_values(a: &Annotation) -> Vec<String> {
    a.payload["values"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn label_items(a: &Annotation) -> Vec<ContentItem> {
    let concept = private_code("label", &a.name);
    label_values(a)
        .iter()
        .map(|v| {
            ContentItem::code(
                concept.clone(),
                private_code(&format!("option\u{0}{}", a.name), v),
            )
        })
        .collect()
}

/// The content tree of one reader's annotations on one study.
fn sr_tree(
    project: &Project,
    study: &str,
    author: &str,
    list: &[&Annotation],
    sources: &mut Sources<'_>,
) -> Result<(ContentItem, SourceStudy), ExportError> {
    let any = sources.any_of_study(study)?.clone();
    let mut root = ContentItem::container_with_template(
        Code::new("126000", "DCM", "Imaging Measurement Report"),
        ("1500", "DCMR"),
    );
    root.push(
        Relationship::HasConceptMod,
        ContentItem::code(
            Code::new("121049", "DCM", "Language of Content Item and Descendants"),
            Code::new("en-US", "RFC5646", "English (United States)"),
        ),
    );
    root.push(
        Relationship::HasObsContext,
        ContentItem::code(
            Code::new("121005", "DCM", "Observer Type"),
            Code::new("121006", "DCM", "Person"),
        ),
    );
    root.push(
        Relationship::HasObsContext,
        ContentItem::pname(
            Code::new("121008", "DCM", "Person Observer Name"),
            &person_name(author),
        ),
    );
    root.push(
        Relationship::HasConceptMod,
        ContentItem::code(
            Code::new("121058", "DCM", "Procedure reported"),
            procedure(&any.modality),
        ),
    );
    let mut library_refs: Vec<InstanceRef> = Vec::new();
    let mut measurements =
        ContentItem::container(Code::new("126010", "DCM", "Imaging Measurements"));
    let mut qualitative =
        ContentItem::container(Code::new("C0034375", "UMLS", "Qualitative Evaluations"));
    for a in list {
        let source = match (
            &a.location.series_instance_uid,
            &a.location.sop_instance_uid,
        ) {
            (Some(series), Some(sop)) => Some(sources.get(study, series, sop)?.clone()),
            _ => None,
        };
        if let Some(s) = &source
            && !library_refs.contains(&s.reference)
        {
            library_refs.push(s.reference.clone());
        }
        match (a.kind.as_str(), &source) {
            ("mask", _) => {}
            ("label", None) if a.location.series_instance_uid.is_none() => {
                for item in label_items(a) {
                    qualitative.push(Relationship::Contains, item);
                }
            }
            ("label", None) => {
                // A series label: the series UID as a property of each value.
                let mut group = measurement_group();
                tracking(&mut group, project, a);
                let series = a.location.series_instance_uid.clone().unwrap_or_default();
                for item in label_items(a) {
                    group.push(
                        Relationship::Contains,
                        item.with_child(
                            Relationship::HasProperties,
                            ContentItem::uid_ref(
                                Code::new("112002", "DCM", "Series Instance UID"),
                                &series,
                            ),
                        ),
                    );
                }
                measurements.push(Relationship::Contains, group);
            }
            ("label", Some(s)) => {
                let mut group = measurement_group();
                tracking(&mut group, project, a);
                for item in label_items(a) {
                    group.push(
                        Relationship::Contains,
                        item.with_child(
                            Relationship::InferredFrom,
                            ContentItem::image(Code::none(), s.reference.clone(), frames_of(a, s)),
                        ),
                    );
                }
                measurements.push(Relationship::Contains, group);
            }
            (_, Some(s)) => {
                let Some(scoord) = scoord_of(a) else {
                    continue;
                };
                let scoord = scoord.selected_from(s.reference.clone(), frames_of(a, s));
                let mut group = measurement_group();
                tracking(&mut group, project, a);
                group.push(
                    Relationship::Contains,
                    ContentItem::code(
                        Code::new("121071", "DCM", "Finding"),
                        private_code("measurement", &a.name),
                    ),
                );
                let values = a
                    .measurement
                    .as_ref()
                    .and_then(|m| m["values"].as_array().cloned())
                    .unwrap_or_default();
                for q in values {
                    let (Some(concept), Some(value), Some(unit)) = (
                        q["quantity"].as_str().and_then(quantity_concept),
                        q["value"].as_f64(),
                        q["unit"].as_str(),
                    ) else {
                        continue;
                    };
                    group.push(
                        Relationship::Contains,
                        ContentItem::num(concept, value, ucum(unit))
                            .with_child(Relationship::InferredFrom, scoord.clone()),
                    );
                }
                measurements.push(Relationship::Contains, group);
            }
            (_, None) => {}
        }
    }
    if library_refs.is_empty() {
        library_refs.push(any.reference.clone());
    }
    let mut group = ContentItem::container(Code::new("126200", "DCM", "Image Library Group"));
    for r in library_refs {
        group.push(
            Relationship::Contains,
            ContentItem::image(Code::none(), r, Vec::new()),
        );
    }
    root.push(
        Relationship::Contains,
        ContentItem::container(Code::new("111028", "DCM", "Image Library"))
            .with_child(Relationship::Contains, group),
    );
    if !measurements.children.is_empty() {
        root.push(Relationship::Contains, measurements);
    }
    if !qualitative.children.is_empty() {
        root.push(Relationship::Contains, qualitative);
    }
    Ok((root, any.study))
}

/// Annotations grouped by a key, in a stable order.
fn group_by<K: Ord>(
    list: &[Annotation],
    key: impl Fn(&Annotation) -> Option<K>,
) -> BTreeMap<K, Vec<&Annotation>> {
    let mut out: BTreeMap<K, Vec<&Annotation>> = BTreeMap::new();
    for a in list {
        if let Some(k) = key(a) {
            out.entry(k).or_default().push(a);
        }
    }
    out
}

/// One SR document per study and reader (see the module documentation); masks are left out.
pub fn sr_files(
    project: &Project,
    list: &[Annotation],
    sources: &mut Sources<'_>,
) -> Result<Vec<ExportFile>, ExportError> {
    let groups = group_by(list, |a| {
        (a.kind != "mask").then(|| (a.study_instance_uid.clone(), a.author.clone()))
    });
    let mut out = Vec::new();
    let mut number_in_study: HashMap<String, i64> = HashMap::new();
    for ((study, author), anns) in groups {
        let (root, source_study) = sr_tree(project, &study, &author, &anns, sources)?;
        let pid = project.id.to_string();
        let series = uid(&["sr-series", &pid, &study]);
        let sop = uid(&["sr", &pid, &study, &author, &content_digest(&anns)]);
        let mut doc = SrDocument::new(source_study, root, &series, &sop);
        let n = number_in_study.entry(study.clone()).or_insert(0);
        *n += 1;
        doc.instance_number = *n;
        doc.series_number = 9201;
        doc.series_description = clip(&format!("Annotations {}", project.name), 64);
        doc.manufacturer = "Bedside".into();
        doc.software_versions = env!("CARGO_PKG_VERSION").into();
        (doc.content_date, doc.content_time) = content_date_time(&anns);
        doc.coding_schemes.push(coding_scheme());
        let obj = doc.to_object()?;
        let bytes = bedside_dicom::write::encode_file(obj, bedside_dicom::ts::EXPLICIT_VR_LE)?;
        out.push(ExportFile {
            name: format!("sr/{study}/{author}.dcm"),
            bytes,
            about: json!({
                "study_instance_uid": study,
                "author": author,
                "series_instance_uid": series,
                "sop_instance_uid": sop,
                "annotations": anns.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
            }),
        });
    }
    Ok(out)
}

/// Category and type of a segment named `name`: a few cardiac structures by their SNOMED CT
/// codes, anything else under private codes.
fn segment_codes(name: &str) -> (Code, Code) {
    let anatomy = Code::new("91723000", "SCT", "Anatomical Structure");
    let known = match name.trim().to_ascii_lowercase().as_str() {
        "lv" | "left ventricle" => Some(("87878005", "Left ventricle of heart")),
        "rv" | "right ventricle" => Some(("53085002", "Right ventricle of heart")),
        "la" | "left atrium" => Some(("82471001", "Left atrium of heart")),
        "ra" | "right atrium" => Some(("73829009", "Right atrium of heart")),
        "myocardium" => Some(("74281007", "Myocardium")),
        _ => None,
    };
    match known {
        Some((code, meaning)) => (anatomy, Code::new(code, "SCT", meaning)),
        None => (
            Code::new("REGION", PRIVATE_SCHEME, "Annotated region"),
            private_code("mask", name),
        ),
    }
}

/// Merged masks: (instance, reader) → name → frame → pixels (0 or the drawn value, merged
/// by maximum), with the annotations that made them.
type MaskGroups = BTreeMap<(String, String), BTreeMap<String, BTreeMap<u32, Vec<u8>>>>;

/// The mask annotations of each (instance, reader).
type MaskMembers = HashMap<(String, String), Vec<Annotation>>;

fn merged_masks(
    list: &[Annotation],
    mask_of: &mut dyn FnMut(&Annotation) -> Result<Vec<u8>, ExportError>,
) -> Result<(MaskGroups, MaskMembers), ExportError> {
    let mut groups: MaskGroups = BTreeMap::new();
    let mut members: MaskMembers = HashMap::new();
    for a in list.iter().filter(|a| a.kind == "mask") {
        let (Some(sop), Some(frame)) = (&a.location.sop_instance_uid, a.location.frame) else {
            continue;
        };
        let Ok(frame) = u32::try_from(frame) else {
            continue;
        };
        let pixels = mask_of(a)?;
        let key = (sop.clone(), a.author.clone());
        members.entry(key.clone()).or_default().push(a.clone());
        let slot = groups
            .entry(key)
            .or_default()
            .entry(a.name.clone())
            .or_default()
            .entry(frame)
            .or_insert_with(|| vec![0; pixels.len()]);
        if slot.len() != pixels.len() {
            return Err(ExportError::Source {
                sop: sop.clone(),
                why: "masks of one image differ in size".into(),
            });
        }
        for (s, p) in slot.iter_mut().zip(&pixels) {
            *s = (*s).max(*p);
        }
    }
    Ok((groups, members))
}

/// The study and series of one instance's merged masks, from the first of its annotations.
fn study_and_series(anns: &[Annotation]) -> Option<(String, String)> {
    let first = anns.first()?;
    let series = first
        .location
        .series_instance_uid
        .clone()
        .unwrap_or_default();
    Some((first.study_instance_uid.clone(), series))
}

/// One binary SEG per source instance and reader (see the module documentation); sources in a
/// frame of reference carry their plane geometry into it. Instances that cannot be a SEG source
/// (a Frame of Reference without the orientation, position or spacing to place the frames) are
/// left out and listed in the second value.
pub fn seg_files(
    project: &Project,
    list: &[Annotation],
    sources: &mut Sources<'_>,
    mask_of: &mut dyn FnMut(&Annotation) -> Result<Vec<u8>, ExportError>,
) -> Result<(Vec<ExportFile>, Vec<String>), ExportError> {
    let (groups, members) = merged_masks(list, mask_of)?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for ((sop, author), by_name) in groups {
        let anns = &members[&(sop.clone(), author.clone())];
        let Some((study, series)) = study_and_series(anns) else {
            continue;
        };
        let source = sources.get(&study, &series, &sop)?.clone();
        let image = match &source.image {
            Ok(i) => i.clone(),
            Err(why) => {
                skipped.push(format!("SEG of {sop} by {author}: {why}"));
                continue;
            }
        };
        let pid = project.id.to_string();
        let refs: Vec<&Annotation> = anns.iter().collect();
        let seg_series = uid(&["seg-series", &pid, &series]);
        let seg_sop = uid(&["seg", &pid, &sop, &author, &content_digest(&refs)]);
        let mut seg = Segmentation::new(source.study.clone(), vec![image], &seg_series, &seg_sop);
        seg.series_number = 9301;
        seg.series_description = clip(&format!("Masks {}", project.name), 64);
        seg.content_label = "ANNOTATION".into();
        seg.content_description = clip(&project.name, 64);
        seg.content_creator = person_name(&author);
        seg.software_versions = env!("CARGO_PKG_VERSION").into();
        (seg.content_date, seg.content_time) = content_date_time(&refs);
        let mut names = Vec::new();
        for (name, frames) in by_name {
            let (category, property_type) = segment_codes(&name);
            seg.segments.push(Segment {
                label: clip(&name, 64),
                category,
                property_type,
                algorithm: SegmentAlgorithm::Manual,
                frames: frames
                    .into_iter()
                    .map(|(frame, mask)| SegmentFrame {
                        source: 0,
                        frame,
                        mask,
                    })
                    .collect(),
            });
            names.push(name);
        }
        let mut obj = seg.to_object()?;
        bedside_dicom::elements::put_seq(
            &mut obj,
            tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE,
            vec![coding_scheme_item()],
        );
        let bytes = bedside_dicom::write::encode_file(obj, bedside_dicom::ts::EXPLICIT_VR_LE)?;
        out.push(ExportFile {
            name: format!("seg/{study}/{series}/{sop}/{author}.dcm"),
            bytes,
            about: json!({
                "study_instance_uid": study,
                "source_sop_instance_uid": sop,
                "author": author,
                "series_instance_uid": seg_series,
                "sop_instance_uid": seg_sop,
                "segments": names,
                "annotations": anns.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
            }),
        });
    }
    Ok((out, skipped))
}

fn coding_scheme_item() -> dicom_object::InMemDicomObject {
    use bedside_dicom::elements::put_str;
    let c = coding_scheme();
    let mut item = dicom_object::InMemDicomObject::new_empty();
    put_str(
        &mut item,
        tags::CODING_SCHEME_DESIGNATOR,
        VR::SH,
        &c.designator,
    );
    put_str(&mut item, tags::CODING_SCHEME_NAME, VR::ST, &c.name);
    put_str(
        &mut item,
        tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION,
        VR::ST,
        &c.responsible_organization,
    );
    item
}

/// A file-name-safe form of a schema name (distinct names stay distinct).
fn file_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe == name {
        safe
    } else {
        let digest = Sha256::digest(name.as_bytes());
        format!("{safe}-{}", hex(&digest[..3]).to_ascii_lowercase())
    }
}

/// A NumPy `.npy` (format 1.0) of `uint8` with the given shape.
pub fn npy_u8(shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64,
    // ending in a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// An 8-bit greyscale PNG.
pub fn png_gray(width: u32, height: u32, pixels: &[u8]) -> Result<Vec<u8>, ExportError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let pack = |e: png::EncodingError| ExportError::Pack(e.to_string());
        let mut w = enc.write_header().map_err(pack)?;
        w.write_image_data(pixels).map_err(pack)?;
        w.finish().map_err(pack)?;
    }
    Ok(out)
}

/// The masks as arrays and images (see the module documentation).
pub fn mask_files(
    list: &[Annotation],
    sources: &mut Sources<'_>,
    mask_of: &mut dyn FnMut(&Annotation) -> Result<Vec<u8>, ExportError>,
) -> Result<Vec<ExportFile>, ExportError> {
    let (groups, members) = merged_masks(list, mask_of)?;
    let mut out = Vec::new();
    for ((sop, author), by_name) in groups {
        let anns = &members[&(sop.clone(), author.clone())];
        let Some((study, series)) = study_and_series(anns) else {
            continue;
        };
        let source = sources.get(&study, &series, &sop)?.clone();
        let (rows, columns) = (source.rows as usize, source.columns as usize);
        let frames = source.frames as usize;
        for (name, by_frame) in by_name {
            let dir = format!("masks/{study}/{series}/{sop}/{}/{author}", file_name(&name));
            let mut volume = vec![0u8; frames * rows * columns];
            for (frame, mask) in &by_frame {
                let k = *frame as usize;
                if k == 0 || k > frames || mask.len() != rows * columns {
                    return Err(ExportError::Source {
                        sop: sop.clone(),
                        why: format!("mask of frame {frame} does not fit the image"),
                    });
                }
                volume[(k - 1) * rows * columns..k * rows * columns].copy_from_slice(mask);
                let img: Vec<u8> = mask.iter().map(|&v| if v != 0 { 255 } else { 0 }).collect();
                out.push(ExportFile {
                    name: format!("{dir}/frame-{frame:04}.png"),
                    bytes: png_gray(columns as u32, rows as u32, &img)?,
                    about: json!({"sop_instance_uid": sop, "name": name, "author": author, "frame": frame}),
                });
            }
            let ids: Vec<&str> = anns
                .iter()
                .filter(|a| a.name == name)
                .map(|a| a.id.as_str())
                .collect();
            out.push(ExportFile {
                name: format!("{dir}/mask.npy"),
                bytes: npy_u8(&[frames, rows, columns], &volume),
                about: json!({
                    "study_instance_uid": study,
                    "series_instance_uid": series,
                    "sop_instance_uid": sop,
                    "name": name,
                    "author": author,
                    "shape": [frames, rows, columns],
                    "frames": by_frame.keys().collect::<Vec<_>>(),
                    "annotations": ids,
                }),
            });
        }
    }
    Ok(out)
}

/// A zip of `files` with a `manifest.json` listing them (and what was left out).
pub fn zip(files: &[ExportFile], skipped: &[String]) -> Result<Vec<u8>, ExportError> {
    use std::io::Write as _;
    let pack = |e: &dyn std::fmt::Display| ExportError::Pack(e.to_string());
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let manifest = json!({
        "files": files.iter().map(|f| {
            let mut v = f.about.clone();
            v["file"] = json!(f.name);
            v
        }).collect::<Vec<_>>(),
        "skipped": skipped,
    });
    z.start_file("manifest.json", options)
        .map_err(|e| pack(&e))?;
    z.write_all(&serde_json::to_vec_pretty(&manifest).map_err(|e| pack(&e))?)
        .map_err(|e| pack(&e))?;
    for f in files {
        z.start_file(f.name.as_str(), options)
            .map_err(|e| pack(&e))?;
        z.write_all(&f.bytes).map_err(|e| pack(&e))?;
    }
    Ok(z.finish().map_err(|e| pack(&e))?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_headers_are_aligned() {
        let n = npy_u8(&[2, 3, 4], &[0; 24]);
        assert_eq!(&n[..8], b"\x93NUMPY\x01\x00");
        let len = u16::from_le_bytes([n[8], n[9]]) as usize;
        assert_eq!((10 + len) % 64, 0);
        assert_eq!(n[10 + len - 1], b'\n');
        assert_eq!(n.len(), 10 + len + 24);
        let header = std::str::from_utf8(&n[10..10 + len]).unwrap_or("");
        assert!(header.contains("'shape': (2, 3, 4)"), "{header}");
    }

    #[test]
    fn names_become_distinct_file_names() {
        assert_eq!(file_name("LV"), "LV");
        assert_ne!(file_name("LV/a"), file_name("LV_a"));
        assert!(!file_name("../x").contains('/'));
    }

    #[test]
    fn units_are_ucum() {
        assert_eq!(ucum("mm").value, "mm");
        assert_eq!(ucum("mm2").value, "mm2");
        assert_eq!(ucum("px").value, "{pixels}");
        assert_eq!(
            quantity_concept("length").map(|c| c.value),
            Some("410668003".to_string())
        );
        assert!(private_code("label", "view").value.len() <= 16);
    }
}
