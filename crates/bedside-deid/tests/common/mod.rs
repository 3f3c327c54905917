//! Helpers shared by the integration tests: the public test corpora and the peer tools.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared test data folder (`BEDSIDE_TESTDATA` or `../shared/testdata` beside the workspace).
pub fn testdata() -> Option<PathBuf> {
    let p = std::env::var_os("BEDSIDE_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/testdata"));
    p.is_dir().then_some(p)
}

/// Whether missing peers (Python with pydicom, dciodvfy) fail the tests instead of skipping.
pub fn require_peers() -> bool {
    std::env::var("BEDSIDE_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Prints why a check is skipped, or fails when peers are required.
pub fn skip(reason: &str) {
    if require_peers() {
        panic!("required peer missing: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

/// The project's Python virtual environment interpreter, if it has pydicom.
pub fn python() -> Option<PathBuf> {
    let py = workspace_root().join(".venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import pydicom"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

/// The pydicom wheel's test files folder in the virtual environment.
pub fn pydicom_test_files() -> Option<PathBuf> {
    let lib = workspace_root().join(".venv/lib");
    for entry in std::fs::read_dir(lib).ok()? {
        let p = entry
            .ok()?
            .path()
            .join("site-packages/pydicom/data/test_files");
        if p.is_dir() {
            return Some(p);
        }
    }
    None
}

/// Whether a program is on PATH.
pub fn have_program(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One corpus input.
pub struct Input {
    /// A readable name (`wg04/J2KI/CT1_J2KI`, `pydicom/CT_small.dcm`).
    pub name: String,
    /// The file's bytes (decompressed for `.zst` files).
    pub bytes: Vec<u8>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every file of the WG04 set (REF files decompressed from zstd).
pub fn wg04() -> Vec<Input> {
    let Some(td) = testdata() else {
        return Vec::new();
    };
    let root = td.join("dicom/wg04");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|p| {
            let name = format!("wg04/{}", p.strip_prefix(&root).unwrap().display());
            let raw = std::fs::read(&p).unwrap();
            let bytes = if p.extension().is_some_and(|e| e == "zst") {
                let mut d = ruzstd::decoding::StreamingDecoder::new(raw.as_slice()).unwrap();
                let mut v = Vec::new();
                d.read_to_end(&mut v).unwrap();
                v
            } else {
                raw
            };
            Input { name, bytes }
        })
        .collect()
}

/// The burned-in text samples (their headers carry the same pseudo-PHI as their pixels).
pub fn burned_in() -> Vec<Input> {
    let Some(td) = testdata() else {
        return Vec::new();
    };
    let root = td.join("dicom/burned-in");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .map(|p| Input {
            name: format!("burned-in/{}", p.strip_prefix(&root).unwrap().display()),
            bytes: std::fs::read(&p).unwrap(),
        })
        .collect()
}

/// The pydicom wheel's `.dcm` test files.
pub fn pydicom_files() -> Vec<Input> {
    let Some(dir) = pydicom_test_files() else {
        return Vec::new();
    };
    let mut files = Vec::new();
    walk(&dir, &mut files);
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .map(|p| Input {
            name: format!("pydicom/{}", p.strip_prefix(&dir).unwrap().display()),
            bytes: std::fs::read(&p).unwrap(),
        })
        .collect()
}
