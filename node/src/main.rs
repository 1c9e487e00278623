//! `lockstep-node`: parses the command line and runs it (see `cli`).

fn main() -> std::process::ExitCode {
    match lockstep_node::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
