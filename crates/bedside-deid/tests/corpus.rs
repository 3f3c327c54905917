//! De-identification of every file of the public corpora (NEMA WG04, pydicom's test files),
//! checked against independent references: pydicom parses the outputs and searches them for the
//! inputs' identifying values, and dciodvfy must report no new errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use bedside_deid::{DeidError, Deidentifier, ObjectContext, ObjectReport, Profile, SiteSecret};
use dicom_core::VR;
use dicom_core::header::Header;
use dicom_core::value::Value;
use dicom_object::InMemDicomObject;

/// Inputs that cannot be de-identified, with the reason. Any other failure fails the test.
const EXPECTED_FAILURES: [(&str, &str); 7] = [
    ("pydicom/MR_truncated.dcm", "truncated data set"),
    ("pydicom/rtplan_truncated.dcm", "truncated data set"),
    (
        "pydicom/UN_sequence.dcm",
        "a private UN sequence of undefined length, no SOP instance",
    ),
    (
        "pydicom/empty_charset_LEI.dcm",
        "two attributes only, no SOP Class UID",
    ),
    (
        "pydicom/meta_missing_tsyntax.dcm",
        "no transfer syntax and no SOP Class UID",
    ),
    (
        "pydicom/nested_priv_SQ.dcm",
        "a private sequence only, no SOP Class UID",
    ),
    (
        "pydicom/no_meta.dcm",
        "starts mid-element; pydicom reads it as garbage too",
    ),
];

struct Pair {
    name: String,
    input: PathBuf,
    output: PathBuf,
    report: ObjectReport,
}

struct Run {
    _dir: tempfile::TempDir,
    pairs: Vec<Pair>,
    failures: Vec<(String, DeidError)>,
    inputs: usize,
    profile: Profile,
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let profile = Profile::default();
        let deid = Deidentifier::new(profile.clone(), SiteSecret::from_bytes([11; 32])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut pairs = Vec::new();
        let mut failures = Vec::new();
        let inputs: Vec<common::Input> = common::wg04()
            .into_iter()
            .chain(common::burned_in())
            .chain(common::pydicom_files())
            .collect();
        let n = inputs.len();
        for (i, input) in inputs.into_iter().enumerate() {
            match deid.deidentify_bytes(&input.bytes, ObjectContext::default()) {
                Ok(done) => {
                    let in_path = dir.path().join(format!("{i:04}-in.dcm"));
                    let out_path = dir.path().join(format!("{i:04}-out.dcm"));
                    std::fs::write(&in_path, &input.bytes).unwrap();
                    std::fs::write(&out_path, &done.bytes).unwrap();
                    pairs.push(Pair {
                        name: input.name,
                        input: in_path,
                        output: out_path,
                        report: done.report,
                    });
                }
                Err(e) => failures.push((input.name, e)),
            }
        }
        Run {
            _dir: dir,
            pairs,
            failures,
            inputs: n,
            profile,
        }
    })
}

fn corpus_present() -> bool {
    if run().inputs == 0 {
        common::skip("no test corpus (shared test data and the pydicom wheel are both missing)");
        return false;
    }
    true
}

#[test]
fn every_wg04_file_is_deidentified_and_failures_are_expected() {
    if !corpus_present() {
        return;
    }
    let r = run();
    for (name, e) in &r.failures {
        assert!(!name.starts_with("wg04/"), "{name} failed: {e}");
        let expected = EXPECTED_FAILURES.iter().find(|(n, _)| n == name);
        assert!(expected.is_some(), "unexpected failure on {name}: {e}");
        eprintln!(
            "reported, not de-identified: {name}: {e} (known: {})",
            expected.map_or("", |x| x.1)
        );
        // Errors never show values read from the file.
        if let DeidError::NotDicom { detail, .. } = e {
            assert!(
                !e.to_string().contains(detail.expose().as_str()) || detail.expose().is_empty()
            );
            assert!(format!("{e:?}").contains("<redacted>"));
        }
    }
    let wg04 = r
        .pairs
        .iter()
        .filter(|p| p.name.starts_with("wg04/"))
        .count();
    if common::testdata().is_some() {
        assert!(wg04 >= 90, "only {wg04} WG04 files");
    }
    assert!(r.pairs.len() >= 60, "{} outputs", r.pairs.len());
}

