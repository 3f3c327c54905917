//! `bedside annotate`: the annotation server and the import of studies into its store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use bedside_annotate::{db::AnnotateDb, import, server, sql::Database, store::DiskStore};

use crate::ui::{Ctx, Exit, exit};

/// The annotation server.
#[derive(Subcommand, Debug)]
pub enum AnnotateCommand {
    /// Serve the annotation API, its WebSocket and DICOMweb (QIDO-RS, WADO-RS, STOW-RS).
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Manage the accounts of a data folder.
    #[command(subcommand)]
    User(UserCommand),
    /// Import a folder of DICOM (curated studies, a phantom's dicom/ tree) into a data folder.
    #[command(after_help = IMPORT_EXAMPLES)]
    Import(ImportArgs),
    /// Export a project's annotations: JSON, CSV, DICOM SR (TID 1500), DICOM SEG, masks.
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
}

const EXPORT_EXAMPLES: &str = "Examples:
  bedside annotate export --data annotate-data/ --project echo --format sr --out echo-sr.zip
  bedside annotate export --data annotate-data/ --project 1 --format masks --out masks.zip
  bedside annotate export --data annotate-data/ --project echo --format csv --out echo.csv

json and csv are single files; sr, seg and masks are zip archives with a manifest.json:
sr/{study}/{reader}.dcm (Comprehensive SR, TID 1500, one per study and reader),
seg/{study}/{series}/{sop}/{reader}.dcm (binary SEG, one per instance and reader),
masks/{study}/{series}/{sop}/{name}/{reader}/mask.npy (frames x rows x columns, uint8)
and frame-NNNN.png per annotated frame. The same exports are served at
GET /api/projects/P/export?format=...";

/// Arguments of `bedside annotate export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Data folder.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub db: DatabaseArg,
    /// Project id or name.
    #[arg(long)]
    pub project: String,
    /// What to write.
    #[arg(long, value_parser = ["json", "csv", "sr", "seg", "masks"])]
    pub format: String,
    /// Only this study (Study Instance UID).
    #[arg(long)]
    pub study: Option<String>,
    /// Output file.
    #[arg(long, short)]
    pub out: PathBuf,
}

const SERVE_EXAMPLES: &str = "Examples:
  bedside annotate import cohort/dicom/ --data annotate-data/
  printf '%s\\n' \"$ADMIN_PASSWORD\" | bedside annotate user add admin --superuser --data annotate-data/
  bedside annotate serve --data annotate-data/
  bedside annotate serve --data annotate-data/ --listen 127.0.0.1:8042 --session-hours 8
  # HTTPS in the binary (PEM files; cookies are then Secure):
  bedside annotate serve --data annotate-data/ --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem
  # behind an HTTPS reverse proxy:
  bedside annotate serve --data annotate-data/ --secure-cookies
  # several servers behind a load balancer: one PostgreSQL database, one shared data folder
  # (a password goes in BEDSIDE_DATABASE_URL rather than on the command line):
  BEDSIDE_DATABASE_URL='postgres://bedside@db.example.org/annotate?sslmode=require' \\
    bedside annotate serve --data /mnt/shared/annotate-data/ --listen 0.0.0.0:8042 \\
    --database-ca db-ca.pem

Every endpoint needs a session: POST /api/login {\"username\", \"password\"} sets an HttpOnly,
SameSite=Strict cookie and returns a CSRF token to send as X-CSRF-Token on POST/PUT/PATCH/DELETE.
After 5 failed sign-ins in a row an account is refused (429, Retry-After) for 1 s, doubling with
every further failure up to 15 min.
The API is under /api (projects, members, studies, annotations, audit, export; WebSocket at
/api/projects/P/studies/S/ws); DICOMweb under /dicomweb (e.g.
http://127.0.0.1:8042/dicomweb/studies), limited to the studies of the caller's projects; STOW-RS
needs the admin role. Listens on the loopback interface unless told otherwise. Ctrl-C stops it.";

const USER_EXAMPLES: &str = "Examples:
  printf '%s\\n' \"$PASSWORD\" | bedside annotate user add alice --data annotate-data/
  BEDSIDE_ANNOTATE_PASSWORD=... bedside annotate user add root --superuser --data annotate-data/
  bedside annotate user list --data annotate-data/

The password is read from BEDSIDE_ANNOTATE_PASSWORD or else from the first line of standard
input (never from a flag, which would land in shell history and process lists); it is stored as
an Argon2id hash. Superusers administer every project and create projects (POST /api/projects);
project roles (admin, annotator, reviewer, viewer) are given with PUT
/api/projects/P/members/USER.";

/// The database option shared by the commands.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArg {
    /// Keep the index, accounts and annotations in PostgreSQL instead of the data folder's
    /// SQLite file (postgres://user@host:port/db; servers sharing it share the data folder).
    #[arg(
        long,
        env = "BEDSIDE_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database: Option<String>,
    /// With sslmode=require in the URL: the certificate authorities (PEM) the PostgreSQL
    /// server's certificate must come from (default: the system's). Without sslmode=require
    /// the connection is not encrypted.
    #[arg(
        long,
        env = "BEDSIDE_DATABASE_CA",
        value_name = "FILE",
        requires = "database"
    )]
    pub database_ca: Option<PathBuf>,
}

/// Account commands.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add an account (password from BEDSIDE_ANNOTATE_PASSWORD or standard input).
    #[command(after_help = USER_EXAMPLES)]
    Add(UserAddArgs),
    /// List the accounts and their project roles.
    #[command(after_help = USER_EXAMPLES)]
    List(UserListArgs),
}

