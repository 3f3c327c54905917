//! Embeds the built web interface (`web-dist/`, produced by `scripts/build-web.sh`) in the
//! binary: writes `$OUT_DIR/web_files.rs`, a sorted table of `(path, bytes, gzip)` made of
//! `include_bytes!`, where `gzip` is a compressed copy (written to `$OUT_DIR/web-gz/`) when it
//! saves at least a tenth. A missing folder gives an empty table (the server then says the interface
//! is not built). Cargo re-runs this when any file under `web-dist/` changes.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let dist = manifest.join("web-dist");
    println!("cargo:rerun-if-changed=web-dist");
    let mut files = Vec::new();
    if dist.is_dir() {
        walk(&dist, &mut files)?;
    }
    let mut entries: Vec<(String, PathBuf)> = files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&dist).ok()?.to_str()?.replace('\\', "/");
            Some((rel, p))
        })
        .collect();
    entries.sort();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let gz_dir = out_dir.join("web-gz");
    std::fs::create_dir_all(&gz_dir)?;
    let mut code = String::from("/// One embedded file: path, bytes, gzip copy.\n");
    code.push_str("pub type Entry = (&'static str, &'static [u8], Option<&'static [u8]>);\n");
    code.push_str("/// The embedded files, sorted by path.\npub static FILES: &[Entry] = &[\n");
    for (i, (rel, path)) in entries.iter().enumerate() {
        let raw = std::fs::read(path)?;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&raw)?;
        let gz = z.finish()?;
        let gz_ref = if gz.len() * 10 <= raw.len() * 9 {
            let gz_path = gz_dir.join(format!("{i}.gz"));
            std::fs::write(&gz_path, &gz)?;
            let gz_path = gz_path.to_str().ok_or("OUT_DIR must be UTF-8")?.to_string();
            format!("Some(include_bytes!({gz_path:?}))")
        } else {
            "None".to_string()
        };
        let path = path.to_str().ok_or("web-dist paths must be UTF-8")?;
        writeln!(code, "    ({rel:?}, include_bytes!({path:?}), {gz_ref}),")?;
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("web_files.rs"), code)?;
    Ok(())
}
