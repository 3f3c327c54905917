//! Header de-identification throughput, single-threaded, beside `gdcmanon` (GDCM's
//! de-identifier, Debian package `libgdcm-tools`) on the same files.
//!
//! ```text
//! cargo run --release -p bedside-deid --example bench -- DIR [--copies K] [--no-gdcm]
//! ```
//!
//! Every DICOM file under DIR (recursively; `.zst` files are skipped) that both tools accept
//! (gdcmanon is tried on each file once; it stops a whole run on some files it rejects) is
//! copied K times (default 10) into a temporary corpus folder. Both tools then read that folder
//! and write de-identified files into an output folder, on one thread each. Printed: files/s and
//! MB/s, and the ratio to gdcmanon. Bedside is timed three ways: in memory (no file I/O), file to
//! file with plain writes (like gdcmanon), and through `deidentify_file`, whose atomic writes
//! also fsync every file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bedside_deid::{Deidentifier, ObjectContext, Profile, SiteSecret};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_none_or(|e| e != "zst") {
            out.push(p);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: bench DIR [--copies K] [--no-gdcm]");
        std::process::exit(2);
    };
    let copies: usize = args
        .iter()
        .position(|a| a == "--copies")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let with_gdcm = !args.iter().any(|a| a == "--no-gdcm");

    let deid = Deidentifier::new(Profile::default(), SiteSecret::from_bytes([9; 32])).unwrap();
    let mut sources = Vec::new();
    walk(Path::new(dir), &mut sources);
    // Keep the files Bedside reads (the others would be timed as instant rejections).
    let sources: Vec<(PathBuf, Vec<u8>)> = sources
        .into_iter()
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            deid.deidentify_bytes(&bytes, ObjectContext::default())
                .ok()
                .map(|_| (p, bytes))
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let cert = if with_gdcm {
        make_cert(work.path())
    } else {
        None
    };
    let sources: Vec<(PathBuf, Vec<u8>)> = match &cert {
        Some(cert) => {
            let before = sources.len();
            let timed: Vec<_> = sources
                .into_iter()
                .filter_map(|(p, b)| {
                    let t = gdcmanon_accepts(work.path(), cert, &p)?;
                    Some((p, b, t))
                })
                .collect();
            // gdcmanon is pathologically slow on a few files (seconds, gigabytes); leave those
            // out so that the comparison measures ordinary files, and say which.
            let mut times: Vec<f64> = timed.iter().map(|(_, _, t)| *t).collect();
            times.sort_by(f64::total_cmp);
            let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
            let mut kept = Vec::new();
            for (p, b, t) in timed {
                if t > (5.0 * median).max(0.25) {
                    println!(
                        "left out: gdcmanon takes {:.0} ms on {} (median {:.1} ms)",
                        t * 1e3,
                        p.display(),
                        median * 1e3
                    );
                } else {
                    kept.push((p, b));
                }
            }
            println!("{} of {before} files accepted by both tools", kept.len());
            kept
        }
        None => sources,
    };
    let corpus = work.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    let mut total_bytes = 0u64;
    let mut n = 0usize;
    for k in 0..copies {
        for (i, (_, bytes)) in sources.iter().enumerate() {
            std::fs::write(corpus.join(format!("{k:03}-{i:04}.dcm")), bytes).unwrap();
            total_bytes += bytes.len() as u64;
            n += 1;
        }
    }
    let mb = total_bytes as f64 / 1e6;
    println!(
        "corpus: {} distinct files x {copies} copies = {n} files, {mb:.1} MB",
        sources.len()
    );

    // In memory.
    let start = Instant::now();
    for _ in 0..copies {
        for (_, bytes) in &sources {
            let done = deid
                .deidentify_bytes(bytes, ObjectContext::default())
                .unwrap();
            std::hint::black_box(done.bytes.len());
        }
    }
    let mem_s = start.elapsed().as_secs_f64();

    // File to file, plain writes, alternating with gdcmanon (best of two each), after flushing
    // dirty pages so that neither run pays for the other's writes.
    let mut files = Vec::new();
    walk(&corpus, &mut files);
    let mut plain_s = f64::INFINITY;
    let mut plain_written = 0;
    let mut gdcm: Option<(usize, f64)> = None;
    let mut copy_s = f64::INFINITY;
    for round in 0..2 {
        sync();
        let copy_out = work.path().join(format!("copy-{round}"));
        std::fs::create_dir_all(&copy_out).unwrap();
        let start = Instant::now();
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            std::fs::write(copy_out.join(f.file_name().unwrap()), &bytes).unwrap();
        }
        copy_s = copy_s.min(start.elapsed().as_secs_f64());
        sync();
        let plain_out = work.path().join(format!("bedside-plain-{round}"));
        std::fs::create_dir_all(&plain_out).unwrap();
        let start = Instant::now();
        plain_written = 0;
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(plain_out.join(f.file_name().unwrap())).unwrap(),
            );
            if deid
                .deidentify_to(&bytes, ObjectContext::default(), &mut file)
                .is_ok()
            {
                plain_written += 1;
            }
        }
        plain_s = plain_s.min(start.elapsed().as_secs_f64());
        if let Some(c) = &cert {
            sync();
            if let Some((gn, gs)) = run_gdcmanon(work.path(), c, &corpus, round) {
                gdcm = Some(match gdcm {
                    Some((_, best)) if best < gs => (gn, best),
                    _ => (gn, gs),
                });
            }
        }
    }
    sync();

    // File to file, atomic.
    let out = work.path().join("bedside-out");
    std::fs::create_dir_all(&out).unwrap();
    let start = Instant::now();
    let mut written = 0;
    for f in &files {
        let target = out.join(f.file_name().unwrap());
        if deid
            .deidentify_file(f, &target, ObjectContext::default())
            .is_ok()
        {
            written += 1;
        }
    }
    let ours_s = start.elapsed().as_secs_f64();

    println!();
    println!(
        "{:<34} {:>7} {:>9} {:>9} {:>8}",
        "tool (one thread)", "files", "files/s", "MB/s", "ratio"
    );
    println!(
        "{:<34} {:>7} {:>9.0} {:>9.1} {:>8}",
        "bedside-deid, in memory",
        n,
        n as f64 / mem_s,
        mb / mem_s,
        "-"
    );
    let ratio = |rate: f64| {
        gdcm.map_or("-".to_string(), |(gn, gs)| {
            format!("{:.2}x", rate / (gn as f64 / gs))
        })
    };
    let plain_rate = plain_written as f64 / plain_s;
    println!(
        "{:<34} {:>7} {:>9.0} {:>9.1} {:>8}",
        "bedside-deid, file to file",
        plain_written,
        plain_rate,
        mb / plain_s,
        ratio(plain_rate)
    );
    let ours_rate = written as f64 / ours_s;
    println!(
        "{:<34} {:>7} {:>9.0} {:>9.1} {:>8}",
        "bedside-deid, atomic + fsync",
        written,
        ours_rate,
        mb / ours_s,
        ratio(ours_rate)
    );
    println!(
        "{:<34} {:>7} {:>9.0} {:>9.1} {:>8}",
        "read + write only (I/O ceiling)",
        files.len(),
        files.len() as f64 / copy_s,
        mb / copy_s,
        ratio(files.len() as f64 / copy_s)
    );
    if let Some((gn, gs)) = gdcm {
        println!(
            "{:<34} {:>7} {:>9.0} {:>9.1} {:>8}",
            "gdcmanon -e (file to file)",
            gn,
            gn as f64 / gs,
            mb / gs,
            "1.00x"
        );
    } else if with_gdcm {
        println!("gdcmanon: not available (install libgdcm-tools and openssl)");
    }
}

