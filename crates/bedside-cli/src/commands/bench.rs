//! `bedside bench`: throughput of Bedside beside its peers, measured in the same run on the same
//! files, printed as a table with ratios.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use bedside_curate::bench::{self, Corpus, Measure, Peer};
use bedside_deid::{Deidentifier, Profile, SiteSecret};
use bedside_phantom::PhantomConfig;

use crate::ui::{Ctx, Exit};

/// Benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Curation throughput beside gdcmanon, `cp -r` and a pydicom-based de-identifier.
    #[command(after_help = CURATE_HELP)]
    Curate(CurateArgs),
}

const CURATE_HELP: &str = "Examples:
  bedside bench curate                               # phantom-only corpus of 2,000 files
  bedside bench curate --corpus dicom-samples/ --files 3000

Builds a corpus of about --files DICOM files in --work: the files under each --corpus folder and
a small synthetic echo cohort, copied with new Study/Series/SOP Instance UIDs until the corpus is
full, split over one folder per core. Seeds that Bedside cannot de-identify, or that gdcmanon
rejects or is pathologically slow on, are left out and listed. Then, on that corpus:
  header de-identification, file to file: bedside on 1 thread and on all cores; gdcmanon
    (libgdcm-tools) and dicom-anonymizer (pydicom) as one process and as one process per core;
    cp -r as the I/O ceiling;
  metadata extraction (read, one checked walk of the data set, hash the pixel data) per core,
    and without the hash, in CPU time of the thread;
  OCR cost per cine on full-size synthetic echo cines (pixel cleaning with and without OCR,
    in CPU time of the thread that reads, so that other load does not count).
Peers that are not installed are reported as such. Ratios are bedside / peer at the same number
of threads or processes.";

/// Arguments of `bedside bench curate`.
#[derive(clap::Args, Debug)]
pub struct CurateArgs {
    /// Folders of DICOM files to build the corpus from (repeatable), besides the phantom.
    #[arg(long)]
    pub corpus: Vec<PathBuf>,
    /// Number of files in the corpus.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    pub files: u32,
    /// Work folder (created; removed afterwards unless --keep). Default: a new folder in the
    /// system's temporary directory.
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Threads (and peer processes) for the all-cores runs; default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep the work folder.
    #[arg(long)]
    pub keep: bool,
}

/// Runs the subcommand.
pub fn run(cmd: BenchCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Curate(args) => curate(&args, ctx),
    }
}

fn phantom(
    dir: &Path,
    patients: usize,
    rows: usize,
    columns: usize,
    frames: [usize; 2],
) -> anyhow::Result<()> {
    let config = PhantomConfig {
        seed: 11,
        patients,
        rows,
        columns,
        frames,
        in_sector_text_fraction: 0.5,
        write_masks: false,
        ..PhantomConfig::default()
    };
    bedside_phantom::generate(&config, dir, true, &|| {})
        .with_context(|| format!("generating a phantom cohort in {}", dir.display()))?;
    Ok(())
}

fn find_program(name: &str) -> Option<PathBuf> {
    let local = PathBuf::from(".venv/bin").join(name);
    [PathBuf::from(name), local]
        .into_iter()
        .find(|p| bench::installed(p))
}

fn row(label: &str, m: &Measure, ratio: Option<f64>) -> String {
    format!(
        "  {label:<34} {:>5} {:>7} {:>10.0} {:>8.1} {:>10}",
        m.threads,
        m.files,
        m.files_per_second(),
        m.mb_per_second(),
        ratio.map_or("-".to_string(), |r| format!("{r:.2}x"))
    )
}

fn curate(args: &CurateArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let work = args.work.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("bedside-bench-{}", std::process::id()))
    });
    if work.exists() && std::fs::read_dir(&work).map(|mut d| d.next().is_some())? {
        return Err(
            Exit::invalid(format!("the work folder {} is not empty", work.display())).into(),
        );
    }
    for c in &args.corpus {
        if !c.is_dir() {
            return Err(Exit::invalid(format!("--corpus {}: not a folder", c.display())).into());
        }
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = measure(args, ctx, &work, threads);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        ctx.say(format!("work folder kept: {}", work.display()));
    }
    result
}

