//! `bedside curate`: de-identify DICOM, remove burned-in text, write the metadata table and
//! ML-ready arrays.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use indicatif::ProgressBar;

use bedside_curate::ingest::Shard;
use bedside_curate::pipeline::{self, CurateOptions, PixelPolicy, Progress};
use bedside_deid::{Deidentifier, Profile, SiteSecret};

use crate::ui::{Ctx, Exit, exit};

/// Curate DICOM: headers, burned-in text, metadata table, arrays.
#[derive(clap::Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:
  bedside curate raw/ -o curated/
  bedside curate exports/*.zip scans.tar.gz -o curated/ --profile profile.toml
  bedside curate raw/ -o curated/ --shard 3/16          # one task of a job array
  bedside curate merge curated/                          # join the shard tables
  bedside curate raw/ -o curated/ --crosswalk /secure/crosswalk.csv
  bedside curate raw/ -o curated/ --resize 112           # also 112x112 training copies
  bedside curate labels labels.csv -o labels.pseudo.csv --patient-column PatientID \
      --id-columns AccessionNumber --uid-columns StudyInstanceUID --date-columns scan_date

Writes curated/dicom/<patient>/<study>/<series>/<instance>.dcm, metadata.csv and
metadata.parquet, arrays/*.npy (+ .json sidecars), audit.jsonl, quarantine.csv and report.json. Inputs are never modified; a
re-run skips inputs whose outputs are complete. The site secret that keys pseudonyms and date
shifts lives in --secret-dir (default $BEDSIDE_SECRET_DIR, else ~/.bedside), never in outputs.
Exit code 4 when some inputs were quarantined."
)]
pub struct Args {
    /// `merge` (join shard tables) or `labels` (pseudonymise a label sheet).
    #[command(subcommand)]
    pub command: Option<CurateCommand>,
    /// Input files, folders (recursive), .zip or .tar(.gz) archives.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder.
    #[arg(long, short = 'o', required = true)]
    pub out: Option<PathBuf>,
    /// De-identification profile (TOML); default: the Basic Profile with date shifting.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Folder holding the site secret (created on first use).
    #[arg(long, env = "BEDSIDE_SECRET_DIR")]
    pub secret_dir: Option<PathBuf>,
    /// Leave pixel data unchanged (no burned-in text removal).
    #[arg(long)]
    pub keep_pixels: bool,
    /// Do not write arrays.
    #[arg(long)]
    pub no_arrays: bool,
    /// Also write each array resized to SIZE x SIZE for training (ultrasound cropped to the scan
    /// area first; aspect kept, zero-padded; area or bilinear interpolation; native dtype), as
    /// arrays/<series>.<SIZE>x<SIZE>.npy with a .json sidecar. The native arrays stay as they are.
    #[arg(long, value_name = "SIZE", conflicts_with = "no_arrays", value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub resize: Option<u32>,
    /// Burned-in text (inside the ultrasound scan area, anywhere in other modalities): `phi`
    /// blanks words matching the file's identifiers or date/ID patterns, `all` blanks every word
    /// read, `off` skips OCR. The profile's [burned_in_text] sets the policy per modality.
    #[arg(long, default_value = "phi", value_parser = ["phi", "all", "off"])]
    pub ocr: String,
    /// Handle only shard I of N (0-based), e.g. 3/16; also read from Slurm array and
    /// Kubernetes indexed-Job variables.
    #[arg(long, value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// Write the original → pseudonym crosswalk to this file (outside the output folder).
    #[arg(long)]
    pub crosswalk: Option<PathBuf>,
    /// Largest archive member accepted (zip: inflated; tar: staged), in bytes or with a K, M, G
    /// or T suffix (powers of 1024); larger members are quarantined as possible decompression
    /// bombs.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size)]
    pub max_archive_member: u64,
    /// Most bytes the tar members of one run may stage on disk together (same units).
    #[arg(long, value_name = "SIZE", default_value = "1T", value_parser = parse_size)]
    pub max_archive_staging: u64,
}

/// A size in bytes: a whole number, optionally followed by K, M, G or T (powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("unknown unit {c:?} (use K, M, G or T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 512M, 4G)"))?;
    n.checked_mul(1u64 << shift)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

/// Subcommands of `bedside curate`.
#[derive(clap::Subcommand, Debug)]
pub enum CurateCommand {
    /// Join the tables written by the shards of a job array.
    Merge {
        /// The output folder the shards wrote to.
        out: PathBuf,
    },
    /// Pseudonymise a label sheet (CSV) keyed by original identifiers with the same mappings
    /// and per-patient date shift as the curated headers, so the two join without a crosswalk.
    Labels(LabelsArgs),
}

/// Arguments of `bedside curate labels`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  bedside curate labels labels.csv -o labels.pseudo.csv --patient-column PatientID \
      --id-columns AccessionNumber --uid-columns StudyInstanceUID --date-columns StudyDate,echo_date
  bedside curate labels sheet.csv -o out.csv --patient-column mrn --id-columns acc=AccessionNumber \
      --drop-columns name,birth_date

Columns are named after their DICOM keyword, or mapped with COLUMN=Keyword. Use the same
--secret-dir and --profile as the curation run. Dates may be YYYYMMDD, YYYY-MM-DD, YYYY/MM/DD or
YYYY.MM.DD, optionally with a time; they keep their form. Cells that are not dates are emptied.
Columns not named are copied unchanged: they should hold labels only.")]
pub struct LabelsArgs {
    /// The label sheet (CSV with a header row).
    pub input: PathBuf,
    /// Where to write the pseudonymised sheet.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// The column holding the original PatientID (keys pseudonyms and the date shift).
    #[arg(long, value_name = "COLUMN")]
    pub patient_column: Option<String>,
    /// Identifier columns, COLUMN or COLUMN=Keyword (e.g. AccessionNumber, acc=AccessionNumber).
    #[arg(long, value_delimiter = ',', value_parser = bedside_curate::labels::ColumnMap::parse)]
    pub id_columns: Vec<bedside_curate::labels::ColumnMap>,
    /// UID columns, COLUMN or COLUMN=Keyword (e.g. StudyInstanceUID).
    #[arg(long, value_delimiter = ',', value_parser = bedside_curate::labels::ColumnMap::parse)]
    pub uid_columns: Vec<bedside_curate::labels::ColumnMap>,
    /// Date or date-time columns, shifted by the patient's offset.
    #[arg(long, value_delimiter = ',')]
    pub date_columns: Vec<String>,
    /// Columns to leave out of the output (names, birth dates, free text).
    #[arg(long, value_delimiter = ',')]
    pub drop_columns: Vec<String>,
    /// De-identification profile (TOML) used for the curation run; default: the Basic Profile
    /// with date shifting.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Folder holding the site secret used for the curation run.
    #[arg(long, env = "BEDSIDE_SECRET_DIR")]
    pub secret_dir: Option<PathBuf>,
}

/// The de-identification profile (`--profile`, else the standard one) and the folder of the
/// site secret (`--secret-dir`, else `~/.bedside`): curation and label sheets must agree on both.
fn profile_and_secret_dir(
    profile: Option<&std::path::Path>,
    secret_dir: Option<&std::path::Path>,
) -> Result<(Profile, PathBuf), Exit> {
    let profile = match profile {
        Some(p) => {
            Profile::load(p).map_err(|e| Exit::invalid(format!("profile {}: {e}", p.display())))?
        }
        None => Profile::default(),
    };
    let secret_dir = secret_dir
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".bedside")))
        .ok_or_else(|| Exit::invalid("no --secret-dir given and HOME is not set"))?;
    Ok((profile, secret_dir))
}

fn run_labels(args: &LabelsArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let (profile, secret_dir) =
        profile_and_secret_dir(args.profile.as_deref(), args.secret_dir.as_deref())?;
    if !SiteSecret::path_in(&secret_dir).is_file() {
        // A new secret would give pseudonyms that match no curated data.
        return Err(Exit::invalid(format!(
            "no site secret in {}: use the --secret-dir of the curation run",
            secret_dir.display()
        ))
        .into());
    }
    let secret = SiteSecret::load_or_create(&secret_dir)
        .with_context(|| format!("site secret in {}", secret_dir.display()))?;
    let deidentifier = Deidentifier::new(profile, secret).context("preparing the profile")?;
    let spec = bedside_curate::labels::LabelSpec {
        patient_column: args.patient_column.clone(),
        id_columns: args.id_columns.clone(),
        uid_columns: args.uid_columns.clone(),
        date_columns: args.date_columns.clone(),
        drop_columns: args.drop_columns.clone(),
    };
    if spec.patient_column.is_none() && spec.id_columns.is_empty() && spec.uid_columns.is_empty() {
        return Err(Exit::invalid(
            "name at least one of --patient-column, --id-columns, --uid-columns",
        )
        .into());
    }
    use bedside_curate::labels::LabelError;
    let summary =
        match bedside_curate::labels::pseudonymise(&args.input, &args.out, &spec, &deidentifier) {
            Ok(s) => s,
            Err(
                e @ (LabelError::MissingColumn { .. }
                | LabelError::Keyword { .. }
                | LabelError::DatesRemoved(_)
                | LabelError::SameFile),
            ) => return Err(Exit::invalid(e.to_string()).into()),
            Err(e) => return Err(e.into()),
        };
    ctx.say(format!(
        "Pseudonymised {} rows into {}",
        summary.rows,
        args.out.display()
    ));
    for (column, n) in &summary.mapped {
        ctx.say(format!("  {column:<24} {n:>7} values mapped"));
    }
    for (column, n) in &summary.removed_by_profile {
        ctx.say(format!(
            "  {column:<24} {n:>7} values emptied (the profile removes this attribute)"
        ));
    }
    for (column, n) in &summary.not_dates {
        ctx.say(format!(
            "  {column:<24} {n:>7} cells were not dates and were emptied"
        ));
    }
    if summary.rows_without_patient_id > 0 {
        ctx.say(format!(
            "  {} rows without a PatientID: keyed by their other identifiers, like headers without one",
            summary.rows_without_patient_id
        ));
    }
    if !summary.copied_columns.is_empty() {
        ctx.say(format!(
            "  copied unchanged (check them for identifying text): {}",
            summary.copied_columns.join(", ")
        ));
    }
    Ok(())
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, total: usize) {
        self.0.set_length(total as u64);
    }
    fn item(&self) {
        self.0.inc(1);
    }
}

fn inside(path: &Path, folder: &Path) -> bool {
    let abs = |p: &Path| {
        p.canonicalize()
            .or_else(|_| {
                p.parent()
                    .map(|d| {
                        d.canonicalize()
                            .map(|d| d.join(p.file_name().unwrap_or_default()))
                    })
                    .unwrap_or_else(|| Ok(p.to_path_buf()))
            })
            .unwrap_or_else(|_| p.to_path_buf())
    };
    abs(path).starts_with(abs(folder))
}

/// Runs the subcommand.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    if let Some(CurateCommand::Labels(labels)) = &args.command {
        return run_labels(labels, ctx);
    }
    if let Some(CurateCommand::Merge { out }) = &args.command {
        let rows = pipeline::merge(out).with_context(|| format!("merging {}", out.display()))?;
        ctx.say(format!(
            "merged shard tables in {}: {rows} metadata rows",
            out.display()
        ));
        return Ok(());
    }
    let Some(out) = args.out.clone() else {
        return Err(Exit::invalid("--out is required").into());
    };
    let start = Instant::now();
    let (profile, secret_dir) =
        profile_and_secret_dir(args.profile.as_deref(), args.secret_dir.as_deref())?;
    if inside(&secret_dir, &out) {
        return Err(Exit::invalid("the secret folder must not be inside the output folder").into());
    }
    if let Some(c) = &args.crosswalk
        && inside(c, &out)
    {
        return Err(
            Exit::invalid("the crosswalk must be written outside the output folder").into(),
        );
    }
    let shard = match args.shard {
        Some(s) => s,
        None => match Shard::from_env(|k| std::env::var(k).ok()) {
            Some(r) => r.map_err(Exit::invalid)?,
            None => Shard::ALL,
        },
    };
    let secret = SiteSecret::load_or_create(&secret_dir)
        .with_context(|| format!("site secret in {}", secret_dir.display()))?;
    let mut deidentifier = Deidentifier::new(profile, secret).context("preparing the profile")?;
    if args.crosswalk.is_some() {
        deidentifier = deidentifier.with_crosswalk();
    }
    let options = CurateOptions {
        deidentifier,
        pixels: if args.keep_pixels {
            PixelPolicy::Keep
        } else {
            PixelPolicy::CleanUltrasound
        },
        arrays: !args.no_arrays,
        resize: args.resize,
        ocr: match args.ocr.as_str() {
            "off" => None,
            "all" => Some(bedside_curate::ocr::TextPolicy::AllText),
            _ => Some(bedside_curate::ocr::TextPolicy::PhiOnly),
        },
        shard,
        archive_limits: bedside_curate::ingest::ArchiveLimits {
            max_member_bytes: args.max_archive_member,
            max_staged_bytes: args.max_archive_staging,
        },
    };
    let bar = ctx.progress(0, "curate");
    bar.set_message("inputs");
    let summary = pipeline::run(&args.inputs, &out, &options, &Bar(bar.clone()));
    bar.finish_and_clear();
    let summary = match summary {
        Err(e @ bedside_curate::pipeline::CurateError::Overlap(_)) => {
            return Err(Exit::invalid(e.to_string()).into());
        }
        other => other.with_context(|| format!("curating into {}", out.display()))?,
    };
    if let Some(c) = &args.crosswalk {
        options
            .deidentifier
            .take_crosswalk()
            .write_csv(c)
            .with_context(|| format!("writing the crosswalk {}", c.display()))?;
    }
    let secs = start.elapsed().as_secs_f64();
    ctx.say(format!("Curated into {} in {secs:.1} s", out.display()));
    if shard.count > 1 {
        ctx.say(format!(
            "  shard {}/{} (run `bedside curate merge` when all shards are done)",
            shard.index, shard.count
        ));
    }
    ctx.say(format!(
        "  inputs {:>6}   handled {}   curated {}   resumed {}   quarantined {}",
        summary.inputs,
        summary.handled,
        summary.curated,
        summary.resumed,
        summary.quarantined.values().sum::<usize>()
    ));
    ctx.say(format!(
        "  pixel data cleaned of burned-in text in {} objects; {} arrays written",
        summary.pixels_cleaned, summary.arrays
    ));
    ctx.say(format!(
        "  {:.1} MB in, {:.1} MB out, {:.0} files/s",
        summary.bytes_in as f64 / 1e6,
        summary.bytes_out as f64 / 1e6,
        summary.handled as f64 / secs.max(1e-9)
    ));
    for (reason, n) in &summary.quarantined {
        ctx.say(format!("  quarantined {n:>5}: {reason}"));
    }
    for f in summary.array_failures.iter().take(5) {
        ctx.say(format!("  array not written: {f}"));
    }
    ctx.say(format!(
        "  see {}/report.json, audit.jsonl, quarantine.csv",
        out.display()
    ));
    if summary.quarantined.values().sum::<usize>() > 0 {
        return Err(Exit {
            code: exit::PARTIAL,
            message: "some inputs were quarantined (see quarantine.csv)".into(),
        }
        .into());
    }
    Ok(())
}

/// Makes Tesseract read on one thread (`OMP_THREAD_LIMIT=1`) unless the user set the limit.
///
/// Tesseract spreads each text line over OpenMP threads, which only oversubscribes cores that
/// curation already fills with one worker each, and spins them on a loaded machine. libgomp
/// reads the variable once, when the program is loaded (before `main`), so setting it now would
/// do nothing: the process runs itself again, once, with the variable set. Called before any
/// thread starts; if the new process cannot be started, this one carries on unchanged.
pub fn limit_ocr_threads() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        if std::env::var_os("OMP_THREAD_LIMIT").is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(name) = args.next() {
            command.arg0(name);
        }
        // `exec` returns only when it failed.
        let _ = command.args(args).env("OMP_THREAD_LIMIT", "1").exec();
    }
}
