use std::process::ExitCode;

fn main() -> ExitCode {
    kedge::cli::main()
}
