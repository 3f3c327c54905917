//! The embedded table E.1-1 against independent references: the PS3.6 dictionary of dicom-rs
//! (keywords) and the `dicom-anonymizer` package's transcription of PS3.15 (tags and Basic
//! Profile actions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use bedside_deid::{Action, ConfidentialityTable, OptionColumn};
use dicom_core::Tag;
use dicom_core::dictionary::DataDictionary;
use dicom_dictionary_std::StandardDataDictionary;

/// Deliberate differences from the `dicom-anonymizer` transcription of the same edition:
/// (tag, our action, their action, why). None at present.
const DELIBERATE_DIFFERENCES: [(&str, &str, &str, &str); 0] = [];

#[test]
fn keywords_agree_with_the_dicom_dictionary() {
    let table = ConfidentialityTable::standard().unwrap();
    let mut checked = 0;
    for row in table.rows.iter().filter(|r| r.tag.is_exact()) {
        let tag = Tag((row.tag.value >> 16) as u16, row.tag.value as u16);
        if let Some(entry) = StandardDataDictionary.by_tag(tag) {
            assert_eq!(entry.alias, row.keyword, "keyword of {}", row.tag);
            checked += 1;
        }
    }
    assert!(checked > 600, "{checked} rows found in the dictionary");
}

#[test]
fn option_columns_follow_the_kind_of_attribute() {
    // Every date, time and date-time attribute of the table has K under Full Dates and C under
    // Modified Dates; every U row has K under Retain UIDs.
    let table = ConfidentialityTable::standard().unwrap();
    let mut odd = Vec::new();
    for row in table.rows.iter().filter(|r| r.tag.is_exact()) {
        let tag = Tag((row.tag.value >> 16) as u16, row.tag.value as u16);
        let Some(entry) = StandardDataDictionary.by_tag(tag) else {
            continue;
        };
        let vr = entry.vr.relaxed();
        // The patient's birth date and time are never retained, whatever the option.
        let birth = row.keyword.starts_with("PatientBirth");
        if matches!(
            vr,
            dicom_core::VR::DA | dicom_core::VR::DT | dicom_core::VR::TM
        ) && !birth
        {
            if row.option(OptionColumn::RetainLongitudinalFullDates) != Some(Action::Keep) {
                odd.push(row.keyword.clone());
                continue;
            }
            assert_eq!(
                row.option(OptionColumn::RetainLongitudinalModifiedDates),
                Some(Action::Clean),
                "{}",
                row.keyword
            );
        }
        if row.basic == Action::Uid && row.keyword != "DigitalSignatureUID" && row.keyword != "UID"
        {
            assert_eq!(
                row.option(OptionColumn::RetainUids),
                Some(Action::Keep),
                "{}",
                row.keyword
            );
        }
    }
    // GPS Time Stamp has no option entry in the table as published.
    assert_eq!(
        odd,
        ["GPSTimeStamp"],
        "date/time rows without K under Full Dates"
    );
}

#[test]
fn tags_and_basic_actions_match_dicom_anonymizer() {
    let Some(py) = common::python() else {
        common::skip("no Python with pydicom in the workspace's .venv");
        return;
    };
    let has_pkg = Command::new(&py)
        .args(["-c", "import dicomanonymizer"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_pkg {
        common::skip(
            "the dicom-anonymizer package is not installed in .venv (tools/python/requirements.txt)",
        );
        return;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = ConfidentialityTable::standard().unwrap();
    let out = Command::new(&py)
        .arg(manifest.join("tests/peers/table_crosscheck.py"))
        .arg(manifest.join("data/confidentiality_profile.toml"))
        .arg(&table.edition)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{v}");
    assert_eq!(
        v["only_ours"],
        serde_json::json!([]),
        "tags missing from their table"
    );
    assert_eq!(
        v["only_theirs"],
        serde_json::json!([]),
        "tags missing from ours"
    );
    let differ = v["differ"].as_array().unwrap();
    for d in differ {
        let tag = d["tag"].as_str().unwrap();
        assert!(
            DELIBERATE_DIFFERENCES
                .iter()
                .any(|(t, o, th, _)| *t == tag && d["ours"] == *o && d["theirs"] == *th),
            "basic action of {tag} differs: ours {} theirs {}",
            d["ours"],
            d["theirs"]
        );
    }
    assert_eq!(v["ours"].as_u64(), Some(table.rows.len() as u64));
}
