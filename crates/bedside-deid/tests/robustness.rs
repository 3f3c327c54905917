//! Malformed input: truncated and corrupted versions of real files give typed errors or valid
//! outputs, never a panic, and errors never quote the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bedside_core::rng::Rng;
use bedside_deid::{DeidError, Deidentifier, ObjectContext, Profile, SiteSecret};

fn seeds() -> Vec<common::Input> {
    let wanted = [
        "pydicom/CT_small.dcm",
        "pydicom/MR_small_implicit.dcm",
        "pydicom/MR_small_bigendian.dcm",
        "pydicom/rtplan.dcm",
        "pydicom/test-SR.dcm",
        "pydicom/JPEG2000.dcm",
        "pydicom/image_dfl.dcm",
        "wg04/JPLY/NM1_JPLY",
    ];
    common::pydicom_files()
        .into_iter()
        .chain(common::wg04())
        .filter(|i| wanted.contains(&i.name.as_str()))
        .collect()
}

fn check(deid: &Deidentifier, bytes: &[u8]) -> bool {
    match deid.deidentify_bytes(bytes, ObjectContext::default()) {
        Ok(done) => {
            // Whatever was accepted must read back.
            let again = deid.deidentify_bytes(&done.bytes, ObjectContext::default());
            assert!(
                again.is_ok(),
                "an output does not read back: {:?}",
                again.err()
            );
            true
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains("1.2.840.113619") && !text.contains("CompressedSamples"));
            if let DeidError::NotDicom { detail, .. } = &e {
                assert!(format!("{e:?}").contains("<redacted>") || detail.expose().is_empty());
            }
            false
        }
    }
}

#[test]
fn truncated_files_never_panic() {
    let inputs = seeds();
    if inputs.is_empty() {
        common::skip("no seed files (pydicom wheel and shared test data missing)");
        return;
    }
    let deid = Deidentifier::new(Profile::default(), SiteSecret::from_bytes([1; 32])).unwrap();
    let mut tried = 0;
    for input in &inputs {
        let n = input.bytes.len();
        let step = (n / 300).max(1);
        for cut in (0..n).step_by(step) {
            check(&deid, &input.bytes[..cut]);
            tried += 1;
        }
    }
    assert!(tried > 1000);
}

#[test]
fn corrupted_files_never_panic() {
    let inputs = seeds();
    if inputs.is_empty() {
        common::skip("no seed files (pydicom wheel and shared test data missing)");
        return;
    }
    let deid = Deidentifier::new(Profile::default(), SiteSecret::from_bytes([1; 32])).unwrap();
    let mut rng = Rng::seed_from(2026);
    let (mut ok, mut rejected) = (0, 0);
    for input in &inputs {
        // Corrupt the header region, where the structure lives.
        let header = input.bytes.len().min(4096);
        for _ in 0..300 {
            let mut bytes = input.bytes.clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(header as u64) as usize;
                bytes[at] = rng.below(256) as u8;
            }
            if check(&deid, &bytes) {
                ok += 1;
            } else {
                rejected += 1;
            }
        }
    }
    eprintln!("corrupted inputs: {ok} de-identified, {rejected} rejected");
    assert!(ok > 0 && rejected > 0);
}
