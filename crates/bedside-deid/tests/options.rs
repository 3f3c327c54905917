//! One test per profile option and per profile feature, each showing the option's effect on a
//! synthetic instance that carries every kind of identifying attribute.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bedside_deid::{
    ActionTaken, CrosswalkKind, Deidentifier, Longitudinal, Mode, ObjectContext, ObjectReport,
    PatientKeySource, Profile, RuleAction, SafePrivate, SiteSecret, TagRule, Warning,
};
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

const PRIVATE_CREATOR: Tag = Tag(0x0019, 0x0010);
const PRIVATE_TEXT: Tag = Tag(0x0019, 0x1001);
const PRIVATE_NUMBER: Tag = Tag(0x0019, 0x1002);
const OVERLAY_ROWS: Tag = Tag(0x6000, 0x0010);
const OVERLAY_DATA: Tag = Tag(0x6000, 0x3000);
const CURVE_DIMENSIONS: Tag = Tag(0x5000, 0x0005);

fn s(tag: Tag, vr: VR, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

fn sq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::new(items, Length::UNDEFINED))
}

fn instance(patient_id: &str) -> InMemDicomObject {
    let content_item = InMemDicomObject::from_element_iter([
        s(tags::VALUE_TYPE, VR::CS, "TEXT"),
        s(
            tags::TEXT_VALUE,
            VR::UT,
            "Patient Doe reported pain since 20240110",
        ),
        sq(
            tags::CONTENT_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                s(tags::VALUE_TYPE, VR::CS, "PNAME"),
                s(tags::PERSON_NAME, VR::PN, "WATSON^JOHN"),
            ])],
        ),
    ]);
    let text_object = InMemDicomObject::from_element_iter([s(
        tags::UNFORMATTED_TEXT_VALUE,
        VR::ST,
        "Doe, Jane MRN12345",
    )]);
    InMemDicomObject::from_element_iter([
        s(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        s(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
        s(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.99.20240115103000.3",
        ),
        s(tags::STUDY_DATE, VR::DA, "20240115"),
        s(tags::SERIES_DATE, VR::DA, "20240115"),
        s(tags::ACQUISITION_DATE_TIME, VR::DT, "20240115103012.5"),
        s(tags::STUDY_TIME, VR::TM, "103000"),
        s(tags::ACCESSION_NUMBER, VR::SH, "ACC777"),
        s(tags::MODALITY, VR::CS, "CT"),
        s(tags::MANUFACTURER, VR::LO, "ACME"),
        s(tags::INSTITUTION_NAME, VR::LO, "General Hospital"),
        s(
            tags::INSTITUTION_ADDRESS,
            VR::ST,
            "1 Main Street, Springfield",
        ),
        s(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "HOUSE^GREGORY"),
        s(tags::STATION_NAME, VR::SH, "CT01"),
        s(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            "Chest CT for Doe Jane MRN12345",
        ),
        sq(
            tags::REFERENCED_IMAGE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                s(
                    tags::REFERENCED_SOP_CLASS_UID,
                    VR::UI,
                    uids::CT_IMAGE_STORAGE,
                ),
                s(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    "1.2.826.0.1.99.20240115103000.2",
                ),
            ])],
        ),
        s(tags::PATIENT_NAME, VR::PN, "DOE^JANE"),
        s(tags::PATIENT_ID, VR::LO, patient_id),
        s(tags::PATIENT_BIRTH_DATE, VR::DA, "19500310"),
        s(tags::PATIENT_SEX, VR::CS, "F"),
        s(tags::PATIENT_AGE, VR::AS, "095Y"),
        s(tags::PATIENT_WEIGHT, VR::DS, "70"),
        s(PRIVATE_CREATOR, VR::LO, "ACME_PRIVATE"),
        s(PRIVATE_TEXT, VR::LO, "Doe private note"),
        s(PRIVATE_NUMBER, VR::DS, "1.5"),
        s(tags::DEVICE_SERIAL_NUMBER, VR::LO, "SN998877"),
        s(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.99.20240115103000",
        ),
        s(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.99.20240115103000.1",
        ),
        s(tags::STUDY_ID, VR::SH, "STUDY42"),
        s(tags::FRAME_OF_REFERENCE_UID, VR::UI, "1.2.826.0.1.99.7"),
        sq(
            tags::ACQUISITION_CONTEXT_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([s(
                tags::VALUE_TYPE,
                VR::CS,
                "TEXT",
            )])],
        ),
        sq(tags::CONTENT_SEQUENCE, vec![content_item]),
        sq(
            tags::GRAPHIC_ANNOTATION_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([sq(
                tags::TEXT_OBJECT_SEQUENCE,
                vec![text_object],
            )])],
        ),
        DataElement::new(CURVE_DIMENSIONS, VR::US, PrimitiveValue::from(2u16)),
        DataElement::new(OVERLAY_ROWS, VR::US, PrimitiveValue::from(4u16)),
        DataElement::new(
            OVERLAY_DATA,
            VR::OW,
            PrimitiveValue::U16([0xFFFFu16; 1].into_iter().collect()),
        ),
    ])
}

