//! The data side: arrays on disk to clip tensors.
//!
//! - [`npy`]: reading NumPy `.npy` arrays (`uint8`, `uint16`, `int16`, `float32`, `float64`).
//! - [`manifest`]: the study table (array path, split, labels, covariates, groups), validated
//!   up front with messages that name the row and column.
//! - [`clips`]: EchoNet-Dynamic-style clip sampling (length, period; one random clip for
//!   training, every clip at test time), seeded `Rand…` augmentations and per-channel
//!   normalisation statistics.
//! - [`loader`]: joining an array index with a label sheet, resizing to the model's frame
//!   size, and a multi-threaded loader with a bounded number of batches in flight.

pub mod clips;
pub mod loader;
pub mod manifest;
pub mod npy;
pub mod quality;
