//! What the structure scan costs: bounded reading (`read_bytes`: scan, then dicom-rs) beside
//! dicom-rs parsing the same bytes alone, and the scan alone, single-threaded, in memory.
//!
//! ```text
//! cargo run --release -p bedside-dicom --example read_bench -- DIR [DIR...] [--rounds N]
//! ```
//!
//! Every Part 10 file under the folders (recursively) that dicom-rs reads is loaded once; each
//! way is then timed over all of them `N` times (default 20). Printed: files/s and MB/s of each
//! and the ratio of bounded reading to dicom-rs alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use bedside_dicom::read::{Layout, detect, read_bytes, scan_meta};
use bedside_dicom::scan::{Encoding, scan_dataset};
use dicom_object::OpenFileOptions;

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn time(label: &str, files: &[Vec<u8>], rounds: usize, f: impl Fn(&[u8])) -> f64 {
    let bytes: usize = files.iter().map(Vec::len).sum();
    let t = Instant::now();
    for _ in 0..rounds {
        for b in files {
            f(b);
        }
    }
    let s = t.elapsed().as_secs_f64();
    let n = (files.len() * rounds) as f64;
    println!(
        "{label:<28} {:>10.0} files/s {:>9.1} MB/s",
        n / s,
        (bytes * rounds) as f64 / s / 1e6
    );
    s
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut paths = Vec::new();
    let mut skip = false;
    for a in &args {
        if skip {
            skip = false;
        } else if a == "--rounds" {
            skip = true;
        } else {
            walk(Path::new(a), &mut paths);
        }
    }
    if paths.is_empty() {
        eprintln!("usage: read_bench DIR [DIR...] [--rounds N]");
        std::process::exit(2);
    }
    let files: Vec<Vec<u8>> = paths
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| detect(b).is_ok_and(|l| l == Layout::Part10))
        .filter(|b| OpenFileOptions::new().from_reader(&b[128..]).is_ok())
        .collect();
    let mb = files.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    println!("{} files, {mb:.1} MB, {rounds} rounds", files.len());

    let parser = time("dicom-rs alone", &files, rounds, |b| {
        let _ = OpenFileOptions::new().from_reader(&b[128..]);
    });
    let ours = time("read_bytes (scan + dicom-rs)", &files, rounds, |b| {
        let _ = read_bytes(b);
    });
    time("scan alone", &files, rounds, |b| {
        if let Ok((end, Some(ts))) = scan_meta(b, 132)
            && let Some(enc) = Encoding::of_transfer_syntax(&ts)
        {
            let _ = scan_dataset(&b[end..], enc);
        }
    });
    println!(
        "read_bytes takes {:.3}x the time of dicom-rs alone",
        ours / parser
    );
}
