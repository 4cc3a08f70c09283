//! A build with `wgpu` on a machine without any GPU adapter: asking for the GPU is an error
//! that says so and names `--device cpu`, not a panic.
//!
//! The test hides every adapter from this process (Vulkan drivers through the loader's
//! `VK_ICD_FILENAMES`, OpenGL through glvnd's EGL vendor list) before wgpu first looks.
//! It is the only test in this binary, so nothing else has started wgpu yet.
#![cfg(feature = "wgpu")]

use models::{DeviceChoice, select_device};

#[test]
fn missing_adapter_is_an_error_naming_the_cpu() {
    // SAFETY: the only test in this binary, run before any thread reads the environment.
    unsafe {
        std::env::set_var("VK_ICD_FILENAMES", "/nonexistent/icd.json");
        std::env::set_var("VK_DRIVER_FILES", "/nonexistent/icd.json");
        std::env::set_var("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl.json");
        std::env::remove_var("CUBECL_WGPU_DEFAULT_DEVICE");
    }
    let err = select_device(DeviceChoice::Gpu)
        .map(|selected| selected.description)
        .expect_err("no adapter should be found with every driver hidden");
    println!("{err}");
    assert!(err.0.contains("no GPU adapter"), "{err}");
    assert!(err.0.contains("--device cpu"), "{err}");
}
