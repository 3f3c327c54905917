//! Every example configuration shipped in `examples/` loads and validates.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            toml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_example_config_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files = Vec::new();
    toml_files(&root, &mut files);
    assert!(
        !files.is_empty(),
        "no example configs found under {}",
        root.display()
    );
    for f in files {
        let kind = f
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let result = match kind {
            "phantom" => {
                bedside_core::config::load_with_env::<bedside_phantom::PhantomConfig>(Some(&f), &[])
                    .map(|_| ())
            }
            "curate" => bedside_deid::Profile::load(&f).map(|_| ()).map_err(|e| {
                bedside_core::config::ConfigError::Invalid {
                    origin: f.display().to_string(),
                    key: String::new(),
                    message: e.to_string(),
                }
            }),
            "train" => bedside_core::config::load_with_env::<
                bedside_ml::train::config::ExperimentConfig,
            >(Some(&f), &[])
            .map(|_| ()),
            "serve" => bedside_core::config::load_with_env::<bedside_serve::config::ServeConfig>(
                Some(&f),
                &[],
            )
            .map(|_| ()),
            "federate" => {
                bedside_core::config::load_with_env::<bedside_federate::config::SiteConfig>(
                    Some(&f),
                    &[],
                )
                .map(|_| ())
            }
            other => panic!(
                "{}: no loader for example folder `{other}`; add one to this test",
                f.display()
            ),
        };
        if let Err(e) = result {
            panic!("{}: {e}", f.display());
        }
    }
}
