//! Burned-in text removal on the phantom (where every planted box is known) and on a real
//! vendor cine: boxes outside the scan area are blanked on every frame, the scan sector stays
//! bit-identical, frames keep their order.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

use bedside_curate::pixels::{CleanOptions, clean_ultrasound};
use bedside_curate::scan_area::declared_regions;
use bedside_phantom::{PhantomConfig, generate};
use dicom_pixeldata::PixelDecoder;

fn decode(obj: &dicom_object::DefaultDicomObject) -> (Vec<u8>, usize, usize, usize, u32) {
    let d = obj.decode_pixel_data().unwrap();
    (
        d.data().to_vec(),
        d.rows() as usize,
        d.columns() as usize,
        d.samples_per_pixel() as usize,
        d.number_of_frames(),
    )
}

fn roundtrip(obj: &dicom_object::DefaultDicomObject) -> dicom_object::DefaultDicomObject {
    let mut bytes = Vec::new();
    obj.write_all(&mut bytes).unwrap();
    dicom_object::from_reader(&bytes[128..]).unwrap()
}

fn npz_member(path: &Path, name: &str) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut f = z.by_name(&format!("{name}.npy")).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut bytes).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header_len..].to_vec()
}

#[test]
fn phantom_text_outside_the_scan_area_is_blanked_and_the_sector_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let config = PhantomConfig {
        patients: 6,
        rows: 240,
        columns: 320,
        frames: [32, 40],
        seed: 21,
        ..PhantomConfig::default()
    };
    generate(&config, tmp.path(), false, &|| {}).unwrap();
    let phi: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("phi.json")).unwrap()).unwrap();
    let mut checked_boxes = 0;
    for f in phi["files"].as_array().unwrap() {
        let file = tmp.path().join(f["file"].as_str().unwrap());
        let key = f["study_key"].as_str().unwrap();
        let sector = npz_member(&tmp.path().join(format!("truth/masks/{key}.npz")), "sector");
        let original = dicom_object::open_file(&file).unwrap();
        let (before, rows, cols, spp, frames) = decode(&original);
        let mut obj = original.clone();
        let outcome = clean_ultrasound(&mut obj, &CleanOptions::default()).unwrap();
        assert!(outcome.changed, "{key}: nothing blanked");
        assert!(outcome.sector_detected, "{key}: sector not detected");
        assert_eq!(obj.meta().transfer_syntax(), "1.2.840.10008.1.2.1");
        let cleaned = roundtrip(&obj);
        let (after, r2, c2, s2, f2) = decode(&cleaned);
        assert_eq!((r2, c2, s2, f2), (rows, cols, spp, frames));
        let regions = declared_regions(&original, rows, cols);
        let frame_len = rows * cols * spp;
        for fr in 0..frames as usize {
            let (b, a) = (
                &before[fr * frame_len..][..frame_len],
                &after[fr * frame_len..][..frame_len],
            );
            // Sector pixels are bit-identical to the decoded input, in every frame.
            for i in (0..rows * cols).filter(|&i| sector[i] == 1) {
                assert_eq!(
                    b[i * spp..(i + 1) * spp],
                    a[i * spp..(i + 1) * spp],
                    "{key} frame {fr} pixel {i}"
                );
            }
            // Every planted box that lies outside the declared regions is black.
            for p in f["pixels"].as_array().unwrap() {
                let bx = &p["box"];
                let (x, y) = (
                    bx["x"].as_u64().unwrap() as usize,
                    bx["y"].as_u64().unwrap() as usize,
                );
                let (w, h) = (
                    bx["width"].as_u64().unwrap() as usize,
                    bx["height"].as_u64().unwrap() as usize,
                );
                let inside_region = regions
                    .iter()
                    .any(|r| x + w > r.x0 && x <= r.x1 && y + h > r.y0 && y <= r.y1);
                if inside_region || p["in_sector"].as_bool().unwrap() {
                    continue; // text inside the scan area is the OCR stage's work
                }
                for yy in y..y + h {
                    for xx in x..x + w {
                        let i = yy * cols + xx;
                        assert!(
                            a[i * spp..(i + 1) * spp].iter().all(|&v| v == 0),
                            "{key}: {} not blank",
                            p["kind"]
                        );
                    }
                }
                checked_boxes += (fr == 0) as usize;
            }
        }
    }
    assert!(checked_boxes >= 20, "only {checked_boxes} boxes checked");
}

fn pydicom_file(name: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    let found = std::fs::read_dir(&root)
        .ok()?
        .filter_map(|e| e.ok())
        .find_map(|e| {
            let p = e
                .path()
                .join("site-packages/pydicom/data/test_files")
                .join(name);
            p.exists().then_some(p)
        });
    if found.is_none() && std::env::var("BEDSIDE_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("pydicom test file {name} not found in .venv (BEDSIDE_REQUIRE_PEERS=1)");
    }
    found
}

#[test]
fn real_multiframe_colour_echo_keeps_frame_order_and_its_scan_area() {
    let Some(path) = pydicom_file("examples_ybr_color.dcm") else {
        eprintln!("skipped: pydicom's test files are not installed in .venv");
        return;
    };
    let original = dicom_object::open_file(&path).unwrap();
    let (before, rows, cols, spp, frames) = decode(&original);
    assert_eq!((frames, spp), (30, 3));
    let mut obj = original.clone();
    let outcome = clean_ultrasound(&mut obj, &CleanOptions::default()).unwrap();
    let cleaned = roundtrip(&obj);
    let (after, ..) = decode(&cleaned);
    assert!(outcome.changed);
    let regions = declared_regions(&original, rows, cols);
    assert_eq!(regions.len(), 1);
    let r = regions[0];
    let frame_len = rows * cols * spp;
    for fr in 0..frames as usize {
        let (b, a) = (
            &before[fr * frame_len..][..frame_len],
            &after[fr * frame_len..][..frame_len],
        );
        for y in 0..rows {
            for x in 0..cols {
                let i = (y * cols + x) * spp;
                let in_region = x >= r.x0 && x <= r.x1 && y >= r.y0 && y <= r.y1;
                if in_region {
                    assert_eq!(
                        b[i..i + 3],
                        a[i..i + 3],
                        "frame {fr} ({x},{y}) changed inside the region"
                    );
                }
            }
        }
        // The static labels in the top-left corner, above the region and away from the moving
        // sector, are black; they were not before.
        let corner = |img: &[u8]| {
            (0..r.y0)
                .flat_map(|y| (0..70).map(move |x| (y * cols + x) * spp))
                .filter(|&i| img[i..i + 3].iter().any(|&v| v > 40))
                .count()
        };
        assert!(
            corner(b) > 50,
            "frame {fr}: expected text in the corner of the input"
        );
        assert_eq!(corner(a), 0, "frame {fr}: text left in the corner");
    }
}
