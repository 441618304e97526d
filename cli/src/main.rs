//! The `deskew` binary: everything happens in [`deskew_cli::run`].

fn main() -> std::process::ExitCode {
    deskew_cli::run()
}
