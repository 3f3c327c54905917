//! Reading untrusted bytes takes memory bounded by their size: at most 16 bytes per input byte
//! plus 4 MiB, whatever the input.
//!
//! The inputs are the ones that broke that bound before (found by fuzzing, kept under
//! `tests/data/`, all synthetic) and hand-made ones for each way a parser can be made to
//! allocate more than the file holds. Memory is measured by the kernel, not by our code: each
//! input is read in a child process that resets its peak resident set (`/proc/self/clear_refs`)
//! after loading the input and reports `VmHWM` afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

use bedside_dicom::read::{ReadError, read_bytes};
use bedside_dicom::scan::ScanError;

const PER_BYTE: u64 = 16;
const BASE: u64 = 4 << 20;
const PROBE_ENV: &str = "BEDSIDE_MEMORY_PROBE";

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The child side: reads the input named by the environment and prints its peak memory growth.
/// Without the variable (an ordinary test run) it does nothing.
#[test]
fn probe_child() {
    let Some(path) = std::env::var_os(PROBE_ENV) else {
        return;
    };
    let bytes = std::fs::read(path).unwrap();
    // Clearing the peak makes VmHWM count from here, not from loading the test binary.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kb("VmRSS:");
    let outcome = match read_bytes(&bytes) {
        Ok(obj) => format!("read {} elements", obj.iter().count()),
        Err(e) => format!("refused: {e}"),
    };
    let peak = status_kb("VmHWM:");
    println!("PROBE growth_kb={} {outcome}", peak.saturating_sub(before));
}

