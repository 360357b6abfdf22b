//! The `mailgate` binary: the command line with the strategies this build's
//! features compiled in.

fn main() -> std::process::ExitCode {
    mailgate_cli::run(mailgate::default_registry())
}
