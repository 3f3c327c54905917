//! Parsed instances: header, frames split out of the pixel data, decoding and rendering, and
//! a byte-bounded cache so that frame requests do not re-read and re-parse the file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dicom_core::value::{PixelFragmentSequence, PrimitiveValue, Value as DicomValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_pixeldata::PixelDecoder;

use crate::json::PIXEL_DATA;
use crate::store::InstanceLocator;

/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Implicit VR Little Endian.
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";

/// Why an instance could not be parsed or a frame not produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstanceError {
    /// The stored bytes are not readable DICOM.
    #[error("stored instance is not readable DICOM: {0}")]
    Read(#[from] bedside_dicom::read::ReadError),
    /// The pixel data does not fit the declared image geometry.
    #[error("pixel data inconsistent with the image attributes: {0}")]
    Geometry(String),
    /// The instance has no pixel data.
    #[error("instance has no pixel data")]
    NoPixelData,
    /// Decoding or encoding a frame failed.
    #[error("cannot decode frame: {0}")]
    Decode(String),
}

/// Pixel data split into frames, sharing one buffer where possible.
#[derive(Debug, Clone)]
pub struct Frames {
    /// One entry per frame: native bytes, or the frame's compressed bitstream.
    pub frames: Vec<Bytes>,
    /// Whether the pixel data was encapsulated (compressed).
    pub encapsulated: bool,
    /// The transfer syntax the frame bytes are in (native little-endian data from deflated or
    /// big-endian files is reported as Explicit VR Little Endian).
    pub transfer_syntax: String,
    /// The whole native pixel data value (empty when encapsulated).
    pub native: Bytes,
}

/// One instance, parsed once and kept in the cache.
#[derive(Debug)]
pub struct ParsedInstance {
    /// Where it came from.
    pub locator: InstanceLocator,
    /// Transfer syntax of the stored file.
    pub stored_transfer_syntax: String,
    /// The data set without its pixel data.
    pub header: InMemDicomObject,
    /// The frames, if the instance has pixel data.
    pub frames: Option<Frames>,
    /// Approximate memory held, for the cache budget.
    pub cost: usize,
}

fn int_of(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    let elem = obj.element_opt(tag).ok()??;
    if let Ok(v) = elem.to_int::<i64>() {
        return Some(v);
    }
    elem.to_str().ok()?.trim().parse::<i64>().ok()
}

fn text_of(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let elem = obj.element_opt(tag).ok()??;
    Some(
        elem.to_str()
            .ok()?
            .trim_end_matches(['\0', ' '])
            .to_string(),
    )
}

/// Number of frames declared (1 when absent).
pub fn number_of_frames(obj: &InMemDicomObject) -> usize {
    int_of(obj, tags::NUMBER_OF_FRAMES)
        .filter(|n| *n > 0)
        .map(|n| n as usize)
        .unwrap_or(1)
}

impl ParsedInstance {
    /// Parses stored bytes and splits the pixel data into frames.
    pub fn parse(locator: InstanceLocator, bytes: &Bytes) -> Result<Self, InstanceError> {
        let file = bedside_dicom::read::read_bytes(bytes)?;
        let stored_ts = file
            .meta()
            .transfer_syntax()
            .trim_end_matches(['\0', ' '])
            .to_string();
        let mut header = file.into_inner();
        let pixel = header.take_element(PIXEL_DATA).ok();
        let frames = match pixel {
            None => None,
            Some(elem) => Some(split_frames(&header, elem.into_value(), &stored_ts)?),
        };
        let cost = frames
            .as_ref()
            .map(|f| {
                f.frames
                    .iter()
                    .map(Bytes::len)
                    .sum::<usize>()
                    .max(f.native.len())
            })
            .unwrap_or(0)
            + 64 * 1024;
        Ok(Self {
            locator,
            stored_transfer_syntax: stored_ts,
            header,
            frames,
            cost,
        })
    }

    /// Frame `number` (1-based), or `None` when out of range.
    pub fn frame(&self, number: usize) -> Option<&Bytes> {
        let frames = self.frames.as_ref()?;
        frames.frames.get(number.checked_sub(1)?)
    }

    /// Number of frames held.
    pub fn frame_count(&self) -> usize {
        self.frames.as_ref().map(|f| f.frames.len()).unwrap_or(0)
    }

