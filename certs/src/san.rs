//! Subject alternative names of host certificates: a DNS name or an IP address, written
//! `DNS:db1.example.com` or `IP:10.0.0.1` on command lines.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::{CertError, Result};

/// One subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum San {
    /// A DNS name (a leading `*.` label makes it a wildcard).
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl San {
    /// The name under which a host is reached: an IP address if `host` parses as one,
    /// else a DNS name (checked).
    pub fn for_host(host: &str) -> Result<San> {
        match host.parse::<IpAddr>() {
            Ok(ip) => Ok(San::Ip(ip)),
            Err(_) if valid_dns(host) => Ok(San::Dns(host.to_string())),
            Err(_) => Err(CertError::BadSan(host.to_string())),
        }
    }

    /// The rcgen form of this name.
    pub(crate) fn to_rcgen(&self) -> Result<rcgen::SanType> {
        Ok(match self {
            San::Dns(name) => rcgen::SanType::DnsName(name.as_str().try_into()?),
            San::Ip(ip) => rcgen::SanType::IpAddress(*ip),
        })
    }
}

impl FromStr for San {
    type Err = CertError;

    /// Parses `DNS:NAME` or `IP:ADDRESS` (the prefix in any case).
    fn from_str(s: &str) -> Result<San> {
        let bad = || CertError::BadSan(s.to_string());
        let (kind, value) = s.split_once(':').ok_or_else(bad)?;
        if kind.eq_ignore_ascii_case("dns") && valid_dns(value) {
            Ok(San::Dns(value.to_string()))
        } else if kind.eq_ignore_ascii_case("ip") {
            value.parse().map(San::Ip).map_err(|_| bad())
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => write!(f, "DNS:{name}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`, at most 253
/// characters; the first label may be `*`.
fn valid_dns(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let cases = [
            ("DNS:db1.example.com", San::Dns("db1.example.com".into())),
            ("dns:*.example.com", San::Dns("*.example.com".into())),
            ("IP:10.0.0.1", San::Ip("10.0.0.1".parse().unwrap())),
            ("ip:::1", San::Ip("::1".parse().unwrap())),
        ];
        for (text, san) in cases {
            assert_eq!(text.parse::<San>().unwrap(), san, "{text}");
            assert_eq!(san.to_string().parse::<San>().unwrap(), san);
        }
        assert_eq!(San::Dns("a.b".into()).to_string(), "DNS:a.b");
        assert_eq!(
            San::Ip("10.0.0.1".parse().unwrap()).to_string(),
            "IP:10.0.0.1"
        );
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "db1",
            "DNS:",
            "DNS:a..b",
            "DNS:a b",
            "DNS:a/b",
            "IP:10.0.0.256",
            "IP:db1",
            "URI:x",
        ] {
            assert!(
                matches!(bad.parse::<San>(), Err(CertError::BadSan(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn host_names_become_ip_or_dns() {
        assert_eq!(
            San::for_host("127.0.0.1").unwrap(),
            San::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(San::for_host("db1").unwrap(), San::Dns("db1".into()));
        assert!(San::for_host("no such host").is_err());
    }
}
