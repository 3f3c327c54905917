//! One module per subcommand.

pub mod agreement;
pub mod annotate;
pub mod bench;
pub mod curate;
pub mod demo;
pub mod evaluate;
pub mod explain;
pub mod export;
pub mod federate;
pub mod predict;
pub mod seg;
pub mod serve;
pub mod synth;
pub mod train;
