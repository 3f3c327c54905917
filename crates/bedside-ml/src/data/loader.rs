//! From a manifest to batches: joining an array index with a label sheet, reading and resizing
//! videos to the model's frame size, estimating normalisation statistics, and a multi-threaded
//! loader whose memory is bounded by a fixed number of batches in flight.
//!
//! Every random choice of a clip (its start, its augmentations) is drawn from a stream forked
//! from the seed, the epoch and the study, so batches do not depend on the number of threads
//! or on the order in which workers finish.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use bedside_core::rng::Rng;

use super::clips::{ClipSampler, Normalization, RandPipeline, VideoArray};
use super::manifest::{Manifest, ManifestColumns, ManifestError};
use super::npy::{NPY_PREFIX_LEN, header_end, parse_header, read_npy};

/// Channels fed to every model: grayscale arrays are repeated into three channels, colour
/// arrays kept, so grayscale and RGB studies can share one model.
pub const MODEL_CHANNELS: usize = 3;

/// Errors of the data pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoaderError {
    /// The manifest (or one of the joined tables) is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A study's array could not be read or has an unusable shape.
    #[error("study row {row} ({path}): {message}")]
    Array {
        /// 0-based index of the study in the manifest.
        row: usize,
        /// The array file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A split has no studies.
    #[error("split `{split}` has no studies in the manifest (splits present: {present})")]
    EmptySplit {
        /// The split.
        split: String,
        /// The splits the manifest holds.
        present: String,
    },
    /// Loading was stopped (a consumer error or a worker panic).
    #[error("data loading stopped: {0}")]
    Stopped(String),
}

