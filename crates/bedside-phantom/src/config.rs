//! Configuration of the phantom cohort (TOML, every key optional).

use serde::{Deserialize, Serialize};

use bedside_core::config::Validate;

/// Everything that shapes a phantom cohort. The same configuration and seed always give the same
/// files, byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhantomConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of patients.
    pub patients: usize,
    /// Number of acquisition sites (each with its own vendor, gain, noise, sector and frame rate).
    pub sites: usize,
    /// Studies per patient, drawn uniformly in `[min, max]` (each on a different date; fewer
    /// when follow-up ends before a later study would take place).
    pub studies_per_patient: [usize; 2],
    /// Image rows.
    pub rows: usize,
    /// Image columns.
    pub columns: usize,
    /// Frames per cine, `[min, max]`; the clip always holds at least one heart beat.
    pub frames: [usize; 2],
    /// Frame rate in frames per second, `[min, max]` over all sites.
    pub frame_rate: [f64; 2],
    /// Share of studies stored as RGB (the rest MONOCHROME2).
    pub rgb_fraction: f64,
    /// Share of RGB studies stored JPEG baseline compressed (YBR_FULL_422).
    pub rgb_jpeg_fraction: f64,
    /// Share of monochrome studies stored JPEG baseline compressed.
    pub mono_jpeg_fraction: f64,
    /// JPEG quality (1–100).
    pub jpeg_quality: u8,
    /// Share of studies with one burned-in text item inside or touching the scan sector.
    pub in_sector_text_fraction: f64,
    /// Label noise injected into one subgroup, e.g. `{ group = "sex=F", noise = 0.3 }`.
    pub bias: Vec<BiasSpec>,
    /// Patient-level split shares `[train, validation, test]` (must sum to 1).
    pub split: [f64; 3],
    /// The time-to-event outcome's generating model.
    pub survival: SurvivalModel,
    /// Write the per-frame left-ventricle masks (`truth/masks/*.npz`).
    pub write_masks: bool,
}

impl Default for PhantomConfig {
    fn default() -> Self {
        PhantomConfig {
            seed: 42,
            patients: 200,
            sites: 3,
            studies_per_patient: [1, 3],
            rows: 480,
            columns: 640,
            frames: [32, 64],
            frame_rate: [30.0, 60.0],
            rgb_fraction: 0.3,
            rgb_jpeg_fraction: 0.8,
            mono_jpeg_fraction: 0.5,
            jpeg_quality: 90,
            in_sector_text_fraction: 0.2,
            bias: Vec::new(),
            split: [0.7, 0.15, 0.15],
            survival: SurvivalModel::default(),
            write_masks: true,
        }
    }
}

/// Label noise for one subgroup: with probability `noise` the observed reduced-EF label of a
/// patient in `group` is flipped, and the observed EF gets Gaussian noise of SD `30 × noise` points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BiasSpec {
    /// `column=value` with column one of `sex`, `ethnicity`, `income`, `site`, `age_band`.
    pub group: String,
    /// Flip probability in `[0, 1]`.
    pub noise: f64,
}

impl BiasSpec {
    /// Parses the command-line form `COLUMN=VALUE:NOISE`, e.g. `sex=F:0.3`.
    pub fn parse(text: &str) -> Result<BiasSpec, String> {
        let (group, noise) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("bias `{text}`: expected COLUMN=VALUE:NOISE, e.g. sex=F:0.3"))?;
        let noise: f64 = noise
            .parse()
            .map_err(|_| format!("bias `{text}`: noise `{noise}` is not a number"))?;
        let spec = BiasSpec {
            group: group.to_string(),
            noise,
        };
        spec.check().map_err(|m| format!("bias `{text}`: {m}"))?;
        Ok(spec)
    }

    /// The column and value of the group.
    pub fn column_value(&self) -> Option<(&str, &str)> {
        self.group.split_once('=')
    }

    fn check(&self) -> Result<(), String> {
        let Some((column, value)) = self.column_value() else {
            return Err(format!("group `{}` must be COLUMN=VALUE", self.group));
        };
        if !BIAS_COLUMNS.contains(&column) {
            return Err(format!(
                "unknown column `{column}`; expected one of {}",
                BIAS_COLUMNS.join(", ")
            ));
        }
        if value.is_empty() {
            return Err("empty group value".into());
        }
        if !(0.0..=1.0).contains(&self.noise) {
            return Err(format!("noise {} must be in [0, 1]", self.noise));
        }
        Ok(())
    }
}

/// Columns a bias group may name.
pub const BIAS_COLUMNS: [&str; 5] = ["sex", "ethnicity", "income", "site", "age_band"];

