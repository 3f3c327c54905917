//! The curation run: inputs in, de-identified DICOM, metadata table, arrays and an audit log out.
//!
//! Output folder layout:
//!
//! | path | content |
//! |---|---|
//! | `dicom/<patient>/<study>/<series>/<instance>.dcm` | de-identified DICOM (pseudonymous names) |
//! | `metadata.csv`, `metadata.parquet` | one row per curated instance ([`crate::metadata::InstanceRecord`] + paths; typed in Parquet, see [`crate::parquet_table`]) |
//! | `arrays/<series>.npy`, `.json` | frames in acquisition order with a sidecar ([`crate::arrays`]) |
//! | `arrays/<series>.<S>x<S>.npy`, `.json` | optional copies resized for training ([`crate::resize`]) |
//! | `audit.jsonl` | per input: its SHA-256, output, actions, pixel cleaning, warnings — no PHI |
//! | `quarantine.csv` | inputs that were skipped, with the reason |
//! | `report.json` | the run's summary |
//!
//! With a shard `I/N` (N > 1) the tables are written as `metadata.shard-I-of-N.csv` etc. and
//! [`merge`] joins them. Inputs are never modified; every output is written atomically; a re-run
//! skips inputs whose output exists and still has the recorded hash.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use bedside_deid::{Deidentifier, ObjectContext, ObjectReport};

use crate::ingest::{self, Shard, Source};
use crate::metadata::{self, InstanceRecord};
use crate::pixels::{self, CleanOptions, CleanOutcome, PixelError};

/// Why a run could not proceed (individual bad inputs never stop a run).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CurateError {
    /// The output folder could not be prepared or written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A table could not be written.
    #[error("cannot write {path}: {message}")]
    Table {
        /// The path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The output folder is inside an input folder or the other way round.
    #[error("the output folder must not overlap an input: {0}")]
    Overlap(PathBuf),
}

/// How pixel data is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelPolicy {
    /// Ultrasound: blank outside the scan area (regions ∪ detected sector); other modalities
    /// unchanged. An ultrasound object whose scan area cannot be found is quarantined.
    CleanUltrasound,
    /// Leave pixel data unchanged (the output does not claim Clean Pixel Data).
    Keep,
}

/// Settings of a run.
pub struct CurateOptions {
    /// The header de-identifier (profile + site secret).
    pub deidentifier: Deidentifier,
    /// Pixel policy.
    pub pixels: PixelPolicy,
    /// Write arrays per series.
    pub arrays: bool,
    /// Also write a copy of every array resized to S×S for training ([`crate::resize`]).
    pub resize: Option<u32>,
    /// Read static text inside the scan area and blank what the policy selects (None: off).
    pub ocr: Option<crate::ocr::TextPolicy>,
    /// This process's shard.
    pub shard: Shard,
    /// Caps on what archive inputs may unpack to.
    pub archive_limits: ingest::ArchiveLimits,
}

/// What happened to one input.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// SHA-256 of the input bytes.
    pub input_sha256: String,
    /// `curated`, `resumed` or `quarantined`.
    pub status: &'static str,
    /// Output file, relative to the output folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// SHA-256 of the output file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_sha256: Option<String>,
    /// Reason for quarantine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Header actions (tags and actions, never values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ObjectReport>,
    /// Pixel cleaning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixels: Option<PixelAudit>,
}

/// Pixel cleaning as audited.
#[derive(Debug, Clone, Serialize)]
pub struct PixelAudit {
    /// Pixel data rewritten (else untouched, original transfer syntax).
    pub changed: bool,
    /// Frames.
    pub frames: u32,
    /// Declared regions used.
    pub regions: usize,
    /// Sector detected from the cine.
    pub sector_detected: bool,
    /// Share of the image kept.
    pub kept_fraction: f64,
    /// Largest number of pixels blanked in a frame.
    pub blanked_per_frame: usize,
    /// Words read by OCR inside the scan area.
    pub ocr_words: usize,
    /// Text lines blanked after OCR.
    pub ocr_lines: usize,
    /// Frames read by OCR.
    pub ocr_runs: usize,
    /// Boxes masked after OCR, `[x0, y0, x1, y1]` inclusive (positions only, never text).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub boxes: Vec<[usize; 4]>,
}