/// Whether `path` names a Parquet table (its name ends in `.parquet`, any case).
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Read a CSV table, or a Parquet table when the name ends in `.parquet`.
fn read_table(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), ManifestError> {
    if is_parquet(path) {
        return read_parquet(path);
    }
    let read = |message: String| ManifestError::Read {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| read(e.to_string()))?;
    let header = reader
        .headers()
        .map_err(|e| read(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|r| {
            r.map(|r| r.iter().map(str::to_string).collect())
                .map_err(|e| read(e.to_string()))
        })
        .collect::<Result<Vec<Vec<String>>, _>>()?;
    Ok((header, rows))
}

/// Read a Parquet table as text cells, so that it goes through the same validation as a CSV
/// one: strings as they are, integers and booleans (`true`/`false`) in decimal, floating-point
/// numbers in their shortest form that reads back to the same value, dates as `YYYYMMDD` (the
/// form of DICOM and of `bedside curate`'s CSV), nulls as empty cells (which the manifest then
/// rejects where a value is needed, naming the row and column). Other types (times, nested
/// columns) keep the Parquet library's text.
fn read_parquet(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), ManifestError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let read = |message: String| ManifestError::Read {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| read(e.to_string()))?;
    let reader = SerializedFileReader::new(file).map_err(|e| read(format!("not Parquet: {e}")))?;
    let header: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let mut rows = Vec::new();
    for row in reader {
        let row = row.map_err(|e| read(e.to_string()))?;
        let cells = row
            .get_column_iter()
            .map(|(_, field)| match field {
                Field::Null => String::new(),
                Field::Str(s) => s.clone(),
                Field::Bytes(b) => String::from_utf8_lossy(b.data()).into_owned(),
                Field::Bool(v) => v.to_string(),
                Field::Byte(v) => v.to_string(),
                Field::Short(v) => v.to_string(),
                Field::Int(v) => v.to_string(),
                Field::Long(v) => v.to_string(),
                Field::UByte(v) => v.to_string(),
                Field::UShort(v) => v.to_string(),
                Field::UInt(v) => v.to_string(),
                Field::ULong(v) => v.to_string(),
                Field::Float16(v) => f32::from(*v).to_string(),
                Field::Float(v) => v.to_string(),
                Field::Double(v) => v.to_string(),
                Field::Date(days) => {
                    let (y, m, d) = civil_from_days(i64::from(*days));
                    format!("{y:04}{m:02}{d:02}")
                }
                other => other.to_string(),
            })
            .collect();
        rows.push(cells);
    }
    Ok((header, rows))
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A table in memory: the manifest (CSV or Parquet), or the join of an array index and a
/// label sheet.
#[derive(Debug, Clone)]
pub struct Table {
    /// How the table is named in messages.
    pub origin: PathBuf,
    /// Folder against which relative array paths resolve (the index's).
    pub base: PathBuf,
    /// Column names.
    pub header: Vec<String>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
    /// Index rows without a label row (dropped by the join).
    pub unlabelled: usize,
}

impl Table {
    /// The cell of `row` in column `name`.
    pub fn cell(&self, row: usize, name: &str) -> Option<&str> {
        let col = self.header.iter().position(|h| h == name)?;
        self.rows.get(row)?.get(col).map(|s| s.trim())
    }

    /// Validate the table as a manifest.
    pub fn manifest(&self, columns: ManifestColumns) -> Result<Manifest, ManifestError> {
        Manifest::from_rows(&self.origin, &self.base, &self.header, &self.rows, columns)
    }
}

/// Read `index` alone, or `index` inner-joined with `labels` on `key` (a column of both).
/// Either table is CSV, or Parquet when its name ends in `.parquet` ([`is_parquet`]), whose
/// cells are read as the text a CSV would hold: strings as they are, numbers in decimal (floats
/// in their shortest form that reads back exactly), booleans `true`/`false`, dates `YYYYMMDD`,
/// nulls empty.
/// Columns of the label sheet win when both tables have one of the same name; a key repeated
/// in the label sheet is an error, index rows without labels are dropped (and counted).
pub fn load_table(index: &Path, labels: Option<&Path>, key: &str) -> Result<Table, ManifestError> {
    let base = index.parent().unwrap_or(Path::new(".")).to_path_buf();
    let (ih, irows) = read_table(index)?;
    let Some(labels) = labels else {
        return Ok(Table {
            origin: index.to_path_buf(),
            base,
            header: ih,
            rows: irows,
            unlabelled: 0,
        });
    };
    let (lh, lrows) = read_table(labels)?;
    let find = |header: &[String], path: &Path| {
        header
            .iter()
            .position(|h| h == key)
            .ok_or_else(|| ManifestError::MissingColumn {
                path: path.to_path_buf(),
                column: key.to_string(),
                available: header.join(", "),
            })
    };
    let ik = find(&ih, index)?;
    let lk = find(&lh, labels)?;
    let mut by_key: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, row) in lrows.iter().enumerate() {
        let k = row.get(lk).map(|s| s.trim()).unwrap_or("");
        if by_key.insert(k, i).is_some() {
            return Err(ManifestError::BadValue {
                path: labels.to_path_buf(),
                row: i + 1,
                column: key.to_string(),
                message: "join key repeated in the label table".into(),
            });
        }
    }
    let mut header: Vec<String> = lh.clone();
    let index_cols: Vec<usize> = (0..ih.len()).filter(|&c| !lh.contains(&ih[c])).collect();
    header.extend(index_cols.iter().map(|&c| ih[c].clone()));
    let mut rows = Vec::new();
    let mut unlabelled = 0;
    for row in &irows {
        let k = row.get(ik).map(|s| s.trim()).unwrap_or("");
        let Some(&l) = by_key.get(k) else {
            unlabelled += 1;
            continue;
        };
        let mut joined = lrows[l].clone();
        joined.resize(lh.len(), String::new());
        joined.extend(
            index_cols
                .iter()
                .map(|&c| row.get(c).cloned().unwrap_or_default()),
        );
        rows.push(joined);
    }
    Ok(Table {
        origin: PathBuf::from(format!(
            "{} joined with {}",
            index.display(),
            labels.display()
        )),
        base,
        header,
        rows,
        unlabelled,
    })
}

/// [`load_table`] validated as a manifest; also returns the number of unlabelled index rows.
pub fn load_manifest(
    index: &Path,
    labels: Option<&Path>,
    key: &str,
    columns: ManifestColumns,
) -> Result<(Manifest, usize), ManifestError> {
    let table = load_table(index, labels, key)?;
    Ok((table.manifest(columns)?, table.unlabelled))
}