/// A throw-away certificate for gdcmanon's encryption of the original attributes.
fn make_cert(work: &Path) -> Option<PathBuf> {
    let key = work.join("key.pem");
    let cert = work.join("cert.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=bench",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .ok()?;
    let gdcm = Command::new("gdcmanon").arg("--version").output().ok()?;
    (made.status.success() && gdcm.status.success()).then_some(cert)
}

/// Whether gdcmanon de-identifies `file` on its own, and how long the process took.
fn gdcmanon_accepts(work: &Path, cert: &Path, file: &Path) -> Option<f64> {
    let out = work.join("probe.dcm");
    let _ = std::fs::remove_file(&out);
    let start = Instant::now();
    let ok = Command::new("gdcmanon")
        .args(["-e", "--continue"])
        .arg("-c")
        .arg(cert)
        .arg("-i")
        .arg(file)
        .arg("-o")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let secs = start.elapsed().as_secs_f64();
    (ok && out.is_file()).then_some(secs)
}

fn sync() {
    let _ = Command::new("sync").status();
}

/// Runs gdcmanon over the corpus folder; returns (files written, seconds).
fn run_gdcmanon(work: &Path, cert: &Path, corpus: &Path, round: usize) -> Option<(usize, f64)> {
    let out = work.join(format!("gdcm-out-{round}"));
    std::fs::create_dir_all(&out).ok()?;
    let start = Instant::now();
    Command::new("gdcmanon")
        .args(["-e", "--continue", "-r"])
        .arg("-c")
        .arg(cert)
        .arg("-i")
        .arg(corpus)
        .arg("-o")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    let secs = start.elapsed().as_secs_f64();
    let mut written = Vec::new();
    walk(&out, &mut written);
    Some((written.len(), secs))
}
