//! Loading PyTorch state_dicts (`.pt`/`.pth` pickles or `.safetensors`) into burn modules with
//! a strict report of missing, unexpected and mis-shaped keys.
//!
//! torchvision's keys are renamed to this crate's field names by [`torchvision_video_key`]
//! (e.g. `layer1.0.conv1.0.0.weight` → `layer1.0.conv1.conv.spatial.weight`); BatchNorm
//! `weight`/`bias` become burn's `gamma`/`beta` and Linear weights are transposed by burn's
//! PyTorch adapter. Every key of the file and every parameter of the model ends up in exactly
//! one list of the [`LoadReport`]; nothing is skipped silently.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::store::{
    ApplyError, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};

use crate::error::MlError;

/// Where the weights come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WeightSource {
    /// A file: `.safetensors`, otherwise read as a PyTorch pickle (`.pt`, `.pth`).
    File(PathBuf),
    /// SafeTensors bytes already in memory.
    SafetensorsBytes(Vec<u8>),
    /// A PyTorch checkpoint whose state_dict sits under a top-level key (e.g. `state_dict`
    /// in Lightning checkpoints); strip any module prefix in the renaming function.
    PytorchCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// The key of the state_dict inside the checkpoint.
        key: String,
    },
}

/// Whether a mismatch fails the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Any missing, unexpected or mis-shaped key is an error ([`MlError::WeightMismatch`]).
    Strict,
    /// Load what matches and return the report (a fine-tuning start from other heads).
    Lenient,
}

/// A parameter whose shape differs between the file and the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// Key in the file.
    pub key: String,
    /// Shape the model expects (after burn's PyTorch adapter).
    pub expected: Vec<usize>,
    /// Shape in the file (after the adapter).
    pub found: Vec<usize>,
}

/// The outcome of matching a state_dict against a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// File keys loaded into the model.
    pub applied: Vec<String>,
    /// Model parameters (burn paths) the file did not provide.
    pub missing: Vec<String>,
    /// File keys with no parameter in the model.
    pub unexpected: Vec<String>,
    /// File keys whose shape differs from the model's.
    pub mismatched: Vec<ShapeMismatch>,
    /// File keys deliberately ignored: PyTorch's `num_batches_tracked` counters.
    pub ignored: Vec<String>,
    /// Other per-key problems (dtype, conversion).
    pub errors: Vec<String>,
}

impl LoadReport {
    /// True when every model parameter was loaded and every file key was used (or ignored).
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.errors.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} applied, {} missing, {} unexpected, {} mis-shaped, {} ignored, {} other errors",
            self.applied.len(),
            self.missing.len(),
            self.unexpected.len(),
            self.mismatched.len(),
            self.ignored.len(),
            self.errors.len()
        )?;
        for key in &self.missing {
            writeln!(f, "  missing in file: {key}")?;
        }
        for key in &self.unexpected {
            writeln!(f, "  unexpected in file: {key}")?;
        }
        for m in &self.mismatched {
            writeln!(
                f,
                "  shape of {}: model {:?}, file {:?}",
                m.key, m.expected, m.found
            )?;
        }
        for e in &self.errors {
            writeln!(f, "  error: {e}")?;
        }
        Ok(())
    }
}

/// Rename one torchvision video-ResNet key to this crate's module path.
///
/// `stem.{0,1,3,4}` → `stem.{conv1,bn1,conv2,bn2}`; in blocks `convN.0` → `convN.conv.full`
/// (single convolution), `convN.0.{0,1,3}` → `convN.conv.{spatial,spatial_bn,temporal}`
/// ((2+1)D), `convN.1` → `convN.bn`; `downsample.{0,1}` → `downsample.{conv,bn}`. Other keys
/// (`fc.*`) are unchanged.
pub fn torchvision_video_key(key: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    let mut out: Vec<String> = Vec::with_capacity(parts.len() + 2);
    let mut i = 0;
    while i < parts.len() {
        let part = parts[i];
        let next = parts.get(i + 1).copied();
        let after = parts.get(i + 2).copied();
        // A parameter name is the last segment; index segments are followed by more.
        let has_more = |k: usize| k + 1 < parts.len();
        match (part, next) {
            ("stem", Some(idx)) if i == 0 && has_more(i + 1) => {
                out.push("stem".into());
                out.push(
                    match idx {
                        "0" => "conv1",
                        "1" => "bn1",
                        "3" => "conv2",
                        "4" => "bn2",
                        other => other,
                    }
                    .into(),
                );
                i += 2;
            }
            ("conv1" | "conv2", Some("0")) if has_more(i + 1) => {
                out.push(part.into());
                out.push("conv".into());
                match after {
                    Some(sub @ ("0" | "1" | "3")) if has_more(i + 2) => {
                        out.push(
                            match sub {
                                "0" => "spatial",
                                "1" => "spatial_bn",
                                _ => "temporal",
                            }
                            .into(),
                        );
                        i += 3;
                    }
                    _ => {
                        out.push("full".into());
                        i += 2;
                    }
                }
            }
            ("conv1" | "conv2", Some("1")) if has_more(i + 1) => {
                out.push(part.into());
                out.push("bn".into());
                i += 2;
            }
            ("downsample", Some(idx @ ("0" | "1"))) if has_more(i + 1) => {
                out.push("downsample".into());
                out.push(if idx == "0" { "conv" } else { "bn" }.into());
                i += 2;
            }
            _ => {
                out.push(part.into());
                i += 1;
            }
        }
    }
    out.join(".")
}

