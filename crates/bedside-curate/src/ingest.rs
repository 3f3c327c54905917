//! Finding the inputs of a curation run: folders (recursive), single files, zip archives and
//! tar archives (plain or gzip-compressed). Inputs are only ever read.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Where one candidate file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on disk.
    File(PathBuf),
    /// A member of a zip archive (read on demand).
    ZipMember {
        /// The archive.
        archive: PathBuf,
        /// Index of the member in the archive.
        index: usize,
        /// Name of the member inside the archive.
        name: String,
        /// Most bytes it may inflate to ([`ArchiveLimits::max_member_bytes`]).
        max_bytes: u64,
    },
    /// A member of a tar archive, unpacked to a staging folder first (tar has no index, and
    /// unpacking once keeps memory bounded by one member).
    TarMember {
        /// The archive.
        archive: PathBuf,
        /// Name of the member inside the archive.
        name: String,
        /// The unpacked copy.
        staged: PathBuf,
    },
}

impl Source {
    /// A stable, human-readable name: the path, or `archive!member`.
    pub fn label(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::ZipMember { archive, name, .. } | Source::TarMember { archive, name, .. } => {
                format!("{}!{name}", archive.display())
            }
        }
    }

    /// Reads the whole file (memory bounded by this file's size).
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            Source::File(p) | Source::TarMember { staged: p, .. } => std::fs::read(p),
            Source::ZipMember {
                archive,
                index,
                max_bytes,
                ..
            } => {
                let file = std::fs::File::open(archive)?;
                let mut zip = zip::ZipArchive::new(file).map_err(std::io::Error::other)?;
                let member = zip.by_index(*index).map_err(std::io::Error::other)?;
                // The declared size was checked when listing, but it is the archive's word: the
                // read itself stops one byte past the cap, so a lying header cannot inflate more.
                let declared = member.size();
                let mut out = Vec::with_capacity(declared.min(*max_bytes).min(1 << 26) as usize);
                member
                    .take(max_bytes.saturating_add(1))
                    .read_to_end(&mut out)?;
                if out.len() as u64 > *max_bytes {
                    return Err(std::io::Error::other(too_large(*max_bytes)));
                }
                Ok(out)
            }
        }
    }
}

/// Caps on what archives may unpack to: a zip bomb or a tar entry that claims a huge size is
/// refused with a reason instead of filling memory or the staging disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Largest member (zip: inflated; tar: staged), in bytes.
    pub max_member_bytes: u64,
    /// Most bytes all tar members of one run may stage on disk together.
    pub max_staged_bytes: u64,
}

impl Default for ArchiveLimits {
    /// 4 GiB per member (above the largest real DICOM objects, enhanced multi-frame and whole
    /// slide images included), 1 TiB of staging.
    fn default() -> Self {
        ArchiveLimits {
            max_member_bytes: 4 << 30,
            max_staged_bytes: 1 << 40,
        }
    }
}

fn too_large(limit: u64) -> String {
    format!("archive member larger than the limit of {limit} bytes (possible decompression bomb)")
}

/// An input that could not be opened or listed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// What it was.
    pub label: String,
    /// Why it could not be used.
    pub reason: String,
}

/// What a discovery found.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Candidate files, in a stable order (sorted by label).
    pub sources: Vec<Source>,
    /// Inputs that could not be read or listed.
    pub unreadable: Vec<Unreadable>,
}

fn is_zip(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip"))
}

fn tar_kind(p: &Path) -> Option<bool> {
    let name = p.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(true)
    } else if name.ends_with(".tar") {
        Some(false)
    } else {
        None
    }
}

/// Lists every candidate file under `inputs`, unpacking tar members into `staging`, with the
/// default [`ArchiveLimits`].
pub fn discover(inputs: &[PathBuf], staging: &Path) -> Discovery {
    discover_with(inputs, staging, &ArchiveLimits::default())
}

