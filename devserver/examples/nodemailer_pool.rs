//! Runs Nodemailer's pooled sender (`integration-tests/peers/node/
//! pooled-send.mjs`) against a dev SMTP server, optionally behind a
//! [`DelayProxy`], and checks what arrived: the Nodemailer side of the
//! pooled sending benchmark, and a smoke test of the script.
//!
//! ```text
//! bash integration-tests/peers/install.sh node
//! cargo run -p mailgate-devserver --example nodemailer_pool -- [connections] [messages] [one-way-ms] [no-delay]
//! ```
//!
//! Defaults: 4 connections, 200 messages, no proxy, `no-delay` 0 (1 sets
//! TCP_NODELAY on Nodemailer's sockets, see the script).
//!
//! Prints the script's JSON line and what the server saw; exits non-zero
//! when a message is missing or failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use mailgate_devserver::{DelayProxy, DevSmtpServer};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| -> Option<u64> {
        args.get(i).map_or(Some(default), |a| a.parse().ok())
    };
    let (Some(connections), Some(messages), Some(one_way_ms), Some(no_delay)) =
        (number(0, 4), number(1, 200), number(2, 0), number(3, 0))
    else {
        eprintln!("usage: nodemailer_pool [connections] [messages] [one-way-ms] [no-delay: 0|1]");
        return ExitCode::from(64);
    };
    let one_way = Duration::from_millis(one_way_ms);
    match run(connections, messages, one_way, no_delay != 0).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("nodemailer_pool: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    connections: u64,
    messages: u64,
    one_way: Duration,
    no_delay: bool,
) -> std::io::Result<bool> {
    let server = DevSmtpServer::builder().start().await?;
    let proxy = if one_way.is_zero() {
        None
    } else {
        Some(DelayProxy::start(server.addr(), one_way).await?)
    };
    let port = proxy.as_ref().map_or(server.port(), |p| p.port());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../integration-tests/peers/node/pooled-send.mjs");
    let config = serde_json::json!({
        "host": "127.0.0.1",
        "port": port,
        "connections": connections,
        "messages": messages,
        "from": "bench@example.com",
        "to": "sink@example.com",
        "subject": "pooled",
        "text": "Hello from Nodemailer's pool.\n",
        "noDelay": no_delay,
    });
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(config.to_string())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let received = server
        .wait_for_messages(messages as usize, Duration::from_secs(5))
        .await;
    let commands = server.commands();
    let pipelined = commands.iter().filter(|c| c.pipelined).count();
    println!(
        "server: {} messages on {} connections, {} commands ({} pipelined)",
        received.len(),
        server.connection_count(),
        commands.len(),
        pipelined
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_default();
    let ok = output.status.success()
        && report["errors"] == 0
        && report["messages"] == messages
        && received.len() as u64 == messages
        && received
            .iter()
            .all(|m| m.subject().as_deref() == Some("pooled"));
    Ok(ok)
}
