//! Rendering and writing of each study, and the ground-truth files beside the cohort.

use std::path::Path;

use serde::Serialize;

use bedside_core::fsio;
use bedside_core::npy::{self, Dtype, NpzMember};

use crate::PhantomError;
use crate::cohort::{Cohort, Patient, Study};
use crate::config::PhantomConfig;
use crate::render::{self, Ellipse, Region};
use crate::sites::{INCOME_BANDS, Site};
use crate::study::{self, Encoding, HeaderPhi, TextKind};
use crate::text::PixelBox;

/// A burned-in PHI item as recorded in `phi.json`.
#[derive(Debug, Clone, Serialize)]
pub struct PixelPhi {
    /// What the text is.
    pub kind: TextKind,
    /// The identifying text exactly as drawn.
    pub text: String,
    /// Box of the identifying text (x, y, width, height).
    #[serde(rename = "box")]
    pub pixel_box: PixelBox,
    /// The text is drawn identically on every frame.
    pub frames: &'static str,
    /// The box overlaps the scan sector.
    pub in_sector: bool,
}

/// Everything known about one written study.
#[derive(Debug, Clone)]
pub struct StudyTruth {
    pub patient: usize,
    pub study: usize,
    pub file: String,
    pub mask_file: Option<String>,
    pub truth_file: String,
    pub file_bytes: u64,
    pub encoding: Encoding,
    pub clip_ef: f64,
    pub ed_frames: Vec<usize>,
    pub es_frames: Vec<usize>,
    pub delta_cm: f64,
    pub header_phi: Vec<HeaderPhi>,
    pub pixel_phi: Vec<PixelPhi>,
}