/// Lists every candidate file under `inputs`, unpacking tar members into `staging`; archive
/// members beyond `limits` are listed as unreadable with the reason.
pub fn discover_with(inputs: &[PathBuf], staging: &Path, limits: &ArchiveLimits) -> Discovery {
    let mut d = Discovery::default();
    let mut staged_total = 0u64;
    // Inputs in the order given and folder entries sorted by name (the stack is popped from its
    // end), so that which tar members the staging cap admits does not depend on the order the
    // file system lists a folder in.
    let mut stack: Vec<PathBuf> = inputs.iter().rev().cloned().collect();
    while let Some(path) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                d.unreadable.push(Unreadable {
                    label: path.display().to_string(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if meta.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(entries) => {
                    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
                    entries.sort_by(|a, b| b.cmp(a));
                    stack.extend(entries);
                }
                Err(e) => d.unreadable.push(Unreadable {
                    label: path.display().to_string(),
                    reason: e.to_string(),
                }),
            }
        } else if meta.file_type().is_symlink() {
            // Followed only when it points at a file: a link loop cannot trap the walk.
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => classify(&path, staging, limits, &mut staged_total, &mut d),
                _ => d.unreadable.push(Unreadable {
                    label: path.display().to_string(),
                    reason: "symbolic link to a folder or to nothing (not followed)".into(),
                }),
            }
        } else if meta.is_file() {
            classify(&path, staging, limits, &mut staged_total, &mut d);
        }
    }
    d.sources.sort_by_key(|s| s.label());
    d.unreadable.sort_by(|a, b| a.label.cmp(&b.label));
    d
}

fn classify(
    path: &Path,
    staging: &Path,
    limits: &ArchiveLimits,
    staged_total: &mut u64,
    d: &mut Discovery,
) {
    if is_zip(path) {
        list_zip(path, limits, d);
    } else if let Some(gz) = tar_kind(path) {
        unpack_tar(path, gz, staging, limits, staged_total, d);
    } else {
        d.sources.push(Source::File(path.to_path_buf()));
    }
}

fn list_zip(path: &Path, limits: &ArchiveLimits, d: &mut Discovery) {
    let opened = std::fs::File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|f| zip::ZipArchive::new(f).map_err(|e| e.to_string()));
    let mut zip = match opened {
        Ok(z) => z,
        Err(reason) => {
            d.unreadable.push(Unreadable {
                label: path.display().to_string(),
                reason: format!("unreadable zip archive: {reason}"),
            });
            return;
        }
    };
    for index in 0..zip.len() {
        match zip.by_index(index) {
            Ok(m) if m.is_file() && m.size() > limits.max_member_bytes => {
                d.unreadable.push(Unreadable {
                    label: format!("{}!#{index}", path.display()),
                    reason: format!(
                        "declares {} bytes: {}",
                        m.size(),
                        too_large(limits.max_member_bytes)
                    ),
                })
            }
            Ok(m) if m.is_file() => d.sources.push(Source::ZipMember {
                archive: path.to_path_buf(),
                index,
                name: m
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| format!("#{index}")),
                max_bytes: limits.max_member_bytes,
            }),
            Ok(_) => {}
            Err(e) => d.unreadable.push(Unreadable {
                label: format!("{}!#{index}", path.display()),
                reason: e.to_string(),
            }),
        }
    }
}

