//! Compiles the vendored Flower protos with protox (pure Rust), so no protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/flwr/proto/fleet.proto",
        "proto/flwr/proto/heartbeat.proto",
        "proto/flwr/proto/message.proto",
        "proto/flwr/proto/run.proto",
        "proto/flwr/proto/fab.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