    /// Decodes frame `number` (1-based) into native little-endian samples.
    pub fn decode_frame(&self, number: usize) -> Result<DecodedFrame, InstanceError> {
        let frames = self.frames.as_ref().ok_or(InstanceError::NoPixelData)?;
        let bytes = self
            .frame(number)
            .ok_or_else(|| InstanceError::Geometry("frame out of range".into()))?;
        // A one-frame copy of the header lets the decoder see a plain single-frame image.
        let mut obj = self.header.clone();
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from("1"),
        ));
        let ts = if frames.encapsulated {
            obj.put(DataElement::new(
                PIXEL_DATA,
                VR::OB,
                DicomValue::PixelSequence(PixelFragmentSequence::new(
                    Vec::<u32>::new(),
                    vec![bytes.to_vec()],
                )),
            ));
            self.stored_transfer_syntax.clone()
        } else {
            obj.put(DataElement::new(
                PIXEL_DATA,
                if int_of(&self.header, tags::BITS_ALLOCATED).unwrap_or(8) > 8 {
                    VR::OW
                } else {
                    VR::OB
                },
                PrimitiveValue::U8(bytes.to_vec().into()),
            ));
            EXPLICIT_VR_LE.to_string()
        };
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(ts)
            .media_storage_sop_class_uid(self.locator.sop_class_uid.clone())
            .media_storage_sop_instance_uid(self.locator.sop_instance_uid.clone())
            .build()
            .map_err(|e| InstanceError::Decode(e.to_string()))?;
        let file = obj.with_exact_meta(meta);
        let decoded = file
            .decode_pixel_data()
            .map_err(|e| InstanceError::Decode(e.to_string()))?;
        let samples = decoded.samples_per_pixel() as usize;
        let rows = decoded.rows() as usize;
        let columns = decoded.columns() as usize;
        let planar =
            decoded.planar_configuration() == dicom_pixeldata::PlanarConfiguration::Standard;
        let values: Vec<f64> = decoded
            .to_vec_frame(0)
            .map_err(|e| InstanceError::Decode(e.to_string()))?;
        let raw = decoded.data().to_vec();
        let photometric = decoded.photometric_interpretation().as_str().to_string();
        Ok(DecodedFrame {
            rows,
            columns,
            samples,
            interleaved: planar,
            photometric,
            bits_stored: decoded.bits_stored(),
            values,
            raw,
        })
    }
}

/// A decoded frame.
#[derive(Debug, Clone)]
pub struct DecodedFrame {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub columns: usize,
    /// Samples per pixel.
    pub samples: usize,
    /// Whether samples are interleaved (colour-by-pixel).
    pub interleaved: bool,
    /// Photometric interpretation after decoding.
    pub photometric: String,
    /// Bits stored.
    pub bits_stored: u16,
    /// Sample values with the modality LUT (rescale) applied.
    pub values: Vec<f64>,
    /// Native little-endian bytes as decoded (Explicit VR Little Endian frame).
    pub raw: Vec<u8>,
}

fn split_frames(
    header: &InMemDicomObject,
    value: DicomValue<InMemDicomObject, Vec<u8>>,
    stored_ts: &str,
) -> Result<Frames, InstanceError> {
    let count = number_of_frames(header);
    match value {
        DicomValue::PixelSequence(seq) => {
            let (offsets, fragments) = seq.into_parts();
            let fragments: Vec<Bytes> = fragments.into_iter().map(Bytes::from).collect();
            let frames = if count == 1 {
                if fragments.len() == 1 {
                    fragments
                } else {
                    vec![Bytes::from(fragments.concat())]
                }
            } else if fragments.len() == count {
                fragments
            } else if offsets.len() == count {
                group_by_offsets(&offsets, &fragments)?
            } else {
                return Err(InstanceError::Geometry(format!(
                    "{} fragments for {count} frames and no usable offset table",
                    fragments.len()
                )));
            };
            Ok(Frames {
                frames,
                encapsulated: true,
                transfer_syntax: stored_ts.to_string(),
                native: Bytes::new(),
            })
        }
        DicomValue::Primitive(p) => {
            let native = match p {
                PrimitiveValue::U8(v) => Bytes::from(v.into_vec()),
                other => Bytes::from(other.to_bytes().into_owned()),
            };
            let rows = int_of(header, tags::ROWS).unwrap_or(0).max(0) as usize;
            let columns = int_of(header, tags::COLUMNS).unwrap_or(0).max(0) as usize;
            let samples = int_of(header, tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1) as usize;
            let bits = int_of(header, tags::BITS_ALLOCATED).unwrap_or(8).max(1) as usize;
            let frame_bits = rows
                .checked_mul(columns)
                .and_then(|n| n.checked_mul(samples))
                .and_then(|n| n.checked_mul(bits))
                .ok_or_else(|| InstanceError::Geometry("image size overflows".into()))?;
            if frame_bits == 0 || !frame_bits.is_multiple_of(8) {
                return Err(InstanceError::Geometry(
                    "frames are empty or not whole bytes".into(),
                ));
            }
            let frame_len = frame_bits / 8;
            if native.len() < frame_len.saturating_mul(count) {
                return Err(InstanceError::Geometry(format!(
                    "{} bytes of pixel data for {count} frames of {frame_len} bytes",
                    native.len()
                )));
            }
            let frames = (0..count)
                .map(|i| native.slice(i * frame_len..(i + 1) * frame_len))
                .collect();
            let transfer_syntax = if stored_ts == IMPLICIT_VR_LE {
                IMPLICIT_VR_LE
            } else {
                EXPLICIT_VR_LE
            };
            Ok(Frames {
                frames,
                encapsulated: false,
                transfer_syntax: transfer_syntax.to_string(),
                native,
            })
        }
        DicomValue::Sequence(_) => Err(InstanceError::Geometry("pixel data is a sequence".into())),
    }
}

