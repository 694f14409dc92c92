//! Listen URLs: `ssl://HOST:PORT[/?hostname=NAME,NAME&ca=CA]` for TLS over TCP (port 0
//! picks a free port), serving the native protocol and HTTP chosen by ALPN;
//! `https://HOST:PORT[/?…]` for a TLS port that serves HTTP alone; and `unix://PATH`
//! for a unix socket of the native protocol.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::ServerError;

/// Where and how the service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenUrl {
    Tls {
        /// Host and port as given (`127.0.0.1:27460`, `[::1]:0`, `localhost:27460`).
        address: String,
        /// Names of the host certificates to serve, chosen by SNI; empty: `localhost`.
        host_names: Vec<String>,
        /// A CA whose client certificate every connection must present.
        required_ca: Option<String>,
        /// `https://`: HTTP alone, no native protocol.
        http_only: bool,
    },
    Unix {
        path: PathBuf,
    },
}

fn bad(url: &str, reason: &str) -> ServerError {
    ServerError::Settings {
        source_name: format!("listen URL {url:?}"),
        reason: reason.to_string(),
    }
}

impl FromStr for ListenUrl {
    type Err = ServerError;

    fn from_str(url: &str) -> Result<ListenUrl, ServerError> {
        if let Some(path) = url.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(bad(url, "a unix URL needs a path: unix:///run/cairn.sock"));
            }
            return Ok(ListenUrl::Unix {
                path: PathBuf::from(path),
            });
        }
        let (rest, http_only) = match (url.strip_prefix("ssl://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (rest, false),
            (None, Some(rest)) => (rest, true),
            (None, None) => {
                return Err(bad(
                    url,
                    "use ssl://HOST:PORT, https://HOST:PORT or unix://PATH",
                ))
            }
        };
        let (address, query) = match rest.split_once('/') {
            Some((address, tail)) => (address, tail.strip_prefix('?').unwrap_or(tail)),
            None => (rest, ""),
        };
        let port_ok = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(bad(
                url,
                "the address must be HOST:PORT (port 0 picks a free one)",
            ));
        }
        let mut host_names = Vec::new();
        let mut required_ca = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("hostname", names)) => host_names.extend(
                    names
                        .split(',')
                        .filter(|n| !n.is_empty())
                        .map(str::to_string),
                ),
                Some(("ca", name)) if !name.is_empty() => required_ca = Some(name.to_string()),
                _ => {
                    return Err(bad(
                        url,
                        &format!("unknown parameter {pair:?}; known: hostname, ca"),
                    ))
                }
            }
        }
        Ok(ListenUrl::Tls {
            address: address.to_string(),
            host_names,
            required_ca,
            http_only,
        })
    }
}

impl fmt::Display for ListenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenUrl::Unix { path } => write!(f, "unix://{}", path.display()),
            ListenUrl::Tls {
                address,
                host_names,
                required_ca,
                http_only,
            } => {
                let scheme = if *http_only { "https" } else { "ssl" };
                write!(f, "{scheme}://{address}")?;
                let mut params = Vec::new();
                if !host_names.is_empty() {
                    params.push(format!("hostname={}", host_names.join(",")));
                }
                if let Some(ca) = required_ca {
                    params.push(format!("ca={ca}"));
                }
                if !params.is_empty() {
                    write!(f, "/?{}", params.join("&"))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_urls_parse_and_print_back() {
        for url in [
            "ssl://127.0.0.1:27460",
            "ssl://0.0.0.0:0/?hostname=db1.acme.internal,db1&ca=acme",
            "ssl://[::1]:27460",
            "https://127.0.0.1:8443/?hostname=db1",
            "unix:///run/cairn.sock",
        ] {
            assert_eq!(url.parse::<ListenUrl>().unwrap().to_string(), url);
        }
        let parsed: ListenUrl = "ssl://h:1/?hostname=a,b".parse().unwrap();
        assert!(
            matches!(parsed, ListenUrl::Tls { host_names, http_only: false, .. } if host_names == ["a", "b"])
        );
        let https: ListenUrl = "https://h:1".parse().unwrap();
        assert!(matches!(
            https,
            ListenUrl::Tls {
                http_only: true,
                ..
            }
        ));
    }

    #[test]
    fn bad_listen_urls_are_refused() {
        for url in [
            "http://x:1",
            "https://nohost",
            "ssl://nohost",
            "ssl://:1",
            "ssl://h:99999",
            "ssl://h:1/?color=red",
            "unix://",
        ] {
            assert!(url.parse::<ListenUrl>().is_err(), "{url}");
        }
    }
}
