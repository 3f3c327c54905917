//! Bedside's Flower site agent: joins a stock Flower (flwr 1.42) federation as a node
//! over the Fleet API (protobuf over HTTPS POST `/v1/fleet/<call>`), trains locally
//! through a [`trainer::Trainer`], and lets out only what the site's safeguards allow.
//!
//! No code is ever received or run: the agent answers `train` and `evaluate`
//! instructions of allow-listed runs with its own trainer. See the crate README for the
//! protocol as verified against flwr 1.42.

pub mod agent;
pub mod audit;
pub mod auth;
pub mod config;
pub mod egress;
pub mod fleet;
pub mod npy;
pub mod objects;
pub mod privacy;
pub mod stats;
pub mod trainer;

/// Message types of the Fleet API, generated from the vendored flwr 1.42 protos.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/flwr.proto.rs"));
}

/// Errors of the site agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederateError {
    /// The node key could not be read or created.
    #[error("node key: {0}")]
    Key(String),
    /// TLS settings are unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// A Fleet API call failed (status 0: no HTTP response).
    #[error("fleet call `{call}` failed (HTTP {status}): {detail}")]
    Http {
        /// Path segment after `/v1/fleet/`.
        call: String,
        /// HTTP status, 0 when the connection failed.
        status: u16,
        /// Server message or transport error.
        detail: String,
    },
    /// A message object is malformed.
    #[error("decoding a message object: {0}")]
    DecodeObject(String),
    /// An array is not a plain float `.npy`.
    #[error("decoding an array: {0}")]
    DecodeArray(String),
    /// The site's data could not be read.
    #[error("site data: {0}")]
    Data(String),
    /// The site refused an instruction.
    #[error("refused: {0}")]
    Refused(String),
    /// The audit log could not be written or does not verify.
    #[error("audit log: {0}")]
    Audit(String),
}