fn read_tensors(
    source: &WeightSource,
) -> Result<BTreeMap<String, burn::store::burn_pack::Tensor>, MlError> {
    let read_error = |message: String| MlError::ReadWeights {
        path: match source {
            WeightSource::File(p) | WeightSource::PytorchCheckpoint { path: p, .. } => p.clone(),
            WeightSource::SafetensorsBytes(_) => PathBuf::from("<memory>"),
        },
        message,
    };
    match source {
        WeightSource::File(path) if is_safetensors(path) => {
            let mut store = SafetensorsStore::from_file(path.clone());
            store
                .get_all_tensors()
                .cloned()
                .map_err(|e| read_error(e.to_string()))
        }
        WeightSource::File(path) => {
            let mut store = PytorchStore::from_file(path.clone()).map_indices_contiguous(false);
            store
                .get_all_tensors()
                .cloned()
                .map_err(|e| read_error(e.to_string()))
        }
        WeightSource::PytorchCheckpoint { path, key } => {
            let mut store = PytorchStore::from_file(path.clone())
                .with_top_level_key(key.clone())
                .map_indices_contiguous(false);
            store
                .get_all_tensors()
                .cloned()
                .map_err(|e| read_error(e.to_string()))
        }
        WeightSource::SafetensorsBytes(bytes) => {
            let mut store = SafetensorsStore::from_bytes(Some(bytes.clone()));
            store
                .get_all_tensors()
                .cloned()
                .map_err(|e| read_error(e.to_string()))
        }
    }
}

fn is_safetensors(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

/// Load a state_dict into `model`, renaming keys with `rename` (e.g.
/// [`torchvision_video_key`]), and report what matched.
///
/// In [`LoadMode::Strict`] any missing, unexpected or mis-shaped key returns
/// [`MlError::WeightMismatch`] and the model is dropped.
pub fn load_state_dict<M>(
    mut model: M,
    source: &WeightSource,
    rename: impl Fn(&str) -> String,
    mode: LoadMode,
) -> Result<(M, LoadReport), MlError>
where
    M: ModuleSnapshot,
{
    let tensors = read_tensors(source)?;
    let mut report = LoadReport::default();
    // burn path -> file key, to report in the file's own names.
    let mut file_key: BTreeMap<String, String> = BTreeMap::new();
    let mut to_apply = Vec::with_capacity(tensors.len());
    for (key, mut tensor) in tensors {
        if key.ends_with("num_batches_tracked") {
            report.ignored.push(key);
            continue;
        }
        let path = rename(&key);
        if let Some(previous) = file_key.insert(path.clone(), key.clone()) {
            report.errors.push(format!(
                "`{previous}` and `{key}` both map to model parameter `{path}`"
            ));
        }
        tensor.name = path;
        to_apply.push(tensor);
    }
    let result = model.apply(to_apply, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    // burn's adapter renames BatchNorm `weight`/`bias` to `gamma`/`beta` after our renaming.
    let name_of = |path: &str| {
        let unadapted = path
            .strip_suffix(".gamma")
            .map(|p| format!("{p}.weight"))
            .or_else(|| path.strip_suffix(".beta").map(|p| format!("{p}.bias")));
        file_key
            .get(path)
            .or_else(|| unadapted.and_then(|p| file_key.get(&p)))
            .cloned()
            .unwrap_or_else(|| path.to_string())
    };
    report.missing = result
        .missing
        .iter()
        .map(|(path, _)| path.clone())
        .collect();
    report.unexpected = result.unused.iter().map(|p| name_of(p)).collect();
    let mut failed = std::collections::BTreeSet::new();
    for error in &result.errors {
        match error {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => {
                failed.insert(path.clone());
                report.mismatched.push(ShapeMismatch {
                    key: name_of(path),
                    expected: expected.as_slice().to_vec(),
                    found: found.as_slice().to_vec(),
                });
            }
            ApplyError::DTypeMismatch { path, .. }
            | ApplyError::AdapterError { path, .. }
            | ApplyError::LoadError { path, .. } => {
                failed.insert(path.clone());
                report.errors.push(error.to_string());
            }
        }
    }
    report.applied = result
        .applied
        .iter()
        .filter(|p| !failed.contains(*p))
        .map(|p| name_of(p))
        .collect();
    if mode == LoadMode::Strict && !report.is_clean() {
        return Err(MlError::WeightMismatch {
            report: Box::new(report),
        });
    }
    Ok((model, report))
}

/// Load torchvision video-ResNet weights ([`torchvision_video_key`] renaming).
pub fn load_torchvision_video<M>(
    model: M,
    source: &WeightSource,
    mode: LoadMode,
) -> Result<(M, LoadReport), MlError>
where
    M: ModuleSnapshot,
{
    load_state_dict(model, source, torchvision_video_key, mode)
}

#[cfg(test)]
mod tests {
    use super::torchvision_video_key as k;

    #[test]
    fn renames_torchvision_keys() {
        assert_eq!(k("stem.0.weight"), "stem.conv1.weight");
        assert_eq!(k("stem.4.running_var"), "stem.bn2.running_var");
        assert_eq!(
            k("layer1.0.conv1.0.0.weight"),
            "layer1.0.conv1.conv.spatial.weight"
        );
        assert_eq!(
            k("layer2.1.conv2.0.1.running_mean"),
            "layer2.1.conv2.conv.spatial_bn.running_mean"
        );
        assert_eq!(
            k("layer3.0.conv1.0.3.weight"),
            "layer3.0.conv1.conv.temporal.weight"
        );
        assert_eq!(
            k("layer1.1.conv2.0.weight"),
            "layer1.1.conv2.conv.full.weight"
        );
        assert_eq!(k("layer4.0.conv1.1.bias"), "layer4.0.conv1.bn.bias");
        assert_eq!(
            k("layer2.0.downsample.1.weight"),
            "layer2.0.downsample.bn.weight"
        );
        assert_eq!(k("fc.weight"), "fc.weight");
    }
}
