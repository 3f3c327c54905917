//! Outputs whose pixels were cleaned say so: BurnedInAnnotation is NO, whatever the input
//! declared; outputs whose pixels were kept keep the input's value. Checked on the written
//! files, and the metadata table's pixel hash is that of the written pixel data.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

use bedside_curate::ingest::Shard;
use bedside_curate::pipeline::{self, CurateOptions, PixelPolicy, Silent};
use bedside_deid::{Deidentifier, Profile, SiteSecret};
use bedside_phantom::{PhantomConfig, generate};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else if p.extension().is_some_and(|e| e == "dcm") {
            out.push(p);
        }
    }
}

fn burned_in(path: &Path) -> Option<String> {
    let obj = bedside_dicom::read::read_bytes(&std::fs::read(path).unwrap()).unwrap();
    obj.element(tags::BURNED_IN_ANNOTATION)
        .ok()
        .map(|e| e.to_str().unwrap().trim().to_string())
}

fn curate(input: &Path, out: &Path, pixels: PixelPolicy) -> Vec<PathBuf> {
    let options = CurateOptions {
        deidentifier: Deidentifier::new(Profile::default(), SiteSecret::from_bytes([3; 32]))
            .unwrap(),
        pixels,
        arrays: false,
        resize: None,
        ocr: None,
        shard: Shard::ALL,
        archive_limits: Default::default(),
    };
    let summary = pipeline::run(&[input.to_path_buf()], out, &options, &Silent).unwrap();
    assert!(summary.curated >= 2, "{summary:?}");
    let mut written = Vec::new();
    files_under(&out.join("dicom"), &mut written);
    written
}

#[test]
fn cleaned_outputs_declare_no_burned_in_annotation() {
    let tmp = tempfile::tempdir().unwrap();
    let config = PhantomConfig {
        patients: 2,
        rows: 96,
        columns: 128,
        frames: [4, 6],
        seed: 8,
        ..PhantomConfig::default()
    };
    generate(&config, &tmp.path().join("phantom"), false, &|| {}).unwrap();
    // Every input declares burned-in text, as scanners that print names on cines do.
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut sources = Vec::new();
    files_under(&tmp.path().join("phantom/dicom"), &mut sources);
    for (k, f) in sources.iter().enumerate() {
        let mut obj = bedside_dicom::read::read_bytes(&std::fs::read(f).unwrap()).unwrap();
        obj.put(DataElement::new(
            tags::BURNED_IN_ANNOTATION,
            VR::CS,
            PrimitiveValue::from("YES"),
        ));
        obj.write_to_file(input.join(format!("{k}.dcm"))).unwrap();
    }

    let cleaned = curate(
        &input,
        &tmp.path().join("clean"),
        PixelPolicy::CleanUltrasound,
    );
    assert_eq!(cleaned.len(), sources.len());
    for f in &cleaned {
        assert_eq!(burned_in(f).as_deref(), Some("NO"), "{}", f.display());
    }
    let kept = curate(&input, &tmp.path().join("keep"), PixelPolicy::Keep);
    for f in &kept {
        assert_eq!(burned_in(f).as_deref(), Some("YES"), "{}", f.display());
    }

    // The table's pixel hash is the written pixel data's, as the full reader sees it.
    let table = std::fs::read_to_string(tmp.path().join("clean/metadata.csv")).unwrap();
    let mut rows = csv::Reader::from_reader(table.as_bytes());
    let headers = rows.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (output, hash) = (col("output"), col("pixel_sha256"));
    let mut checked = 0;
    for r in rows.records() {
        let r = r.unwrap();
        let path = tmp.path().join("clean").join(&r[output]);
        let obj = bedside_dicom::read::read_bytes(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            r[hash],
            bedside_curate::metadata::pixel_sha256(&obj),
            "{}",
            path.display()
        );
        checked += 1;
    }
    assert_eq!(checked, cleaned.len());
}
