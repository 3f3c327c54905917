//! Data-quality statistics of one site's training data, computed where the data is: counts,
//! failures, frame-rate and resolution distributions, intensity histograms, label prevalence
//! and missingness. Bins are fixed, so the statistics of different sites line up side by
//! side without any site seeing another's data.

use std::collections::BTreeMap;

use super::loader::{load_table, read_video};
use crate::train::TrainError;
use crate::train::config::ExperimentConfig;

/// Frame-rate bin edges (frames per second); the last bin is open.
pub const FRAME_RATE_EDGES: [f64; 9] = [0.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 1e9];
/// Rows and columns bin edges (pixels); the last bin is open.
pub const SIZE_EDGES: [f64; 8] = [0.0, 256.0, 384.0, 512.0, 640.0, 768.0, 1024.0, 1e9];
/// Intensity bins: 16 of width 16 over `[0, 256)`, plus one below and one above.
pub const INTENSITY_EDGES: [f64; 19] = [
    -1e9, 0.0, 16.0, 32.0, 48.0, 64.0, 80.0, 96.0, 112.0, 128.0, 144.0, 160.0, 176.0, 192.0, 208.0,
    224.0, 240.0, 256.0, 1e9,
];

/// A histogram over fixed edges, with the mean and standard deviation of the values.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Histogram {
    /// Bin edges (`counts.len() + 1` of them).
    pub edges: Vec<f64>,
    /// Values per bin.
    pub counts: Vec<u64>,
    /// Values counted.
    pub n: u64,
    /// Mean (NaN without values).
    pub mean: f64,
    /// Population standard deviation (NaN without values).
    pub sd: f64,
}

impl Histogram {
    fn new(edges: &[f64]) -> Self {
        Histogram {
            edges: edges.to_vec(),
            counts: vec![0; edges.len() - 1],
            n: 0,
            mean: f64::NAN,
            sd: f64::NAN,
        }
    }

    fn from_values(edges: &[f64], values: impl IntoIterator<Item = f64>) -> Self {
        let mut h = Histogram::new(edges);
        let (mut s, mut s2) = (0.0, 0.0);
        for v in values {
            if !v.is_finite() {
                continue;
            }
            let bin = edges[1..].iter().position(|&e| v < e);
            if let Some(bin) = bin {
                h.counts[bin] += 1;
            } else if let Some(last) = h.counts.last_mut() {
                *last += 1;
            }
            h.n += 1;
            s += v;
            s2 += v * v;
        }
        if h.n > 0 {
            let n = h.n as f64;
            h.mean = s / n;
            h.sd = (s2 / n - h.mean * h.mean).max(0.0).sqrt();
        }
        h
    }
}

/// What one site reports about its data.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SiteStatistics {
    /// Labelled studies (rows of the joined table).
    pub count: u64,
    /// Per split.
    pub splits: BTreeMap<String, u64>,
    /// Index rows without a label row.
    pub unlabelled: u64,
    /// Studies whose array is missing or unreadable.
    pub failures: u64,
    /// Empty cells per column of the joined table (only columns with any).
    pub missing: BTreeMap<String, u64>,
    /// Share of each value of the class column (`class=value` → fraction).
    pub prevalence: BTreeMap<String, f64>,
    /// Frame rate, from the table's `frame_rate` column.
    pub frame_rate: Histogram,
    /// Rows of the native images, from the `rows` column.
    pub rows: Histogram,
    /// Columns of the native images, from the `columns` column.
    pub columns: Histogram,
    /// Voxel intensities of the training arrays the model reads (resized as for training).
    pub intensity: Histogram,
}