impl From<&CleanOutcome> for PixelAudit {
    fn from(o: &CleanOutcome) -> Self {
        PixelAudit {
            changed: o.changed,
            frames: o.frames,
            regions: o.regions,
            sector_detected: o.sector_detected,
            kept_fraction: o.kept_fraction,
            blanked_per_frame: o.blanked_per_frame,
            ocr_words: o.ocr_words,
            ocr_lines: o.ocr_lines,
            ocr_runs: o.ocr_runs,
            boxes: o.boxes.iter().map(|b| [b.x0, b.y0, b.x1, b.y1]).collect(),
        }
    }
}

/// The run's summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CurateSummary {
    /// Candidate inputs found (all shards).
    pub inputs: usize,
    /// Inputs this shard handled.
    pub handled: usize,
    /// Curated now.
    pub curated: usize,
    /// Skipped because a previous run finished them (output verified).
    pub resumed: usize,
    /// Quarantined, with reasons (counted by reason).
    pub quarantined: BTreeMap<String, usize>,
    /// Ultrasound objects whose pixels were cleaned.
    pub pixels_cleaned: usize,
    /// Arrays written.
    pub arrays: usize,
    /// Series whose array could not be written, with the reason.
    pub array_failures: Vec<String>,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written (DICOM).
    pub bytes_out: u64,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A path component from a (pseudonymous) identifier: only `[A-Za-z0-9._-]`.
fn component(text: &str) -> String {
    let s: String = text
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s == "." || s == ".." {
        "unknown".into()
    } else {
        s
    }
}

fn suffix(shard: Shard) -> String {
    if shard.count > 1 {
        format!(".shard-{}-of-{}", shard.index, shard.count)
    } else {
        String::new()
    }
}

/// A record of the metadata table: the instance plus where it came from and went.
#[derive(Debug, Clone, Serialize)]
pub struct TableRow {
    /// Output file, relative to the output folder.
    pub output: String,
    /// SHA-256 of the input bytes.
    pub input_sha256: String,
    /// The instance's record.
    #[serde(flatten)]
    pub record: InstanceRecord,
}

enum Outcome {
    Curated(Box<(AuditEntry, TableRow)>, u64, bool),
    /// The earlier run's audit entry, kept whole, and the table row rebuilt from the output.
    Resumed(Box<(serde_json::Value, Option<TableRow>)>),
    Quarantined(Box<AuditEntry>, String),
}

fn quarantine(input_sha256: String, reason: String) -> Outcome {
    Outcome::Quarantined(
        Box::new(AuditEntry {
            input_sha256,
            status: "quarantined",
            output: None,
            output_sha256: None,
            reason: Some(reason.clone()),
            header: None,
            pixels: None,
        }),
        reason,
    )
}

