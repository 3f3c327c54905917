//! One module per subcommand.

pub mod demo;
pub mod evaluate;
pub mod synth;