/// Resize every frame to `size × size`, keeping the aspect ratio (area averaging, exact for
/// integer factors) and centring the result on a zero background.
pub fn resize_pad(video: &VideoArray, size: usize) -> VideoArray {
    if video.height == size && video.width == size {
        return video.clone();
    }
    let scale = size as f64 / video.height.max(video.width) as f64;
    let out_h = ((video.height as f64 * scale).round() as usize).clamp(1, size);
    let out_w = ((video.width as f64 * scale).round() as usize).clamp(1, size);
    let top = (size - out_h) / 2;
    let left = (size - out_w) / 2;
    let rows = area_weights(video.height, out_h);
    let cols = area_weights(video.width, out_w);
    let plane = size * size;
    let mut data = vec![0.0f32; video.channels * video.frames * plane];
    let mut tmp = vec![0.0f32; video.height * out_w];
    for (p, out_plane) in data.chunks_exact_mut(plane).enumerate() {
        let src = &video.data[p * video.height * video.width..(p + 1) * video.height * video.width];
        // Columns first, then rows: two 1-D passes of the separable area filter.
        for y in 0..video.height {
            let line = &src[y * video.width..(y + 1) * video.width];
            for (x, taps) in cols.iter().enumerate() {
                tmp[y * out_w + x] = taps.iter().map(|&(i, w)| line[i] * w).sum();
            }
        }
        for (y, taps) in rows.iter().enumerate() {
            let dst = &mut out_plane[(top + y) * size + left..(top + y) * size + left + out_w];
            for (x, d) in dst.iter_mut().enumerate() {
                *d = taps.iter().map(|&(i, w)| tmp[i * out_w + x] * w).sum();
            }
        }
    }
    VideoArray {
        channels: video.channels,
        frames: video.frames,
        height: size,
        width: size,
        data,
    }
}

/// For each output sample, the input samples it covers and their weights (summing to 1).
fn area_weights(input: usize, output: usize) -> Vec<Vec<(usize, f32)>> {
    let ratio = input as f64 / output as f64;
    (0..output)
        .map(|o| {
            let (lo, hi) = (o as f64 * ratio, (o + 1) as f64 * ratio);
            let mut taps = Vec::new();
            let mut i = lo.floor() as usize;
            while (i as f64) < hi && i < input {
                let overlap = (hi.min(i as f64 + 1.0) - lo.max(i as f64)).max(0.0);
                if overlap > 0.0 {
                    taps.push((i, (overlap / ratio) as f32));
                }
                i += 1;
            }
            if taps.is_empty() {
                taps.push(((lo as usize).min(input - 1), 1.0));
            }
            taps
        })
        .collect()
}

/// The shape of a `.npy` file, read from its header only, with the file size checked
/// against it (so a truncated array fails before training starts).
pub fn npy_shape(path: &Path) -> Result<Vec<usize>, String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let total = file.metadata().map_err(|e| e.to_string())?.len();
    let mut header = vec![0u8; NPY_PREFIX_LEN];
    file.read_exact(&mut header)
        .map_err(|_| "too short for a .npy file".to_string())?;
    let end = header_end(&header)?;
    if end as u64 > total {
        return Err("truncated .npy header".into());
    }
    if end > NPY_PREFIX_LEN {
        header.resize(end, 0);
        file.read_exact(&mut header[NPY_PREFIX_LEN..])
            .map_err(|e| e.to_string())?;
    }
    let parsed = parse_header(&header)?;
    if total != (parsed.data_offset + parsed.body_len()) as u64 {
        return Err(format!(
            "shape {:?} needs {} data bytes, the file holds {}",
            parsed.shape,
            parsed.body_len(),
            total - parsed.data_offset as u64
        ));
    }
    Ok(parsed.shape)
}

/// Read one study's array and resize it to `size × size`.
pub fn read_video(row: usize, path: &Path, size: usize) -> Result<VideoArray, LoaderError> {
    let fail = |message: String| LoaderError::Array {
        row,
        path: path.to_path_buf(),
        message,
    };
    let array = read_npy(path).map_err(|e| fail(e.to_string()))?;
    let video = VideoArray::from_npy(array).map_err(|e| fail(e.to_string()))?;
    if video.data.iter().any(|v| !v.is_finite()) {
        return Err(fail("the array holds NaN or infinite values".into()));
    }
    Ok(resize_pad(&video, size))
}

