//! Throughput of curation beside its peers on the same corpus, in the same run.
//!
//! [`build_corpus`] turns seed files (a folder of DICOM, a phantom cohort) into a corpus of a
//! few thousand distinct instances: every seed that Bedside de-identifies (and, when present,
//! gdcmanon accepts in reasonable time) is copied with new Study, Series and SOP Instance UIDs
//! until the corpus has the files asked for, spread over one sub-folder per core so that peers
//! without threads can be run as one process per core. The measurements:
//!
//! - header de-identification ([`deid_files`]): file to file, plain buffered writes, on one
//!   thread and on all cores;
//! - metadata extraction ([`metadata_files`]): read and [`crate::metadata::extract_bytes`]
//!   (one checked walk of the data set, which hashes the pixel data), per core;
//! - OCR ([`ocr_cost`]): pixel cleaning of ultrasound cines with and without reading text;
//! - peers ([`run_peer`]): gdcmanon (GDCM), `cp -r` (the I/O ceiling) and the pydicom-based
//!   `dicom-anonymizer`, each as one process and as one process per core.
//!
//! Dirty pages are flushed (`sync`) before each timing so that no tool pays for another's writes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use bedside_deid::{Deidentifier, ObjectContext};

/// One timed run.
#[derive(Debug, Clone)]
pub struct Measure {
    /// What ran.
    pub label: String,
    /// Threads or processes.
    pub threads: usize,
    /// Files done.
    pub files: usize,
    /// Bytes of the input files done.
    pub bytes: u64,
    /// Seconds: wall-clock, or the thread's CPU time where a measurement says so.
    pub seconds: f64,
}

impl Measure {
    /// Files per second.
    pub fn files_per_second(&self) -> f64 {
        self.files as f64 / self.seconds.max(1e-9)
    }
    /// Megabytes (10⁶ bytes) of input per second.
    pub fn mb_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// A corpus on disk.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    /// Its folder.
    pub dir: PathBuf,
    /// One sub-folder per core.
    pub parts: Vec<PathBuf>,
    /// Every file, with its size.
    pub files: Vec<(PathBuf, u64)>,
    /// Distinct seed files used.
    pub seeds: usize,
    /// Seed files left out, with the reason (file names only).
    pub left_out: Vec<String>,
}

impl Corpus {
    /// Total bytes.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.1).sum()
    }
}

/// Every regular file under `dir`, sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn new_uid(original: &str, copy: usize, what: &str) -> String {
    let h = Sha256::digest(format!("{what}|{copy}|{original}").as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&h[..16]);
    format!("2.25.{}", u128::from_be_bytes(first) >> 1)
}

/// A copy of `bytes` with new Study, Series and SOP Instance UIDs (derived from the old ones and
/// `copy`), or `None` when the file cannot be parsed and written back.
pub fn with_new_uids(bytes: &[u8], copy: usize) -> Option<Vec<u8>> {
    let mut obj = bedside_dicom::read::read_bytes(bytes).ok()?;
    let mut sop = String::new();
    for (tag, what) in [
        (tags::STUDY_INSTANCE_UID, "study"),
        (tags::SERIES_INSTANCE_UID, "series"),
        (tags::SOP_INSTANCE_UID, "sop"),
    ] {
        let old = obj
            .element(tag)
            .ok()
            .and_then(|e| {
                e.to_str()
                    .ok()
                    .map(|s| s.trim_end_matches('\0').to_string())
            })
            .unwrap_or_default();
        let uid = new_uid(&old, copy, what);
        if tag == tags::SOP_INSTANCE_UID {
            sop = uid.clone();
        }
        obj.put(DataElement::new(tag, VR::UI, PrimitiveValue::from(uid)));
    }
    let meta = obj.meta_mut();
    meta.media_storage_sop_instance_uid = sop;
    meta.update_information_group_length();
    let mut out = Vec::with_capacity(bytes.len() + 256);
    obj.write_all(&mut out).ok()?;
    Some(out)
}

