//! Allow-list networks.

use std::net::IpAddr;

use mailgate_relay::{Cidr, CidrError, RelayConfig, default_allow};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn parses_networks_and_hosts() {
    let net: Cidr = "127.0.0.0/8".parse().unwrap();
    assert_eq!(net.prefix(), 8);
    assert!(net.contains(ip("127.0.0.1")));
    assert!(net.contains(ip("127.255.255.254")));
    assert!(!net.contains(ip("128.0.0.1")));
    assert!(!net.contains(ip("::1")));
    assert_eq!(net.to_string(), "127.0.0.0/8");

    let host: Cidr = "10.1.2.3".parse().unwrap();
    assert_eq!(host.prefix(), 32);
    assert!(host.contains(ip("10.1.2.3")));
    assert!(!host.contains(ip("10.1.2.4")));

    let v6: Cidr = "::1/128".parse().unwrap();
    assert!(v6.contains(ip("::1")));
    assert!(!v6.contains(ip("::2")));
    assert!(!v6.contains(ip("127.0.0.1")));
    assert_eq!("::1".parse::<Cidr>().unwrap(), v6);

    let wide: Cidr = "fd00::/8".parse().unwrap();
    assert!(wide.contains(ip("fd12:3456::1")));
    assert!(!wide.contains(ip("fe80::1")));

    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(ip("8.8.8.8")));
    assert!(!all.contains(ip("::1")));
    assert!("::/0".parse::<Cidr>().unwrap().contains(ip("2001:db8::1")));
}

#[test]
fn ipv4_mapped_clients_match_ipv4_networks() {
    let net: Cidr = "127.0.0.0/8".parse().unwrap();
    assert!(net.contains(ip("::ffff:127.0.0.1")));
    assert!(!net.contains(ip("::ffff:10.0.0.1")));
    let config = RelayConfig::default();
    assert_eq!(config.allow, default_allow());
    assert!(config.allows(ip("127.0.0.1")));
    assert!(config.allows(ip("::1")));
    assert!(config.allows(ip("::ffff:127.0.0.5")));
    assert!(!config.allows(ip("10.0.0.1")));
    assert!(!config.allows(ip("::2")));
}

#[test]
fn refuses_bad_input() {
    for bad in [
        "",
        "/8",
        "127.0.0.1/",
        "127.0.0.1/33",
        "::1/129",
        "127.0.0.1/-1",
        "127.0.0.1/+8",
        "127.0.0.1/08",
        "127.0.0.1/8/8",
        "localhost",
        "127.0.0.0 /8",
        " 127.0.0.1",
        "1.2.3.4.5",
        "127.0.0.1/ 8",
    ] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
    }
    match "10.1.2.3/8".parse::<Cidr>() {
        Err(CidrError::HostBits { network, .. }) => assert_eq!(network, "10.0.0.0/8"),
        other => panic!("{other:?}"),
    }
    let err = "10.1.2.3/8".parse::<Cidr>().unwrap_err().to_string();
    assert!(
        err.contains("10.1.2.3/8") && err.contains("10.0.0.0/8"),
        "{err}"
    );
    assert!(matches!(
        "::1/200".parse::<Cidr>(),
        Err(CidrError::Prefix { max: 128, .. })
    ));
    assert_eq!(
        Cidr::new(ip("10.0.0.0"), 8),
        Some("10.0.0.0/8".parse().unwrap())
    );
    assert_eq!(Cidr::new(ip("10.0.0.1"), 8), None);
    assert_eq!(Cidr::new(ip("10.0.0.0"), 33), None);
}
