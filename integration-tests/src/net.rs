//! Loopback port helpers.

use std::net::{Ipv4Addr, TcpListener};

/// A TCP port on 127.0.0.1 that nothing listens on: connecting to it is
/// refused at once. Use it for "server unreachable" tests.
///
/// The port was bound and released just before returning; another process
/// could take it in between, which on a test machine is rare enough.
pub fn unused_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("binding an ephemeral loopback port failed");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn unused_port_refuses_connections() {
        let port = unused_port();
        assert_ne!(port, 0);
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    }
}