/// Groups fragments into frames with the basic offset table (offsets count item headers).
fn group_by_offsets(offsets: &[u32], fragments: &[Bytes]) -> Result<Vec<Bytes>, InstanceError> {
    let mut starts = Vec::with_capacity(fragments.len());
    let mut pos = 0u64;
    for f in fragments {
        starts.push(pos);
        pos += 8 + f.len() as u64;
    }
    let mut frames = Vec::with_capacity(offsets.len());
    for (i, &offset) in offsets.iter().enumerate() {
        let end = offsets
            .get(i + 1)
            .map(|&o| u64::from(o))
            .unwrap_or(u64::MAX);
        let parts: Vec<&Bytes> = fragments
            .iter()
            .zip(&starts)
            .filter(|(_, s)| **s >= u64::from(offset) && **s < end)
            .map(|(f, _)| f)
            .collect();
        if parts.is_empty() {
            return Err(InstanceError::Geometry(
                "offset table points between fragments".into(),
            ));
        }
        frames.push(if parts.len() == 1 {
            parts[0].clone()
        } else {
            Bytes::from(
                parts
                    .iter()
                    .flat_map(|b| b.iter().copied())
                    .collect::<Vec<u8>>(),
            )
        });
    }
    Ok(frames)
}

/// Output format of a rendered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderFormat {
    /// JPEG with a quality 1–100.
    Jpeg(u8),
    /// PNG.
    Png,
}

/// The VOI function of a window (PS3.3 C.11.2.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WindowFunction {
    /// LINEAR.
    Linear,
    /// LINEAR_EXACT.
    LinearExact,
    /// SIGMOID.
    Sigmoid,
}

/// Window centre, width and function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Centre.
    pub center: f64,
    /// Width (> 0; at least 1 for LINEAR).
    pub width: f64,
    /// Function.
    pub function: WindowFunction,
}

