//! Run-time choice among the compiled-in backends and their devices.
//!
//! A config names a backend (`flex`, `tch`) and a device (`cpu`, `cuda`, `cuda:N`); both are
//! checked here so that a request this build or this machine cannot serve fails with a message
//! instead of a panic deep inside libtorch.

use std::fmt;

use burn::tensor::Device;

use crate::error::MlError;

/// A backend this crate can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackendKind {
    /// Pure-Rust CPU backend (im2col + gemm, SIMD, rayon); always available.
    Flex,
    /// libtorch through `tch` (CPU, or CUDA GPUs); needs the `tch` cargo feature.
    Tch,
}

/// Where a backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeviceKind {
    /// The host CPU.
    #[default]
    Cpu,
    /// The CUDA GPU with this index (`tch` only).
    Cuda(usize),
}

impl DeviceKind {
    /// Parse `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
    pub fn parse(name: &str) -> Result<Self, MlError> {
        let lower = name.trim().to_ascii_lowercase();
        match lower.as_str() {
            "cpu" => return Ok(Self::Cpu),
            "cuda" | "gpu" => return Ok(Self::Cuda(0)),
            _ => {}
        }
        lower
            .strip_prefix("cuda:")
            .and_then(|index| index.parse::<usize>().ok())
            .map(Self::Cuda)
            .ok_or_else(|| MlError::InvalidConfig {
                message: format!("unknown device `{name}` (expected cpu, cuda or cuda:N)"),
            })
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
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

    /// Parse a name as written in configs (`flex`, `tch`). Names a backend that exists but was
    /// not compiled in are accepted here and rejected by [`BackendKind::device`], so that the
    /// error can say which cargo feature is missing.
    pub fn parse(name: &str) -> Result<Self, MlError> {
        let kind = match name.trim().to_ascii_lowercase().as_str() {
            "flex" => Self::Flex,
            "tch" | "libtorch" => Self::Tch,
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

    /// The CPU inference device of this backend (wrap with `.autodiff()` to train).
    pub fn device(self) -> Result<Device, MlError> {
        self.device_on(DeviceKind::Cpu)
    }

    /// The inference device of this backend on `device` (wrap with `.autodiff()` to train).
    ///
    /// Fails when the backend is not compiled in, when `flex` is asked for a GPU, or when
    /// libtorch sees no CUDA device with that index.
    pub fn device_on(self, device: DeviceKind) -> Result<Device, MlError> {
        match (self, device) {
            (Self::Flex, DeviceKind::Cpu) => Ok(Device::flex()),
            (Self::Flex, DeviceKind::Cuda(_)) => Err(MlError::InvalidConfig {
                message: format!(
                    "backend `flex` runs on the CPU only; device `{device}` needs backend `tch`"
                ),
            }),
            (Self::Tch, device) => tch_device(device),
        }
    }

    /// Parse a backend and a device name and build the device: the one call a config needs.
    pub fn select(backend: &str, device: &str) -> Result<Device, MlError> {
        Self::parse(backend)?.device_on(DeviceKind::parse(device)?)
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated upstream but is the only libtorch path in burn 0.22
fn tch_device(device: DeviceKind) -> Result<Device, MlError> {
    match device {
        DeviceKind::Cpu => Ok(Device::libtorch()),
        DeviceKind::Cuda(index) => {
            // Asked before burn touches the device: libtorch aborts the process (through a
            // panic in tch) on a missing GPU, and a CPU-only libtorch panics in burn-tch.
            let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
            if index >= count {
                let seen = match count {
                    0 => "no CUDA device (no NVIDIA GPU or driver, or a CPU-only libtorch)".into(),
                    n => format!("{n} CUDA device(s), cuda:0..cuda:{}", n - 1),
                };
                return Err(MlError::InvalidConfig {
                    message: format!("device `{device}` is not available: libtorch sees {seen}"),
                });
            }
            Ok(Device::libtorch_cuda(index))
        }
    }
}

#[cfg(not(feature = "tch"))]
fn tch_device(_device: DeviceKind) -> Result<Device, MlError> {
    Err(MlError::BackendUnavailable {
        name: "tch".into(),
        available: format!(
            "{}; tch needs a build with `--features tch`",
            BackendKind::available_names()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_backends_and_devices() {
        assert_eq!(BackendKind::parse("FLEX").ok(), Some(BackendKind::Flex));
        assert_eq!(BackendKind::parse("tch").ok(), Some(BackendKind::Tch));
        assert!(BackendKind::parse("cuda").is_err());
        assert_eq!(DeviceKind::parse("CPU").ok(), Some(DeviceKind::Cpu));
        assert_eq!(DeviceKind::parse("cuda").ok(), Some(DeviceKind::Cuda(0)));
        assert_eq!(DeviceKind::parse("cuda:1").ok(), Some(DeviceKind::Cuda(1)));
        assert_eq!(DeviceKind::Cuda(2).to_string(), "cuda:2");
        for bad in ["cuda:", "cuda:x", "tpu", ""] {
            let err = DeviceKind::parse(bad).err().map(|e| e.to_string());
            assert!(err.is_some_and(|m| m.contains("unknown device")), "{bad}");
        }
    }

    #[test]
    fn flex_has_no_gpu() {
        let err = BackendKind::Flex.device_on(DeviceKind::Cuda(0)).err();
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("CPU only"), "{message}");
        assert!(BackendKind::select("flex", "cpu").is_ok());
    }

    #[test]
    fn tch_is_reported_when_missing_or_runs_when_present() {
        let result = BackendKind::Tch.device();
        if cfg!(feature = "tch") {
            assert!(result.is_ok());
        } else {
            let message = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains("not available"), "{message}");
            assert!(message.contains("--features tch"), "{message}");
        }
    }

    #[cfg(feature = "tch")]
    #[test]
    fn tch_cuda_fails_cleanly_without_a_gpu() {
        let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
        let result = BackendKind::select("tch", &format!("cuda:{count}"));
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("is not available"), "{message}");
    }
}