fn unpack_tar(
    path: &Path,
    gz: bool,
    staging: &Path,
    limits: &ArchiveLimits,
    staged_total: &mut u64,
    d: &mut Discovery,
) {
    let label = path.display().to_string();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            d.unreadable.push(Unreadable {
                label,
                reason: e.to_string(),
            });
            return;
        }
    };
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    // One folder per archive, named by a hash of its path, so two archives never collide.
    let folder = staging.join(format!("{:016x}", fnv(label.as_bytes())));
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            d.unreadable.push(Unreadable {
                label,
                reason: format!("unreadable tar archive: {e}"),
            });
            return;
        }
    };
    for (k, entry) in entries.enumerate() {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                d.unreadable.push(Unreadable {
                    label: format!("{label}!#{k}"),
                    reason: e.to_string(),
                });
                break; // a broken tar stream cannot be resynchronised
            }
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| format!("#{k}"));
        // The header's size is what the tar reader will copy; refusing it here skips the
        // member's bytes without staging them.
        let size = entry.size();
        if size > limits.max_member_bytes
            || staged_total.saturating_add(size) > limits.max_staged_bytes
        {
            let reason = if size > limits.max_member_bytes {
                format!(
                    "declares {size} bytes: {}",
                    too_large(limits.max_member_bytes)
                )
            } else {
                format!(
                    "staging it would pass the limit of {} bytes for all tar members",
                    limits.max_staged_bytes
                )
            };
            d.unreadable.push(Unreadable {
                label: format!("{label}!{name}"),
                reason,
            });
            continue;
        }
        *staged_total += size;
        // Members are staged under a numbered name: archive paths ("../x", absolute paths)
        // never choose where a file is written.
        let staged = folder.join(format!("{k:08}"));
        let result = std::fs::create_dir_all(&folder).and_then(|_| {
            let mut out = std::fs::File::create(&staged)?;
            // Sparse members may unpack to more than their header's size: cap the copy too.
            let cap = limits.max_member_bytes;
            let copied = std::io::copy(&mut (&mut entry).take(cap.saturating_add(1)), &mut out)?;
            if copied > cap {
                return Err(std::io::Error::other(too_large(cap)));
            }
            Ok(())
        });
        match result {
            Ok(()) => d.sources.push(Source::TarMember {
                archive: path.to_path_buf(),
                name,
                staged,
            }),
            Err(e) => d.unreadable.push(Unreadable {
                label: format!("{label}!{name}"),
                reason: e.to_string(),
            }),
        }
    }
}

