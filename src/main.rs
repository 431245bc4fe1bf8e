use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(drainctl::run(std::env::args_os()))
}
