//! OCR cost per ultrasound cine in CPU time, and whether every planted text box is removed.
//!
//! Generates synthetic echo cohorts (the `bedside bench curate` one at 480×640, and smaller ones),
//! cleans every cine without and with OCR (PHI-only policy, as `bedside curate` does) and prints
//! the mean CPU time of the OCR per cine (this thread's CPU time, which is where Tesseract runs
//! with `OMP_THREAD_LIMIT=1`; wall time is unreliable on a loaded machine). Then checks that
//! every planted text box, inside or outside the scan sector, holds almost no bright pixel in any
//! frame of the output.
//!
//! Run: `OMP_THREAD_LIMIT=1 cargo run --release -p bedside-curate --example ocr_cost [--more] [work-dir]`.

use std::path::Path;

use bedside_curate::pixels::{CleanOptions, clean_ultrasound};
use bedside_phantom::PhantomConfig;
use dicom_pixeldata::PixelDecoder;

/// CPU time of the calling thread, in seconds (Linux; 0 elsewhere).
fn thread_cpu() -> f64 {
    bedside_curate::bench::thread_cpu_seconds().unwrap_or(0.0)
}

struct Totals {
    cines: usize,
    without: f64,
    with: f64,
    boxes: usize,
    missed: Vec<String>,
}

fn cohort(dir: &Path, config: &PhantomConfig, totals: &mut Totals) {
    bedside_phantom::generate(config, dir, true, &|| {}).expect("phantom");
    let phi: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("phi.json")).expect("phi.json"))
            .expect("phi.json parses");
    for f in phi["files"].as_array().into_iter().flatten() {
        let file = dir.join(f["file"].as_str().unwrap_or_default());
        let obj = dicom_object::open_file(&file).expect("phantom file");
        let mut plain = obj.clone();
        let t = thread_cpu();
        clean_ultrasound(&mut plain, &CleanOptions::default()).expect("clean");
        let without = thread_cpu() - t;
        let mut read = obj.clone();
        let options = CleanOptions {
            ocr: Some((
                bedside_curate::ocr::DenyList::from_header(&obj),
                bedside_curate::ocr::TextPolicy::PhiOnly,
            )),
            ..CleanOptions::default()
        };
        let t = thread_cpu();
        let outcome = clean_ultrasound(&mut read, &options).expect("clean with OCR");
        let with = thread_cpu() - t;
        if std::env::var_os("OCR_COST_VERBOSE").is_some() {
            println!(
                "  {}: {:.1} ms without OCR, {:.1} ms with; {} words, {} lines masked",
                f["study_key"],
                without * 1e3,
                with * 1e3,
                outcome.ocr_words,
                outcome.ocr_lines
            );
        }
        totals.cines += 1;
        totals.without += without;
        totals.with += with;
        let decoded = read.decode_pixel_data().expect("decode");
        let (rows, cols) = (decoded.rows() as usize, decoded.columns() as usize);
        let spp = decoded.samples_per_pixel() as usize;
        let data = decoded.data();
        let frame_len = rows * cols * spp;
        for p in f["pixels"].as_array().into_iter().flatten() {
            let b = &p["box"];
            let get = |k: &str| b[k].as_u64().unwrap_or(0) as usize;
            let (x, y, w, h) = (get("x"), get("y"), get("width"), get("height"));
            let (mut bright, mut all) = (0usize, 0usize);
            for frame in data.chunks_exact(frame_len) {
                for yy in y..(y + h).min(rows) {
                    for xx in x..(x + w).min(cols) {
                        let i = (yy * cols + xx) * spp;
                        let v = frame[i..i + spp].iter().copied().max().unwrap_or(0);
                        bright += usize::from(v >= 200);
                        all += 1;
                    }
                }
            }
            totals.boxes += 1;
            if bright as f64 >= 0.02 * all as f64 {
                totals.missed.push(format!("{} {p}", f["study_key"]));
            }
        }
    }
}

fn main() {
    let work = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ocr-cost-{}", std::process::id())));
    let configs = [
        (
            "bench 480x640",
            PhantomConfig {
                seed: 11,
                patients: 6,
                rows: 480,
                columns: 640,
                frames: [32, 64],
                in_sector_text_fraction: 0.5,
                write_masks: false,
                ..PhantomConfig::default()
            },
        ),
        (
            "3 patients 480x640",
            PhantomConfig {
                seed: 9,
                patients: 3,
                in_sector_text_fraction: 1.0,
                write_masks: false,
                ..PhantomConfig::default()
            },
        ),
        (
            "10 patients 240x320",
            PhantomConfig {
                seed: 5,
                patients: 10,
                rows: 240,
                columns: 320,
                in_sector_text_fraction: 0.5,
                write_masks: false,
                ..PhantomConfig::default()
            },
        ),
        (
            "6 patients 240x320",
            PhantomConfig {
                seed: 21,
                patients: 6,
                rows: 240,
                columns: 320,
                frames: [32, 40],
                write_masks: false,
                ..PhantomConfig::default()
            },
        ),
    ];
    let mut configs: Vec<(String, PhantomConfig)> = configs
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
    // More cohorts (other seeds, text inside the sector in every study) with `--more`.
    if std::env::args().any(|a| a == "--more") {
        for seed in 1..=4 {
            configs.push((
                format!("seed {seed} 240x320"),
                PhantomConfig {
                    seed,
                    patients: 10,
                    rows: 240,
                    columns: 320,
                    in_sector_text_fraction: 1.0,
                    write_masks: false,
                    ..PhantomConfig::default()
                },
            ));
            configs.push((
                format!("seed {seed} 480x640"),
                PhantomConfig {
                    seed,
                    patients: 3,
                    in_sector_text_fraction: 1.0,
                    write_masks: false,
                    ..PhantomConfig::default()
                },
            ));
        }
    }
    let only = std::env::var("OCR_COST_ONLY").unwrap_or_default();
    for (name, config) in configs {
        if !name.contains(&only) {
            continue;
        }
        let mut totals = Totals {
            cines: 0,
            without: 0.0,
            with: 0.0,
            boxes: 0,
            missed: Vec::new(),
        };
        cohort(&work.join(name.replace(' ', "-")), &config, &mut totals);
        let n = totals.cines.max(1) as f64;
        println!(
            "{name}: {} cines; CPU ms per cine: cleaning {:.1} without OCR, {:.1} with, OCR {:.1}; {} planted boxes, {} not removed",
            totals.cines,
            totals.without * 1e3 / n,
            totals.with * 1e3 / n,
            (totals.with - totals.without) * 1e3 / n,
            totals.boxes,
            totals.missed.len()
        );
        for m in &totals.missed {
            println!("  not removed: {m}");
        }
        bedside_curate::ocr::release_engines();
    }
    let _ = std::fs::remove_dir_all(&work);
}