fn process(
    source: &Source,
    out: &Path,
    options: &CurateOptions,
    done: &HashMap<String, serde_json::Value>,
    claims: &std::sync::Mutex<HashMap<String, String>>,
) -> (Outcome, u64) {
    let bytes = match source.read() {
        Ok(b) => b,
        Err(e) => return (quarantine(String::new(), format!("unreadable: {e}")), 0),
    };
    let n = bytes.len() as u64;
    let input_sha = sha256_hex(&bytes);
    if let Some(previous) = done.get(&input_sha)
        && let (Some(rel), Some(out_sha)) = (
            previous["output"].as_str(),
            previous["output_sha256"].as_str(),
        )
        && let Ok(existing) = std::fs::read(out.join(rel))
        && sha256_hex(&existing) == out_sha
    {
        let row = metadata::extract_bytes(&existing)
            .ok()
            .map(|record| TableRow {
                output: rel.to_string(),
                input_sha256: input_sha.clone(),
                record,
            });
        let mut entry = previous.clone();
        entry["status"] = serde_json::Value::from("resumed");
        return (Outcome::Resumed(Box::new((entry, row))), n);
    }
    let mut obj = match bedside_dicom::read::read_bytes(&bytes) {
        Ok(o) => o,
        Err(e) => return (quarantine(input_sha, e.to_string()), n),
    };
    drop(bytes);
    let modality = obj
        .element(tags::MODALITY)
        .ok()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .unwrap_or_default();
    let mut pixel_audit = None;
    let mut cleaned = false;
    if options.pixels == PixelPolicy::CleanUltrasound
        && modality == "US"
        && obj.element(tags::PIXEL_DATA).is_ok()
    {
        let clean = CleanOptions {
            ocr: options
                .ocr
                .map(|policy| (crate::ocr::DenyList::from_header(&obj), policy)),
            ..CleanOptions::default()
        };
        match pixels::clean_ultrasound(&mut obj, &clean) {
            Ok(outcome) => {
                pixel_audit = Some(PixelAudit::from(&outcome));
                cleaned = true;
            }
            Err(e @ PixelError::ScanAreaUnknown) => {
                return (
                    quarantine(input_sha, format!("burned-in text cannot be removed: {e}")),
                    n,
                );
            }
            Err(e) => return (quarantine(input_sha, format!("pixel data: {e}")), n),
        }
    } else if options.pixels == PixelPolicy::CleanUltrasound
        && modality != "US"
        && obj.element(tags::PIXEL_DATA).is_ok()
    {
        // Text anywhere in the image (no scan area outside ultrasound): see crate::text_cleaning.
        let declared = obj
            .element(tags::BURNED_IN_ANNOTATION)
            .ok()
            .and_then(|e| {
                e.to_str()
                    .ok()
                    .map(|s| s.trim().eq_ignore_ascii_case("YES"))
            })
            .unwrap_or(false);
        let policy = crate::text_cleaning::policy_for(
            &options.deidentifier.profile().burned_in_text,
            &modality,
            declared,
            options.ocr,
        );
        match policy {
            Some(policy) => {
                let text_options = crate::text_cleaning::TextOptions::new(
                    crate::ocr::DenyList::from_header(&obj),
                    policy,
                );
                match crate::text_cleaning::clean_text(&mut obj, &text_options) {
                    Ok(outcome) => {
                        pixel_audit = Some(PixelAudit::from(&outcome));
                        cleaned = true;
                    }
                    Err(e) => {
                        return (
                            quarantine(input_sha, format!("burned-in text cannot be checked: {e}")),
                            n,
                        );
                    }
                }
            }
            None if declared => {
                return (
                    quarantine(
                        input_sha,
                        "burned-in text cannot be removed: BurnedInAnnotation is YES and OCR is off"
                            .into(),
                    ),
                    n,
                );
            }
            None => {}
        }
    }
    let report = options.deidentifier.deidentify_object(
        &mut obj,
        ObjectContext {
            pixel_data_cleaned: cleaned,
        },
    );
    if cleaned {
        // The attribute describes the image as sent, from which identifying text has been
        // removed (PS3.15 Annex E, Clean Pixel Data Option); left as it was, a YES would still
        // send it to the next reader's quarantine.
        obj.put(dicom_core::DataElement::new(
            tags::BURNED_IN_ANNOTATION,
            dicom_core::VR::CS,
            dicom_core::PrimitiveValue::from("NO"),
        ));
    }
    let text = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| {
                e.to_str()
                    .ok()
                    .map(|s| s.trim_end_matches('\0').to_string())
            })
            .unwrap_or_default()
    };
    let (patient, study, series, instance) = (
        text(tags::PATIENT_ID),
        text(tags::STUDY_INSTANCE_UID),
        text(tags::SERIES_INSTANCE_UID),
        text(tags::SOP_INSTANCE_UID),
    );
    let class = text(tags::SOP_CLASS_UID);
    {
        let meta = obj.meta_mut();
        meta.media_storage_sop_instance_uid = instance.clone();
        if !class.is_empty() {
            meta.media_storage_sop_class_uid = class;
        }
        meta.update_information_group_length();
    }
    let rel = format!(
        "dicom/{}/{}/{}/{}.dcm",
        component(&patient),
        component(&study),
        component(&series),
        component(&instance)
    );
    // Two inputs with one SOP Instance UID (an instance exported twice, an edited copy) map to
    // one output; the first claims it and the others are quarantined rather than overwriting it
    // or vanishing from the tables.
    if let Ok(mut claimed) = claims.lock() {
        match claimed.get(&rel) {
            Some(owner) if *owner != input_sha => {
                return (
                    quarantine(
                        input_sha,
                        "duplicate SOP Instance UID: another input is curated to the same output"
                            .into(),
                    ),
                    n,
                );
            }
            _ => {
                claimed.insert(rel.clone(), input_sha.clone());
            }
        }
    }
    let mut encoded = Vec::new();
    if let Err(e) = obj.write_all(&mut encoded) {
        return (
            quarantine(
                input_sha,
                format!("cannot encode the de-identified object: {e}"),
            ),
            n,
        );
    }
    if let Err(e) = bedside_core::fsio::write_atomic(&out.join(&rel), &encoded) {
        return (
            quarantine(input_sha, format!("cannot write output: {e}")),
            n,
        );
    }
    let out_sha = sha256_hex(&encoded);
    // From the bytes written (one walk, no copy of the pixel data), as a resumed run reads them.
    let record = metadata::extract_bytes(&encoded).unwrap_or_else(|_| metadata::extract(&obj));
    let row = TableRow {
        output: rel.clone(),
        input_sha256: input_sha.clone(),
        record,
    };
    let entry = AuditEntry {
        input_sha256: input_sha,
        status: "curated",
        output: Some(rel),
        output_sha256: Some(out_sha),
        reason: None,
        header: Some(report),
        pixels: pixel_audit,
    };
    (
        Outcome::Curated(Box::new((entry, row)), encoded.len() as u64, cleaned),
        n,
    )
}

