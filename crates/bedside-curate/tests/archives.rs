//! Archive inputs end to end: the DICOM members of a zip and of a tar.gz are curated like files
//! on disk, a member above `--max-archive-member` is skipped and reported in `quarantine.csv`
//! with its reason while the rest of its archive is curated, and `--max-archive-staging` caps
//! what the tar members of one run stage together (zip members are read in place and do not
//! count). Each curated member is found in the audit by the SHA-256 of its own bytes, computed
//! here from the files put into the archives, and its output exists with the recorded hash.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use bedside_curate::ingest::{ArchiveLimits, Shard};
use bedside_curate::pipeline::{self, CurateOptions, CurateSummary, PixelPolicy, Silent};
use bedside_deid::{Deidentifier, Profile, SiteSecret};
use bedside_phantom::{PhantomConfig, generate};
use sha2::{Digest, Sha256};

/// A zip member (deflated) or tar member: its name and bytes.
type Member = (String, Vec<u8>);

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The DICOM files of a small synthetic echo cohort, sorted by name.
fn phantom_files(dir: &Path, seed: u64) -> Vec<Member> {
    let config = PhantomConfig {
        patients: 3,
        rows: 96,
        columns: 128,
        frames: [4, 6],
        seed,
        write_masks: false,
        ..PhantomConfig::default()
    };
    generate(&config, dir, false, &|| {}).unwrap();
    let mut files: Vec<Member> = bedside_curate::bench::walk(&dir.join("dicom"))
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 3, "phantom wrote {} files", files.len());
    files
}

fn write_zip(path: &Path, members: &[Member]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in members {
        z.start_file(format!("study/{name}"), deflated).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

fn write_tar(path: &Path, members: &[Member], gzip: bool) {
    let file = std::fs::File::create(path).unwrap();
    let sink: Box<dyn std::io::Write> = if gzip {
        Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(file)
    };
    let mut t = tar::Builder::new(sink);
    for (name, bytes) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, format!("study/{name}"), &bytes[..])
            .unwrap();
    }
    // Finishing the builder writes the end blocks; dropping the encoder finishes the stream.
    t.into_inner().unwrap().flush().unwrap();
}

fn curate(inputs: &[PathBuf], out: &Path, limits: ArchiveLimits) -> CurateSummary {
    let options = CurateOptions {
        deidentifier: Deidentifier::new(Profile::default(), SiteSecret::from_bytes([5; 32]))
            .unwrap(),
        pixels: PixelPolicy::CleanUltrasound,
        arrays: false,
        resize: None,
        ocr: None,
        shard: Shard::ALL,
        archive_limits: limits,
    };
    pipeline::run(inputs, out, &options, &Silent).unwrap()
}