/// A throw-away X.509 certificate for gdcmanon (it encrypts the original attributes into the
/// output), or `None` when gdcmanon or openssl is missing.
pub fn gdcmanon_certificate(work: &Path) -> Option<PathBuf> {
    let installed = Command::new("gdcmanon")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        return None;
    }
    let (key, cert) = (work.join("bench-key.pem"), work.join("bench-cert.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=bedside-bench", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    made.then_some(cert)
}

/// Seconds gdcmanon takes on `file` alone, if it writes an output for it.
fn gdcmanon_probe(work: &Path, cert: &Path, file: &Path) -> Option<f64> {
    let out = work.join("probe-out.dcm");
    let _ = std::fs::remove_file(&out);
    let start = Instant::now();
    let ok = Command::new("gdcmanon")
        .args(["-e", "--continue", "-c"])
        .arg(cert)
        .arg("-i")
        .arg(file)
        .arg("-o")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let secs = start.elapsed().as_secs_f64();
    (ok && out.is_file()).then_some(secs)
}

/// Builds a corpus of about `target` files from the files under `seed_dirs`, in `work/corpus`
/// with `parts` sub-folders. Seeds Bedside rejects are left out; with `gdcm_cert`, so are seeds
/// gdcmanon rejects or takes over 5× the median time on (it stops whole runs on some files and
/// takes seconds and gigabytes on others), each named in [`Corpus::left_out`].
pub fn build_corpus(
    seed_dirs: &[PathBuf],
    target: usize,
    parts: usize,
    work: &Path,
    deid: &Deidentifier,
    gdcm_cert: Option<&Path>,
) -> std::io::Result<Corpus> {
    let parts = parts.max(1);
    let mut corpus = Corpus {
        dir: work.join("corpus"),
        ..Corpus::default()
    };
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for dir in seed_dirs {
        for p in walk(dir) {
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            if bedside_dicom::read::detect(&bytes).is_err() {
                continue;
            }
            if deid
                .deidentify_bytes(&bytes, ObjectContext::default())
                .is_err()
            {
                corpus
                    .left_out
                    .push(format!("{}: not de-identified by bedside", name(&p)));
                continue;
            }
            seeds.push((p, bytes));
        }
    }
    if let Some(cert) = gdcm_cert {
        let probes = work.join("probe");
        std::fs::create_dir_all(&probes)?;
        let timed: Vec<(PathBuf, Vec<u8>, Option<f64>)> = seeds
            .into_iter()
            .map(|(p, b)| {
                let t = gdcmanon_probe(&probes, cert, &p);
                (p, b, t)
            })
            .collect();
        let mut times: Vec<f64> = timed.iter().filter_map(|t| t.2).collect();
        times.sort_by(f64::total_cmp);
        let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
        seeds = Vec::new();
        for (p, b, t) in timed {
            match t {
                None => corpus
                    .left_out
                    .push(format!("{}: rejected by gdcmanon", name(&p))),
                Some(t) if t > (5.0 * median).max(0.25) => corpus.left_out.push(format!(
                    "{}: gdcmanon takes {:.0} ms (median {:.1} ms)",
                    name(&p),
                    t * 1e3,
                    median * 1e3
                )),
                Some(_) => seeds.push((p, b)),
            }
        }
        let _ = std::fs::remove_dir_all(&probes);
    }
    for k in 0..parts {
        let d = corpus.dir.join(format!("part-{k}"));
        std::fs::create_dir_all(&d)?;
        corpus.parts.push(d);
    }
    if seeds.is_empty() {
        return Ok(corpus);
    }
    let mut copy = 0;
    let mut rejected = vec![false; seeds.len()];
    'fill: while corpus.files.len() < target {
        let mut wrote_any = false;
        for (i, (p, bytes)) in seeds.iter().enumerate() {
            if corpus.files.len() >= target {
                break 'fill;
            }
            if rejected[i] {
                continue;
            }
            let Some(out) = with_new_uids(bytes, copy) else {
                rejected[i] = true;
                corpus
                    .left_out
                    .push(format!("{}: cannot be rewritten with new UIDs", name(p)));
                continue;
            };
            let n = corpus.files.len();
            let path = corpus.parts[n % parts].join(format!("c{copy:04}-s{i:05}.dcm"));
            std::fs::write(&path, &out)?;
            corpus.files.push((path, out.len() as u64));
            wrote_any = true;
        }
        if !wrote_any {
            break;
        }
        copy += 1;
    }
    corpus.seeds = rejected.iter().filter(|r| !**r).count();
    Ok(corpus)
}