#[derive(Serialize)]
struct StudyJson<'a> {
    study_key: &'a str,
    patient_key: &'a str,
    file: &'a str,
    rows: usize,
    columns: usize,
    frames: usize,
    frame_rate: f64,
    heart_rate: f64,
    ef: f64,
    clip_ef: f64,
    ed_frames: &'a [usize],
    es_frames: &'a [usize],
    phase: &'a [f64],
    lv_ellipses: &'a [Ellipse],
    region: Region,
    mask_file: Option<&'a str>,
    ellipse_convention: &'static str,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PhantomError + '_ {
    move |source| PhantomError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Renders, encodes and writes one study with its per-study truth.
pub fn make_study(
    config: &PhantomConfig,
    out: &Path,
    p: &Patient,
    s: &Study,
    site: &Site,
) -> Result<StudyTruth, PhantomError> {
    let (rows, columns) = (config.rows, config.columns);
    let specs = study::text_specs(p, s, site, rows, columns);
    let text_specs: Vec<render::TextSpec> = specs.iter().map(|(_, t)| t.clone()).collect();
    let mut rendered = render::render(&render::Scene {
        rows,
        columns,
        frames: s.frames,
        fps: s.fps,
        heart_rate: p.heart_rate,
        ef: s.ef,
        rgb: s.rgb,
        site,
        seed: s.render_seed,
        texts: &text_specs,
    });
    let encoding = Encoding {
        rgb: s.rgb,
        jpeg: s.jpeg,
        quality: config.jpeg_quality,
    };
    let pixels = std::mem::take(&mut rendered.pixels);
    let (obj, mut header_phi) = study::build(
        p,
        s,
        site,
        rows,
        columns,
        &rendered.region,
        pixels,
        encoding,
    )
    .map_err(|source| PhantomError::Study {
        study: s.key.clone(),
        source,
    })?;
    // The file meta group repeats the SOP Instance UID.
    header_phi.push(HeaderPhi {
        path: "(0002,0003)".into(),
        keyword: "MediaStorageSOPInstanceUID".into(),
        vr: "UI".into(),
        value: s.sop_uid.clone(),
        category: "uid",
        private_creator: None,
    });
    let file = format!("dicom/site-{}/{}/{}.dcm", site.index + 1, p.key, s.key);
    let path = out.join(&file);
    let file_bytes = bedside_dicom::write::write_file(obj, encoding.transfer_syntax(), &path)
        .map_err(|e| PhantomError::Study {
            study: s.key.clone(),
            source: study::StudyError::Write(e),
        })?;

    let pixel_phi: Vec<PixelPhi> = rendered
        .texts
        .iter()
        .map(|d| PixelPhi {
            kind: specs[d.spec].0,
            text: d.text.clone(),
            pixel_box: d.value_box,
            frames: "all",
            in_sector: d.in_sector,
        })
        .collect();

    let mask_file = if config.write_masks {
        let rel = format!("truth/masks/{}.npz", s.key);
        let mpath = out.join(&rel);
        let lv_shape = [s.frames, rows, columns];
        let sector_shape = [rows, columns];
        fsio::write_atomic_with(&mpath, |w| {
            let mut buf = std::io::Cursor::new(Vec::new());
            npy::write_npz(
                &mut buf,
                &[
                    NpzMember {
                        name: "lv",
                        dtype: Dtype::U8,
                        shape: &lv_shape,
                        data: &rendered.lv_mask,
                    },
                    NpzMember {
                        name: "sector",
                        dtype: Dtype::U8,
                        shape: &sector_shape,
                        data: &rendered.sector_mask,
                    },
                ],
            )?;
            std::io::Write::write_all(w, &buf.into_inner())
        })
        .map_err(io_err(&mpath))?;
        Some(rel)
    } else {
        None
    };

    let truth_file = format!("truth/studies/{}.json", s.key);
    let json = StudyJson {
        study_key: &s.key,
        patient_key: &p.key,
        file: &file,
        rows,
        columns,
        frames: s.frames,
        frame_rate: s.fps,
        heart_rate: p.heart_rate,
        ef: s.ef,
        clip_ef: rendered.clip_ef,
        ed_frames: &rendered.ed_frames,
        es_frames: &rendered.es_frames,
        phase: &rendered.phase,
        lv_ellipses: &rendered.lv_ellipse,
        region: rendered.region,
        mask_file: mask_file.as_deref(),
        ellipse_convention: "pixel centres at +0.5; inside when (u/b)^2+(v/a)^2<1 with \
            u=dx*cos(angle)+dy*sin(angle), v=-dx*sin(angle)+dy*cos(angle); volume = a*b^2 (prolate ellipsoid)",
    };
    let tpath = out.join(&truth_file);
    let text = serde_json::to_vec_pretty(&json).map_err(|e| PhantomError::Truth {
        path: tpath.clone(),
        message: e.to_string(),
    })?;
    fsio::write_atomic(&tpath, &text).map_err(io_err(&tpath))?;

    Ok(StudyTruth {
        patient: p.index,
        study: s.index,
        file,
        mask_file,
        truth_file,
        file_bytes,
        encoding,
        clip_ef: rendered.clip_ef,
        ed_frames: rendered.ed_frames,
        es_frames: rendered.es_frames,
        delta_cm: rendered.region.delta_cm,
        header_phi,
        pixel_phi,
    })
}

fn join(v: &[usize]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(";")
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> PhantomError + '_ {
    move |e| PhantomError::Truth {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes `patients.csv`, `studies.csv`, `phi.json`, `cohort.json` and `README.txt`.
pub fn write_tables(
    config: &PhantomConfig,
    out: &Path,
    cohort: &Cohort,
    sites: &[Site],
    studies: &[StudyTruth],
) -> Result<(), PhantomError> {
    // patients.csv
    let path = out.join("patients.csv");
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "patient_key",
        "site",
        "split",
        "sex",
        "age",
        "age_band",
        "ethnicity",
        "income",
        "heart_rate",
        "ef",
        "reduced_ef",
        "ef_observed",
        "reduced_ef_observed",
        "label_flipped",
        "log_hazard",
        "time_days",
        "event",
        "studies",
    ])
    .map_err(csv_err(&path))?;
    for p in &cohort.patients {
        w.write_record([
            p.key.clone(),
            p.site.to_string(),
            p.split.as_str().to_string(),
            p.sex.to_string(),
            p.age.to_string(),
            p.age_band().to_string(),
            p.ethnicity.to_string(),
            INCOME_BANDS[p.income].to_string(),
            format!("{:.1}", p.heart_rate),
            format!("{:.3}", p.ef),
            (p.reduced_ef() as u8).to_string(),
            format!("{:.3}", p.ef_observed),
            (p.reduced_ef_observed as u8).to_string(),
            (p.label_flipped as u8).to_string(),
            format!("{:.6}", p.log_hazard),
            format!("{}", p.time_days),
            (p.event as u8).to_string(),
            p.studies.len().to_string(),
        ])
        .map_err(csv_err(&path))?;
    }
    let bytes = w.into_inner().map_err(|e| PhantomError::Truth {
        path: path.clone(),
        message: e.to_string(),
    })?;
    fsio::write_atomic(&path, &bytes).map_err(io_err(&path))?;

    // studies.csv
    let path = out.join("studies.csv");
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "study_key",
        "patient_key",
        "site",
        "split",
        "file",
        "mask_file",
        "truth_file",
        "manufacturer",
        "model",
        "rows",
        "columns",
        "frames",
        "frame_rate",
        "heart_rate",
        "photometric",
        "transfer_syntax",
        "ef",
        "ef_observed",
        "reduced_ef",
        "reduced_ef_observed",
        "clip_ef",
        "ed_frames",
        "es_frames",
        "pixel_spacing_cm",
        "in_sector_text",
        "days_from_first_study",
        "time_days",
        "event",
        "sex",
        "age",
        "age_band",
        "ethnicity",
        "income",
    ])
    .map_err(csv_err(&path))?;
    for t in studies {
        let p = &cohort.patients[t.patient];
        let s = &p.studies[t.study];
        let site = &sites[p.site];
        let offset = s.date.to_days() - p.studies[0].date.to_days();
        let reduced_observed = if p.label_flipped {
            s.ef >= 40.0
        } else {
            s.ef < 40.0
        };
        w.write_record([
            s.key.clone(),
            p.key.clone(),
            p.site.to_string(),
            p.split.as_str().to_string(),
            t.file.clone(),
            t.mask_file.clone().unwrap_or_default(),
            t.truth_file.clone(),
            site.manufacturer.to_string(),
            site.model.to_string(),
            config.rows.to_string(),
            config.columns.to_string(),
            s.frames.to_string(),
            format!("{}", s.fps),
            format!("{:.1}", p.heart_rate),
            t.encoding.photometric().to_string(),
            t.encoding.transfer_syntax().to_string(),
            format!("{:.3}", s.ef),
            format!("{:.3}", s.ef_observed),
            ((s.ef < 40.0) as u8).to_string(),
            (reduced_observed as u8).to_string(),
            format!("{:.3}", t.clip_ef),
            join(&t.ed_frames),
            join(&t.es_frames),
            format!("{:.6}", t.delta_cm),
            (t.pixel_phi.iter().any(|b| b.in_sector) as u8).to_string(),
            offset.to_string(),
            format!("{}", (p.time_days - offset as f64).max(1.0)),
            (p.event as u8).to_string(),
            p.sex.to_string(),
            p.birth_date.years_until(s.date).to_string(),
            crate::cohort::age_band(p.birth_date.years_until(s.date)).to_string(),
            p.ethnicity.to_string(),
            INCOME_BANDS[p.income].to_string(),
        ])
        .map_err(csv_err(&path))?;
    }
    let bytes = w.into_inner().map_err(|e| PhantomError::Truth {
        path: path.clone(),
        message: e.to_string(),
    })?;
    fsio::write_atomic(&path, &bytes).map_err(io_err(&path))?;

    // phi.json
    #[derive(Serialize)]
    struct FilePhi<'a> {
        file: &'a str,
        patient_key: &'a str,
        study_key: &'a str,
        header: &'a [HeaderPhi],
        pixels: &'a [PixelPhi],
    }
    #[derive(Serialize)]
    struct PhiJson<'a> {
        schema_version: u32,
        description: &'static str,
        files: Vec<FilePhi<'a>>,
    }
    let phi = PhiJson {
        schema_version: 1,
        description: "Every PHI value planted in the phantom: header values by tag path \
            ((gggg,eeee), nested as (gggg,eeee)[item].(gggg,eeee); the file meta group included) and \
            burned-in text by pixel box [x, y, width, height] of the identifying text, drawn \
            identically on every frame. Category 'characteristic' marks values that are not \
            identifying on their own (sex, age, ethnic group).",
        files: studies
            .iter()
            .map(|t| {
                let p = &cohort.patients[t.patient];
                FilePhi {
                    file: &t.file,
                    patient_key: &p.key,
                    study_key: &p.studies[t.study].key,
                    header: &t.header_phi,
                    pixels: &t.pixel_phi,
                }
            })
            .collect(),
    };
    let path = out.join("phi.json");
    let text = serde_json::to_vec_pretty(&phi).map_err(|e| PhantomError::Truth {
        path: path.clone(),
        message: e.to_string(),
    })?;
    fsio::write_atomic(&path, &text).map_err(io_err(&path))?;

    // cohort.json
    #[derive(Serialize)]
    struct SiteJson {
        index: usize,
        manufacturer: &'static str,
        model: &'static str,
        gain: f32,
        gamma: f32,
        noise_sd: f32,
        sector_half_angle_deg: f64,
        depth_cm: f64,
        frame_rate: [f64; 2],
        region_includes_header: bool,
    }
    let cohort_json = serde_json::json!({
        "generator": format!("bedside-phantom {}", env!("CARGO_PKG_VERSION")),
        "config": config,
        "sites": sites.iter().map(|s| SiteJson {
            index: s.index,
            manufacturer: s.manufacturer,
            model: s.model,
            gain: s.gain,
            gamma: s.gamma,
            noise_sd: s.noise_sd,
            sector_half_angle_deg: s.half_angle_deg,
            depth_cm: s.depth_cm,
            frame_rate: s.frame_rate,
            region_includes_header: s.region_includes_header,
        }).collect::<Vec<_>>(),
        "outcome_model": "reduced_ef = ef < 40; time to event ~ Weibull PH, see config.survival; \
            log_hazard in patients.csv is the true linear predictor",
    });
    let path = out.join("cohort.json");
    let text = serde_json::to_vec_pretty(&cohort_json).map_err(|e| PhantomError::Truth {
        path: path.clone(),
        message: e.to_string(),
    })?;
    fsio::write_atomic(&path, &text).map_err(io_err(&path))?;

    let path = out.join("README.txt");
    fsio::write_atomic(&path, README.as_bytes()).map_err(io_err(&path))?;
    Ok(())
}

const README: &str = "Bedside synthetic echocardiography cohort (no real patient data).\n\
\n\
dicom/site-K/PNNNN/PNNNN-SJ.dcm  US Multi-frame Image Storage, one cine per study\n\
patients.csv                     covariates, outcomes (ef, reduced_ef, time_days, event), split\n\
studies.csv                      one row per DICOM file: labels, acquisition, ED/ES frames\n\
phi.json                         every planted PHI value (header tag paths, burned-in pixel boxes)\n\
truth/studies/*.json             per-frame LV ellipses, cardiac phase, region calibration\n\
truth/masks/*.npz                numpy.load(f)['lv'] -> uint8 [frames, rows, columns]; ['sector']\n\
cohort.json                      the configuration and generating model\n\
\n\
Names, IDs and dates are synthetic but realistic on purpose: treat this folder as if it held PHI\n\
and use `bedside curate` before sharing it.\n";
