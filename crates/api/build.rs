//! Generates the etcd v3 API and rustcd's internal records from `proto/`, with the vendored protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "rpc.proto",
        "kv.proto",
        "auth.proto",
        "v3lock.proto",
        "v3election.proto",
        "internal.proto",
        "otlp.proto",
        "raftpb.proto",
        "etcdserver.proto",
        "membership.proto",
        "raft_internal.proto",
    ];
    let protos: Vec<_> = files.iter().map(|f| proto_dir.join(f)).collect();
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("descriptors.bin");
    config.file_descriptor_set_path(&descriptors);
    tonic_prost_build::configure().build_client(true).build_server(true).compile_with_config(
        config,
        &protos,
        &[proto_dir],
    )?;
    // etcd's JSON gateway speaks the proto3 JSON mapping with the .proto's own field names
    // (grpc-gateway's `OrigName`): serde impls for the etcd API's messages.
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .build(&[".etcdserverpb", ".membershippb", ".mvccpb", ".authpb", ".v3lockpb", ".v3electionpb"])?;
    Ok(())
}