/// The audit entries by input SHA-256.
fn audit(out: &Path) -> BTreeMap<String, serde_json::Value> {
    std::fs::read_to_string(out.join("audit.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["input_sha256"].as_str().unwrap().to_string(), v))
        .collect()
}

/// The reasons in `quarantine.csv`.
fn quarantine_reasons(out: &Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(out.join("quarantine.csv")).unwrap();
    r.records()
        .map(|rec| rec.unwrap().get(1).unwrap().to_string())
        .collect()
}

/// Every member was curated: its audit entry says so and its output has the recorded hash.
fn assert_curated(out: &Path, members: &[Member]) {
    let audit = audit(out);
    for (name, bytes) in members {
        let entry = audit
            .get(&sha(bytes))
            .unwrap_or_else(|| panic!("{name}: no audit entry"));
        assert_eq!(entry["status"], "curated", "{name}: {entry}");
        let output = out.join(entry["output"].as_str().unwrap());
        let written = std::fs::read(&output).unwrap();
        assert_eq!(sha(&written), entry["output_sha256"].as_str().unwrap());
        bedside_dicom::read::read_bytes(&written).unwrap();
    }
}

#[test]
fn zip_and_tar_gz_members_are_curated_and_an_oversized_member_is_skipped_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let files = phantom_files(&tmp.path().join("phantom"), 13);
    let largest = files.iter().map(|f| f.1.len()).max().unwrap() as u64;
    let limit = largest + 1024;
    // Zeros deflate to almost nothing: a small archive that would inflate past the limit.
    let bomb: Member = ("bomb.dcm".into(), vec![0u8; (2 * limit) as usize]);
    let half = files.len() / 2;
    let (in_zip, in_tar) = files.split_at(half);
    let inputs = tmp.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let mut zipped = in_zip.to_vec();
    zipped.insert(0, bomb.clone());
    write_zip(&inputs.join("part-a.zip"), &zipped);
    let mut tarred = in_tar.to_vec();
    tarred.insert(1, bomb.clone());
    write_tar(&inputs.join("part-b.tar.gz"), &tarred, true);

    let out = tmp.path().join("out");
    let summary = curate(
        std::slice::from_ref(&inputs),
        &out,
        ArchiveLimits {
            max_member_bytes: limit,
            ..ArchiveLimits::default()
        },
    );
    assert_eq!(summary.curated, files.len(), "{summary:?}");
    assert_eq!(
        summary.quarantined.get("unreadable input"),
        Some(&2),
        "{summary:?}"
    );
    assert_curated(&out, &files);
    let reasons = quarantine_reasons(&out);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    for r in &reasons {
        assert!(r.contains(&format!("declares {} bytes", 2 * limit)), "{r}");
        assert!(
            r.contains(&format!("larger than the limit of {limit} bytes")),
            "{r}"
        );
    }
    // The staged tar members are gone once the run is over.
    assert!(!out.join(".staging").exists());

    // With the default limits the same archives give every member to the reader: the bomb is
    // then quarantined as what it is (not DICOM), twice, and nothing else changes.
    let out2 = tmp.path().join("out-default");
    let summary = curate(
        std::slice::from_ref(&inputs),
        &out2,
        ArchiveLimits::default(),
    );
    assert_eq!(summary.curated, files.len(), "{summary:?}");
    assert_eq!(summary.quarantined.get("unreadable input"), None);
    assert_eq!(quarantine_reasons(&out2).len(), 2);
}

#[test]
fn the_staging_limit_covers_all_tar_members_of_a_run_and_not_zip_members() {
    let tmp = tempfile::tempdir().unwrap();
    let files = phantom_files(&tmp.path().join("phantom"), 17);
    let size = |m: &[Member]| m.iter().map(|f| f.1.len() as u64).sum::<u64>();
    let (first, second) = files.split_at(2);
    let inputs = tmp.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let (a, b, z) = (
        inputs.join("a.tar"),
        inputs.join("b.tar.gz"),
        inputs.join("c.zip"),
    );
    write_tar(&a, first, false);
    write_tar(&b, second, true);
    // The same files in a zip: read in place, never staged, so the staging cap does not apply.
    write_zip(&z, &files);
    // Room for the first archive's members and not one more byte of the second's.
    let staging = size(first);
    assert!(second.iter().all(|f| !f.1.is_empty()));
    let out = tmp.path().join("out");
    let summary = curate(
        &[a.clone(), b.clone()],
        &out,
        ArchiveLimits {
            max_staged_bytes: staging,
            ..ArchiveLimits::default()
        },
    );
    assert_eq!(summary.curated, first.len(), "{summary:?}");
    assert_eq!(
        summary.quarantined.get("unreadable input"),
        Some(&second.len()),
        "{summary:?}"
    );
    assert_curated(&out, first);
    let reasons = quarantine_reasons(&out);
    assert_eq!(reasons.len(), second.len());
    for r in &reasons {
        assert!(
            r.contains(&format!(
                "would pass the limit of {staging} bytes for all tar members"
            )),
            "{r}"
        );
    }

    // One byte less: members are taken in archive order while they fit, each refused one
    // staying out, and what is staged in all never passes the cap.
    let tight = staging - 1;
    let mut admitted = Vec::new();
    let mut total = 0;
    for m in files.iter() {
        if total + m.1.len() as u64 <= tight {
            total += m.1.len() as u64;
            admitted.push(m.clone());
        }
    }
    assert!(admitted.len() < files.len() && !admitted.is_empty());
    let out = tmp.path().join("out-tight");
    let summary = curate(
        &[a, b],
        &out,
        ArchiveLimits {
            max_staged_bytes: tight,
            ..ArchiveLimits::default()
        },
    );
    assert_eq!(summary.curated, admitted.len(), "{summary:?}");
    assert_eq!(
        summary.quarantined.get("unreadable input"),
        Some(&(files.len() - admitted.len())),
        "{summary:?}"
    );
    assert_curated(&out, &admitted);
    assert!(!admitted.iter().any(|m| m.0 == first[1].0));

    // The zip's members are all curated under a staging cap smaller than any of them.
    let out = tmp.path().join("out-zip");
    let summary = curate(
        &[z],
        &out,
        ArchiveLimits {
            max_staged_bytes: 1,
            ..ArchiveLimits::default()
        },
    );
    assert_eq!(summary.curated, files.len(), "{summary:?}");
    assert_curated(&out, &files);
}