fn measure(args: &CurateArgs, ctx: &Ctx, work: &Path, threads: usize) -> anyhow::Result<()> {
    ctx.say("generating synthetic echo cohorts (corpus seeds, and full-size cines for OCR)");
    let small = work.join("phantom-small");
    phantom(&small, 12, 120, 160, [8, 16])?;
    let full = work.join("phantom-full");
    phantom(&full, 6, 480, 640, [32, 64])?;
    let deid = Deidentifier::new(Profile::default(), SiteSecret::from_bytes([9; 32]))
        .context("preparing the default profile")?;
    let cert = bench::gdcmanon_certificate(work);
    let mut seeds = args.corpus.clone();
    seeds.push(small.join("dicom"));
    ctx.say("building the corpus (each seed is also tried once with gdcmanon)");
    let corpus = bench::build_corpus(
        &seeds,
        args.files as usize,
        threads,
        work,
        &deid,
        cert.as_deref(),
    )
    .context("building the corpus")?;
    if corpus.files.is_empty() {
        return Err(Exit::invalid("no usable DICOM file among the seeds").into());
    }
    let outs = work.join("out");
    let fresh = |name: &str| {
        let p = outs.join(name);
        let _ = std::fs::remove_dir_all(&p);
        p
    };
    ctx.say("timing header de-identification");
    let ours1 = bench::deid_files(&corpus, &deid, &fresh("bedside-1"), 1);
    let ours_n = bench::deid_files(&corpus, &deid, &fresh("bedside-n"), threads);
    let _ = std::fs::remove_dir_all(&outs);

    let mut peers: Vec<(String, Option<(Measure, Measure)>)> = Vec::new();
    let mut time_peer = |label: &str, peer: Option<Peer>, corpus: &Corpus| {
        let result = peer.and_then(|p| {
            ctx.say(format!("timing {label}"));
            let one = bench::run_peer(&p, corpus, &fresh("peer-1"), false);
            let _ = std::fs::remove_dir_all(&outs);
            let many = bench::run_peer(&p, corpus, &fresh("peer-n"), true);
            let _ = std::fs::remove_dir_all(&outs);
            one.zip(many)
        });
        peers.push((label.to_string(), result));
    };
    let gdcm = cert.as_ref().map(|c| Peer {
        label: "gdcmanon".into(),
        program: "gdcmanon".into(),
        args: vec![
            "-e".into(),
            "-c".into(),
            c.display().to_string(),
            "--continue".into(),
            "-r".into(),
            "-i".into(),
        ],
        out_flag: Some("-o".into()),
    });
    time_peer("gdcmanon (GDCM)", gdcm, &corpus);
    let pydicom = find_program("dicom-anonymizer").map(|program| Peer {
        label: "dicom-anonymizer".into(),
        program,
        args: Vec::new(),
        out_flag: None,
    });
    time_peer("dicom-anonymizer (pydicom)", pydicom, &corpus);
    let cp = find_program("cp").map(|program| Peer {
        label: "cp -r".into(),
        program,
        args: vec!["-r".into()],
        out_flag: None,
    });
    time_peer("cp -r (I/O ceiling)", cp, &corpus);

    ctx.say("timing metadata extraction and OCR");
    let meta = bench::metadata_files(&corpus, true);
    let header_only = bench::metadata_files(&corpus, false);
    let cines = bench::walk(&full.join("dicom"));
    let ocr = bench::ocr_cost(&cines);

    let mb = corpus.bytes() as f64 / 1e6;
    println!();
    println!(
        "corpus: {} files from {} seed files, {mb:.1} MB (mean {:.0} kB), {} folders",
        corpus.files.len(),
        corpus.seeds,
        mb * 1e3 / corpus.files.len() as f64,
        corpus.parts.len()
    );
    for l in corpus.left_out.iter().take(20) {
        println!("  left out: {l}");
    }
    if corpus.left_out.len() > 20 {
        println!("  left out: {} more", corpus.left_out.len() - 20);
    }
    println!();
    println!(
        "  {:<34} {:>5} {:>7} {:>10} {:>8} {:>10}",
        "header de-identification", "procs", "files", "files/s", "MB/s", "bedside/x"
    );
    println!("{}", row("bedside", &ours1, None));
    println!("{}", row("bedside", &ours_n, None));
    let mut ratios = Vec::new();
    for (label, result) in &peers {
        match result {
            Some((one, many)) => {
                let r1 = ours1.files_per_second() / one.files_per_second().max(1e-9);
                let rn = ours_n.files_per_second() / many.files_per_second().max(1e-9);
                println!("{}", row(label, one, Some(r1)));
                println!("{}", row(label, many, Some(rn)));
                ratios.push((label.clone(), r1, rn));
            }
            None => println!("  {label:<34} not installed"),
        }
    }
    println!();
    println!(
        "  metadata extraction: {:.0} files/s per core, {:.1} MB/s ({} files; goal >= 10,000 files/s)",
        meta.files_per_second(),
        meta.mb_per_second(),
        meta.files
    );
    println!(
        "  metadata extraction without the pixel hash: {:.0} files/s per core, {:.1} MB/s",
        header_only.files_per_second(),
        header_only.mb_per_second(),
    );
    match ocr {
        Some((n, without, with)) => println!(
            "  OCR: {:.1} ms per cine on average ({n} cines of 480x640; pixel cleaning {without:.1} ms without OCR, {with:.1} ms with, CPU time of one thread; goal < 100 ms)",
            with - without
        ),
        None => {
            println!("  OCR: not measured (built without the `ocr` feature, or no cine cleaned)")
        }
    }
    println!();
    for (label, r1, rn) in &ratios {
        println!("  bedside / {label}: {r1:.2}x on 1 thread, {rn:.2}x on {threads} cores");
    }
    Ok(())
}