/// Identifying values of an object, read with dicom-rs: names, identifiers, dates, instance UIDs.
fn phi_values(obj: &InMemDicomObject, out: &mut BTreeSet<String>) {
    for e in obj.iter() {
        let tag = e.tag();
        if let Value::Sequence(seq) = e.value() {
            for item in seq.items() {
                phi_values(item, out);
            }
            continue;
        }
        let vr = e.vr();
        let private = tag.group() % 2 == 1;
        let Ok(values) = e.value().to_multi_str() else {
            continue;
        };
        for v in values.iter() {
            let v = v.trim_matches([' ', '\0']);
            match vr {
                VR::PN => {
                    for part in std::iter::once(v).chain(v.split(['^', '='])) {
                        if part.trim().len() >= 4 {
                            out.insert(part.trim().to_uppercase());
                        }
                    }
                }
                VR::DA if v.len() == 8 && v != "19000101" => {
                    out.insert(v.to_string());
                    out.insert(format!("{}-{}-{}", &v[0..4], &v[4..6], &v[6..8]));
                }
                VR::UI if !private && !v.starts_with("1.2.840.10008.") && v.len() > 10 => {
                    let alias = dicom_dictionary_std::StandardDataDictionary
                        .by_tag(tag)
                        .map(|d| d.alias)
                        .unwrap_or("");
                    if alias.contains("InstanceUID") || alias.ends_with("FrameOfReferenceUID") {
                        out.insert(v.to_string());
                    }
                }
                VR::LO | VR::SH
                    if !private
                        && [
                            (0x0010, 0x0020),
                            (0x0008, 0x0050),
                            (0x0008, 0x0080),
                            (0x0008, 0x0081),
                            (0x0008, 0x1010),
                            (0x0018, 0x1000),
                        ]
                        .contains(&(tag.group(), tag.element()))
                        && v.len() >= 4
                        && !v.trim_matches(['0', '.', ' ', '-']).is_empty() =>
                {
                    out.insert(v.to_uppercase());
                }
                _ => {}
            }
        }
    }
}

use dicom_core::dictionary::DataDictionary;

fn read(path: &Path) -> Option<dicom_object::DefaultDicomObject> {
    dicom_object::OpenFileOptions::new().open_file(path).ok()
}

#[test]
fn no_identifying_value_of_an_input_appears_in_its_output() {
    if !corpus_present() {
        return;
    }
    let mut searched = 0usize;
    for p in &run().pairs {
        let Some(input) = read(&p.input) else {
            continue;
        };
        let mut values = BTreeSet::new();
        phi_values(&input, &mut values);
        for v in [input.meta().media_storage_sop_instance_uid()] {
            if !v.is_empty() {
                values.insert(v.to_string());
            }
        }
        // Values that also occur in attributes that identify no one (Manufacturer "TOSHIBA" and
        // InstitutionName "TOSHIBA") may remain there.
        let benign = non_identifying_text(&input);
        values.retain(|v| !benign.contains(v.as_str()));
        let out = std::fs::read(&p.output).unwrap();
        // Leave out the pixel data, which is copied unchanged (burned-in text is another check).
        let header_end = find_subslice(&out, &[0xE0, 0x7F, 0x10, 0x00]).unwrap_or(out.len());
        let header = out[..header_end].to_ascii_uppercase();
        for v in &values {
            searched += 1;
            assert!(
                find_subslice(&header, v.as_bytes()).is_none(),
                "{}: an identifying value of {} characters survived",
                p.name,
                v.len()
            );
        }
    }
    assert!(searched > 500, "only {searched} values searched");
}

