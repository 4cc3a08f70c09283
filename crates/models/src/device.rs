//! The one place that turns the enabled backend features and a `--device` choice (or the
//! `BURN_DEVICE` environment variable) into a Burn [`Device`].

use std::str::FromStr;

use burn::tensor::Device;

/// Environment variable consulted when no `--device` is given.
pub const DEVICE_ENV: &str = "BURN_DEVICE";

/// Which kind of device to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The GPU when a GPU feature is enabled, else the CPU.
    #[default]
    Auto,
    /// The CPU: Burn's `flex` backend, or `ndarray` in a build without flex.
    Cpu,
    /// Burn's `ndarray` CPU backend (the `ndarray` feature).
    Ndarray,
    /// Burn's `wgpu` backend on the default adapter (Vulkan with the `vulkan` feature, Metal
    /// with `metal`).
    Gpu,
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, DeviceError> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" | "flex" => Ok(DeviceChoice::Cpu),
            "ndarray" => Ok(DeviceChoice::Ndarray),
            "gpu" | "wgpu" | "vulkan" | "metal" => Ok(DeviceChoice::Gpu),
            other => Err(DeviceError(format!(
                "unknown device {other:?}: use auto, cpu (flex), ndarray or gpu (wgpu)"
            ))),
        }
    }
}

/// A device that cannot be had, with what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeviceError(pub String);

/// The backends compiled into this build.
pub fn enabled_backends() -> Vec<&'static str> {
    let mut backends = Vec::new();
    if cfg!(feature = "flex") {
        backends.push("flex (cpu)");
    }
    if cfg!(feature = "ndarray") {
        backends.push("ndarray (cpu)");
    }
    if cfg!(feature = "wgpu") {
        backends.push("wgpu (gpu)");
    }
    backends
}

/// A device to compute on, and how to describe it to the user.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    /// The device (without autodiff; training wraps it).
    pub device: Device,
    /// A line saying which backend and device this is.
    pub description: String,
}

/// Resolves `choice` (`Auto` first consults `BURN_DEVICE`) to a device of an enabled backend.
pub fn select_device(choice: DeviceChoice) -> Result<SelectedDevice, DeviceError> {
    let choice = match choice {
        DeviceChoice::Auto => match std::env::var(DEVICE_ENV) {
            Ok(value) if !value.is_empty() => value.parse()?,
            _ => DeviceChoice::Auto,
        },
        other => other,
    };
    match choice {
        DeviceChoice::Gpu => gpu(),
        DeviceChoice::Ndarray => ndarray(),
        DeviceChoice::Cpu if !cfg!(feature = "flex") && cfg!(feature = "ndarray") => ndarray(),
        DeviceChoice::Cpu => cpu(),
        DeviceChoice::Auto if cfg!(feature = "wgpu") => gpu(),
        DeviceChoice::Auto if !cfg!(feature = "flex") && cfg!(feature = "ndarray") => ndarray(),
        DeviceChoice::Auto => cpu(),
    }
}

#[cfg(feature = "ndarray")]
fn ndarray() -> Result<SelectedDevice, DeviceError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Burn 0.22 marks ndarray deprecated in favour of flex; it is offered because the
    // design names it, and flex stays the default.
    #[allow(deprecated)]
    let device = Device::ndarray();
    Ok(SelectedDevice {
        device,
        description: format!("ndarray (CPU, {threads} threads)"),
    })
}

#[cfg(not(feature = "ndarray"))]
fn ndarray() -> Result<SelectedDevice, DeviceError> {
    Err(DeviceError(
        "this build has no ndarray backend: rebuild with `--features ndarray`, or use --device cpu"
            .into(),
    ))
}

#[cfg(feature = "flex")]
fn cpu() -> Result<SelectedDevice, DeviceError> {
    keep_freed_memory();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(SelectedDevice {
        device: Device::flex(),
        description: format!("flex (CPU, {threads} threads)"),
    })
}

