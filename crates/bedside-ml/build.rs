//! With the `tch` feature, embed an rpath to libtorch's directory in this package's tests,
//! examples and binaries, so they run without `LD_LIBRARY_PATH`: torch-sys tells the linker
//! where libtorch is but not the loader.
//!
//! The directory is found the way torch-sys finds it: from the active Python's `torch` package
//! when `LIBTORCH_USE_PYTORCH` is set, else from `LIBTORCH_LIB` or `LIBTORCH/lib`. Downstream
//! binaries (the `bedside` CLI) do not inherit link arguments; they need `LD_LIBRARY_PATH`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    for name in [
        "LIBTORCH_USE_PYTORCH",
        "LIBTORCH",
        "LIBTORCH_LIB",
        "VIRTUAL_ENV",
    ] {
        println!("cargo:rerun-if-env-changed={name}");
    }
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("windows") {
        return;
    }
    if let Some(dir) = libtorch_lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    } else {
        println!(
            "cargo:warning=libtorch directory not found: run with LD_LIBRARY_PATH set to torch/lib"
        );
    }
}

fn libtorch_lib_dir() -> Option<PathBuf> {
    if env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        // Same interpreter choice as torch-sys, so both see the same torch.
        let python = if env::var_os("VIRTUAL_ENV").is_some() {
            "python"
        } else {
            "python3"
        };
        let output = Command::new(python)
            .args([
                "-c",
                "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
            ])
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        let dir = PathBuf::from(text.trim());
        return dir.is_dir().then_some(dir);
    }
    if let Some(lib) = env::var_os("LIBTORCH_LIB") {
        let lib = PathBuf::from(lib);
        return Some(if lib.ends_with("lib") {
            lib
        } else {
            lib.join("lib")
        });
    }
    env::var_os("LIBTORCH").map(|root| PathBuf::from(root).join("lib"))
}