/// Videos of the manifest, read on demand and optionally kept (resized) in memory.
pub struct VideoStore {
    paths: Vec<PathBuf>,
    size: usize,
    cache: Option<Vec<Mutex<Option<Arc<VideoArray>>>>>,
}

impl VideoStore {
    /// A store over `paths` (indexed like the manifest's studies).
    pub fn new(paths: Vec<PathBuf>, size: usize, cache: bool) -> Self {
        let cache = cache.then(|| paths.iter().map(|_| Mutex::new(None)).collect());
        Self { paths, size, cache }
    }

    /// Video `index`, resized.
    pub fn get(&self, index: usize) -> Result<Arc<VideoArray>, LoaderError> {
        let path = self
            .paths
            .get(index)
            .ok_or_else(|| LoaderError::Stopped(format!("study index {index} is out of range")))?;
        let Some(cache) = &self.cache else {
            return Ok(Arc::new(read_video(index, path, self.size)?));
        };
        if let Ok(slot) = cache[index].lock()
            && let Some(video) = slot.as_ref()
        {
            return Ok(Arc::clone(video));
        }
        let video = Arc::new(read_video(index, path, self.size)?);
        if let Ok(mut slot) = cache[index].lock() {
            *slot = Some(Arc::clone(&video));
        }
        Ok(video)
    }

    /// Number of studies.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// Per-channel statistics over the videos `indices` as the model sees them (grayscale repeated
/// into [`MODEL_CHANNELS`] channels).
pub fn normalization_from(
    store: &VideoStore,
    indices: &[usize],
) -> Result<Normalization, LoaderError> {
    let mut sums = [(0.0f64, 0.0f64, 0.0f64); MODEL_CHANNELS];
    for &i in indices {
        let video = store.get(i)?;
        let per_channel = video.frames * video.height * video.width;
        for (c, sum) in sums.iter_mut().enumerate() {
            let source = if video.channels == 1 { 0 } else { c };
            for &v in &video.data[source * per_channel..(source + 1) * per_channel] {
                let v = f64::from(v);
                sum.0 += 1.0;
                sum.1 += v;
                sum.2 += v * v;
            }
        }
    }
    if sums[0].0 == 0.0 {
        return Err(LoaderError::Stopped(
            "no training videos to compute normalisation statistics from".into(),
        ));
    }
    let mean: Vec<f64> = sums.iter().map(|(n, s, _)| s / n).collect();
    let std = sums
        .iter()
        .zip(&mean)
        .map(|((n, _, s2), m)| {
            let var = (s2 / n - m * m).max(0.0);
            if var > 0.0 { var.sqrt() } else { 1.0 }
        })
        .collect();
    Ok(Normalization { mean, std })
}

/// Where a clip starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipStart {
    /// A start drawn at random (training), from the clip's own stream.
    Random,
    /// The middle one of the valid starts (validation during training).
    Middle,
    /// A given start (test time: every start in turn).
    At(usize),
}

/// One clip of one study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipJob {
    /// Study index in the manifest.
    pub study: usize,
    /// Where the clip starts.
    pub start: ClipStart,
    /// Whether to apply the augmentations.
    pub augment: bool,
}

/// A batch of clips ready for the model.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The clips' jobs, in batch order.
    pub jobs: Vec<ClipJob>,
    /// `[batch, 3, frames, size, size]` in C order, normalised.
    pub data: Vec<f32>,
    /// Shape of `data`.
    pub shape: [usize; 5],
}

/// Turns clip jobs into normalised clip tensors.
pub struct ClipMaker<'a> {
    /// The videos.
    pub store: &'a VideoStore,
    /// Clip length and period.
    pub sampler: ClipSampler,
    /// Augmentations (used for jobs with `augment`).
    pub pipeline: &'a RandPipeline,
    /// Normalisation statistics.
    pub normalization: &'a Normalization,
    /// Seed of the clip starts.
    pub seed: u64,
    /// Epoch (forks the streams).
    pub epoch: u64,
}

