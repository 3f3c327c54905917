//! The cohort plan: who the patients are, what their hearts do, what happens to them, and which
//! studies they get. Pure data, fully determined by the configuration and seed; rendering and
//! file writing follow from it.

use std::collections::HashSet;

use bedside_core::rng::Rng;

use crate::config::PhantomConfig;
use crate::date::Date;
use crate::names;
use crate::sites::{self, ETHNICITIES, INCOME_BANDS, Site};

/// Stream numbers of [`Rng::fork`], one per purpose, so adding a draw in one place does not
/// change the others.
mod stream {
    pub const PATIENT: u64 = 1 << 32;
    pub const STUDY: u64 = 2 << 32;
    pub const SPLIT: u64 = 3;
    pub const BIAS: u64 = 4 << 32;
    pub const IDS: u64 = 5;
}

/// Dataset split of a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training.
    Train,
    /// Validation (model selection).
    Val,
    /// Held-out test.
    Test,
}

impl Split {
    /// Name used in CSV files.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// One synthetic patient.
#[derive(Debug, Clone)]
pub struct Patient {
    /// Index in the cohort (0-based).
    pub index: usize,
    /// Non-identifying key, `P0001`.
    pub key: String,
    /// Medical record number (PatientID), eight digits.
    pub mrn: String,
    /// A previous record number from another system (OtherPatientIDsSequence).
    pub other_mrn: String,
    /// Given name.
    pub given: String,
    /// Family name.
    pub family: String,
    /// Birth family name (OtherPatientNames), for some patients.
    pub birth_family: Option<String>,
    /// `F` or `M`.
    pub sex: char,
    /// Date of birth.
    pub birth_date: Date,
    /// Age in whole years at the first study.
    pub age: i32,
    /// Ethnicity category.
    pub ethnicity: &'static str,
    /// Income band index into [`INCOME_BANDS`] (0 = highest).
    pub income: usize,
    /// Site index.
    pub site: usize,
    /// Street address.
    pub address: String,
    /// Telephone number.
    pub phone: String,
    /// Heart rate, beats per minute.
    pub heart_rate: f64,
    /// Ejection fraction at the first study, percent.
    pub ef: f64,
    /// Observed EF label (with subgroup label noise where configured).
    pub ef_observed: f64,
    /// Observed reduced-EF label (EF < 40, possibly flipped by label noise).
    pub reduced_ef_observed: bool,
    /// Whether label noise flipped this patient's label.
    pub label_flipped: bool,
    /// Linear predictor of the true hazard.
    pub log_hazard: f64,
    /// Follow-up time in days from the first study.
    pub time_days: f64,
    /// Whether the event was observed (false = censored).
    pub event: bool,
    /// Dataset split.
    pub split: Split,
    /// Studies of this patient, in date order.
    pub studies: Vec<Study>,
}

impl Patient {
    /// The DICOM PN form `FAMILY^GIVEN`.
    pub fn pn(&self) -> String {
        format!("{}^{}", self.family, self.given)
    }

    /// True reduced EF (EF < 40%).
    pub fn reduced_ef(&self) -> bool {
        self.ef < 40.0
    }

    /// Age band used by audits.
    pub fn age_band(&self) -> &'static str {
        age_band(self.age)
    }
}

/// Age band used by audits and bias groups.
pub fn age_band(age: i32) -> &'static str {
    match age {
        i32::MIN..=39 => "18-39",
        40..=59 => "40-59",
        60..=74 => "60-74",
        _ => "75+",
    }
}

/// Which burned-in item (if any) is placed inside or touching the scan sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InSectorText {
    /// The patient name.
    Name,
    /// The record number.
    Mrn,
    /// The date of birth.
    BirthDate,
}

