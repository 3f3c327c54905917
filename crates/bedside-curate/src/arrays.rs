//! ML-ready arrays: the frames of a series in acquisition order, at native resolution and
//! without loss, as NumPy `.npy` with a JSON sidecar.
//!
//! Layout: `[frames, rows, columns]` for one sample per pixel, `[frames, rows, columns, 3]` for
//! colour (interleaved RGB, or YBR where the file stores YBR uncompressed); dtype `uint8`,
//! `uint16` or `int16` as stored (no rescale applied: slope and intercept are in the sidecar).
//! Frames are ordered by temporal position, then slice position along the slice normal, then
//! instance number; a multi-frame instance keeps its stored frame order.
//!
//! With [`ArrayOptions::resize`], a copy resized for training is written beside each array
//! (`<name>.<S>x<S>.npy` and `.json`; see [`crate::resize`]).

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{PixelDecoder, PixelRepresentation, PlanarConfiguration};
use serde::Serialize;

use bedside_core::npy::{self, Dtype};

/// Why a series could not be written as an array.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArrayError {
    /// A member could not be read or decoded.
    #[error("{file}: {message}")]
    Member {
        /// The (curated) file.
        file: PathBuf,
        /// What failed.
        message: String,
    },
    /// Members do not share one geometry.
    #[error("series mixes image geometries ({0})")]
    MixedGeometry(String),
    /// Unsupported sample layout.
    #[error("unsupported pixel layout: {0}")]
    Unsupported(String),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One instance of a series, with what orders it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Path of the curated DICOM file.
    pub path: PathBuf,
    /// SOP Instance UID (pseudonymous).
    pub sop_instance_uid: String,
    /// Temporal position (TemporalPositionIdentifier, else TriggerTime).
    pub temporal: Option<f64>,
    /// Position along the slice normal (from ImagePositionPatient/ImageOrientationPatient), else
    /// SliceLocation.
    pub slice_position: Option<f64>,
    /// Instance number.
    pub instance_number: Option<i64>,
}

impl Member {
    /// Reads the ordering keys from a header.
    pub fn from_object(path: PathBuf, obj: &DefaultDicomObject) -> Member {
        let floats = |tag| {
            obj.element(tag)
                .ok()
                .and_then(|e| e.to_multi_float64().ok())
                .unwrap_or_default()
        };
        let float = |tag| floats(tag).first().copied();
        let ipp = floats(tags::IMAGE_POSITION_PATIENT);
        let iop = floats(tags::IMAGE_ORIENTATION_PATIENT);
        let slice_position = if ipp.len() == 3 && iop.len() == 6 {
            let n = [
                iop[1] * iop[5] - iop[2] * iop[4],
                iop[2] * iop[3] - iop[0] * iop[5],
                iop[0] * iop[4] - iop[1] * iop[3],
            ];
            Some(ipp[0] * n[0] + ipp[1] * n[1] + ipp[2] * n[2])
        } else {
            float(tags::SLICE_LOCATION)
        };
        Member {
            sop_instance_uid: obj
                .element(tags::SOP_INSTANCE_UID)
                .ok()
                .and_then(|e| {
                    e.to_str()
                        .ok()
                        .map(|s| s.trim_end_matches('\0').to_string())
                })
                .unwrap_or_default(),
            temporal: float(tags::TEMPORAL_POSITION_IDENTIFIER)
                .or_else(|| float(tags::TRIGGER_TIME)),
            slice_position,
            instance_number: obj
                .element(tags::INSTANCE_NUMBER)
                .ok()
                .and_then(|e| e.to_int::<i64>().ok()),
            path,
        }
    }
}

/// Sorts members into acquisition order (stable; missing keys sort last).
pub fn acquisition_order(members: &mut [Member]) {
    let key = |v: Option<f64>| v.unwrap_or(f64::INFINITY);
    members.sort_by(|a, b| {
        key(a.temporal)
            .total_cmp(&key(b.temporal))
            .then(key(a.slice_position).total_cmp(&key(b.slice_position)))
            .then(
                a.instance_number
                    .unwrap_or(i64::MAX)
                    .cmp(&b.instance_number.unwrap_or(i64::MAX)),
            )
            .then(a.sop_instance_uid.cmp(&b.sop_instance_uid))
    });
}