impl ClipMaker<'_> {
    /// One clip, `[3, length, size, size]`.
    pub fn clip(&self, job: ClipJob) -> Result<VideoArray, LoaderError> {
        let video = self.store.get(job.study)?;
        let start = match job.start {
            ClipStart::Random => {
                let mut rng = Rng::seed_from(self.seed)
                    .fork(self.epoch)
                    .fork(job.study as u64)
                    .fork(0x57A7);
                self.sampler.random_start(video.frames, &mut rng)
            }
            ClipStart::Middle => {
                let starts = self.sampler.all_starts(video.frames);
                starts[starts.len() / 2]
            }
            ClipStart::At(s) => s,
        };
        let mut clip = self.sampler.extract(&video, start);
        if clip.channels == 1 {
            let plane = clip.data.len();
            let mut data = Vec::with_capacity(plane * MODEL_CHANNELS);
            for _ in 0..MODEL_CHANNELS {
                data.extend_from_slice(&clip.data);
            }
            clip.data = data;
            clip.channels = MODEL_CHANNELS;
        }
        if job.augment {
            self.pipeline.apply(&mut clip, self.epoch, job.study as u64);
        }
        self.normalization
            .apply(&mut clip)
            .map_err(|e| LoaderError::Stopped(e.to_string()))?;
        Ok(clip)
    }

    /// A batch of clips.
    pub fn batch(&self, jobs: &[ClipJob]) -> Result<Batch, LoaderError> {
        let mut data = Vec::new();
        let mut shape = [jobs.len(), 0, 0, 0, 0];
        for &job in jobs {
            let clip = self.clip(job)?;
            shape[1..].copy_from_slice(&[clip.channels, clip.frames, clip.height, clip.width]);
            data.extend_from_slice(&clip.data);
        }
        Ok(Batch {
            jobs: jobs.to_vec(),
            data,
            shape,
        })
    }
}

/// Make the batches `plan` with `workers` threads and hand them to `consume` in plan order.
/// At most `prefetch` batches wait in memory. `consume` may stop early with
/// `ControlFlow::Break`; the workers then finish their current batch and exit.
pub fn run_batches<E>(
    maker: &ClipMaker<'_>,
    plan: &[Vec<ClipJob>],
    workers: usize,
    prefetch: usize,
    mut consume: impl FnMut(usize, Batch) -> Result<ControlFlow<()>, E>,
) -> Result<ControlFlow<()>, E>
where
    E: From<LoaderError>,
{
    if workers == 0 {
        for (i, jobs) in plan.iter().enumerate() {
            if consume(i, maker.batch(jobs)?)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        return Ok(ControlFlow::Continue(()));
    }
    let workers = workers.min(plan.len().max(1));
    let capacity = prefetch.div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let mut receivers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = mpsc::sync_channel::<Result<Batch, LoaderError>>(capacity);
            receivers.push(rx);
            scope.spawn(move || {
                for jobs in plan.iter().skip(w).step_by(workers) {
                    let batch = maker.batch(jobs);
                    let failed = batch.is_err();
                    // A closed channel means the consumer stopped: nothing left to do.
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            });
        }
        let mut outcome = Ok(ControlFlow::Continue(()));
        for i in 0..plan.len() {
            let batch = match receivers[i % workers].recv() {
                Ok(Ok(batch)) => batch,
                Ok(Err(e)) => {
                    outcome = Err(E::from(e));
                    break;
                }
                Err(_) => {
                    outcome = Err(E::from(LoaderError::Stopped(
                        "a loader thread ended early".into(),
                    )));
                    break;
                }
            };
            match consume(i, batch) {
                Ok(ControlFlow::Continue(())) => {}
                other => {
                    outcome = other;
                    break;
                }
            }
        }
        // Dropping the receivers unblocks workers waiting on a full channel.
        drop(receivers);
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_aspect_and_pads() {
        // 4 × 8 frame of ones → 4 × 4 square: 2 × 4 of ones centred, zero rows above and below.
        let video = VideoArray {
            channels: 1,
            frames: 1,
            height: 4,
            width: 8,
            data: vec![1.0; 32],
        };
        let out = resize_pad(&video, 4);
        let expect = [
            0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0,
        ];
        assert_eq!(out.data, expect);
    }

    #[test]
    fn dates_from_days_since_the_epoch() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    }

    #[test]
    fn area_weights_average_pairs() {
        let w = area_weights(4, 2);
        assert_eq!(w, vec![vec![(0, 0.5), (1, 0.5)], vec![(2, 0.5), (3, 0.5)]]);
    }
}