/// Reads the audit logs of earlier runs in `out`: input hash → its entry (curated ones only).
fn previous_runs(out: &Path) -> HashMap<String, serde_json::Value> {
    let mut done = HashMap::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return done;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !(name.starts_with("audit") && name.ends_with(".jsonl")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let (Some(i), Some(_), Some(_)) = (
                v["input_sha256"].as_str(),
                v["output"].as_str(),
                v["output_sha256"].as_str(),
            ) {
                done.insert(i.to_string(), v.clone());
            }
        }
    }
    done
}

/// Progress of a run, for a progress bar.
pub trait Progress: Sync {
    /// Discovery is done: `total` inputs will be handled by this process.
    fn start(&self, total: usize);
    /// One input is done.
    fn item(&self);
}

/// No progress display.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _total: usize) {}
    fn item(&self) {}
}

/// Runs curation of `inputs` into `out`.
pub fn run(
    inputs: &[PathBuf],
    out: &Path,
    options: &CurateOptions,
    progress: &dyn Progress,
) -> Result<CurateSummary, CurateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CurateError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let out_abs = out.canonicalize().map_err(io(out))?;
    for i in inputs {
        if let Ok(a) = i.canonicalize()
            && (out_abs.starts_with(&a) || a.starts_with(&out_abs))
        {
            return Err(CurateError::Overlap(i.clone()));
        }
    }
    let staging = out.join(format!(".staging{}", suffix(options.shard)));
    let discovery = ingest::discover_with(inputs, &staging, &options.archive_limits);
    let done = previous_runs(out);
    let claims = std::sync::Mutex::new(
        done.values()
            .filter_map(|v| {
                Some((
                    v["output"].as_str()?.to_string(),
                    v["input_sha256"].as_str()?.to_string(),
                ))
            })
            .collect::<HashMap<String, String>>(),
    );
    let mine: Vec<&Source> = discovery
        .sources
        .iter()
        .filter(|s| options.shard.owns(&s.label()))
        .collect();
    progress.start(mine.len());
    let results: Vec<(Outcome, u64)> = mine
        .par_iter()
        .map(|s| {
            let r = process(s, out, options, &done, &claims);
            progress.item();
            r
        })
        .collect();
    crate::ocr::release_engines();
    if staging.exists() {
        let _ = std::fs::remove_dir_all(&staging);
    }

    let mut summary = CurateSummary {
        inputs: discovery.sources.len(),
        handled: mine.len(),
        ..Default::default()
    };
    let mut audit: Vec<serde_json::Value> = Vec::new();
    let mut rows = Vec::new();
    let mut quarantine_rows: Vec<(String, String)> = Vec::new();
    for u in &discovery.unreadable {
        if options.shard.owns(&u.label) {
            *summary
                .quarantined
                .entry("unreadable input".into())
                .or_default() += 1;
            quarantine_rows.push((String::new(), format!("unreadable input: {}", u.reason)));
        }
    }
    for (outcome, n) in results {
        summary.bytes_in += n;
        match outcome {
            Outcome::Curated(curated, bytes, cleaned) => {
                let (entry, row) = *curated;
                summary.curated += 1;
                summary.bytes_out += bytes;
                summary.pixels_cleaned += cleaned as usize;
                audit.push(to_value(&entry));
                rows.push(row);
            }
            Outcome::Resumed(resumed) => {
                let (entry, row) = *resumed;
                summary.resumed += 1;
                audit.push(entry);
                rows.extend(row);
            }
            Outcome::Quarantined(entry, reason) => {
                let key = reason.split(':').next().unwrap_or("error").to_string();
                *summary.quarantined.entry(key).or_default() += 1;
                quarantine_rows.push((entry.input_sha256.clone(), reason));
                audit.push(to_value(&entry));
            }
        }
    }
    rows.sort_by(|a, b| a.output.cmp(&b.output));
    rows.dedup_by(|a, b| a.output == b.output);
    let sfx = suffix(options.shard);
    write_table(&out.join(format!("metadata{sfx}.csv")), &rows)?;
    let mut lines = Vec::new();
    for e in &audit {
        let line = serde_json::to_string(e).map_err(|e| CurateError::Table {
            path: out.join("audit.jsonl"),
            message: e.to_string(),
        })?;
        lines.push(line);
    }
    let audit_path = out.join(format!("audit{sfx}.jsonl"));
    bedside_core::fsio::write_atomic(&audit_path, (lines.join("\n") + "\n").as_bytes())
        .map_err(io(&audit_path))?;
    let qpath = out.join(format!("quarantine{sfx}.csv"));
    let mut q = csv::Writer::from_writer(Vec::new());
    let qerr = |e: csv::Error| CurateError::Table {
        path: qpath.clone(),
        message: e.to_string(),
    };
    q.write_record(["input_sha256", "reason"]).map_err(qerr)?;
    for (sha, reason) in &quarantine_rows {
        q.write_record([sha, reason]).map_err(qerr)?;
    }
    let qbytes = q.into_inner().map_err(|e| CurateError::Table {
        path: qpath.clone(),
        message: e.to_string(),
    })?;
    bedside_core::fsio::write_atomic(&qpath, &qbytes).map_err(io(&qpath))?;

    if options.arrays {
        write_arrays(out, &rows, options.resize, &mut summary);
    }
    let rpath = out.join(format!("report{sfx}.json"));
    let text = serde_json::to_vec_pretty(&summary).map_err(|e| CurateError::Table {
        path: rpath.clone(),
        message: e.to_string(),
    })?;
    bedside_core::fsio::write_atomic(&rpath, &text).map_err(io(&rpath))?;
    Ok(summary)
}

