//! Run-time choice among the compiled-in backends.

use burn::tensor::Device;

use crate::error::MlError;

/// A backend this crate can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackendKind {
    /// Pure-Rust CPU backend (im2col + gemm, SIMD, rayon); always available.
    Flex,
    /// libtorch through `tch` (CPU); needs the `tch` cargo feature.
    Tch,
}

impl BackendKind {
    /// The backends compiled into this build.
    pub fn available() -> Vec<BackendKind> {
        let mut kinds = vec![BackendKind::Flex];
        if cfg!(feature = "tch") {
            kinds.push(BackendKind::Tch);
        }
        kinds
    }

    /// Lower-case name (`flex`, `tch`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Tch => "tch",
        }
    }

    /// Parse a name as written in configs (`flex`, `tch`).
    pub fn parse(name: &str) -> Result<Self, MlError> {
        let kind = match name.to_ascii_lowercase().as_str() {
            "flex" => Self::Flex,
            "tch" => Self::Tch,
            _ => {
                return Err(MlError::BackendUnavailable {
                    name: name.to_string(),
                    available: Self::available_names(),
                });
            }
        };
        Ok(kind)
    }

    fn available_names() -> String {
        Self::available()
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The inference device of this backend (wrap with `.autodiff()` to train).
    pub fn device(self) -> Result<Device, MlError> {
        match self {
            Self::Flex => Ok(Device::flex()),
            Self::Tch => tch_device().ok_or_else(|| MlError::BackendUnavailable {
                name: "tch".into(),
                available: Self::available_names(),
            }),
        }
    }
}

#[cfg(feature = "tch")]
fn tch_device() -> Option<Device> {
    #[allow(deprecated)]
    let device = Device::libtorch();
    Some(device)
}

#[cfg(not(feature = "tch"))]
fn tch_device() -> Option<Device> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_unavailable() {
        assert_eq!(BackendKind::parse("FLEX").ok(), Some(BackendKind::Flex));
        assert!(BackendKind::parse("cuda").is_err());
        if !cfg!(feature = "tch") {
            let err = BackendKind::Tch.device().err().map(|e| e.to_string());
            assert!(err.is_some_and(|m| m.contains("not available")));
        }
    }
}
