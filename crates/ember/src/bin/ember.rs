//! The `ember` command: parses arguments and hands over to [`ember::cli`].

fn main() -> std::process::ExitCode {
    ember::cli::main()
}
