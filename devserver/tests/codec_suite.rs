//! The dev server passes the codec's conformance cases over TCP
//! (`mailgate_relay::codec::suite`; the relay runs the same).

mod common;
#[path = "../../relay/tests/suite/tcp.rs"]
mod tcp;

use mailgate_devserver::{DevCa, DevSmtpServer};
use mailgate_relay::codec::suite::{CASES, MAX_LINE, MAX_MESSAGE, MAX_RECIPIENTS};
use tokio_rustls::TlsConnector;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_server_passes_the_codec_suite() {
    let ca = DevCa::generate().unwrap();
    let connector = TlsConnector::from(common::client_config(ca.ca_cert_pem()));
    let mut failures = Vec::new();
    for case in CASES {
        let server = DevSmtpServer::builder()
            .starttls()
            .ca(ca.clone())
            .max_line_length(MAX_LINE)
            .max_message_size(MAX_MESSAGE)
            .max_recipients(MAX_RECIPIENTS)
            .start()
            .await
            .unwrap();
        let result = tcp::run_case(server.addr(), &connector, case)
            .await
            .and_then(|()| {
                let stored: Vec<Vec<u8>> = server.messages().into_iter().map(|m| m.data).collect();
                case.check_stored(&stored)
            });
        if let Err(e) = result {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
