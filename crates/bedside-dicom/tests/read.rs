//! The bounded reader accepts every layout real files come in, rejects malformed structure
//! before allocating, and never rejects what the parser itself reads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

use bedside_dicom::elements::put_str;
use bedside_dicom::read::{Layout, ReadError, detect, read_bytes};
use bedside_dicom::scan::ScanError;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

fn sample() -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    put_str(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        "1.2.840.10008.5.1.4.1.1.7",
    );
    put_str(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, "2.25.1234");
    put_str(&mut obj, tags::PATIENT_NAME, VR::PN, "DOE^JANE");
    let mut item = InMemDicomObject::new_empty();
    put_str(&mut item, tags::PATIENT_ID, VR::LO, "X1234567");
    bedside_dicom::elements::put_seq(&mut obj, tags::OTHER_PATIENT_I_DS_SEQUENCE, vec![item]);
    obj.put(bedside_dicom::pixel::native_pixel_data_8bit(vec![7u8; 64]));
    bedside_dicom::write::encode_file(obj, bedside_dicom::ts::EXPLICIT_VR_LE).unwrap()
}

fn dataset_start(bytes: &[u8]) -> usize {
    let group_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    144 + group_len
}

#[test]
fn reads_all_layouts() {
    let full = sample();
    assert_eq!(detect(&full).unwrap(), Layout::Part10);
    let obj = read_bytes(&full).unwrap();
    assert_eq!(
        obj.element(tags::PATIENT_NAME).unwrap().to_str().unwrap(),
        "DOE^JANE"
    );

    let no_preamble = &full[128..];
    assert_eq!(detect(no_preamble).unwrap(), Layout::Part10NoPreamble);
    read_bytes(no_preamble).unwrap();

    let bare = &full[dataset_start(&full)..];
    assert!(matches!(detect(bare).unwrap(), Layout::BareDataset(_)));
    let obj = read_bytes(bare).unwrap();
    assert_eq!(obj.meta().media_storage_sop_instance_uid(), "2.25.1234");
}

#[test]
fn truncation_is_reported_with_the_element() {
    let full = sample();
    let cut = &full[..full.len() - 10];
    match read_bytes(cut) {
        Err(ReadError::Malformed(ScanError::Truncated { group, element, .. })) => {
            assert_eq!((group, element), (0x7FE0, 0x0010));
        }
        other => panic!("expected truncation, got {other:?}"),
    }
}

#[test]
fn a_huge_declared_length_is_rejected_before_any_allocation() {
    let mut bytes = sample();
    let start = dataset_start(&bytes);
    // Append an OB element that claims 4 GB.
    bytes.extend_from_slice(&[
        0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4,
    ]);
    let err = read_bytes(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            ReadError::Malformed(ScanError::Truncated {
                declared: 0xFFFF_FFF0,
                ..
            })
        ),
        "{err}"
    );
    assert!(start > 0);
}

#[test]
fn deep_nesting_and_garbage_are_rejected() {
    let mut bytes = b"DICM".to_vec();
    // Minimal meta: transfer syntax explicit VR LE.
    let ts = b"1.2.840.10008.1.2.1\0";
    let group_length = (8 + ts.len()) as u32;
    bytes.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    bytes.extend_from_slice(&group_length.to_le_bytes());
    bytes.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', ts.len() as u8, 0]);
    bytes.extend_from_slice(ts);
    for _ in 0..100 {
        bytes.extend_from_slice(&[
            0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    assert!(matches!(
        read_bytes(&bytes),
        Err(ReadError::Malformed(ScanError::TooDeep { .. }))
    ));
    assert!(matches!(
        read_bytes(b"%PDF-1.7 not an image at all"),
        Err(ReadError::NotDicom(_))
    ));
    assert!(matches!(read_bytes(&[]), Err(ReadError::NotDicom(_))));
    // Found by fuzzing: an unknown VR that a parser would read with a 4-byte length of 3 GB.
    let unknown_vr = [96, 0, 0, 0, 76, 67, 8, 0, 0, 0, 0, 189, 0, 0, 73, 68];
    let odd = [
        68, 0, 0, 96, 83, 76, 5, 0, 0, 0, 3, 0, 0, 68, 0, 0, 96, 83, 76, 5, 0, 0, 96, 83, 76, 5,
    ];
    let r2 = read_bytes(&odd);
    assert!(r2.is_err(), "{:?}", r2.map(|_| ()));
    let r = read_bytes(&unknown_vr);
    assert!(
        matches!(r, Err(ReadError::Malformed(ScanError::BadVr { .. }))),
        "{r:?}"
    );
    let _ = Tag(0, 0);
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

fn shared_dir() -> PathBuf {
    std::env::var_os("BEDSIDE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// The scan never rejects a file the parser reads: public vendor files (WG04 and pydicom's).
#[test]
fn never_rejects_what_the_parser_reads() {
    let mut files = Vec::new();
    files_under(&shared_dir().join("testdata/dicom"), &mut files);
    let venv_lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    if let Ok(entries) = std::fs::read_dir(&venv_lib) {
        for e in entries.flatten() {
            files_under(
                &e.path().join("site-packages/pydicom/data/test_files"),
                &mut files,
            );
        }
    }
    let mut both = 0;
    for f in files
        .iter()
        .filter(|f| f.extension().is_none_or(|e| e == "dcm"))
    {
        let bytes = std::fs::read(f).unwrap();
        let parser = if detect(&bytes)
            .is_ok_and(|l| l != Layout::BareDataset(bedside_dicom::scan::Encoding::IMPLICIT_LE))
        {
            dicom_object::OpenFileOptions::new().open_file(f).is_ok()
        } else {
            false
        };
        if parser {
            let ours = read_bytes(&bytes);
            assert!(ours.is_ok(), "{}: {}", f.display(), ours.unwrap_err());
            both += 1;
        }
    }
    assert!(both >= 40, "only {both} files read by the parser");
}