impl Window {
    fn apply(&self, x: f64) -> f64 {
        let (c, w) = (self.center, self.width);
        match self.function {
            WindowFunction::Linear => {
                let w = w.max(1.0);
                if x <= c - 0.5 - (w - 1.0) / 2.0 {
                    0.0
                } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                    255.0
                } else {
                    ((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
                }
            }
            WindowFunction::LinearExact => ((x - c) / w + 0.5).clamp(0.0, 1.0) * 255.0,
            WindowFunction::Sigmoid => 255.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
        }
    }
}

/// Renders frame `number` (1-based) as an 8-bit image. Without an explicit window the file's
/// first WindowCenter/WindowWidth is used; 8-bit data without one is shown as stored, deeper
/// data is stretched from its minimum to its maximum.
pub fn render(
    instance: &ParsedInstance,
    number: usize,
    window: Option<Window>,
    format: RenderFormat,
) -> Result<Vec<u8>, InstanceError> {
    let frame = instance.decode_frame(number)?;
    let pixels = frame.rows * frame.columns;
    if frame.values.len() < pixels * frame.samples {
        return Err(InstanceError::Decode("decoded frame is short".into()));
    }
    let file_window = || {
        let c = instance
            .header
            .element_opt(tags::WINDOW_CENTER)
            .ok()??
            .to_multi_float64()
            .ok()?
            .first()
            .copied()?;
        let w = instance
            .header
            .element_opt(tags::WINDOW_WIDTH)
            .ok()??
            .to_multi_float64()
            .ok()?
            .first()
            .copied()?;
        (w > 0.0).then_some(Window {
            center: c,
            width: w,
            function: WindowFunction::Linear,
        })
    };
    let window = window.or_else(file_window).or_else(|| {
        if frame.bits_stored <= 8 {
            None
        } else {
            let (lo, hi) = frame
                .values
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            Some(Window {
                center: (lo + hi) / 2.0,
                width: (hi - lo).max(1.0),
                function: WindowFunction::LinearExact,
            })
        }
    });
    let invert = frame.photometric == "MONOCHROME1";
    let color = frame.samples == 3;
    let mut out = Vec::with_capacity(pixels * if color { 3 } else { 1 });
    let map = |v: f64| -> u8 {
        let y = match window {
            Some(w) => w.apply(v),
            None => v,
        };
        let y = y.round().clamp(0.0, 255.0) as u8;
        if invert { 255 - y } else { y }
    };
    if color {
        for p in 0..pixels {
            for s in 0..3 {
                let idx = if frame.interleaved {
                    p * 3 + s
                } else {
                    s * pixels + p
                };
                out.push(map(frame.values[idx]));
            }
        }
    } else {
        for p in 0..pixels {
            out.push(map(frame.values[p * frame.samples]));
        }
    }
    let width = u16::try_from(frame.columns)
        .map_err(|_| InstanceError::Decode("image too wide to render".into()))?;
    let height = u16::try_from(frame.rows)
        .map_err(|_| InstanceError::Decode("image too tall to render".into()))?;
    let mut encoded = Vec::new();
    match format {
        RenderFormat::Jpeg(quality) => {
            let color_type = if color {
                jpeg_encoder::ColorType::Rgb
            } else {
                jpeg_encoder::ColorType::Luma
            };
            jpeg_encoder::Encoder::new(&mut encoded, quality.clamp(1, 100))
                .encode(&out, width, height, color_type)
                .map_err(|e| InstanceError::Decode(e.to_string()))?;
        }
        RenderFormat::Png => {
            let mut enc = png::Encoder::new(&mut encoded, u32::from(width), u32::from(height));
            enc.set_color(if color {
                png::ColorType::Rgb
            } else {
                png::ColorType::Grayscale
            });
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc
                .write_header()
                .map_err(|e| InstanceError::Decode(e.to_string()))?;
            writer
                .write_image_data(&out)
                .map_err(|e| InstanceError::Decode(e.to_string()))?;
            writer
                .finish()
                .map_err(|e| InstanceError::Decode(e.to_string()))?;
        }
    }
    Ok(encoded)
}

/// Text of an attribute in the header, trimmed.
pub fn header_text(instance: &ParsedInstance, tag: Tag) -> Option<String> {
    text_of(&instance.header, tag)
}

struct CacheEntry {
    instance: Arc<ParsedInstance>,
    last_used: u64,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<String, CacheEntry>,
    total: usize,
    tick: u64,
}

/// Parsed instances by SOP Instance UID, evicting the least recently used beyond a byte budget.
pub struct InstanceCache {
    budget: usize,
    inner: Mutex<CacheInner>,
}

impl InstanceCache {
    /// A cache holding about `budget` bytes of pixel data.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// The cached instance with this SOP Instance UID, if held.
    pub fn get(&self, sop_instance_uid: &str) -> Option<Arc<ParsedInstance>> {
        let mut inner = self.inner.lock().ok()?;
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(sop_instance_uid)?;
        entry.last_used = tick;
        Some(entry.instance.clone())
    }

    /// Keeps an instance, evicting others as needed; instances larger than the budget are not
    /// kept.
    pub fn insert(&self, instance: Arc<ParsedInstance>) {
        if instance.cost > self.budget {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.tick += 1;
        let tick = inner.tick;
        let key = instance.locator.sop_instance_uid.clone();
        let cost = instance.cost;
        if let Some(old) = inner.entries.insert(
            key,
            CacheEntry {
                instance,
                last_used: tick,
            },
        ) {
            inner.total -= old.instance.cost;
        }
        inner.total += cost;
        while inner.total > self.budget {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.total -= e.instance.cost;
            }
        }
    }

    /// Forgets an instance (after it was replaced or removed).
    pub fn remove(&self, sop_instance_uid: &str) {
        if let Ok(mut inner) = self.inner.lock()
            && let Some(e) = inner.entries.remove(sop_instance_uid)
        {
            inner.total -= e.instance.cost;
        }
    }
}