/// One echocardiography study (one cine file).
#[derive(Debug, Clone)]
pub struct Study {
    /// Index among the patient's studies (0-based).
    pub index: usize,
    /// Non-identifying key, `P0001-S1`.
    pub key: String,
    /// Study date.
    pub date: Date,
    /// Study time `HHMMSS`.
    pub time: String,
    /// Accession number.
    pub accession: String,
    /// Study ID (0020,0010).
    pub study_id: String,
    /// Study Instance UID (embeds the timestamp).
    pub study_uid: String,
    /// Series Instance UID.
    pub series_uid: String,
    /// SOP Instance UID.
    pub sop_uid: String,
    /// Referring physician (family, given).
    pub referring: (&'static str, &'static str),
    /// Performing physician.
    pub performing: (&'static str, &'static str),
    /// Sonographer (OperatorsName).
    pub operator: (&'static str, &'static str),
    /// Device serial number.
    pub serial: String,
    /// Ejection fraction of this study, percent.
    pub ef: f64,
    /// Observed EF (with label noise where configured).
    pub ef_observed: f64,
    /// Frames per second.
    pub fps: f64,
    /// Number of frames.
    pub frames: usize,
    /// Stored as RGB (else MONOCHROME2).
    pub rgb: bool,
    /// Stored JPEG baseline compressed.
    pub jpeg: bool,
    /// Text item placed inside or touching the sector.
    pub in_sector_text: Option<InSectorText>,
    /// Seed stream of the rendering.
    pub render_seed: u64,
}

/// The whole plan.
#[derive(Debug, Clone)]
pub struct Cohort {
    /// Patients in index order.
    pub patients: Vec<Patient>,
}

