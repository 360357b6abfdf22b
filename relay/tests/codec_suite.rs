//! The relay passes the codec's conformance cases over TCP
//! (`mailgate_relay::codec::suite`; the dev server runs the same).

mod common;
#[path = "suite/tcp.rs"]
mod tcp;

use common::{pki, start, test_config};
use mailgate_relay::RelayConfig;
use mailgate_relay::codec::suite::{CASES, MAX_ERRORS, MAX_LINE, MAX_MESSAGE, MAX_RECIPIENTS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_passes_the_codec_suite() {
    let pki = pki();
    let config = RelayConfig {
        max_line: MAX_LINE,
        max_data_line: MAX_LINE,
        max_message_bytes: MAX_MESSAGE,
        max_recipients: MAX_RECIPIENTS,
        max_errors: MAX_ERRORS,
        tls: Some(pki.server.clone()),
        ..test_config()
    };
    let connector = pki.connector();
    let mut failures = Vec::new();
    for case in CASES {
        let relay = start(config.clone()).await;
        let result = tcp::run_case(relay.addr, &connector, case)
            .await
            .and_then(|()| {
                let stored: Vec<Vec<u8>> = relay
                    .sink
                    .messages
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(_, data)| data.clone())
                    .collect();
                case.check_stored(&stored)
            });
        if let Err(e) = result {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