/// Flushes dirty pages so that the next timing does not pay for earlier writes.
pub fn sync() {
    let _ = Command::new("sync").status();
}

fn pool(threads: usize) -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .ok()
}

/// De-identifies every corpus file into `out` (plain buffered writes) on `threads` threads.
pub fn deid_files(corpus: &Corpus, deid: &Deidentifier, out: &Path, threads: usize) -> Measure {
    let _ = std::fs::create_dir_all(out);
    let work = || {
        corpus
            .files
            .par_iter()
            .enumerate()
            .filter_map(|(i, (p, size))| {
                let bytes = std::fs::read(p).ok()?;
                let file = std::fs::File::create(out.join(format!("{i:06}.dcm"))).ok()?;
                let mut w = std::io::BufWriter::new(file);
                deid.deidentify_to(&bytes, ObjectContext::default(), &mut w)
                    .ok()
                    .map(|_| *size)
            })
            .collect::<Vec<u64>>()
    };
    sync();
    let start = Instant::now();
    let done = match pool(threads) {
        Some(p) => p.install(work),
        None => work(),
    };
    Measure {
        label: "bedside header de-identification".into(),
        threads,
        files: done.len(),
        bytes: done.iter().sum(),
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Reads every corpus file and extracts its metadata record on one thread; with
/// `hash`, the full record (including the pixel data's SHA-256), else the header fields only.
/// The seconds are the thread's CPU time (reading included) where the system tells it, so that
/// other load does not count against a per-core rate; wall-clock time elsewhere.
pub fn metadata_files(corpus: &Corpus, hash: bool) -> Measure {
    let origin = Instant::now();
    let now = || thread_cpu_seconds().unwrap_or_else(|| origin.elapsed().as_secs_f64());
    let start = now();
    let mut files = 0;
    let mut bytes = 0;
    for (p, size) in &corpus.files {
        let Ok(b) = std::fs::read(p) else { continue };
        let record = if hash {
            crate::metadata::extract_bytes(&b)
        } else {
            crate::metadata::extract_header_bytes(&b)
        };
        if std::hint::black_box(record).is_err() {
            continue;
        }
        files += 1;
        bytes += size;
    }
    Measure {
        label: "bedside metadata extraction".into(),
        threads: 1,
        files,
        bytes,
        seconds: now() - start,
    }
}

/// CPU time of the calling thread in seconds, where the system tells it (Linux; updated at
/// scheduler ticks, so only spans of many milliseconds are measured well).
pub fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}

/// OCR cost on ultrasound cines: (cines, mean ms of pixel cleaning without OCR, with OCR), or
/// `None` when OCR is not compiled in or no cine was cleaned. Times are the calling thread's CPU
/// time where the system tells it (Tesseract reads on that thread with `OMP_THREAD_LIMIT=1`),
/// so that other work on a loaded machine does not count; wall-clock time elsewhere.
pub fn ocr_cost(cines: &[PathBuf]) -> Option<(usize, f64, f64)> {
    if !cfg!(feature = "ocr") {
        return None;
    }
    let (mut n, mut without, mut with) = (0usize, 0.0, 0.0);
    let origin = Instant::now();
    let now = || thread_cpu_seconds().unwrap_or_else(|| origin.elapsed().as_secs_f64());
    for p in cines {
        let Ok(bytes) = std::fs::read(p) else {
            continue;
        };
        let Ok(obj) = bedside_dicom::read::read_bytes(&bytes) else {
            continue;
        };
        let mut plain = obj.clone();
        let start = now();
        if crate::pixels::clean_ultrasound(&mut plain, &crate::pixels::CleanOptions::default())
            .is_err()
        {
            continue;
        }
        let t0 = now() - start;
        let mut read = obj.clone();
        let options = crate::pixels::CleanOptions {
            ocr: Some((
                crate::ocr::DenyList::from_header(&obj),
                crate::ocr::TextPolicy::PhiOnly,
            )),
            ..crate::pixels::CleanOptions::default()
        };
        let start = now();
        if crate::pixels::clean_ultrasound(&mut read, &options).is_err() {
            continue;
        }
        let t1 = now() - start;
        n += 1;
        without += t0;
        with += t1;
    }
    crate::ocr::release_engines();
    (n > 0).then(|| (n, without * 1e3 / n as f64, with * 1e3 / n as f64))
}

/// A peer tool, run once per folder it is given.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Name shown in the table.
    pub label: String,
    /// Program, found on `PATH` (or a path).
    pub program: PathBuf,
    /// Arguments before the input and output (e.g. `-e -c cert.pem --continue -r -i`).
    pub args: Vec<String>,
    /// The argument between input and output (e.g. `-o`), if any.
    pub out_flag: Option<String>,
}

