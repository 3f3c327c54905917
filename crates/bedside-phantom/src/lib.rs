//! Synthetic echocardiography cohort generator.
//!
//! [`generate`] writes a cohort of apical-four-chamber-like cines as real DICOM (US Multi-frame
//! Image Storage; MONOCHROME2 or RGB; native or JPEG baseline) with known ground truth, fully
//! determined by the configuration's seed:
//!
//! - `dicom/site-K/PNNNN/PNNNN-SJ.dcm`: one file per study, with PHI planted in the header (names,
//!   IDs, dates, UIDs with embedded timestamps, free text, nested sequences, a private block) and
//!   burned into the pixels (a header band, and on some studies an item in the scan sector);
//! - `patients.csv`: covariates, outcomes (EF, reduced EF, time to event with censoring) and split;
//! - `studies.csv`: one row per file, ready to use as a training manifest;
//! - `phi.json`: every planted PHI value with the file and tag path or pixel box;
//! - `truth/studies/*.json` and `truth/masks/*.npz`: per-frame left-ventricle ellipses, phases,
//!   end-diastolic/systolic frames, the scan sector and per-frame LV masks (NumPy-readable);
//! - `cohort.json`: the resolved configuration and the generating model.
//!
//! ```no_run
//! use bedside_phantom::{PhantomConfig, generate};
//! let config = PhantomConfig { patients: 10, ..PhantomConfig::default() };
//! let summary = generate(&config, std::path::Path::new("cohort"), false, &|| {})?;
//! println!("{} studies", summary.studies);
//! # Ok::<(), bedside_phantom::PhantomError>(())
//! ```

pub mod cohort;
pub mod config;
pub mod date;
pub mod names;
pub mod render;
pub mod sites;
pub mod study;
pub mod text;
mod truth;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

pub use config::{BiasSpec, PhantomConfig, SurvivalModel};

/// Why a cohort could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PhantomError {
    /// The output folder already holds files and overwriting was not asked for.
    #[error("output folder {path} is not empty (use --force to replace a previous cohort there)")]
    OutputExists {
        /// The folder.
        path: PathBuf,
    },
    /// A file or folder could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A study could not be encoded.
    #[error("study {study}: {source}")]
    Study {
        /// Non-identifying study key.
        study: String,
        /// What failed.
        source: study::StudyError,
    },
    /// A ground-truth table could not be written.
    #[error("cannot write ground truth {path}: {message}")]
    Truth {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// What a generation run made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The output folder.
    pub out: PathBuf,
    /// Patients.
    pub patients: usize,
    /// Studies (= DICOM files).
    pub studies: usize,
    /// Bytes of DICOM written.
    pub dicom_bytes: u64,
    /// Patients with reduced EF (< 40%).
    pub reduced_ef: usize,
    /// Patients with an observed event.
    pub events: usize,
    /// Patients whose observed label was flipped by injected label noise.
    pub flipped_labels: usize,
    /// Studies stored RGB.
    pub rgb: usize,
    /// Studies stored JPEG baseline.
    pub jpeg: usize,
    /// Studies with a text item inside or touching the scan sector.
    pub in_sector_text: usize,
    /// Planted header PHI values.
    pub header_phi: usize,
    /// Planted burned-in PHI boxes.
    pub pixel_phi: usize,
    /// Patients per split `[train, val, test]`.
    pub split: [usize; 3],
}

/// Files and folders a cohort consists of (what `force` replaces).
pub const OUTPUTS: [&str; 7] = [
    "dicom",
    "truth",
    "patients.csv",
    "studies.csv",
    "phi.json",
    "cohort.json",
    "README.txt",
];

/// Generates the cohort described by `config` into `out`.
///
/// `on_study` is called once per finished study (from worker threads), for progress display.
/// With `force`, a previous cohort's files in `out` are replaced; otherwise `out` must be absent
/// or empty.
pub fn generate(
    config: &PhantomConfig,
    out: &Path,
    force: bool,
    on_study: &(dyn Fn() + Sync),
) -> Result<Summary, PhantomError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PhantomError::Io { path, source }
    };
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(io(out))?;
        if entries.next().is_some() {
            if !force {
                return Err(PhantomError::OutputExists {
                    path: out.to_path_buf(),
                });
            }
            for name in OUTPUTS {
                let p = out.join(name);
                if p.is_dir() {
                    std::fs::remove_dir_all(&p).map_err(io(&p))?;
                } else if p.exists() {
                    std::fs::remove_file(&p).map_err(io(&p))?;
                }
            }
        }
    }
    std::fs::create_dir_all(out).map_err(io(out))?;

    let cohort = cohort::plan(config);
    tracing::info!(
        patients = cohort.patients.len(),
        studies = cohort.study_count(),
        sites = config.sites,
        seed = config.seed,
        "cohort planned"
    );
    let sites: Vec<sites::Site> = (0..config.sites).map(sites::site).collect();
    let jobs: Vec<(usize, usize)> = cohort
        .patients
        .iter()
        .flat_map(|p| (0..p.studies.len()).map(move |j| (p.index, j)))
        .collect();
    let bytes = AtomicU64::new(0);
    let outputs: Result<Vec<truth::StudyTruth>, PhantomError> = jobs
        .par_iter()
        .map(|&(pi, sj)| {
            let p = &cohort.patients[pi];
            let s = &p.studies[sj];
            let t = truth::make_study(config, out, p, s, &sites[p.site])?;
            bytes.fetch_add(t.file_bytes, Ordering::Relaxed);
            tracing::debug!(study = %s.key, frames = s.frames, bytes = t.file_bytes, "study written");
            on_study();
            Ok(t)
        })
        .collect();
    let outputs = outputs?;
    truth::write_tables(config, out, &cohort, &sites, &outputs)?;
    tracing::info!(out = %out.display(), "ground-truth tables written");

    let count = |f: &dyn Fn(&truth::StudyTruth) -> bool| outputs.iter().filter(|t| f(t)).count();
    let split = [
        cohort::Split::Train,
        cohort::Split::Val,
        cohort::Split::Test,
    ]
    .map(|s| cohort.patients.iter().filter(|p| p.split == s).count());
    Ok(Summary {
        out: out.to_path_buf(),
        patients: cohort.patients.len(),
        studies: outputs.len(),
        dicom_bytes: bytes.load(Ordering::Relaxed),
        reduced_ef: cohort.patients.iter().filter(|p| p.reduced_ef()).count(),
        events: cohort.patients.iter().filter(|p| p.event).count(),
        flipped_labels: cohort.patients.iter().filter(|p| p.label_flipped).count(),
        rgb: count(&|t| t.encoding.rgb),
        jpeg: count(&|t| t.encoding.jpeg),
        in_sector_text: count(&|t| t.pixel_phi.iter().any(|b| b.in_sector)),
        header_phi: outputs.iter().map(|t| t.header_phi.len()).sum(),
        pixel_phi: outputs.iter().map(|t| t.pixel_phi.len()).sum(),
        split,
    })
}
