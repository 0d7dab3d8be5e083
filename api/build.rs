//! Generates the gRPC code for `proto/wasmos/v1/*.proto` with tonic-prost-build, using the
//! `protoc` binary shipped in the `protoc-bin-vendored` crate (nothing to install by hand).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: a build script is single-threaded at this point; nothing else reads the
    // environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let protos = [
        "proto/wasmos/v1/common.proto",
        "proto/wasmos/v1/scheduler.proto",
        "proto/wasmos/v1/agent.proto",
        "proto/wasmos/v1/operator.proto",
        "proto/wasmos/v1/raft.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
