//! Explicit backend choice. Never use `Device::default()`: with the `wgpu`
//! feature on it silently becomes wgpu.

use burn::tensor::Device;
use std::fmt;
use std::str::FromStr;

/// The compute backends a program can run on (`--backend flex|ndarray|wgpu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (default).
    #[default]
    #[cfg_attr(feature = "clap", value(alias = "cpu"))]
    Flex,
    /// The deprecated `burn-ndarray` CPU backend (kept selectable and tested).
    #[cfg_attr(feature = "clap", value(name = "ndarray"))]
    NdArray,
    /// wgpu (a real GPU, or Mesa's software Vulkan).
    #[cfg_attr(feature = "clap", value(alias = "gpu"))]
    Wgpu,
}

impl Backend {
    /// The device for inference.
    #[allow(deprecated)]
    pub fn device(self) -> Device {
        match self {
            Backend::Flex => Device::flex(),
            Backend::NdArray => Device::ndarray(),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(not(feature = "wgpu"))]
            Backend::Wgpu => {
                panic!("this build has no wgpu support (enable the `wgpu` feature of `models`)")
            }
        }
    }

    /// The autodiff device for training on this backend.
    pub fn autodiff_device(self) -> Device {
        self.device().autodiff()
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::NdArray => "ndarray",
            Backend::Wgpu => "wgpu",
        }
    }

    /// Every backend compiled into this build.
    pub fn all() -> &'static [Backend] {
        if cfg!(feature = "wgpu") {
            &[Backend::Flex, Backend::NdArray, Backend::Wgpu]
        } else {
            &[Backend::Flex, Backend::NdArray]
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(Backend::Flex),
            "ndarray" => Ok(Backend::NdArray),
            "wgpu" | "gpu" => {
                if cfg!(feature = "wgpu") {
                    Ok(Backend::Wgpu)
                } else {
                    Err("this build has no wgpu support".into())
                }
            }
            other => Err(format!(
                "unknown backend `{other}` (expected flex, ndarray or wgpu)"
            )),
        }
    }
}