/// Weibull proportional-hazards model of the time-to-event outcome:
/// `h(t) = λ k t^(k−1) exp(lp)` with
/// `lp = β_ef (55 − EF)/10 + β_age (age − 60)/10 + β_male male + β_income income_rank`,
/// administrative censoring uniform in the follow-up window and exponential loss to follow-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SurvivalModel {
    /// Weibull scale λ (per day^k).
    pub baseline_rate: f64,
    /// Weibull shape k.
    pub shape: f64,
    /// Log hazard ratio per 10 EF points below 55.
    pub beta_ef: f64,
    /// Log hazard ratio per 10 years of age above 60.
    pub beta_age: f64,
    /// Log hazard ratio for male sex.
    pub beta_male: f64,
    /// Log hazard ratio per income band step towards lower income (0 = highest band).
    pub beta_income: f64,
    /// Administrative follow-up window in days, `[min, max]`.
    pub follow_up_days: [f64; 2],
    /// Yearly rate of loss to follow-up.
    pub dropout_per_year: f64,
}

impl Default for SurvivalModel {
    fn default() -> Self {
        SurvivalModel {
            baseline_rate: 1.0e-4,
            shape: 1.1,
            beta_ef: 0.6,
            beta_age: 0.35,
            beta_male: 0.2,
            beta_income: 0.1,
            follow_up_days: [365.0, 5.0 * 365.0],
            dropout_per_year: 0.08,
        }
    }
}

impl Validate for PhantomConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((k.to_string(), m));
        if self.patients == 0 {
            return bad("patients", "must be at least 1".into());
        }
        if self.sites == 0 || self.sites > crate::sites::MAX_SITES {
            return bad(
                "sites",
                format!("must be between 1 and {}", crate::sites::MAX_SITES),
            );
        }
        let [smin, smax] = self.studies_per_patient;
        if smin == 0 || smin > smax || smax > 9 {
            return bad(
                "studies_per_patient",
                "must satisfy 1 <= min <= max <= 9".into(),
            );
        }
        if self.rows < 64 || self.columns < 64 || self.rows > 2048 || self.columns > 2048 {
            return bad("rows", "rows and columns must be within 64..=2048".into());
        }
        let [fmin, fmax] = self.frames;
        if fmin < 2 || fmin > fmax || fmax > 1000 {
            return bad("frames", "must satisfy 2 <= min <= max <= 1000".into());
        }
        let [rmin, rmax] = self.frame_rate;
        if !(rmin >= 5.0 && rmin <= rmax && rmax <= 500.0) {
            return bad("frame_rate", "must satisfy 5 <= min <= max <= 500".into());
        }
        for (k, v) in [
            ("rgb_fraction", self.rgb_fraction),
            ("rgb_jpeg_fraction", self.rgb_jpeg_fraction),
            ("mono_jpeg_fraction", self.mono_jpeg_fraction),
            ("in_sector_text_fraction", self.in_sector_text_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(k, format!("{v} must be in [0, 1]"));
            }
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad("jpeg_quality", "must be in 1..=100".into());
        }
        if self.split.iter().any(|s| *s < 0.0)
            || (self.split.iter().sum::<f64>() - 1.0).abs() > 1e-6
        {
            return bad("split", "shares must be non-negative and sum to 1".into());
        }
        for (i, b) in self.bias.iter().enumerate() {
            if let Err(m) = b.check() {
                return bad(&format!("bias[{i}]"), m);
            }
        }
        let s = &self.survival;
        if !(s.baseline_rate > 0.0 && s.shape > 0.0) {
            return bad(
                "survival.baseline_rate",
                "rate and shape must be positive".into(),
            );
        }
        if !(s.follow_up_days[0] > 0.0 && s.follow_up_days[0] <= s.follow_up_days[1]) {
            return bad(
                "survival.follow_up_days",
                "must satisfy 0 < min <= max".into(),
            );
        }
        if s.dropout_per_year < 0.0 {
            return bad("survival.dropout_per_year", "must be non-negative".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(PhantomConfig::default().validate().is_ok());
    }

    #[test]
    fn bias_parsing() {
        let b = BiasSpec::parse("sex=F:0.3").unwrap();
        assert_eq!(b.column_value(), Some(("sex", "F")));
        assert!((b.noise - 0.3).abs() < 1e-12);
        assert!(BiasSpec::parse("sex=F").is_err());
        assert!(BiasSpec::parse("height=2:0.1").is_err());
        assert!(BiasSpec::parse("sex=F:1.5").is_err());
    }
}
