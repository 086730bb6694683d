use std::process::ExitCode;

/// jemalloc returns freed memory to the system; glibc's malloc kept a busy
/// start-up's peak (Cargo.toml says by how much).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    kedge::cli::main()
}
