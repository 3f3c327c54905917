//! One module per subcommand.

pub mod annotate;
pub mod bench;
pub mod curate;
pub mod demo;
pub mod evaluate;
pub mod export;
pub mod predict;
pub mod synth;
pub mod train;
