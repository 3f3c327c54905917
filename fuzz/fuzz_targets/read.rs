//! Fuzzes the bounded DICOM reader and what curation does right after reading: no input may
//! panic, and memory stays bounded by the input (libFuzzer's -rss_limit_mb enforces it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(obj) = bedside_dicom::read::read_bytes(data) {
        let _ = bedside_curate::metadata::extract(&obj);
    }
});