fn to_value(entry: &AuditEntry) -> serde_json::Value {
    serde_json::to_value(entry).unwrap_or(serde_json::Value::Null)
}

fn write_arrays(out: &Path, rows: &[TableRow], resize: Option<u32>, summary: &mut CurateSummary) {
    let mut series: BTreeMap<&str, Vec<&TableRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.record.rows.is_some()) {
        series
            .entry(r.record.series_instance_uid.as_str())
            .or_default()
            .push(r);
    }
    let dir = out.join("arrays");
    let results: Vec<Result<(), String>> = series
        .par_iter()
        .map(|(uid, members)| {
            let mut ms: Vec<crate::arrays::Member> = members
                .iter()
                .filter_map(|r| {
                    let path = out.join(&r.output);
                    let bytes = std::fs::read(&path).ok()?;
                    let obj = bedside_dicom::read::read_bytes(&bytes).ok()?;
                    Some(crate::arrays::Member::from_object(path, &obj))
                })
                .collect();
            crate::arrays::acquisition_order(&mut ms);
            let array_options = crate::arrays::ArrayOptions { resize };
            crate::arrays::write_series_with(&ms, &dir, &component(uid), &array_options)
                .map(|_| ())
                .map_err(|e| format!("series {}: {e}", component(uid)))
        })
        .collect();
    for r in results {
        match r {
            Ok(()) => summary.arrays += 1,
            Err(e) => summary.array_failures.push(e),
        }
    }
}