fn non_identifying_text(obj: &InMemDicomObject) -> String {
    use dicom_dictionary_std::tags;
    let keep = [
        tags::MANUFACTURER,
        tags::MANUFACTURER_MODEL_NAME,
        tags::SOFTWARE_VERSIONS,
        tags::MODALITY,
        tags::BODY_PART_EXAMINED,
        tags::CODING_SCHEME_DESIGNATOR,
        tags::CODE_MEANING,
        tags::CODE_VALUE,
        tags::IMAGE_TYPE,
        tags::CONVERSION_TYPE,
    ];
    let mut s = String::new();
    for e in obj.iter() {
        if let Value::Sequence(seq) = e.value() {
            for item in seq.items() {
                s.push_str(&non_identifying_text(item));
            }
        } else if keep.contains(&e.tag())
            && let Ok(v) = e.to_str()
        {
            s.push_str(&v.to_uppercase());
            s.push('\n');
        }
    }
    s
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn pixel_data_is_copied_unchanged() {
    if !corpus_present() {
        return;
    }
    let mut compared = 0;
    for p in &run().pairs {
        let (Some(a), Some(b)) = (read(&p.input), read(&p.output)) else {
            continue;
        };
        let tag = dicom_dictionary_std::tags::PIXEL_DATA;
        match (a.get(tag), b.get(tag)) {
            (Some(x), Some(y)) => {
                assert_eq!(x.value(), y.value(), "{}: pixel data changed", p.name);
                compared += 1;
            }
            (None, None) => {}
            _ => panic!("{}: pixel data appeared or vanished", p.name),
        }
    }
    assert!(compared > 50, "{compared}");
}

#[test]
fn outputs_pass_pydicom_checks() {
    if !corpus_present() {
        return;
    }
    let Some(py) = common::python() else {
        common::skip("no Python with pydicom in the workspace's .venv");
        return;
    };
    let r = run();
    let pairs: Vec<serde_json::Value> = r
        .pairs
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.name,
                "input": p.input,
                "output": p.output,
                "expected_codes": p.report.method_codes,
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "pairs": pairs,
        "min_days": r.profile.dates.min_days,
        "max_days": r.profile.dates.max_days,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/check_deid.py");
    let out = Command::new(py).arg(script).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "pydicom checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(summary["checked"].as_u64().unwrap() as usize == r.pairs.len());
    assert!(summary["values_searched"].as_u64().unwrap() > 1000);
}

fn dciodvfy_errors(path: &Path) -> BTreeSet<String> {
    let out = Command::new("dciodvfy").arg(path).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.starts_with("Error"))
        .map(normalize_message)
        .collect()
}

/// dciodvfy messages quote values (UIDs, dates); compare them with the values masked, so that an
/// error the input already had is not counted as new because a UID in it changed.
fn normalize_message(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut run = String::new();
    for c in line.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() || c == '.' {
            run.push(c);
        } else {
            let after_uid = out.trim_end().ends_with("UID") || out.ends_with('<');
            if !run.is_empty()
                && (after_uid || run.chars().filter(|c| c.is_ascii_digit()).count() >= 5)
            {
                out.push('#');
            } else {
                out.push_str(&run);
            }
            run.clear();
            out.push(c);
        }
    }
    out.trim_end().to_string()
}

#[test]
fn dciodvfy_reports_no_new_errors() {
    if !corpus_present() {
        return;
    }
    if !common::have_program("dciodvfy") {
        common::skip("dciodvfy (Debian dicom3tools) is not installed");
        return;
    }
    let mut new_errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut checked = 0;
    for p in &run().pairs {
        let before = dciodvfy_errors(&p.input);
        let after = dciodvfy_errors(&p.output);
        assert!(
            !after.iter().any(|l| l.contains("read failed")),
            "{}: dciodvfy cannot read the output",
            p.name
        );
        if before.iter().any(|l| l.contains("read failed")) {
            // dciodvfy cannot read this input (e.g. a deflated data set), so there is nothing to
            // compare with; the output was readable above.
            eprintln!(
                "{}: dciodvfy cannot read the input; output read only",
                p.name
            );
            continue;
        }
        checked += 1;
        let added: Vec<String> = after.difference(&before).cloned().collect();
        if !added.is_empty() {
            new_errors.insert(p.name.clone(), added);
        }
    }
    assert!(checked > 50);
    assert!(
        new_errors.is_empty(),
        "new dciodvfy errors: {new_errors:#?}"
    );
}
