//! Terminal user interface shared by the subcommands: logging, progress bars, summaries and the
//! mapping from errors to exit codes.

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::EnvFilter;

/// Exit codes, documented in the README.
pub mod exit {
    /// An unexpected failure (I/O, internal error).
    pub const FAILURE: u8 = 1;
    /// Invalid configuration or input, detected before any work was done.
    pub const INVALID_INPUT: u8 = 3;
    /// The run finished, but some inputs were skipped (see the run's report).
    pub const PARTIAL: u8 = 4;
}

/// An error that carries its own exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The exit code.
    pub code: u8,
    /// What to tell the user.
    pub message: String,
}

impl Exit {
    /// Invalid configuration or input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Exit {
            code: exit::INVALID_INPUT,
            message: message.into(),
        }
    }
}

/// What every subcommand gets: verbosity and a factory for progress bars.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `-q` was given: no progress bars, errors only.
    pub quiet: bool,
}

impl Ctx {
    /// Sets up logging (`-v`/`-q`, or `RUST_LOG`) on standard error.
    pub fn init(verbose: u8, quiet: bool) -> Self {
        let default = match (quiet, verbose) {
            (true, _) => "error",
            (false, 0) => "warn",
            (false, 1) => "info",
            (false, 2) => "debug",
            (false, _) => "trace",
        };
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
        Ctx { quiet }
    }

    /// A progress bar for `len` items, hidden with `-q` or when standard error is not a terminal.
    pub fn progress(&self, len: u64, what: &str) -> ProgressBar {
        let bar = ProgressBar::new(len);
        if self.quiet {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        let style = ProgressStyle::with_template(
            "{prefix:>10.bold} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    }

    /// Prints a line of the end-of-command summary to standard output (not with `-q`).
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", line.as_ref());
        }
    }
}

/// Prints an error chain and chooses the exit code.
pub fn report_error(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    let code = if let Some(exit) = err.downcast_ref::<Exit>() {
        exit.code
    } else if err
        .chain()
        .any(|c| c.is::<bedside_core::config::ConfigError>())
    {
        exit::INVALID_INPUT
    } else {
        exit::FAILURE
    };
    ExitCode::from(code)
}
