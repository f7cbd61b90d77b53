//! The `pvl` binary: see `pvl --help`.

fn main() -> std::process::ExitCode {
    pvl_node::cli::main()
}
