//! `bedside annotate`: the annotation server and the import of studies into its store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use bedside_annotate::{import, server, store::DiskStore};

use crate::ui::{Ctx, Exit, exit};

/// The annotation server.
#[derive(Subcommand, Debug)]
pub enum AnnotateCommand {
    /// Serve the studies in a data folder over DICOMweb (QIDO-RS, WADO-RS, STOW-RS).
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Import a folder of DICOM (curated studies, a phantom's dicom/ tree) into a data folder.
    #[command(after_help = IMPORT_EXAMPLES)]
    Import(ImportArgs),
}

const SERVE_EXAMPLES: &str = "Examples:
  bedside annotate serve --data annotate-data/
  bedside annotate serve --data annotate-data/ --listen 127.0.0.1:8042

DICOMweb is served under /dicomweb (e.g. http://127.0.0.1:8042/dicomweb/studies): use that
as a viewer's wadoRoot/qidoRoot. Listens on the loopback interface unless told otherwise;
there are no accounts yet, so do not expose it to a network. Ctrl-C stops it.";

const IMPORT_EXAMPLES: &str = "Examples:
  bedside annotate import curated/ --data annotate-data/
  bedside annotate import cohort/dicom/ --data annotate-data/

Reads every file under the folder; files that are not DICOM are skipped and counted.
Importing the same files again changes nothing. Files are stored by their SHA-256.";

/// Arguments of `bedside annotate serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Data folder (created if missing): database and stored DICOM.
    #[arg(long)]
    pub data: PathBuf,
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8042")]
    pub listen: SocketAddr,
    /// Largest STOW-RS upload in MiB.
    #[arg(long, default_value_t = 2048)]
    pub max_upload_mib: usize,
    /// Memory for parsed instances kept between frame requests, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub cache_mib: usize,
}

/// Arguments of `bedside annotate import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Folder (searched recursively) or single file to import.
    pub input: PathBuf,
    /// Data folder (created if missing).
    #[arg(long)]
    pub data: PathBuf,
}

/// Runs an `annotate` subcommand.
pub fn run(cmd: AnnotateCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        AnnotateCommand::Serve(args) => serve(args, ctx),
        AnnotateCommand::Import(args) => import_cmd(args, ctx),
    }
}

fn serve(args: ServeArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let config = server::ServeConfig {
        data: args.data.clone(),
        listen: args.listen,
        dicomweb: bedside_dicomweb_config(&args),
    };
    let quiet = ctx.quiet;
    server::serve(config, |addr| {
        if !quiet {
            eprintln!(
                "bedside annotate: DICOMweb at http://{addr}{} (data in {}); Ctrl-C to stop",
                server::DICOMWEB_PREFIX,
                args.data.display()
            );
        }
        tracing::info!(%addr, "listening");
    })
    .with_context(|| format!("serving {}", args.data.display()))
}

fn bedside_dicomweb_config(args: &ServeArgs) -> bedside_annotate::server::DicomWebConfig {
    bedside_annotate::server::DicomWebConfig {
        max_request_bytes: args.max_upload_mib.saturating_mul(1 << 20),
        cache_bytes: args.cache_mib.saturating_mul(1 << 20),
        ..Default::default()
    }
}

fn import_cmd(args: ImportArgs, ctx: &Ctx) -> anyhow::Result<()> {
    if !args.input.exists() {
        return Err(Exit::invalid(format!("{} does not exist", args.input.display())).into());
    }
    let start = Instant::now();
    let store = DiskStore::open(&args.data)?;
    let bar = ctx.progress(0, "import");
    bar.set_message("files");
    let summary = import::import_path(&store, &args.input, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| {
        format!(
            "importing {} into {}",
            args.input.display(),
            args.data.display()
        )
    })?;
    bar.finish_and_clear();
    ctx.say(format!(
        "Imported {} in {:.1} s into {}",
        args.input.display(),
        start.elapsed().as_secs_f64(),
        args.data.display()
    ));
    ctx.say(format!(
        "  files {:>6}   stored {} / already stored {} / not DICOM {} / refused {}",
        summary.files,
        summary.stored,
        summary.already_stored,
        summary.not_dicom,
        summary.failed.len()
    ));
    ctx.say(format!(
        "  instances in the store: {}",
        store.instance_count().unwrap_or(0)
    ));
    for (path, why) in summary.failed.iter().take(20) {
        eprintln!("  refused {}: {why}", path.display());
    }
    if !summary.failed.is_empty() {
        return Err(Exit {
            code: exit::PARTIAL,
            message: format!(
                "{} of {} files were refused (listed above)",
                summary.failed.len(),
                summary.files
            ),
        }
        .into());
    }
    Ok(())
}
