//! IP networks in CIDR notation, for the relay's allow list.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network: an address and a prefix length.
///
/// Parsed from `"127.0.0.0/8"`, `"::1/128"`, or a single address
/// (`"10.1.2.3"`, `"::1"`: a host, `/32` or `/128`). Host bits must be zero
/// (`"10.1.2.3/8"` is refused: it most likely means `10.0.0.0/8`, but a
/// typo in an allow list must not guess).
///
/// [`Cidr::contains`] treats an IPv4-mapped IPv6 address
/// (`::ffff:127.0.0.1`, which a dual-stack listener on `[::]` reports for
/// IPv4 clients) as the IPv4 address it carries, so `127.0.0.0/8` matches
/// it; an IPv6 network never matches an IPv4 client and the other way
/// round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not a [`Cidr`]; the message names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is not an IP address.
    #[error("`{input}`: not an IP address or network (expected e.g. 127.0.0.0/8 or ::1/128)")]
    Address {
        /// The text that was parsed.
        input: String,
    },
    /// The prefix length is not a number or too large for the address family.
    #[error("`{input}`: the prefix length must be a number from 0 to {max}")]
    Prefix {
        /// The text that was parsed.
        input: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// The address has bits set beyond the prefix.
    #[error("`{input}`: host bits are set beyond the /{prefix} prefix (did you mean {network}?)")]
    HostBits {
        /// The text that was parsed.
        input: String,
        /// The prefix length given.
        prefix: u8,
        /// The network with the host bits cleared.
        network: String,
    },
}

impl Cidr {
    /// The network `addr/prefix`; `None` when the prefix is too long for
    /// the address family or host bits are set.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = max_prefix(addr);
        if prefix > max {
            return None;
        }
        let cidr = Cidr { addr, prefix };
        (cidr.network_addr() == addr).then_some(cidr)
    }

    /// One host: `/32` for IPv4, `/128` for IPv6.
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr {
            addr,
            prefix: max_prefix(addr),
        }
    }

    /// The network address (host bits are zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network. An IPv4-mapped IPv6 address
    /// counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_v4(self.prefix);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_v6(self.prefix);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }

    fn network_addr(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(self.prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(self.prefix))),
        }
    }
}

/// An IPv4-mapped IPv6 address as IPv4; anything else unchanged.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(input: &str) -> Result<Cidr, CidrError> {
        let (addr_text, prefix_text) = match input.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (input, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| CidrError::Address {
            input: input.to_owned(),
        })?;
        let max = max_prefix(addr);
        let prefix = match prefix_text {
            None => max,
            Some(p) => {
                // Digits only: no sign, no spaces, no leading zeros beyond "0".
                let valid = !p.is_empty()
                    && p.len() <= 3
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && !(p.len() > 1 && p.starts_with('0'));
                match p.parse::<u8>() {
                    Ok(n) if valid && n <= max => n,
                    _ => {
                        return Err(CidrError::Prefix {
                            input: input.to_owned(),
                            max,
                        });
                    }
                }
            }
        };
        let cidr = Cidr { addr, prefix };
        let network = cidr.network_addr();
        if network != addr {
            return Err(CidrError::HostBits {
                input: input.to_owned(),
                prefix,
                network: format!("{network}/{prefix}"),
            });
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}