/// Computes the statistics of the data `config` trains on, reading at most
/// `data.normalization_videos` training arrays for the intensity histogram (the ones the
/// normalisation would read).
pub fn site_statistics(config: &ExperimentConfig) -> Result<SiteStatistics, TrainError> {
    let d = &config.data;
    let key = d
        .join_key
        .clone()
        .unwrap_or_else(|| d.columns.study.clone());
    let table = load_table(&d.manifest, d.labels.as_deref(), &key)
        .map_err(crate::data::loader::LoaderError::from)?;
    let mut missing = BTreeMap::new();
    for (c, name) in table.header.iter().enumerate() {
        let n = table
            .rows
            .iter()
            .filter(|r| {
                r.get(c).is_none_or(|v| {
                    let v = v.trim();
                    v.is_empty() || v.eq_ignore_ascii_case("na") || v.eq_ignore_ascii_case("nan")
                })
            })
            .count() as u64;
        if n > 0 {
            missing.insert(name.clone(), n);
        }
    }
    let numbers = |column: &str| -> Vec<f64> {
        (0..table.rows.len())
            .filter_map(|r| table.cell(r, column).and_then(|v| v.parse::<f64>().ok()))
            .collect()
    };
    let mut splits = BTreeMap::new();
    let mut prevalence = BTreeMap::new();
    for r in 0..table.rows.len() {
        if let Some(s) = table.cell(r, &d.columns.split) {
            *splits.entry(s.to_string()).or_insert(0u64) += 1;
        }
        if let Some(class) = &d.columns.class
            && let Some(v) = table.cell(r, class)
            && !v.is_empty()
        {
            *prevalence.entry(format!("{class}={v}")).or_insert(0.0) += 1.0;
        }
    }
    let labelled: f64 = prevalence.values().sum();
    for v in prevalence.values_mut() {
        *v /= labelled.max(1.0);
    }
    // Failures and intensities over the arrays the training would read.
    let mut manifest = table
        .manifest(d.columns.clone())
        .map_err(crate::data::loader::LoaderError::from)?;
    if let Some(size) = d.resized_copy {
        manifest
            .use_resized_copies(&d.manifest, size)
            .map_err(crate::data::loader::LoaderError::from)?;
    }
    let mut failures = 0u64;
    for s in &manifest.studies {
        if super::loader::npy_shape(&s.array).is_err() {
            failures += 1;
        }
    }
    let train: Vec<usize> = (0..manifest.studies.len())
        .filter(|&i| manifest.studies[i].split == d.train_split)
        .collect();
    let count = d.normalization_videos.min(train.len());
    let mut values: Vec<f64> = Vec::new();
    let mut intensity = Histogram::new(&INTENSITY_EDGES);
    if count > 0 {
        let step = train.len() as f64 / count as f64;
        for k in 0..count {
            let i = train[(k as f64 * step) as usize];
            if let Ok(video) = read_video(i + 1, &manifest.studies[i].array, d.size) {
                values.extend(video.data.iter().map(|&v| f64::from(v)));
            }
        }
        intensity = Histogram::from_values(&INTENSITY_EDGES, values);
    }
    Ok(SiteStatistics {
        count: table.rows.len() as u64,
        splits,
        unlabelled: table.unlabelled as u64,
        failures,
        missing,
        prevalence,
        frame_rate: Histogram::from_values(&FRAME_RATE_EDGES, numbers("frame_rate")),
        rows: Histogram::from_values(&SIZE_EDGES, numbers("rows")),
        columns: Histogram::from_values(&SIZE_EDGES, numbers("columns")),
        intensity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_bin_and_summarise() {
        let h = Histogram::from_values(&[0.0, 10.0, 20.0, 1e9], [1.0, 5.0, 10.0, 25.0, f64::NAN]);
        assert_eq!(h.counts, vec![2, 1, 1]);
        assert_eq!(h.n, 4);
        assert!((h.mean - 10.25).abs() < 1e-12);
        let var = [1.0f64, 5.0, 10.0, 25.0]
            .iter()
            .map(|v| (v - 10.25).powi(2))
            .sum::<f64>()
            / 4.0;
        assert!((h.sd - var.sqrt()).abs() < 1e-12);
        let empty = Histogram::from_values(&FRAME_RATE_EDGES, []);
        assert_eq!(empty.n, 0);
        assert!(empty.mean.is_nan());
    }
}