/// The sidecar of an array.
#[derive(Debug, Clone, Serialize)]
pub struct Sidecar {
    /// The array file name.
    pub array: String,
    /// Series Instance UID (pseudonymous).
    pub series_instance_uid: String,
    /// Modality.
    pub modality: String,
    /// Array shape.
    pub shape: Vec<usize>,
    /// NumPy dtype.
    pub dtype: &'static str,
    /// Colour model of the samples.
    pub photometric: String,
    /// Frame time in milliseconds (cines).
    pub frame_time_ms: Option<f64>,
    /// Pixel spacing (row, column) in millimetres.
    pub pixel_spacing_mm: Option<(f64, f64)>,
    /// Ultrasound physical deltas (x, y) and their unit code (3 = cm).
    pub us_physical_delta: Option<(f64, f64, u16)>,
    /// Slice positions along the normal, per frame (volumes).
    pub slice_positions_mm: Vec<Option<f64>>,
    /// Rescale slope and intercept (apply to get modality units, e.g. HU).
    pub rescale: Option<(f64, f64)>,
    /// SOP Instance UID of each frame's instance.
    pub instances: Vec<String>,
    /// How frames were ordered.
    pub order: &'static str,
    /// The resized copy written beside this array, if one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resized: Option<String>,
}

/// What to write besides the native array.
#[derive(Debug, Clone, Default)]
pub struct ArrayOptions {
    /// Also write a copy resized to S×S ([`crate::resize`]).
    pub resize: Option<u32>,
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ArrayError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| ArrayError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    bedside_core::fsio::write_atomic(path, &text).map_err(|source| ArrayError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the members of one series (already in acquisition order) as `<name>.npy` and
/// `<name>.json` in `dir`.
pub fn write_series(members: &[Member], dir: &Path, name: &str) -> Result<Sidecar, ArrayError> {
    write_series_with(members, dir, name, &ArrayOptions::default())
}

/// [`write_series`], plus what `options` asks for.
pub fn write_series_with(
    members: &[Member],
    dir: &Path,
    name: &str,
    options: &ArrayOptions,
) -> Result<Sidecar, ArrayError> {
    let mut regions = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut geometry: Option<(u32, u32, u16, u16, PixelRepresentation)> = None;
    let mut frames_total = 0usize;
    let mut sidecar: Option<Sidecar> = None;
    let mut positions = Vec::new();
    let mut instances = Vec::new();
    for m in members {
        let member_err = |message: String| ArrayError::Member {
            file: m.path.clone(),
            message,
        };
        let bytes = std::fs::read(&m.path).map_err(|e| member_err(e.to_string()))?;
        let obj = bedside_dicom::read::read_bytes(&bytes).map_err(|e| member_err(e.to_string()))?;
        let decoded = obj
            .decode_pixel_data()
            .map_err(|e| member_err(e.to_string()))?;
        let g = (
            decoded.rows(),
            decoded.columns(),
            decoded.samples_per_pixel(),
            decoded.bits_allocated(),
            decoded.pixel_representation(),
        );
        match geometry {
            None => geometry = Some(g),
            Some(first) if first != g => {
                return Err(ArrayError::MixedGeometry(format!(
                    "{}x{}x{} {}-bit vs {}x{}x{} {}-bit",
                    first.0, first.1, first.2, first.3, g.0, g.1, g.2, g.3
                )));
            }
            Some(_) => {}
        }
        if !(g.3 == 8 || g.3 == 16) || !(g.2 == 1 || g.2 == 3) {
            return Err(ArrayError::Unsupported(format!(
                "{}-bit, {} samples",
                g.3, g.2
            )));
        }
        let plane = (g.0 * g.1) as usize;
        let spp = g.2 as usize;
        let bps = (g.3 / 8) as usize;
        let frames = decoded.number_of_frames() as usize;
        let raw = decoded.data();
        let need = frames * plane * spp * bps;
        if raw.len() < need {
            return Err(member_err(format!(
                "decoded {} bytes, expected {need}",
                raw.len()
            )));
        }
        if spp == 3 && decoded.planar_configuration() == PlanarConfiguration::PixelFirst {
            // Interleave colour planes so every array is [.., rows, columns, 3].
            for f in 0..frames {
                let frame = &raw[f * plane * 3 * bps..(f + 1) * plane * 3 * bps];
                for i in 0..plane {
                    for k in 0..3 {
                        let at = (k * plane + i) * bps;
                        data.extend_from_slice(&frame[at..at + bps]);
                    }
                }
            }
        } else {
            data.extend_from_slice(&raw[..need]);
        }
        frames_total += frames;
        positions.extend(std::iter::repeat_n(m.slice_position, frames));
        instances.extend(std::iter::repeat_n(m.sop_instance_uid.clone(), frames));
        if sidecar.is_none() {
            let record = crate::metadata::extract(&obj);
            if record.modality == "US" {
                regions = crate::resize::tissue_regions(&obj, g.0 as usize, g.1 as usize);
            }
            let slope = obj
                .element(tags::RESCALE_SLOPE)
                .ok()
                .and_then(|e| e.to_float64().ok());
            let intercept = obj
                .element(tags::RESCALE_INTERCEPT)
                .ok()
                .and_then(|e| e.to_float64().ok());
            sidecar = Some(Sidecar {
                array: format!("{name}.npy"),
                series_instance_uid: record.series_instance_uid,
                modality: record.modality,
                shape: Vec::new(),
                dtype: "",
                photometric: decoded.photometric_interpretation().to_string(),
                frame_time_ms: record.frame_time_ms,
                pixel_spacing_mm: record.pixel_spacing_mm,
                us_physical_delta: record
                    .us_physical_delta
                    .map(|(x, y)| (x, y, record.us_physical_units.unwrap_or(0))),
                slice_positions_mm: Vec::new(),
                rescale: slope.zip(intercept),
                instances: Vec::new(),
                order: "temporal position, slice position along the normal, instance number; stored frame order within an instance",
                resized: None,
            });
        }
    }
    let (Some(mut side), Some(g)) = (sidecar, geometry) else {
        return Err(ArrayError::Unsupported("empty series".into()));
    };
    let dtype = match (g.3, g.4) {
        (8, _) => Dtype::U8,
        (_, PixelRepresentation::Signed) => Dtype::I16,
        _ => Dtype::U16,
    };
    let mut shape = vec![frames_total, g.0 as usize, g.1 as usize];
    if g.2 == 3 {
        shape.push(3);
    }
    let npy_path = dir.join(format!("{name}.npy"));
    bedside_core::fsio::write_atomic_with(&npy_path, |w| npy::write_npy(w, dtype, &shape, &data))
        .map_err(|source| ArrayError::Io {
        path: npy_path.clone(),
        source,
    })?;
    side.shape = shape;
    side.dtype = match dtype {
        Dtype::U8 => "uint8",
        Dtype::I16 => "int16",
        _ => "uint16",
    };
    side.slice_positions_mm = if positions.iter().any(Option::is_some) {
        positions
    } else {
        Vec::new()
    };
    side.instances = instances;
    if let Some(size) = options.resize {
        let sample = match dtype {
            Dtype::U8 => crate::resize::Sample::U8,
            Dtype::I16 => crate::resize::Sample::I16,
            _ => crate::resize::Sample::U16,
        };
        let (rows, columns, spp) = (g.0 as usize, g.1 as usize, g.2 as usize);
        let array = crate::resize::Frames {
            data: &data,
            sample,
            frames: frames_total,
            rows,
            columns,
            spp,
        };
        let (resized, geometry, source) =
            crate::resize::training_copy(&array, &regions, side.modality == "US", size as usize)
                .ok_or_else(|| {
                    ArrayError::Unsupported("cannot resize: crop outside the image".into())
                })?;
        let s = geometry.size;
        let mut rshape = vec![frames_total, s, s];
        if spp == 3 {
            rshape.push(3);
        }
        let rname = format!("{name}.{s}x{s}");
        let rpath = dir.join(format!("{rname}.npy"));
        bedside_core::fsio::write_atomic_with(&rpath, |w| {
            npy::write_npy(w, dtype, &rshape, &resized)
        })
        .map_err(|source| ArrayError::Io {
            path: rpath.clone(),
            source,
        })?;
        let rside = crate::resize::ResizedSidecar::new(
            &geometry,
            source,
            &side,
            format!("{rname}.npy"),
            rshape,
        );
        write_json(&dir.join(format!("{rname}.json")), &rside)?;
        side.resized = Some(format!("{rname}.npy"));
    }
    write_json(&dir.join(format!("{name}.json")), &side)?;
    Ok(side)
}
