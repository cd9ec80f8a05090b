//! Generates the agent gateway's gRPC code (feature `gateway`) from `proto/` with protox, so a
//! build needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    #[cfg(feature = "gateway")]
    {
        let files = protox::compile(["palisade/gateway/v1/gateway.proto"], ["proto"])?;
        tonic_prost_build::configure().compile_fds(files)?;
    }
    Ok(())
}