/// FNV-1a, for stable names and shard assignment (not for security).
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// One shard of a job array: this process handles items whose stable hash falls in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard (0-based).
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl Shard {
    /// The whole input.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` (0-based `I`).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}`: expected I/N, e.g. 0/8"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("`{i}` is not a shard number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{n}` is not a shard count"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }

    /// The shard given by a job scheduler's environment: Slurm job arrays
    /// (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`, `SLURM_ARRAY_TASK_MIN`) or Kubernetes
    /// indexed Jobs (`JOB_COMPLETION_INDEX` with `BEDSIDE_SHARD_COUNT`).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<Result<Shard, String>> {
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<u32>().ok());
        if let (Some(id), Some(count)) = (num("SLURM_ARRAY_TASK_ID"), num("SLURM_ARRAY_TASK_COUNT"))
        {
            let min = num("SLURM_ARRAY_TASK_MIN").unwrap_or(0);
            return Some(Shard::parse(&format!("{}/{count}", id.saturating_sub(min))));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX") {
            return Some(match num("BEDSIDE_SHARD_COUNT") {
                Some(count) => Shard::parse(&format!("{index}/{count}")),
                None => Err("JOB_COMPLETION_INDEX is set but BEDSIDE_SHARD_COUNT is not".into()),
            });
        }
        None
    }

    /// Whether this shard handles the item labelled `label`.
    pub fn owns(&self, label: &str) -> bool {
        self.count <= 1 || fnv(label.as_bytes()) % self.count as u64 == self.index as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_items() {
        let labels: Vec<String> = (0..1000).map(|i| format!("in/{i}.dcm")).collect();
        let shards: Vec<Shard> = (0..4)
            .map(|i| Shard::parse(&format!("{i}/4")).unwrap())
            .collect();
        for l in &labels {
            assert_eq!(shards.iter().filter(|s| s.owns(l)).count(), 1);
        }
        let first = labels.iter().filter(|l| shards[0].owns(l)).count();
        assert!((200..300).contains(&first), "{first}");
        assert!(Shard::parse("4/4").is_err() && Shard::parse("x").is_err());
    }

    #[test]
    fn scheduler_environments() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = Shard::from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]));
        assert_eq!(s, Some(Ok(Shard { index: 4, count: 8 })));
        let k = Shard::from_env(env(&[
            ("JOB_COMPLETION_INDEX", "2"),
            ("BEDSIDE_SHARD_COUNT", "3"),
        ]));
        assert_eq!(k, Some(Ok(Shard { index: 2, count: 3 })));
        assert!(matches!(
            Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "2")])),
            Some(Err(_))
        ));
        assert_eq!(Shard::from_env(env(&[])), None);
    }

    #[test]
    fn finds_files_in_folders_zips_and_tarballs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("in");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/one.dcm"), b"1").unwrap();
        std::fs::write(root.join("two"), b"2").unwrap();
        {
            let f = std::fs::File::create(root.join("set.zip")).unwrap();
            let mut z = zip::ZipWriter::new(f);
            z.start_file("x/three.dcm", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut z, b"3").unwrap();
            z.finish().unwrap();
        }
        {
            let f = std::fs::File::create(root.join("set.tar.gz")).unwrap();
            let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            let mut t = tar::Builder::new(gz);
            let mut h = tar::Header::new_gnu();
            // A hostile member name, written raw (the builder itself refuses `..`).
            let name = b"../evil/four.dcm";
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
            h.set_size(1);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            t.append(&h, &b"4"[..]).unwrap();
            t.into_inner().unwrap().finish().unwrap();
        }
        std::fs::write(root.join("broken.zip"), b"not a zip").unwrap();
        let staging = tmp.path().join("staging");
        let d = discover(std::slice::from_ref(&root), &staging);
        let mut contents: Vec<Vec<u8>> = d.sources.iter().map(|s| s.read().unwrap()).collect();
        contents.sort();
        assert_eq!(
            contents,
            vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec(), b"4".to_vec()]
        );
        assert_eq!(d.unreadable.len(), 1);
        assert!(d.unreadable[0].reason.contains("zip"));
        assert!(!tmp.path().join("evil").exists());
    }

    #[test]
    fn archive_members_past_the_limits_are_refused_with_a_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("in");
        std::fs::create_dir_all(&root).unwrap();
        let big = vec![0u8; 64 << 10];
        {
            let f = std::fs::File::create(root.join("bomb.zip")).unwrap();
            let mut z = zip::ZipWriter::new(f);
            let deflated = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            z.start_file("zeros.dcm", deflated).unwrap();
            std::io::Write::write_all(&mut z, &big).unwrap();
            z.start_file("small.dcm", deflated).unwrap();
            std::io::Write::write_all(&mut z, b"ok").unwrap();
            z.finish().unwrap();
        }
        {
            let f = std::fs::File::create(root.join("big.tar")).unwrap();
            let mut t = tar::Builder::new(f);
            let mut h = tar::Header::new_gnu();
            h.set_size(big.len() as u64);
            h.set_cksum();
            t.append_data(&mut h, "zeros.dcm", &big[..]).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_cksum();
            t.append_data(&mut h, "small.dcm", &b"ok"[..]).unwrap();
            t.into_inner().unwrap();
        }
        let limits = ArchiveLimits {
            max_member_bytes: 1 << 10,
            ..ArchiveLimits::default()
        };
        let d = discover_with(
            std::slice::from_ref(&root),
            &tmp.path().join("staging"),
            &limits,
        );
        let read: Vec<Vec<u8>> = d.sources.iter().map(|s| s.read().unwrap()).collect();
        assert_eq!(read, vec![b"ok".to_vec(), b"ok".to_vec()]);
        assert_eq!(d.unreadable.len(), 2, "{:?}", d.unreadable);
        for u in &d.unreadable {
            assert!(u.reason.contains("declares 65536 bytes"), "{u:?}");
            assert!(u.reason.contains("limit of 1024 bytes"), "{u:?}");
        }
        // A member that fits when listed but inflates past the cap when read is stopped too.
        let lying = Source::ZipMember {
            archive: root.join("bomb.zip"),
            index: 0,
            name: "zeros.dcm".into(),
            max_bytes: 1 << 10,
        };
        assert!(
            lying
                .read()
                .unwrap_err()
                .to_string()
                .contains("limit of 1024")
        );
        // The whole-run staging cap stops tar members once it is reached.
        let limits = ArchiveLimits {
            max_member_bytes: 1 << 20,
            max_staged_bytes: 1 << 10,
        };
        let d = discover_with(
            std::slice::from_ref(&root.join("big.tar")),
            &tmp.path().join("s2"),
            &limits,
        );
        assert_eq!(d.unreadable.len(), 1);
        assert!(d.unreadable[0].reason.contains("all tar members"));
    }
}