fn secret() -> SiteSecret {
    SiteSecret::from_bytes([5; 32])
}

fn run(profile: Profile) -> (InMemDicomObject, ObjectReport, Deidentifier) {
    let d = Deidentifier::new(profile, secret()).unwrap();
    let mut obj = instance("MRN12345");
    let report = d.deidentify_object(&mut obj, ObjectContext::default());
    (obj, report, d)
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag).map(|e| {
        e.to_str()
            .map(|s| s.trim_end_matches([' ', '\0']).to_string())
            .unwrap_or_default()
    })
}

fn item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.first()
}

fn days_between(a: &str, b: &str) -> i64 {
    // Independent of the crate: count days through a simple calendar walk.
    fn ordinal(d: &str) -> i64 {
        let y: i64 = d[0..4].parse().unwrap();
        let m: i64 = d[4..6].parse().unwrap();
        let day: i64 = d[6..8].parse().unwrap();
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut n = 0;
        for yy in 1900..y {
            n += if leap(yy) { 366 } else { 365 };
        }
        let months = [
            31,
            if leap(y) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        n += months.iter().take((m - 1) as usize).sum::<i64>();
        n + day
    }
    ordinal(b) - ordinal(a)
}

fn codes(r: &ObjectReport) -> Vec<&str> {
    r.method_codes.iter().map(String::as_str).collect()
}

#[test]
fn basic_profile_with_modified_dates_by_default() {
    let (obj, report, d) = run(Profile::default());
    // Names and identifiers.
    let pseudonym = text(&obj, tags::PATIENT_ID).unwrap();
    assert!(
        pseudonym.starts_with("BS") && pseudonym.len() == 14,
        "{pseudonym}"
    );
    assert_eq!(text(&obj, tags::PATIENT_NAME).unwrap(), pseudonym);
    assert_ne!(text(&obj, tags::ACCESSION_NUMBER).unwrap(), "ACC777");
    assert_eq!(text(&obj, tags::PATIENT_BIRTH_DATE).as_deref(), Some(""));
    assert_eq!(
        text(&obj, tags::REFERRING_PHYSICIAN_NAME).as_deref(),
        Some("")
    );
    assert_eq!(text(&obj, tags::INSTITUTION_NAME).as_deref(), Some(""));
    assert!(obj.get(tags::INSTITUTION_ADDRESS).is_none());
    assert!(obj.get(tags::STUDY_DESCRIPTION).is_none());
    assert!(obj.get(tags::PATIENT_AGE).is_none());
    assert!(obj.get(tags::PATIENT_WEIGHT).is_none());
    assert_eq!(text(&obj, tags::PATIENT_SEX).as_deref(), Some(""));
    assert_eq!(text(&obj, tags::STATION_NAME).as_deref(), Some(""));
    let serial = text(&obj, tags::DEVICE_SERIAL_NUMBER).unwrap();
    assert!(!serial.is_empty() && serial != "SN998877");
    assert_eq!(text(&obj, tags::MANUFACTURER).as_deref(), Some("ACME"));
    // Private, overlay and curve attributes are gone.
    for t in [
        PRIVATE_CREATOR,
        PRIVATE_TEXT,
        PRIVATE_NUMBER,
        OVERLAY_ROWS,
        OVERLAY_DATA,
        CURVE_DIMENSIONS,
    ] {
        assert!(obj.get(t).is_none(), "{t} kept");
    }
    assert_eq!(report.count(ActionTaken::PrivateRemoved), 3);
    assert_eq!(report.count(ActionTaken::OverlayRemoved), 2);
    assert_eq!(report.count(ActionTaken::CurveRemoved), 1);
    // UIDs: 2.25 form, references follow the mapping of the referenced instance.
    let study = text(&obj, tags::STUDY_INSTANCE_UID).unwrap();
    assert!(study.starts_with("2.25."));
    assert_eq!(study, d.map_uid("1.2.826.0.1.99.20240115103000"));
    let referenced = text(
        item(&obj, tags::REFERENCED_IMAGE_SEQUENCE).unwrap(),
        tags::REFERENCED_SOP_INSTANCE_UID,
    )
    .unwrap();
    assert_eq!(referenced, d.map_uid("1.2.826.0.1.99.20240115103000.2"));
    assert_eq!(
        text(
            item(&obj, tags::REFERENCED_IMAGE_SEQUENCE).unwrap(),
            tags::REFERENCED_SOP_CLASS_UID
        )
        .as_deref(),
        Some(uids::CT_IMAGE_STORAGE)
    );
    // Dates: shifted by one offset within the range; times of day rotated by one keyed offset,
    // the same in the date-time and in the separate time.
    let offset = days_between("20240115", &text(&obj, tags::STUDY_DATE).unwrap());
    assert!((-730..=-1).contains(&offset), "{offset}");
    assert_eq!(
        days_between("20240115", &text(&obj, tags::SERIES_DATE).unwrap()),
        offset
    );
    let dt = text(&obj, tags::ACQUISITION_DATE_TIME).unwrap();
    assert_eq!(days_between("20240115", &dt[..8]), offset);
    let secs = |t: &str| {
        let n = |a: usize| t[a..a + 2].parse::<i64>().unwrap();
        n(0) * 3600 + n(2) * 60 + n(4)
    };
    let rotation = |from: &str, to: &str| (secs(to) - secs(from)).rem_euclid(86_400);
    assert!(dt[8..].ends_with(".5"), "{dt}");
    let study_time = text(&obj, tags::STUDY_TIME).unwrap();
    let r = rotation("103000", &study_time);
    assert_ne!(r, 0, "times of day must not pass through unchanged");
    assert_eq!(rotation("103012", &dt[8..14]), r);
    // Structured content without the Clean Structured Content option: free text replaced.
    let content = item(&obj, tags::CONTENT_SEQUENCE).unwrap();
    assert_eq!(
        text(content, tags::TEXT_VALUE).as_deref(),
        Some("ANONYMIZED")
    );
    let nested = item(content, tags::CONTENT_SEQUENCE).unwrap();
    assert_ne!(
        text(nested, tags::PERSON_NAME).as_deref(),
        Some("WATSON^JOHN")
    );
    // Acquisition context (X/Z) emptied.
    assert!(
        obj.get(tags::ACQUISITION_CONTEXT_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
            .is_empty()
    );
    // Attributes describing what was done.
    assert_eq!(
        text(&obj, tags::PATIENT_IDENTITY_REMOVED).as_deref(),
        Some("YES")
    );
    assert_eq!(codes(&report), ["113100", "113107"]);
    let method_items = obj
        .get(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    let written: Vec<String> = method_items
        .iter()
        .map(|i| text(i, tags::CODE_VALUE).unwrap())
        .collect();
    assert_eq!(written, ["113100", "113107"]);
    assert_eq!(
        text(&method_items[0], tags::CODING_SCHEME_DESIGNATOR).as_deref(),
        Some("DCM")
    );
    assert_eq!(
        text(&obj, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
        Some("MODIFIED")
    );
    assert_eq!(report.patient_key_source, Some(PatientKeySource::PatientId));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn report_never_contains_an_identifying_value() {
    let (_, report, _) = run(Profile {
        options: bedside_deid::ProfileOptions {
            clean_descriptors: true,
            clean_structured_content: true,
            clean_graphics: true,
            ..Default::default()
        },
        ..Profile::default()
    });
    let json = serde_json::to_string(&report).unwrap();
    let debug = format!("{report:?}");
    for phi in [
        "DOE",
        "JANE",
        "MRN12345",
        "19500310",
        "20240115",
        "ACC777",
        "General Hospital",
        "SN998877",
        "1.2.826.0.1.99",
    ] {
        assert!(
            !json.contains(phi) && !debug.contains(phi),
            "{phi} in report"
        );
    }
    assert!(report.count(ActionTaken::Removed) > 0);
}

fn with(options: impl FnOnce(&mut bedside_deid::ProfileOptions)) -> Profile {
    let mut p = Profile::default();
    options(&mut p.options);
    p
}

#[test]
fn retain_uids_keeps_uids() {
    let (obj, report, _) = run(with(|o| o.retain_uids = true));
    assert_eq!(
        text(&obj, tags::STUDY_INSTANCE_UID).as_deref(),
        Some("1.2.826.0.1.99.20240115103000")
    );
    assert_eq!(
        text(&obj, tags::SOP_INSTANCE_UID).as_deref(),
        Some("1.2.826.0.1.99.20240115103000.3")
    );
    assert_eq!(codes(&report), ["113100", "113107", "113110"]);
}

#[test]
fn retain_device_identity_keeps_station_and_serial_number() {
    let (obj, report, _) = run(with(|o| o.retain_device_identity = true));
    assert_eq!(text(&obj, tags::STATION_NAME).as_deref(), Some("CT01"));
    assert_eq!(
        text(&obj, tags::DEVICE_SERIAL_NUMBER).as_deref(),
        Some("SN998877")
    );
    assert_eq!(text(&obj, tags::INSTITUTION_NAME).as_deref(), Some(""));
    assert_eq!(codes(&report), ["113100", "113107", "113109"]);
}

#[test]
fn retain_institution_identity_keeps_institution() {
    let (obj, report, _) = run(with(|o| o.retain_institution_identity = true));
    assert_eq!(
        text(&obj, tags::INSTITUTION_NAME).as_deref(),
        Some("General Hospital")
    );
    assert_eq!(
        text(&obj, tags::INSTITUTION_ADDRESS).as_deref(),
        Some("1 Main Street, Springfield")
    );
    assert_eq!(text(&obj, tags::STATION_NAME).as_deref(), Some(""));
    assert_eq!(codes(&report), ["113100", "113107", "113112"]);
}

#[test]
fn retain_patient_characteristics_keeps_sex_weight_and_caps_age() {
    let (obj, report, _) = run(with(|o| o.retain_patient_characteristics = true));
    assert_eq!(text(&obj, tags::PATIENT_SEX).as_deref(), Some("F"));
    assert_eq!(text(&obj, tags::PATIENT_WEIGHT).as_deref(), Some("70"));
    assert_eq!(text(&obj, tags::PATIENT_AGE).as_deref(), Some("090Y"));
    assert_eq!(report.count(ActionTaken::AgeCapped), 1);
    assert_eq!(text(&obj, tags::PATIENT_BIRTH_DATE).as_deref(), Some(""));
    assert_eq!(codes(&report), ["113100", "113107", "113108"]);
}

#[test]
fn full_dates_keep_dates_and_off_removes_them() {
    let (full, report, _) = run(with(|o| o.retain_longitudinal = Longitudinal::Full));
    assert_eq!(text(&full, tags::STUDY_DATE).as_deref(), Some("20240115"));
    assert_eq!(
        text(&full, tags::ACQUISITION_DATE_TIME).as_deref(),
        Some("20240115103012.5")
    );
    assert_eq!(codes(&report), ["113100", "113106"]);
    assert_eq!(
        text(&full, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
        Some("UNMODIFIED")
    );

    let (off, report, _) = run(with(|o| o.retain_longitudinal = Longitudinal::Off));
    assert_eq!(text(&off, tags::STUDY_DATE).as_deref(), Some(""));
    assert_eq!(text(&off, tags::ACQUISITION_DATE_TIME).as_deref(), Some(""));
    // Series Date is X/D: a dummy date, not the real one.
    assert_eq!(text(&off, tags::SERIES_DATE).as_deref(), Some("19000101"));
    assert_eq!(codes(&report), ["113100"]);
    assert_eq!(
        text(&off, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
        Some("REMOVED")
    );
}

#[test]
fn clean_descriptors_keeps_descriptions_without_identifying_words() {
    let (obj, report, _) = run(with(|o| o.clean_descriptors = true));
    let d = text(&obj, tags::STUDY_DESCRIPTION).unwrap();
    assert!(d.starts_with("Chest CT for"), "{d}");
    for phi in ["Doe", "Jane", "MRN12345"] {
        assert!(!d.contains(phi), "{phi} in {d}");
    }
    assert_eq!(codes(&report), ["113100", "113105", "113107"]);
}

#[test]
fn clean_structured_content_keeps_cleaned_content() {
    let (obj, report, _) = run(with(|o| o.clean_structured_content = true));
    let content = item(&obj, tags::CONTENT_SEQUENCE).unwrap();
    let t = text(content, tags::TEXT_VALUE).unwrap();
    assert_eq!(t, "Patient *** reported pain since ***");
    assert!(
        !t.contains("20240110"),
        "dates in text are not cleaned: {t}"
    );
    assert_eq!(
        obj.get(tags::ACQUISITION_CONTEXT_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(codes(&report), ["113100", "113104", "113107"]);
}

#[test]
fn clean_graphics_keeps_overlays_and_cleans_annotation_text() {
    let (obj, report, _) = run(with(|o| o.clean_graphics = true));
    assert!(obj.get(OVERLAY_DATA).is_some() && obj.get(OVERLAY_ROWS).is_some());
    assert!(obj.get(CURVE_DIMENSIONS).is_some());
    let ann = item(&obj, tags::GRAPHIC_ANNOTATION_SEQUENCE).unwrap();
    let t = text(
        item(ann, tags::TEXT_OBJECT_SEQUENCE).unwrap(),
        tags::UNFORMATTED_TEXT_VALUE,
    )
    .unwrap();
    assert!(!t.contains("Doe") && !t.contains("MRN12345"), "{t}");
    assert!(report.warnings.contains(&Warning::GraphicsKeptUnexamined));
    assert_eq!(codes(&report), ["113100", "113103", "113107"]);
}

#[test]
fn retain_safe_private_keeps_only_listed_private_attributes() {
    let mut p = with(|o| o.retain_safe_private = true);
    p.safe_private.push(SafePrivate {
        group: "0019".into(),
        creator: "ACME_PRIVATE".into(),
        element: "02".into(),
    });
    let (obj, report, _) = run(p);
    assert_eq!(text(&obj, PRIVATE_CREATOR).as_deref(), Some("ACME_PRIVATE"));
    assert_eq!(text(&obj, PRIVATE_NUMBER).as_deref(), Some("1.5"));
    assert!(obj.get(PRIVATE_TEXT).is_none());
    assert_eq!(report.count(ActionTaken::PrivateKept), 2);
    assert_eq!(codes(&report), ["113100", "113107", "113111"]);
    // The list is ignored without the option.
    let mut p = Profile::default();
    p.safe_private.push(SafePrivate {
        group: "0019".into(),
        creator: "ACME_PRIVATE".into(),
        element: "02".into(),
    });
    let (obj, _, _) = run(p);
    assert!(obj.get(PRIVATE_NUMBER).is_none());
}

#[test]
fn per_tag_rules_override_the_table() {
    let mut p = Profile::default();
    let rule = |keyword: &str, action: RuleAction, value: Option<&str>| TagRule {
        tag: None,
        keyword: Some(keyword.into()),
        action,
        value: value.map(Into::into),
    };
    p.rule = vec![
        rule(
            "InstitutionName",
            RuleAction::Replace,
            Some("Research Site"),
        ),
        rule("Modality", RuleAction::Remove, None),
        rule("Manufacturer", RuleAction::Empty, None),
        rule("StationName", RuleAction::Hash, None),
        rule("PatientBirthDate", RuleAction::Shift, None),
        TagRule {
            tag: Some("(0008,1030)".into()),
            keyword: None,
            action: RuleAction::Clean,
            value: None,
        },
    ];
    let (obj, report, _) = run(p);
    assert_eq!(
        text(&obj, tags::INSTITUTION_NAME).as_deref(),
        Some("Research Site")
    );
    assert!(obj.get(tags::MODALITY).is_none());
    assert_eq!(text(&obj, tags::MANUFACTURER).as_deref(), Some(""));
    let station = text(&obj, tags::STATION_NAME).unwrap();
    assert!(station.starts_with("BS") && station != "CT01");
    let offset = days_between("20240115", &text(&obj, tags::STUDY_DATE).unwrap());
    assert_eq!(
        days_between("19500310", &text(&obj, tags::PATIENT_BIRTH_DATE).unwrap()),
        offset
    );
    assert!(
        text(&obj, tags::STUDY_DESCRIPTION)
            .unwrap()
            .starts_with("Chest CT")
    );
    assert_eq!(codes(&report), ["113100", "113107"]);
    // Keeping a name the Basic Profile removes means the Basic Profile is not claimed.
    let p = Profile {
        rule: vec![rule("ReferringPhysicianName", RuleAction::Keep, None)],
        ..Profile::default()
    };
    let (obj, report, _) = run(p);
    assert_eq!(
        text(&obj, tags::REFERRING_PHYSICIAN_NAME).as_deref(),
        Some("HOUSE^GREGORY")
    );
    assert_eq!(codes(&report), ["113107"]);
    assert!(report.warnings.contains(&Warning::BasicProfileNotClaimed));
}

#[test]
fn safe_list_mode_keeps_only_listed_attributes() {
    let p = Profile::from_toml(
        r#"
        mode = "safe-list"
        [[rule]]
        keyword = "StudyDate"
        action = "shift"
        [[rule]]
        keyword = "Manufacturer"
        action = "keep"
        "#,
        "safe-list test",
    )
    .unwrap();
    assert_eq!(p.mode, Mode::SafeList);
    let (obj, report, d) = run(p);
    let mut kept: Vec<Tag> = obj.tags().collect();
    kept.sort();
    let expected = [
        tags::SPECIFIC_CHARACTER_SET,
        tags::SOP_CLASS_UID,
        tags::SOP_INSTANCE_UID,
        tags::STUDY_DATE,
        tags::MODALITY,
        tags::MANUFACTURER,
        tags::PATIENT_IDENTITY_REMOVED,
        tags::DEIDENTIFICATION_METHOD,
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::FRAME_OF_REFERENCE_UID,
        tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
    ];
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(kept, expected);
    assert_eq!(
        text(&obj, tags::SOP_INSTANCE_UID).unwrap(),
        d.map_uid("1.2.826.0.1.99.20240115103000.3")
    );
    assert_ne!(text(&obj, tags::STUDY_DATE).as_deref(), Some("20240115"));
    // The table's options are not what decided; no code is claimed.
    assert!(codes(&report).is_empty());
    assert_eq!(
        text(&obj, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
        Some("MODIFIED")
    );
}

#[test]
fn one_patient_gets_one_offset_and_pseudonym_across_objects() {
    let d = Deidentifier::new(Profile::default(), secret()).unwrap();
    let mut offsets = std::collections::BTreeSet::new();
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let mut obj = instance("MRN12345");
        d.deidentify_object(&mut obj, ObjectContext::default());
        offsets.insert(days_between(
            "20240115",
            &text(&obj, tags::STUDY_DATE).unwrap(),
        ));
        names.insert(text(&obj, tags::PATIENT_ID).unwrap());
    }
    assert_eq!((offsets.len(), names.len()), (1, 1));
    // A fresh de-identifier with the same secret (another run) agrees.
    let again = Deidentifier::new(Profile::default(), secret()).unwrap();
    let mut obj = instance("MRN12345");
    again.deidentify_object(&mut obj, ObjectContext::default());
    assert!(names.contains(&text(&obj, tags::PATIENT_ID).unwrap()));
    // Other patients spread over the range.
    let mut others = std::collections::BTreeSet::new();
    for i in 0..40 {
        let mut obj = instance(&format!("OTHER{i}"));
        d.deidentify_object(&mut obj, ObjectContext::default());
        others.insert(days_between(
            "20240115",
            &text(&obj, tags::STUDY_DATE).unwrap(),
        ));
    }
    assert!(
        others.len() > 30,
        "{} distinct offsets for 40 patients",
        others.len()
    );
}

#[test]
fn missing_patient_id_falls_back_and_says_so() {
    let d = Deidentifier::new(Profile::default(), secret()).unwrap();
    let shift =
        |obj: &InMemDicomObject| days_between("20240115", &text(obj, tags::STUDY_DATE).unwrap());
    let mut a = instance("");
    let ra = d.deidentify_object(&mut a, ObjectContext::default());
    assert_eq!(
        ra.patient_key_source,
        Some(PatientKeySource::NameAndBirthDate)
    );
    assert!(ra.warnings.contains(&Warning::PatientKeyFallback {
        source: PatientKeySource::NameAndBirthDate
    }));
    assert_ne!(
        text(&a, tags::STUDY_DATE).as_deref(),
        Some("20240115"),
        "dates still shifted"
    );
    let mut b = instance("");
    b.put(s(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3.999"));
    d.deidentify_object(&mut b, ObjectContext::default());
    assert_eq!(
        shift(&a),
        shift(&b),
        "same name and birth date, same offset"
    );
    let mut c = instance("");
    c.remove_element(tags::PATIENT_NAME);
    let rc = d.deidentify_object(&mut c, ObjectContext::default());
    assert_eq!(
        rc.patient_key_source,
        Some(PatientKeySource::StudyInstanceUid)
    );
    assert_ne!(text(&c, tags::STUDY_DATE).as_deref(), Some("20240115"));
}

#[test]
fn crosswalk_only_when_asked() {
    let d = Deidentifier::new(Profile::default(), secret()).unwrap();
    let mut obj = instance("MRN12345");
    d.deidentify_object(&mut obj, ObjectContext::default());
    assert!(d.take_crosswalk().is_empty());

    let d = Deidentifier::new(Profile::default(), secret())
        .unwrap()
        .with_crosswalk();
    let mut obj = instance("MRN12345");
    d.deidentify_object(&mut obj, ObjectContext::default());
    let cw = d.take_crosswalk();
    let pid = text(&obj, tags::PATIENT_ID).unwrap();
    assert!(
        cw.iter().any(|(k, o, p)| k == CrosswalkKind::Patient
            && o.expose() == "id:MRN12345"
            && p == pid)
    );
    let study = text(&obj, tags::STUDY_INSTANCE_UID).unwrap();
    assert!(cw.iter().any(|(k, o, p)| k == CrosswalkKind::Uid
        && o.expose() == "1.2.826.0.1.99.20240115103000"
        && p == study));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crosswalk.csv");
    cw.write_csv(&path).unwrap();
    let csv = std::fs::read_to_string(&path).unwrap();
    assert!(csv.starts_with("kind,original,pseudonym\n") && csv.contains("MRN12345"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o077,
            0
        );
    }
    // The crosswalk is never in the object.
    let mut bytes = Vec::new();
    obj.write_dataset_with_ts(
        &mut bytes,
        &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
    .unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("MRN12345"));
}

#[test]
fn clean_pixel_data_is_declared_by_the_caller() {
    let d = Deidentifier::new(Profile::default(), secret()).unwrap();
    let mut obj = instance("MRN12345");
    let r = d.deidentify_object(
        &mut obj,
        ObjectContext {
            pixel_data_cleaned: true,
        },
    );
    assert_eq!(codes(&r), ["113100", "113101", "113107"]);
}

#[test]
fn shipped_example_profile_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/profile.example.toml");
    let p = Profile::load(&path).unwrap();
    assert_eq!(p.rule.len(), 2);
    assert_eq!(p.safe_private.len(), 1);
    let d = Deidentifier::new(p, secret()).unwrap();
    let mut obj = instance("MRN12345");
    d.deidentify_object(&mut obj, ObjectContext::default());
    assert_eq!(
        text(&obj, tags::INSTITUTION_NAME).as_deref(),
        Some("Research site")
    );
}

#[test]
fn references_between_files_follow_the_referenced_instance() {
    use dicom_object::FileMetaTableBuilder;
    let file = |obj: InMemDicomObject| {
        let sop = text(&obj, tags::SOP_INSTANCE_UID).unwrap();
        let f = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
                    .media_storage_sop_instance_uid(sop)
                    .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                    .source_application_entity_title("SCANNER_AE"),
            )
            .unwrap();
        let mut bytes = Vec::new();
        f.write_all(&mut bytes).unwrap();
        bytes
    };
    // B references A's SOP instance; both go through the file path separately.
    let mut a = instance("MRN12345");
    a.put(s(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        "1.2.826.0.1.99.20240115103000.2",
    ));
    let b = instance("MRN12345");
    let d = Deidentifier::new(Profile::default(), secret()).unwrap();
    let out_a = d
        .deidentify_bytes(&file(a), ObjectContext::default())
        .unwrap();
    let out_b = d
        .deidentify_bytes(&file(b), ObjectContext::default())
        .unwrap();
    let read = |bytes: &[u8]| {
        dicom_object::OpenFileOptions::new()
            .from_reader(std::io::Cursor::new(&bytes[128..]))
            .unwrap()
    };
    let (fa, fb) = (read(&out_a.bytes), read(&out_b.bytes));
    let sop_a = text(&fa, tags::SOP_INSTANCE_UID).unwrap();
    let referenced = text(
        item(&fb, tags::REFERENCED_IMAGE_SEQUENCE).unwrap(),
        tags::REFERENCED_SOP_INSTANCE_UID,
    )
    .unwrap();
    assert_eq!(referenced, sop_a);
    assert_eq!(
        text(&fa, tags::STUDY_INSTANCE_UID),
        text(&fb, tags::STUDY_INSTANCE_UID)
    );
    // The file meta follows the new SOP Instance UID and loses the sending AE title.
    assert_eq!(fa.meta().media_storage_sop_instance_uid(), sop_a);
    assert_eq!(fa.meta().source_application_entity_title(), None);
    assert!(!String::from_utf8_lossy(&out_a.bytes).contains("SCANNER_AE"));
}

#[test]
fn files_are_written_atomically_and_inputs_never_replaced() {
    use dicom_object::FileMetaTableBuilder;
    let obj = instance("MRN12345");
    let f = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
                .media_storage_sop_instance_uid("1.2.826.0.1.99.20240115103000.3")
                .transfer_syntax(uids::IMPLICIT_VR_LITTLE_ENDIAN),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.dcm");
    f.write_to_file(&input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let d = Deidentifier::new(Profile::default(), secret()).unwrap();
    let output = dir.path().join("sub/out.dcm");
    let report = d
        .deidentify_file(&input, &output, ObjectContext::default())
        .unwrap();
    assert!(report.count(ActionTaken::UidReplaced) >= 4);
    assert_eq!(std::fs::read(&input).unwrap(), before, "input modified");
    let out = dicom_object::open_file(&output).unwrap();
    assert_eq!(
        out.meta().transfer_syntax(),
        uids::IMPLICIT_VR_LITTLE_ENDIAN
    );
    assert!(
        d.deidentify_file(&input, &input, ObjectContext::default())
            .is_err()
    );
    assert_eq!(std::fs::read(&input).unwrap(), before, "input replaced");
}

#[test]
fn compound_sequences_are_removed_unless_already_empty() {
    let d = Deidentifier::new(Profile::default(), secret()).unwrap();
    let mut obj = instance("MRN12345");
    let study_ref = InMemDicomObject::from_element_iter([
        s(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            "1.2.840.10008.3.1.2.3.1",
        ),
        s(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5"),
    ]);
    obj.put(sq(tags::REFERENCED_STUDY_SEQUENCE, vec![study_ref]));
    obj.put(sq(
        tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
        vec![],
    ));
    let report = d.deidentify_object(&mut obj, ObjectContext::default());
    // X/Z on a sequence with items: removed (an empty Type 3 sequence is invalid).
    assert!(obj.get(tags::REFERENCED_STUDY_SEQUENCE).is_none());
    // X/Z/D on an empty sequence: kept empty (used as Type 2, as in SR documents).
    let rpps = obj
        .get(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE)
        .unwrap();
    assert!(rpps.items().unwrap().is_empty());
    assert_eq!(report.action_for(0x0008_1110), Some(ActionTaken::Removed));
}

#[test]
fn file_objects_get_their_meta_updated() {
    use dicom_object::FileMetaTableBuilder;
    let mut f = instance("MRN12345")
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
                .media_storage_sop_instance_uid("1.2.826.0.1.99.20240115103000.3")
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .source_application_entity_title("SCANNER_AE"),
        )
        .unwrap();
    let d = Deidentifier::new(Profile::default(), secret()).unwrap();
    d.deidentify_file_object(&mut f, ObjectContext::default());
    let sop = text(&f, tags::SOP_INSTANCE_UID).unwrap();
    assert_eq!(f.meta().media_storage_sop_instance_uid(), sop);
    assert_eq!(f.meta().source_application_entity_title(), None);
    assert_eq!(f.meta().transfer_syntax(), uids::EXPLICIT_VR_LITTLE_ENDIAN);
}
