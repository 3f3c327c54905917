//! Shared foundations of Bedside, the layer every other crate may depend on.
//!
//! - [`phi::Phi`]: a wrapper for protected health information whose `Debug` and `Display` redact,
//!   so an identifier can never reach a log line or error message by accident.
//! - [`rng::Rng`]: a small, fast, deterministic random number generator (xoshiro256++ seeded via
//!   SplitMix64) whose streams are fixed by this crate, not by a dependency's version, so a
//!   cohort generated from a seed today is byte-identical next year.
//! - [`config`]: layered, validated TOML configuration (defaults, then a file, then
//!   `BEDSIDE__SECTION__KEY` environment variables) with errors that name the offending key.
//! - [`fsio`]: atomic file output (write to a temporary file in the target folder, then rename).
//!
//! ```
//! use bedside_core::{phi::Phi, rng::Rng};
//! let name = Phi::new("DOE^JANE".to_string());
//! assert_eq!(format!("{name}"), "<redacted>");
//! let mut rng = Rng::seed_from(42).fork(7);
//! let u = rng.uniform();
//! assert!((0.0..1.0).contains(&u));
//! ```

pub mod alloc;
pub mod config;
pub mod fsio;
pub mod npy;
pub mod phi;
pub mod rng;