impl Cohort {
    /// Total number of studies.
    pub fn study_count(&self) -> usize {
        self.patients.iter().map(|p| p.studies.len()).sum()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn unique_digits(rng: &mut Rng, digits: u32, used: &mut HashSet<String>, prefix: &str) -> String {
    let low = 10u64.pow(digits - 1);
    loop {
        let v = low + rng.below(9 * low);
        let s = format!("{prefix}{v}");
        if used.insert(s.clone()) {
            return s;
        }
    }
}

/// Plans a cohort from a validated configuration.
pub fn plan(config: &PhantomConfig) -> Cohort {
    let root = Rng::seed_from(config.seed);
    let mut ids = root.fork(stream::IDS);
    let mut used = HashSet::new();
    let site_list: Vec<Site> = (0..config.sites).map(sites::site).collect();

    let mut patients = Vec::with_capacity(config.patients);
    for index in 0..config.patients {
        let mut rng = root.fork(stream::PATIENT + index as u64);
        let site = &site_list[index % config.sites];
        let sex = if rng.bernoulli(0.5) { 'F' } else { 'M' };
        let given = if sex == 'F' {
            rng.choose(&names::FEMALE)
        } else {
            rng.choose(&names::MALE)
        }
        .copied()
        .unwrap_or("ALEXIS")
        .to_string();
        let family = rng
            .choose(&names::FAMILY)
            .copied()
            .unwrap_or("SMITHSON")
            .to_string();
        let birth_family = (sex == 'F' && rng.bernoulli(0.3))
            .then(|| {
                rng.choose(&names::FAMILY)
                    .copied()
                    .unwrap_or("JOHNSTONE")
                    .to_string()
            })
            .filter(|b| *b != family);
        let ethnicity = ETHNICITIES[rng.weighted_index(&site.ethnicity_weights)];
        let income = rng.weighted_index(&[0.2, 0.3, 0.3, 0.2]);

        // First study between 2015-01-01 and 2023-12-31; later ones follow.
        let first_day = Date {
            year: 2015,
            month: 1,
            day: 1,
        }
        .to_days()
            + rng.below(9 * 365) as i64;
        let first = Date::from_days(first_day);
        let age_target = rng.normal_with(site.age_mean, 14.0).clamp(18.0, 98.0);
        let birth_days = first_day - (age_target * 365.25) as i64 - rng.below(365) as i64;
        let birth_date = Date::from_days(birth_days);
        let age = birth_date.years_until(first);

        let male = if sex == 'M' { 1.0 } else { 0.0 };
        let p_reduced = sigmoid(-1.0 + 0.03 * (age as f64 - 60.0) + 0.5 * male);
        let ef = if rng.bernoulli(p_reduced) {
            rng.range(15.0, 39.5)
        } else {
            rng.normal_with(60.0, 7.0).clamp(40.5, 78.0)
        };
        let heart_rate = rng.range(55.0, 100.0);

        let s = &config.survival;
        let log_hazard = s.beta_ef * (55.0 - ef) / 10.0
            + s.beta_age * (age as f64 - 60.0) / 10.0
            + s.beta_male * male
            + s.beta_income * income as f64;
        // Weibull PH: S(t) = exp(-λ t^k e^lp)  =>  T = (E / (λ e^lp))^(1/k), E ~ Exp(1).
        let e = rng.exponential(1.0);
        let event_time = (e / (s.baseline_rate * log_hazard.exp())).powf(1.0 / s.shape);
        let admin = rng.range(s.follow_up_days[0], s.follow_up_days[1]);
        let dropout = if s.dropout_per_year > 0.0 {
            rng.exponential(s.dropout_per_year / 365.25)
        } else {
            f64::INFINITY
        };
        let censor = admin.min(dropout);
        let (time_days, event) = if event_time <= censor {
            (event_time.max(1.0).round(), true)
        } else {
            (censor.max(1.0).round(), false)
        };

        let street_no = 1 + rng.below(240);
        let street = rng
            .choose(&names::STREETS)
            .copied()
            .unwrap_or("HIGH STREET");
        let town = rng.choose(&names::TOWNS).copied().unwrap_or("SPRINGFIELD");
        let phone = format!("555-{:04}-{:04}", rng.below(10_000), rng.below(10_000));

        let [smin, smax] = config.studies_per_patient;
        let n_studies = rng.int_inclusive(smin as i64, smax as i64) as usize;
        let mrn = unique_digits(&mut ids, 8, &mut used, "");
        let other_mrn = unique_digits(&mut ids, 7, &mut used, "X");

        let key = format!("P{:04}", index + 1);
        let mut studies = Vec::with_capacity(n_studies);
        let mut day = first_day;
        for j in 0..n_studies {
            let mut srng = root.fork(stream::STUDY + (index as u64) * 16 + j as u64);
            if j > 0 {
                day += 30 + srng.below(700) as i64;
                // No study after the end of follow-up (the event or censoring).
                if (day - first_day) as f64 >= time_days {
                    break;
                }
            }
            let date = Date::from_days(day);
            let (hh, mm, ss) = (7 + srng.below(11), srng.below(60), srng.below(60));
            let time = format!("{hh:02}{mm:02}{ss:02}");
            let stamp = format!("{}{}", date.da(), time);
            let study_ef = if j == 0 {
                ef
            } else {
                (ef + srng.normal_with(0.0, 3.0)).clamp(10.0, 80.0)
            };
            let fps_lo = site.frame_rate[0].max(config.frame_rate[0]);
            let fps_hi = site.frame_rate[1].min(config.frame_rate[1]).max(fps_lo);
            let mut fps = srng.range(fps_lo, fps_hi).round().max(1.0);
            let beat_s = 60.0 / heart_rate;
            // Hold at least one whole beat (plus a margin) whenever the frame budget allows.
            let [fmin, fmax] = config.frames;
            let mut frames = ((1.05 * beat_s * fps).ceil() as usize).max(fmin);
            if frames > fmax {
                let slower = (fmax as f64 / (1.05 * beat_s))
                    .floor()
                    .max(config.frame_rate[0]);
                fps = fps.min(slower);
                frames = ((1.05 * beat_s * fps).ceil() as usize).clamp(fmin, fmax);
            }
            frames = (frames + srng.below(8) as usize).clamp(fmin, fmax);
            let rgb = srng.bernoulli(config.rgb_fraction);
            let jpeg = srng.bernoulli(if rgb {
                config.rgb_jpeg_fraction
            } else {
                config.mono_jpeg_fraction
            });
            let in_sector_text = srng
                .bernoulli(config.in_sector_text_fraction)
                .then(|| match srng.below(3) {
                    0 => InSectorText::Name,
                    1 => InSectorText::Mrn,
                    _ => InSectorText::BirthDate,
                });
            let staff = |r: &mut Rng| {
                r.choose(&names::STAFF)
                    .copied()
                    .unwrap_or(("HAWTHORNE", "MIRIAM"))
            };
            let site_no = site.index as u64 + 1;
            let serial_no = 10_000 + site.index * 7919 % 90_000;
            studies.push(Study {
                index: j,
                key: format!("{key}-S{}", j + 1),
                date,
                time,
                accession: unique_digits(&mut ids, 9, &mut used, "AC"),
                study_id: unique_digits(&mut ids, 6, &mut used, "E"),
                study_uid: bedside_dicom::uid::with_timestamp(
                    site.uid_root,
                    site_no,
                    &stamp,
                    (index * 16 + j) as u64 * 10 + 1,
                ),
                series_uid: bedside_dicom::uid::with_timestamp(
                    site.uid_root,
                    site_no,
                    &stamp,
                    (index * 16 + j) as u64 * 10 + 2,
                ),
                sop_uid: bedside_dicom::uid::with_timestamp(
                    site.uid_root,
                    site_no,
                    &stamp,
                    (index * 16 + j) as u64 * 10 + 3,
                ),
                referring: staff(&mut srng),
                performing: staff(&mut srng),
                operator: staff(&mut srng),
                serial: format!("US{serial_no}{}", 100 + site.index),
                ef: study_ef,
                ef_observed: study_ef,
                fps,
                frames,
                rgb,
                jpeg,
                in_sector_text,
                render_seed: srng.next_u64(),
            });
        }

        patients.push(Patient {
            index,
            key,
            mrn,
            other_mrn,
            given,
            family,
            birth_family,
            sex,
            birth_date,
            age,
            ethnicity,
            income,
            site: site.index,
            address: format!("{street_no} {street}, {town}"),
            phone,
            heart_rate,
            ef,
            ef_observed: ef,
            reduced_ef_observed: ef < 40.0,
            label_flipped: false,
            log_hazard,
            time_days,
            event,
            split: Split::Train,
            studies,
        });
    }

    assign_splits(&mut patients, config, &root);
    apply_bias(&mut patients, config, &root);
    Cohort { patients }
}

fn assign_splits(patients: &mut [Patient], config: &PhantomConfig, root: &Rng) {
    let mut order: Vec<usize> = (0..patients.len()).collect();
    root.fork(stream::SPLIT).shuffle(&mut order);
    let n = patients.len() as f64;
    let n_train = (config.split[0] * n).round() as usize;
    let n_val = (config.split[1] * n).round() as usize;
    for (rank, &i) in order.iter().enumerate() {
        patients[i].split = if rank < n_train {
            Split::Train
        } else if rank < n_train + n_val {
            Split::Val
        } else {
            Split::Test
        };
    }
}

/// The value of a bias column for a patient.
pub fn group_value(p: &Patient, column: &str) -> String {
    match column {
        "sex" => p.sex.to_string(),
        "ethnicity" => p.ethnicity.to_string(),
        "income" => INCOME_BANDS[p.income].to_string(),
        "site" => p.site.to_string(),
        "age_band" => p.age_band().to_string(),
        _ => String::new(),
    }
}

fn apply_bias(patients: &mut [Patient], config: &PhantomConfig, root: &Rng) {
    for (b, spec) in config.bias.iter().enumerate() {
        let Some((column, value)) = spec.column_value() else {
            continue;
        };
        for p in patients.iter_mut() {
            if group_value(p, column) != value {
                continue;
            }
            let mut rng = root.fork(stream::BIAS + (b as u64) * 1_000_000 + p.index as u64);
            if rng.bernoulli(spec.noise) {
                p.label_flipped = !p.label_flipped;
                p.reduced_ef_observed = !p.reduced_ef_observed;
            }
            let sd = 30.0 * spec.noise;
            p.ef_observed = (p.ef_observed + rng.normal_with(0.0, sd)).clamp(5.0, 85.0);
            for s in p.studies.iter_mut() {
                s.ef_observed = (s.ef_observed + rng.normal_with(0.0, sd)).clamp(5.0, 85.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BiasSpec;

    fn small() -> PhantomConfig {
        PhantomConfig {
            patients: 300,
            ..PhantomConfig::default()
        }
    }

    #[test]
    fn plan_is_deterministic() {
        let a = plan(&small());
        let b = plan(&small());
        for (p, q) in a.patients.iter().zip(&b.patients) {
            assert_eq!(p.mrn, q.mrn);
            assert_eq!(p.ef, q.ef);
            assert_eq!(p.studies.len(), q.studies.len());
            assert_eq!(p.studies[0].sop_uid, q.studies[0].sop_uid);
        }
    }

    #[test]
    fn clips_hold_a_beat_and_respect_limits() {
        let cfg = small();
        for p in plan(&cfg).patients {
            for s in &p.studies {
                assert!((cfg.frames[0]..=cfg.frames[1]).contains(&s.frames));
                assert!(
                    s.fps >= cfg.frame_rate[0] && s.fps <= cfg.frame_rate[1],
                    "{}",
                    s.fps
                );
                let beat_frames = 60.0 / p.heart_rate * s.fps;
                assert!(
                    s.frames as f64 >= beat_frames,
                    "{} < {beat_frames}",
                    s.frames
                );
                assert!(bedside_dicom::uid::is_valid(&s.sop_uid), "{}", s.sop_uid);
            }
        }
    }

    #[test]
    fn ids_are_unique_and_splits_sized() {
        let c = plan(&small());
        let mrns: HashSet<_> = c.patients.iter().map(|p| p.mrn.clone()).collect();
        assert_eq!(mrns.len(), 300);
        let test = c.patients.iter().filter(|p| p.split == Split::Test).count();
        assert_eq!(test, 45);
    }

    #[test]
    fn outcomes_depend_on_ef() {
        let c = plan(&PhantomConfig {
            patients: 2000,
            ..PhantomConfig::default()
        });
        let rate = |low: bool| {
            let g: Vec<_> = c
                .patients
                .iter()
                .filter(|p| p.reduced_ef() == low)
                .collect();
            let events: f64 = g.iter().filter(|p| p.event).count() as f64;
            let time: f64 = g.iter().map(|p| p.time_days).sum();
            events / time
        };
        assert!(
            rate(true) > 2.0 * rate(false),
            "{} vs {}",
            rate(true),
            rate(false)
        );
        let prevalence = c.patients.iter().filter(|p| p.reduced_ef()).count() as f64 / 2000.0;
        assert!((0.2..0.6).contains(&prevalence), "{prevalence}");
    }

    #[test]
    fn bias_flips_only_the_group() {
        let cfg = PhantomConfig {
            bias: vec![BiasSpec::parse("sex=F:0.5").unwrap()],
            ..small()
        };
        let c = plan(&cfg);
        let flipped_f = c
            .patients
            .iter()
            .filter(|p| p.sex == 'F' && p.label_flipped)
            .count();
        let flipped_m = c
            .patients
            .iter()
            .filter(|p| p.sex == 'M' && p.label_flipped)
            .count();
        assert_eq!(flipped_m, 0);
        assert!(flipped_f > 40, "{flipped_f}");
        for p in &c.patients {
            assert_eq!(p.reduced_ef_observed != p.reduced_ef(), p.label_flipped);
        }
    }
}
