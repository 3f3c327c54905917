//! Metadata extraction cross-checked against pydicom on public vendor files (WG04 compression
//! set, pydicom's test files) and on the phantom.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bedside_curate::metadata::extract;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> Option<PathBuf> {
    let p = root().join(".venv/bin/python");
    if p.exists() {
        Some(p)
    } else if std::env::var("BEDSIDE_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!(".venv/bin/python missing (BEDSIDE_REQUIRE_PEERS=1); run scripts/setup.sh")
    } else {
        None
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else if p.extension().is_none_or(|e| e == "dcm") {
            out.push(p);
        }
    }
}

fn close(a: Option<f64>, b: &serde_json::Value) -> bool {
    match (a, b.as_f64()) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * y.abs().max(1.0),
        _ => false,
    }
}

#[test]
fn agrees_with_pydicom_on_public_files() {
    let Some(py) = python() else {
        eprintln!("skipped: no .venv with pydicom");
        return;
    };
    let shared = std::env::var_os("BEDSIDE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"));
    let mut files = Vec::new();
    files_under(&shared.join("testdata/dicom"), &mut files);
    for e in std::fs::read_dir(root().join(".venv/lib"))
        .unwrap()
        .flatten()
    {
        files_under(
            &e.path().join("site-packages/pydicom/data/test_files"),
            &mut files,
        );
    }
    let ours: Vec<(PathBuf, bedside_curate::metadata::InstanceRecord)> = files
        .iter()
        .filter_map(|f| {
            let bytes = std::fs::read(f).ok()?;
            let obj = bedside_dicom::read::read_bytes(&bytes).ok()?;
            Some((f.clone(), extract(&obj)))
        })
        .collect();
    assert!(ours.len() >= 40, "only {} files read", ours.len());
    let out = Command::new(py)
        .arg(root().join("tools/python/dicom_metadata.py"))
        .args(ours.iter().map(|(p, _)| p))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: HashMap<String, serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["path"].as_str().unwrap().to_string(), v)
        })
        .collect();
    let mut compared = 0;
    for (path, r) in &ours {
        let p = &reference[&path.display().to_string()];
        if p.get("error").is_some() {
            continue; // pydicom cannot read it; nothing to compare
        }
        let name = path.display();
        assert_eq!(r.modality, p["Modality"].as_str().unwrap(), "{name}");
        assert_eq!(
            r.sop_instance_uid,
            p["SOPInstanceUID"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            r.manufacturer,
            p["Manufacturer"].as_str().unwrap().trim(),
            "{name}"
        );
        assert_eq!(
            r.photometric,
            p["PhotometricInterpretation"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(r.rows.map(u64::from), p["Rows"].as_u64(), "{name}");
        assert_eq!(r.columns.map(u64::from), p["Columns"].as_u64(), "{name}");
        assert_eq!(
            r.bits_allocated.map(u64::from),
            p["BitsAllocated"].as_u64(),
            "{name}"
        );
        assert_eq!(
            r.frames.map(u64::from),
            p["NumberOfFrames"].as_u64(),
            "{name}"
        );
        assert_eq!(
            r.transfer_syntax,
            p["TransferSyntaxUID"].as_str().unwrap(),
            "{name}"
        );
        assert!(close(r.echo_time_ms, &p["EchoTime"]), "{name}: echo time");
        assert!(
            close(r.repetition_time_ms, &p["RepetitionTime"]),
            "{name}: TR"
        );
        assert!(
            close(r.slice_thickness_mm, &p["SliceThickness"]),
            "{name}: slice thickness"
        );
        let spacing = p["PixelSpacing"]
            .as_array()
            .map(|a| (a[0].as_f64().unwrap(), a[1].as_f64().unwrap()));
        assert_eq!(r.pixel_spacing_mm, spacing, "{name}");
        assert_eq!(
            r.pixel_sha256,
            p["sha256"].as_str().unwrap(),
            "{name}: pixel data hash"
        );
        compared += 1;
    }
    assert!(compared >= 40, "only {compared} files compared");
}
