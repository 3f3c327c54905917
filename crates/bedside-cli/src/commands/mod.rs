//! One module per subcommand.

pub mod curate;
pub mod demo;
pub mod evaluate;
pub mod synth;