/// Column names of the metadata table, in order.
pub const TABLE_COLUMNS: [&str; 39] = [
    "output",
    "input_sha256",
    "patient_id",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "study_date",
    "modality",
    "sop_class_uid",
    "manufacturer",
    "model",
    "series_description",
    "instance_number",
    "rows",
    "columns",
    "frames",
    "frame_time_ms",
    "frame_rate",
    "pixel_spacing_row_mm",
    "pixel_spacing_column_mm",
    "us_physical_delta_x",
    "us_physical_delta_y",
    "us_physical_units",
    "slice_thickness_mm",
    "photometric",
    "samples_per_pixel",
    "bits_allocated",
    "bits_stored",
    "transfer_syntax",
    "scanning_sequence",
    "sequence_variant",
    "echo_time_ms",
    "repetition_time_ms",
    "inversion_time_ms",
    "mr_kind",
    "pixel_sha256",
    "array",
    "array_frames",
    "curated_at_version",
];

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn write_table(path: &Path, rows: &[TableRow]) -> Result<(), CurateError> {
    let err = |e: csv::Error| CurateError::Table {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(TABLE_COLUMNS).map_err(err)?;
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        let r = &row.record;
        let kind = r.mr_kind.map(|k| {
            serde_json::to_value(k)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        });
        let record = [
            row.output.clone(),
            row.input_sha256.clone(),
            r.patient_id.clone(),
            r.study_instance_uid.clone(),
            r.series_instance_uid.clone(),
            r.sop_instance_uid.clone(),
            r.study_date.clone(),
            r.modality.clone(),
            r.sop_class_uid.clone(),
            r.manufacturer.clone(),
            r.model.clone(),
            r.series_description.clone(),
            opt(r.instance_number),
            opt(r.rows),
            opt(r.columns),
            opt(r.frames),
            opt(r.frame_time_ms),
            opt(r.frame_rate),
            opt(r.pixel_spacing_mm.map(|p| p.0)),
            opt(r.pixel_spacing_mm.map(|p| p.1)),
            opt(r.us_physical_delta.map(|p| p.0)),
            opt(r.us_physical_delta.map(|p| p.1)),
            opt(r.us_physical_units),
            opt(r.slice_thickness_mm),
            r.photometric.clone(),
            opt(r.samples_per_pixel),
            opt(r.bits_allocated),
            opt(r.bits_stored),
            r.transfer_syntax.clone(),
            r.scanning_sequence.clone(),
            r.sequence_variant.clone(),
            opt(r.echo_time_ms),
            opt(r.repetition_time_ms),
            opt(r.inversion_time_ms),
            kind.unwrap_or_default(),
            r.pixel_sha256.clone(),
            if r.rows.is_some() {
                format!("arrays/{}.npy", component(&r.series_instance_uid))
            } else {
                String::new()
            },
            opt(r.frames),
            env!("CARGO_PKG_VERSION").to_string(),
        ];
        w.write_record(&record).map_err(err)?;
        records.push(record.to_vec());
    }
    let bytes = w.into_inner().map_err(|e| CurateError::Table {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    bedside_core::fsio::write_atomic(path, &bytes).map_err(|source| CurateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // The same records, typed, as Parquet beside the CSV.
    let parquet_path = path.with_extension("parquet");
    crate::parquet_table::write_records(&parquet_path, &records).map_err(|e| CurateError::Table {
        path: parquet_path.clone(),
        message: e.to_string(),
    })
}

/// Joins the shard tables of `out` (`metadata.shard-*.csv` and `.parquet`, `audit.shard-*.jsonl`,
/// `quarantine.shard-*.csv`) into `metadata.csv`, `metadata.parquet`, `audit.jsonl` and
/// `quarantine.csv`.
/// Returns the number of metadata rows.
pub fn merge(out: &Path) -> Result<usize, CurateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CurateError::Io { path, source }
    };
    let mut names: Vec<String> = std::fs::read_dir(out)
        .map_err(io(out))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".shard-"))
        .collect();
    names.sort();
    let mut rows = 0;
    for (stem, ext) in [
        ("metadata", "csv"),
        ("quarantine", "csv"),
        ("audit", "jsonl"),
    ] {
        let parts: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with(&format!("{stem}.shard-")) && n.ends_with(ext))
            .collect();
        if parts.is_empty() {
            continue;
        }
        let mut merged = String::new();
        for (k, p) in parts.iter().enumerate() {
            let text = std::fs::read_to_string(out.join(p)).map_err(io(&out.join(p)))?;
            let mut lines = text.lines();
            if ext == "csv" {
                let header = lines.next().unwrap_or_default();
                if k == 0 {
                    merged.push_str(header);
                    merged.push('\n');
                }
            }
            for l in lines.filter(|l| !l.is_empty()) {
                merged.push_str(l);
                merged.push('\n');
                rows += (stem == "metadata") as usize;
            }
        }
        let target = out.join(format!("{stem}.{ext}"));
        bedside_core::fsio::write_atomic(&target, merged.as_bytes()).map_err(io(&target))?;
    }
    let parquet_parts: Vec<PathBuf> = names
        .iter()
        .filter(|n| n.starts_with("metadata.shard-") && n.ends_with(".parquet"))
        .map(|n| out.join(n))
        .collect();
    if !parquet_parts.is_empty() {
        let target = out.join("metadata.parquet");
        let parts: Vec<&Path> = parquet_parts.iter().map(PathBuf::as_path).collect();
        crate::parquet_table::merge(&parts, &target).map_err(|e| CurateError::Table {
            path: target.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(rows)
}
