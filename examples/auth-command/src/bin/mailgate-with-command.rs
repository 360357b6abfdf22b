//! `mailgate` with the `command` strategy: every command knows it.
fn main() -> std::process::ExitCode {
    let registry = mailgate::default_registry();
    mailgate_cli::run(registry.and_then(|r| r.with(&mailgate_auth_command::DESCRIPTOR)))
}