/// Whether `program` runs (`--version` or `--help` exits successfully).
pub fn installed(program: &Path) -> bool {
    ["--version", "--help"].iter().any(|a| {
        Command::new(program)
            .arg(a)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn run_one(peer: &Peer, input: &Path, output: &Path) -> std::io::Result<std::process::Child> {
    std::fs::create_dir_all(output)?;
    let mut c = Command::new(&peer.program);
    c.args(&peer.args).arg(input);
    if let Some(f) = &peer.out_flag {
        c.arg(f);
    }
    c.arg(output).stdout(Stdio::null()).stderr(Stdio::null());
    c.spawn()
}

/// Runs `peer` over the corpus: with `parallel`, one process per part at once; otherwise one
/// process per part in turn. Files done are counted in `out` afterwards (their input bytes
/// estimated from the corpus's mean size).
pub fn run_peer(peer: &Peer, corpus: &Corpus, out: &Path, parallel: bool) -> Option<Measure> {
    sync();
    let start = Instant::now();
    let mut ok = true;
    if parallel {
        let children: Vec<_> = corpus
            .parts
            .iter()
            .enumerate()
            .map(|(k, part)| run_one(peer, part, &out.join(format!("part-{k}"))))
            .collect();
        for c in children {
            ok &= c.ok().and_then(|mut c| c.wait().ok()).is_some();
        }
    } else {
        for (k, part) in corpus.parts.iter().enumerate() {
            ok &= run_one(peer, part, &out.join(format!("part-{k}")))
                .ok()
                .and_then(|mut c| c.wait().ok())
                .is_some();
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if !ok {
        return None;
    }
    let files = walk(out)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .count();
    let mean = corpus.bytes() as f64 / corpus.files.len().max(1) as f64;
    Some(Measure {
        label: peer.label.clone(),
        threads: if parallel { corpus.parts.len() } else { 1 },
        files,
        bytes: (mean * files as f64) as u64,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_uids_are_valid_and_distinct_per_copy() {
        let a = new_uid("1.2.3", 0, "sop");
        let b = new_uid("1.2.3", 1, "sop");
        assert_ne!(a, b);
        for u in [&a, &b] {
            assert!(u.starts_with("2.25.") && u.len() <= 64);
            assert!(u[5..].bytes().all(|c| c.is_ascii_digit()));
        }
    }
}
