//! The single-walk metadata extraction (`extract_bytes`) against the object-based one
//! (`read_bytes` + `extract`) on every file both can see: the phantom, the shared public DICOM
//! files and pydicom's test files. The records must be identical, field for field; files the
//! walk does not cover go through the full reader and must agree too.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

use bedside_curate::metadata::{
    extract, extract_bytes, extract_header, extract_header_bytes, takes_fast_path,
};
use bedside_phantom::{PhantomConfig, generate};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Field-for-field equality, NaN included (a NaN delta must be NaN on both sides).
fn same<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// Compares both paths on every file; returns (files read by the full reader, of which took
/// the single walk).
fn compare(files: &[PathBuf]) -> (usize, usize) {
    let (mut read, mut fast) = (0, 0);
    for f in files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        let Ok(obj) = bedside_dicom::read::read_bytes(&bytes) else {
            continue;
        };
        read += 1;
        fast += takes_fast_path(&bytes) as usize;
        let ours = extract_bytes(&bytes)
            .unwrap_or_else(|e| panic!("{}: refused by extract_bytes: {e}", f.display()));
        let theirs = extract(&obj);
        assert!(
            same(&ours, &theirs),
            "{}:\n single walk {ours:?}\n full reader {theirs:?}",
            f.display()
        );
        let header = extract_header_bytes(&bytes).unwrap();
        assert!(same(&header, &extract_header(&obj)), "{}", f.display());
    }
    (read, fast)
}

#[test]
fn single_walk_matches_the_full_reader_on_the_phantom() {
    let tmp = tempfile::tempdir().unwrap();
    let config = PhantomConfig {
        patients: 6,
        rows: 96,
        columns: 128,
        frames: [3, 5],
        seed: 5,
        rgb_fraction: 0.4,
        rgb_jpeg_fraction: 0.5,
        mono_jpeg_fraction: 0.5,
        ..PhantomConfig::default()
    };
    generate(&config, tmp.path(), false, &|| {}).unwrap();
    let mut files = Vec::new();
    files_under(&tmp.path().join("dicom"), &mut files);
    let (read, fast) = compare(&files);
    assert!(read >= 6, "only {read} phantom files read");
    // Phantom files are plain Part 10 little endian with ASCII values: all take the walk.
    assert_eq!(
        fast, read,
        "phantom files that fell back to the full reader"
    );
    // A hash that does not depend on the path taken, and that changes with the pixels.
    let bytes = std::fs::read(&files[0]).unwrap();
    let r = extract_bytes(&bytes).unwrap();
    assert_eq!(r.pixel_sha256.len(), 64);
    let mut flipped = bytes.clone();
    let last = flipped.len() - 100;
    flipped[last] ^= 0x55;
    assert_ne!(
        extract_bytes(&flipped).unwrap().pixel_sha256,
        r.pixel_sha256
    );
}

#[test]
fn single_walk_matches_the_full_reader_on_public_files() {
    let shared = std::env::var_os("BEDSIDE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"));
    let mut files = Vec::new();
    files_under(&shared.join("testdata/dicom"), &mut files);
    if let Ok(lib) = std::fs::read_dir(root().join(".venv/lib")) {
        for e in lib.flatten() {
            files_under(
                &e.path().join("site-packages/pydicom/data/test_files"),
                &mut files,
            );
        }
    }
    if files.is_empty() {
        eprintln!("skipped: no shared test data and no pydicom test files");
        return;
    }
    let (read, fast) = compare(&files);
    eprintln!("{read} files read, {fast} through the single walk");
    assert!(read >= 20, "only {read} files read");
    // Most public files are plain little-endian Part 10: the walk must cover them.
    assert!(
        fast * 2 >= read,
        "only {fast} of {read} took the single walk"
    );
}
