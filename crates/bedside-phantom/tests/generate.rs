//! Whole-cohort generation: determinism, refusal to overwrite, and read-back with dicom-rs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::path::Path;

use bedside_phantom::{PhantomConfig, PhantomError, generate};
use dicom_dictionary_std::tags;
use dicom_pixeldata::PixelDecoder;

fn small(seed: u64) -> PhantomConfig {
    PhantomConfig {
        seed,
        patients: 4,
        rows: 96,
        columns: 128,
        frames: [32, 40],
        in_sector_text_fraction: 0.5,
        ..PhantomConfig::default()
    }
}

fn digest_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    generate(&small(1), &a, false, &|| {}).unwrap();
    generate(&small(1), &b, false, &|| {}).unwrap();
    generate(&small(2), &c, false, &|| {}).unwrap();
    let (da, db, dc) = (digest_tree(&a), digest_tree(&b), digest_tree(&c));
    assert_eq!(da.keys().collect::<Vec<_>>(), db.keys().collect::<Vec<_>>());
    for (k, v) in &da {
        assert!(v == &db[k], "{k} differs between runs with the same seed");
    }
    let dicom_a: Vec<_> = da.iter().filter(|(k, _)| k.ends_with(".dcm")).collect();
    assert!(!dicom_a.is_empty());
    for (k, v) in dicom_a {
        if let Some(other) = dc.get(k) {
            assert!(v != other, "{k} is identical for different seeds");
        }
    }
}

#[test]
fn refuses_a_non_empty_folder_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("keep.txt"), b"mine").unwrap();
    let err = generate(&small(1), tmp.path(), false, &|| {}).unwrap_err();
    assert!(matches!(err, PhantomError::OutputExists { .. }), "{err}");
    generate(&small(1), tmp.path(), true, &|| {}).unwrap();
    generate(&small(1), tmp.path(), true, &|| {}).unwrap();
    // Files that are not part of a cohort are never touched.
    assert_eq!(std::fs::read(tmp.path().join("keep.txt")).unwrap(), b"mine");
}

#[test]
fn files_read_back_with_dicom_rs_and_match_the_ground_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = generate(&small(3), tmp.path(), false, &|| {}).unwrap();
    let phi: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("phi.json")).unwrap()).unwrap();
    let files = phi["files"].as_array().unwrap();
    assert_eq!(files.len(), summary.studies);
    for f in files {
        let path = tmp.path().join(f["file"].as_str().unwrap());
        let obj = dicom_object::open_file(&path).unwrap();
        for h in f["header"].as_array().unwrap() {
            let p = h["path"].as_str().unwrap();
            if p.contains('[') || p.starts_with("(0002") {
                continue; // nested and meta paths are checked by the pydicom suite
            }
            let g = u16::from_str_radix(&p[1..5], 16).unwrap();
            let e = u16::from_str_radix(&p[6..10], 16).unwrap();
            let value = obj
                .element(dicom_core::Tag(g, e))
                .unwrap()
                .to_str()
                .unwrap();
            assert_eq!(
                value.trim_end_matches(['\0', ' ']),
                h["value"].as_str().unwrap(),
                "{p}"
            );
        }
        let frames: u32 = obj
            .element(tags::NUMBER_OF_FRAMES)
            .unwrap()
            .to_int()
            .unwrap();
        let decoded = obj.decode_pixel_data().unwrap();
        assert_eq!(decoded.number_of_frames(), frames);
        assert_eq!((decoded.rows(), decoded.columns()), (96, 128));
    }
}