/// Reads `bytes` in a child process; returns the peak growth of its resident set in bytes and
/// what the reader said.
fn measure(bytes: &[u8]) -> (u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::write(&input, bytes).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "probe_child", "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, &input)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("PROBE growth_kb=").map(|(_, rest)| rest))
        .unwrap_or_else(|| {
            panic!(
                "child reported nothing: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let (kb, outcome) = line.split_once(' ').unwrap();
    (kb.parse::<u64>().unwrap() * 1024, outcome.to_string())
}

fn assert_bounded(name: &str, bytes: &[u8]) -> String {
    let (growth, outcome) = measure(bytes);
    let bound = PER_BYTE * bytes.len() as u64 + BASE;
    eprintln!(
        "{name}: {} bytes in, peak growth {growth} bytes (bound {bound}): {outcome}",
        bytes.len()
    );
    assert!(
        growth <= bound,
        "{name}: reading {} bytes grew memory by {growth} bytes, over {bound} ({outcome})",
        bytes.len()
    );
    outcome
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

/// Implicit VR little endian element.
fn implicit(out: &mut Vec<u8>, group: u16, element: u16, value: &[u8]) {
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// A bare implicit-VR data set with the two UIDs a bare data set needs.
fn bare_start() -> Vec<u8> {
    let mut b = Vec::new();
    implicit(&mut b, 0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.7\0");
    implicit(&mut b, 0x0008, 0x0018, b"2.25.1234\0");
    b
}

/// Found by fuzzing: an implicit-VR `US or SS` attribute (Pixel Padding Range Limit) of odd
/// length. dicom-rs reads it as whole 16-bit words and moves one byte short, then reads a
/// 553 MB UL length from bytes the scan had read as other elements.
#[test]
fn odd_length_ambiguous_vr_found_by_fuzzing() {
    let bytes = data("implicit-odd-us-or-ss.dcm");
    let outcome = assert_bounded("implicit-odd-us-or-ss.dcm", &bytes);
    assert!(outcome.starts_with("refused"), "{outcome}");
    assert!(matches!(
        read_bytes(&bytes),
        Err(ReadError::Malformed(ScanError::BadLength {
            group: 0x0028,
            element: 0x0121,
            unit: 2,
            ..
        }))
    ));
}

/// An item delimiter with a length outside any item: dicom-rs skips its 8 bytes and ignores
/// the length, so it reads the "skipped" bytes as an element header claiming 256 MB.
#[test]
fn stray_delimiter_with_a_length() {
    let mut b = bare_start();
    b.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 8, 0, 0, 0]);
    // What dicom-rs reads next: (0028,0000) group length (UL) of 256 MB.
    b.extend_from_slice(&[0x28, 0, 0, 0, 0, 0, 0, 0x10]);
    implicit(&mut b, 0x0010, 0x0010, b"ANON");
    let outcome = assert_bounded("stray delimiter", &b);
    assert!(outcome.contains("delimiter"), "{outcome}");
}

/// A file meta group length that overstates the group: dicom-object would read the data set's
/// implicit-VR elements as explicit meta elements, with lengths the scan never checked.
#[test]
fn meta_group_length_longer_than_the_group() {
    let mut b = vec![0u8; 128];
    b.extend_from_slice(b"DICM");
    let ts = b"1.2.840.10008.1.2\0";
    b.extend_from_slice(&[0x02, 0, 0, 0, b'U', b'L', 4, 0]);
    b.extend_from_slice(&(8 + ts.len() as u32 + 24).to_le_bytes());
    b.extend_from_slice(&[0x02, 0, 0x10, 0, b'U', b'I', ts.len() as u8, 0]);
    b.extend_from_slice(ts);
    b.extend_from_slice(&bare_start());
    let outcome = assert_bounded("meta group length", &b);
    assert!(outcome.contains("group length"), "{outcome}");
}

/// Tens of thousands of empty values in one multi-valued string: each becomes its own
/// `String`, about 48 bytes of memory per byte of input.
#[test]
fn backslash_flood_is_refused_as_too_costly() {
    let mut b = bare_start();
    implicit(&mut b, 0x0008, 0x0008, &vec![b'\\'; 1 << 20]);
    let outcome = assert_bounded("backslash flood", &b);
    assert!(outcome.contains("memory"), "{outcome}");
}

/// Element-dense input that is legitimate: many distinct small elements are read, within the
/// bound (the per-element cost of dicom-object is what the scan's estimate must cover).
#[test]
fn many_small_elements_are_read_within_the_bound() {
    let mut b = bare_start();
    for element in 0x1000u16..0x1000 + 15_000 {
        implicit(&mut b, 0x0009, element, b"AB");
    }
    let outcome = assert_bounded("many small elements", &b);
    assert!(outcome.starts_with("read"), "{outcome}");
    // Four times denser than that, the same pattern is refused rather than read past the bound.
    for element in 0x1000u16 + 15_000..0xF000 {
        implicit(&mut b, 0x0009, element, b"AB");
    }
    let outcome = assert_bounded("many more small elements", &b);
    assert!(outcome.contains("memory"), "{outcome}");
}

/// Items of one element each: every item is its own object with its own B-tree leaf, about
/// 75 bytes of memory per byte of input in dicom-object; refused past the budget.
#[test]
fn single_element_items_are_refused_past_the_budget() {
    let mut b = bare_start();
    b.extend_from_slice(&[0x40, 0, 0x75, 0x02, 0xFF, 0xFF, 0xFF, 0xFF]);
    let mut item = Vec::new();
    implicit(&mut item, 0x0010, 0x0020, b"AB");
    for _ in 0..8_000 {
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        b.extend_from_slice(&(item.len() as u32).to_le_bytes());
        b.extend_from_slice(&item);
    }
    b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    let outcome = assert_bounded("single-element items", &b);
    assert!(outcome.contains("memory"), "{outcome}");
}

/// Deeply nested empty items (each item a separate object) stay within the bound.
#[test]
fn many_empty_items_stay_within_the_bound() {
    let mut b = bare_start();
    // (0040,0275) Request Attributes Sequence, undefined length, 100 000 empty items.
    b.extend_from_slice(&[0x40, 0, 0x75, 0x02, 0xFF, 0xFF, 0xFF, 0xFF]);
    for _ in 0..100_000 {
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
    }
    b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    assert_bounded("many empty items", &b);
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

/// Every committed regression input stays within the bound.
#[test]
fn every_regression_input_is_bounded() {
    let mut files = Vec::new();
    files_under(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"),
        &mut files,
    );
    assert!(!files.is_empty());
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert_bounded(&f.file_name().unwrap().to_string_lossy(), &bytes);
    }
}

/// Encapsulated pixel data declaring more frames than it has fragments, or a geometry that
/// would decode to gigabytes from a few bytes, is refused before any decoder sees it.
#[test]
fn forged_frame_geometry_is_refused() {
    use bedside_dicom::elements::{put_is, put_str, put_u16};
    use dicom_core::VR;
    use dicom_dictionary_std::tags;
    let make = |frames: i64, rows: u16| {
        let mut obj = dicom_object::InMemDicomObject::new_empty();
        put_str(
            &mut obj,
            tags::SOP_CLASS_UID,
            VR::UI,
            "1.2.840.10008.5.1.4.1.1.7",
        );
        put_str(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, "2.25.1234");
        put_u16(&mut obj, tags::ROWS, &[rows]);
        put_u16(&mut obj, tags::COLUMNS, &[rows]);
        put_u16(&mut obj, tags::SAMPLES_PER_PIXEL, &[3]);
        put_u16(&mut obj, tags::BITS_ALLOCATED, &[8]);
        put_is(&mut obj, tags::NUMBER_OF_FRAMES, frames);
        obj.put(bedside_dicom::pixel::encapsulated_pixel_data(vec![
            vec![
                0xFF;
                16
            ];
            2
        ]));
        bedside_dicom::write::encode_file(obj, "1.2.840.10008.1.2.4.50").unwrap()
    };
    assert!(read_bytes(&make(2, 8)).is_ok());
    let too_many = make(1_000_000, 8);
    assert!(matches!(
        read_bytes(&too_many),
        Err(ReadError::BadPixelData(_))
    ));
    let huge = make(2, 65_535);
    assert!(matches!(read_bytes(&huge), Err(ReadError::BadPixelData(_))));
}