/// Arguments of `bedside annotate user add`.
#[derive(Args, Debug)]
pub struct UserAddArgs {
    /// Login name (letters, digits, . _ @ -).
    pub username: String,
    /// Data folder.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub db: DatabaseArg,
    /// Administer every project and create projects.
    #[arg(long)]
    pub superuser: bool,
}

/// Arguments of `bedside annotate user list`.
#[derive(Args, Debug)]
pub struct UserListArgs {
    /// Data folder.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub db: DatabaseArg,
}

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
    #[command(flatten)]
    pub db: DatabaseArg,
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8042")]
    pub listen: SocketAddr,
    /// Largest STOW-RS upload in MiB.
    #[arg(long, default_value_t = 2048)]
    pub max_upload_mib: usize,
    /// Memory for parsed instances kept between frame requests, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub cache_mib: usize,
    /// Session lifetime in hours.
    #[arg(long, default_value_t = 12)]
    pub session_hours: i64,
    /// Mark session cookies Secure (set this when clients reach the server over HTTPS; implied
    /// by --tls-cert).
    #[arg(long)]
    pub secure_cookies: bool,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Arguments of `bedside annotate import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Folder (searched recursively) or single file to import.
    pub input: PathBuf,
    /// Data folder (created if missing).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub db: DatabaseArg,
}

/// Runs an `annotate` subcommand.
pub fn run(cmd: AnnotateCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        AnnotateCommand::Serve(args) => serve(args, ctx),
        AnnotateCommand::Import(args) => import_cmd(args, ctx),
        AnnotateCommand::Export(args) => export_cmd(args, ctx),
        AnnotateCommand::User(UserCommand::Add(args)) => user_add(args, ctx),
        AnnotateCommand::User(UserCommand::List(args)) => user_list(args),
    }
}

fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _};
    if let Ok(p) = std::env::var("BEDSIDE_ANNOTATE_PASSWORD") {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Exit::invalid(
            "pipe the password into standard input or set BEDSIDE_ANNOTATE_PASSWORD",
        )
        .into());
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The database of a command: the data folder's SQLite file, or PostgreSQL by URL.
fn database(data: &std::path::Path, db: &DatabaseArg) -> anyhow::Result<Database> {
    Database::open_with_ca(data, db.database.as_deref(), db.database_ca.as_deref())
        .context("opening the database")
}

fn user_add(args: UserAddArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let password = read_password()?;
    let db = AnnotateDb::with_database(&database(&args.data, &args.db)?)?;
    match db.add_user(&args.username, &password, args.superuser) {
        Ok(()) => {}
        Err(
            e @ (bedside_annotate::db::DbError::Invalid(_)
            | bedside_annotate::db::DbError::Exists(_)),
        ) => {
            return Err(Exit::invalid(e.to_string()).into());
        }
        Err(e) => return Err(e).context("adding the user"),
    }
    ctx.say(format!(
        "Added {}{} to {}",
        args.username,
        if args.superuser { " (superuser)" } else { "" },
        args.data.display()
    ));
    Ok(())
}

fn user_list(args: UserListArgs) -> anyhow::Result<()> {
    let db = AnnotateDb::with_database(&database(&args.data, &args.db)?)?;
    for u in db.list_users().context("listing users")? {
        let roles: Vec<String> = u
            .projects
            .iter()
            .map(|(p, r)| format!("{p}:{}", r.as_str()))
            .collect();
        println!(
            "{}\t{}\t{}",
            u.username,
            if u.superuser { "superuser" } else { "-" },
            if roles.is_empty() {
                "-".to_string()
            } else {
                roles.join(",")
            }
        );
    }
    Ok(())
}

fn serve(args: ServeArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let config = server::ServeConfig {
        data: args.data.clone(),
        database: args.db.database.clone(),
        database_ca: args.db.database_ca.clone(),
        listen: args.listen,
        dicomweb: bedside_dicomweb_config(&args),
        auth: bedside_annotate::api::AuthConfig {
            session_ttl_secs: args.session_hours.clamp(1, 24 * 365) * 3600,
            secure_cookies: args.secure_cookies || args.tls_cert.is_some(),
            ..Default::default()
        },
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(server::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
    };
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let quiet = ctx.quiet;
    server::serve(config, |addr| {
        if !quiet {
            eprintln!(
                "bedside annotate: API at {scheme}://{addr}/api, DICOMweb at {scheme}://{addr}{} (data in {}); Ctrl-C to stop",
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
    let db = database(&args.data, &args.db)?;
    let store = DiskStore::with_database(&args.data, &db)?;
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

fn export_cmd(args: ExportArgs, ctx: &Ctx) -> anyhow::Result<()> {
    use bedside_annotate::export::{Format, render_from_folder};
    use bedside_annotate::export_dicom::ExportError;
    let format = Format::parse(&args.format)
        .ok_or_else(|| Exit::invalid(format!("--format is {}", Format::NAMES)))?;
    let db = database(&args.data, &args.db)?;
    let rendered = match render_from_folder(
        &args.data,
        &db,
        &args.project,
        format,
        args.study.as_deref(),
    ) {
        Ok(r) => r,
        Err(ExportError::Invalid(m)) => return Err(Exit::invalid(m).into()),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "exporting project {} as {}",
                args.project, args.format
            )));
        }
    };
    std::fs::write(&args.out, &rendered.body)
        .with_context(|| format!("writing {}", args.out.display()))?;
    ctx.say(format!(
        "Wrote {} ({} file{}, {} bytes)",
        args.out.display(),
        rendered.files,
        if rendered.files == 1 { "" } else { "s" },
        rendered.body.len()
    ));
    for why in &rendered.skipped {
        eprintln!("  left out: {why}");
    }
    Ok(())
}