/// Asks glibc's malloc to keep the memory flex frees for the next training step.
///
/// flex allocates every intermediate tensor afresh. By default glibc serves blocks above a
/// moving threshold (128 KiB at first) with `mmap`, returns them with `munmap` when freed,
/// and trims the heap's top: the next step then faults the same memory back in page by
/// page, each fault flushing the other cores' TLBs. On report 004's CNN that was a quarter
/// of the training time. Serving blocks up to 32 MiB (glibc's largest threshold) from the
/// heap, never trimming it below 1 GiB, and growing it 256 MiB at a time trains that CNN
/// about 1.35x faster (`bench`, README). Called once, when the CPU is chosen; a no-op off
/// glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes malloc's tuning parameters; it is thread-safe and
            // leaves existing allocations alone. A refused value (returns 0) keeps the default.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
                libc::mallopt(libc::M_TOP_PAD, 256 << 20);
            }
        });
    }
}

#[cfg(not(feature = "flex"))]
fn cpu() -> Result<SelectedDevice, DeviceError> {
    Err(DeviceError(
        "this build has no CPU backend: rebuild with the default `flex` feature, or use --device gpu"
            .into(),
    ))
}

/// The GPU API and shader compiler of this build, and whether Burn's kernel fusion and
/// autotuning are compiled in: `("vulkan", "SPIR-V")` with the `vulkan` feature,
/// `("metal", "MSL")` with `metal`, else `("wgpu", "WGSL")`.
pub fn gpu_build() -> (&'static str, &'static str, &'static str) {
    let (api, compiler) = if cfg!(feature = "vulkan") {
        ("vulkan", "SPIR-V")
    } else if cfg!(feature = "metal") {
        ("metal", "MSL")
    } else {
        ("wgpu", "WGSL")
    };
    // The `wgpu` feature turns on Burn's `fusion` and `autotune` (models' Cargo.toml).
    (api, compiler, "fusion on, autotune on")
}

/// The GPU device of this build: pinned to Vulkan (SPIR-V) or Metal (MSL) when that feature
/// is on, else wgpu's own pick of API (WGSL).
#[cfg(feature = "wgpu")]
fn gpu_device() -> Device {
    use burn::tensor::DeviceKind;
    #[cfg(feature = "vulkan")]
    return Device::vulkan(DeviceKind::DefaultDevice);
    #[cfg(all(feature = "metal", not(feature = "vulkan")))]
    return Device::metal(DeviceKind::DefaultDevice);
    #[cfg(not(any(feature = "vulkan", feature = "metal")))]
    Device::wgpu(DeviceKind::DefaultDevice)
}

#[cfg(feature = "wgpu")]
fn gpu() -> Result<SelectedDevice, DeviceError> {
    use burn::tensor::Tensor;
    let device = gpu_device();
    // wgpu finds its adapter lazily and panics when there is none: probe with one tiny
    // operation and turn that panic into an error that names the alternative.
    let probe = device.clone();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let works = std::panic::catch_unwind(move || {
        let t = Tensor::<1>::from_floats([1.0, 2.0], &probe);
        t.sum().into_scalar::<f32>()
    });
    std::panic::set_hook(hook);
    match works {
        Ok(_) => {
            // The adapter's own name: a real GPU, or a software one such as Mesa's llvmpipe.
            let adapter = device
                .as_dispatch()
                .identity()
                .map_or_else(|| format!("{device:?}"), |identity| identity.name);
            let (api, compiler, tuning) = gpu_build();
            Ok(SelectedDevice {
                description: format!("{api} ({adapter}; {compiler} shaders, {tuning})"),
                device,
            })
        }
        Err(_) => Err(DeviceError(
            "no GPU adapter found for wgpu (no Vulkan, Metal or DirectX device): use --device cpu \
             to train on the CPU (flex)"
                .into(),
        )),
    }
}

#[cfg(not(feature = "wgpu"))]
fn gpu() -> Result<SelectedDevice, DeviceError> {
    Err(DeviceError(
        "this build has no GPU backend: rebuild with `--features wgpu`, or use --device cpu".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_choices() {
        assert_eq!("CPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("wgpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Gpu);
        assert!(
            "tpu"
                .parse::<DeviceChoice>()
                .unwrap_err()
                .0
                .contains("unknown device")
        );
    }

    #[cfg(feature = "flex")]
    #[test]
    fn cpu_is_flex() {
        let selected = select_device(DeviceChoice::Cpu).unwrap();
        assert!(selected.description.starts_with("flex"));
        assert!(enabled_backends().contains(&"flex (cpu)"));
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn gpu_without_the_feature_names_the_alternative() {
        let err = select_device(DeviceChoice::Gpu).unwrap_err();
        assert!(err.0.contains("--features wgpu") && err.0.contains("--device cpu"));
    }
}
