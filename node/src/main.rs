//! `lockstep-node`: parses the command line and runs it (see `cli`).

/// mimalloc instead of glibc's allocator: glibc returns the big buffers a
/// validator churns through (blocks of megabytes, gossip batches, RocksDB
/// write batches) to the kernel on free and faults in fresh zeroed pages on
/// the next allocation; under load that page clearing alone took about 12%
/// of the machine (BENCHMARKS.md). mimalloc keeps freed memory for reuse.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match lockstep_node::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
