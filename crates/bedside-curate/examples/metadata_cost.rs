//! CPU time per file of metadata extraction, with and without the pixel data's SHA-256, beside
//! the SHA-256 alone over the same bytes (the floor the hash sets) and reading the files.
//!
//! Generates the small synthetic echo cohort `bedside bench curate` seeds its corpus with (or
//! reads the DICOM files under the folder given), keeps the files in memory and times each step
//! in this thread's CPU time, which other load on the machine does not inflate.
//!
//! Run: `cargo run --release -p bedside-curate --example metadata_cost [dicom-folder]`.

use bedside_curate::bench::{thread_cpu_seconds, walk};
use bedside_curate::metadata::{extract_bytes, extract_header_bytes};
use bedside_phantom::PhantomConfig;
use sha2::{Digest, Sha256};

fn cpu() -> f64 {
    thread_cpu_seconds().unwrap_or(0.0)
}

/// Runs `f` over every file `rounds` times; returns CPU seconds per file.
fn per_file(files: &[Vec<u8>], rounds: usize, mut f: impl FnMut(&[u8])) -> f64 {
    let t = cpu();
    for _ in 0..rounds {
        for b in files {
            f(b);
        }
    }
    (cpu() - t) / (rounds * files.len()) as f64
}

fn main() {
    let given = std::env::args().nth(1).map(std::path::PathBuf::from);
    let tmp = std::env::temp_dir().join(format!("metadata-cost-{}", std::process::id()));
    let dir = match &given {
        Some(d) => d.clone(),
        None => {
            let config = PhantomConfig {
                seed: 11,
                patients: 12,
                rows: 120,
                columns: 160,
                frames: [8, 16],
                in_sector_text_fraction: 0.5,
                write_masks: false,
                ..PhantomConfig::default()
            };
            bedside_phantom::generate(&config, &tmp, true, &|| {}).expect("phantom");
            tmp.join("dicom")
        }
    };
    let paths = walk(&dir);
    let files: Vec<Vec<u8>> = paths
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| extract_header_bytes(b).is_ok())
        .collect();
    let bytes: usize = files.iter().map(Vec::len).sum();
    let mean_kb = bytes as f64 / files.len().max(1) as f64 / 1e3;
    let rounds = (200_000_000 / bytes.max(1)).clamp(1, 200);
    let read_rounds = (rounds * files.len() / paths.len().max(1)).max(1);
    let read = {
        let t = cpu();
        for _ in 0..read_rounds {
            for p in &paths {
                std::hint::black_box(std::fs::read(p).ok());
            }
        }
        (cpu() - t) / (read_rounds * paths.len().max(1)) as f64
    };
    let reuse = {
        use std::io::Read as _;
        let mut buf = Vec::new();
        let t = cpu();
        for _ in 0..read_rounds {
            for p in &paths {
                buf.clear();
                if let Ok(mut f) = std::fs::File::open(p) {
                    std::hint::black_box(f.read_to_end(&mut buf).ok());
                }
            }
        }
        (cpu() - t) / (read_rounds * paths.len().max(1)) as f64
    };
    let with = per_file(&files, rounds, |b| {
        std::hint::black_box(extract_bytes(b).ok());
    });
    let without = per_file(&files, rounds, |b| {
        std::hint::black_box(extract_header_bytes(b).ok());
    });
    let hash = per_file(&files, rounds, |b| {
        std::hint::black_box(Sha256::digest(b));
    });
    let rate = |s: f64| 1.0 / s.max(1e-12);
    println!(
        "{} files, mean {mean_kb:.0} kB; CPU time per file (one thread):",
        files.len()
    );
    println!(
        "  read the file (std::fs::read):     {:>8.1} us",
        read * 1e6
    );
    println!(
        "  read the file into one buffer:     {:>8.1} us",
        reuse * 1e6
    );
    println!(
        "  metadata with the pixel SHA-256:   {:>8.1} us  {:>8.0} files/s",
        with * 1e6,
        rate(with)
    );
    println!(
        "  metadata without the hash:         {:>8.1} us  {:>8.0} files/s",
        without * 1e6,
        rate(without)
    );
    println!(
        "  SHA-256 of the whole file alone:   {:>8.1} us  {:>8.0} files/s, {:.0} MB/s",
        hash * 1e6,
        rate(hash),
        mean_kb / 1e3 / hash.max(1e-12)
    );
    println!(
        "  with reading: {:.0} files/s with the hash, {:.0} without",
        rate(with + read),
        rate(without + read)
    );
    if given.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
