//! Client URLs: where a service is and how to reach it. `ssl://[user[:password]@]host[:port]/`
//! (TLS over TCP, port 27460 by default) takes the query parameters `hostname=NAME` (the
//! name the server's certificate must hold, sent as SNI; default: the URL's host),
//! `certname=NAME` (present the client certificate `users/NAME`) and `certhash=sha256:HEX`
//! (trust exactly the server certificate with this SHA-256 instead of the CAs).
//! `unix://PATH` reaches a unix socket, such as a service's own `DIR/sock`. User and
//! password are percent-decoded; `Display` writes a URL back that parses to the same value
//! (password included), while `redacted` and `Debug` hide the password.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::str::FromStr;

use rustls::pki_types::ServerName;

use crate::error::ClientError;

/// The port of a TLS URL that names none.
pub const DEFAULT_PORT: u16 = 27460;

/// Where a service is and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientUrl {
    /// TLS over TCP.
    Tls(TlsUrl),
    /// A unix socket, without TLS.
    Unix { path: PathBuf },
}

/// The parts of an `ssl://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsUrl {
    /// The user to log in as (with `password`) or whose certificate to present.
    pub user: Option<String>,
    pub password: Option<String>,
    /// A DNS name or an IP address (an IPv6 address without its brackets).
    pub host: String,
    pub port: u16,
    /// `hostname=`: the name the server's certificate must hold, instead of `host`.
    pub hostname: Option<String>,
    /// `certname=`: the user certificate to present (`users/NAME.crt`).
    pub certname: Option<String>,
    /// `certhash=`: the SHA-256 of the only server certificate to trust.
    pub certhash: Option<[u8; 32]>,
}

impl TlsUrl {
    /// The name the server's certificate is checked against and that is sent as SNI.
    pub fn server_name(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.host)
    }
}

impl ClientUrl {
    /// The URL without its password, for messages and logs.
    pub fn redacted(&self) -> String {
        match self {
            ClientUrl::Tls(tls) => tls_url_text(tls, false),
            ClientUrl::Unix { path } => format!("unix://{}", path.display()),
        }
    }
}

fn bad(url: &str, reason: impl fmt::Display) -> ClientError {
    ClientError::Url(format!("{:?}: {reason}", hide_password(url)))
}

/// `url` with the password of an `ssl://` URL, if it has one, replaced by `***`; works
/// on URLs that do not parse.
fn hide_password(url: &str) -> String {
    let hidden = url.strip_prefix("ssl://").and_then(|rest| {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (userinfo, host) = rest[..end].rsplit_once('@')?;
        let (user, _) = userinfo.split_once(':')?;
        Some(format!("ssl://{user}:***@{host}{}", &rest[end..]))
    });
    hidden.unwrap_or_else(|| url.to_string())
}

impl FromStr for ClientUrl {
    type Err = ClientError;

    fn from_str(url: &str) -> Result<ClientUrl, ClientError> {
        if let Some(path) = url.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(bad(
                    url,
                    "a unix URL needs the socket's path, e.g. unix:///var/lib/cairn/sock",
                ));
            }
            return Ok(ClientUrl::Unix {
                path: PathBuf::from(path),
            });
        }
        let Some(rest) = url.strip_prefix("ssl://") else {
            return Err(bad(
                url,
                "use ssl://[USER[:PASSWORD]@]HOST[:PORT]/ or unix://PATH",
            ));
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let tail = tail.strip_prefix('/').unwrap_or(tail);
        let query = match tail.strip_prefix('?') {
            Some(query) => query,
            None if tail.is_empty() => "",
            None => {
                return Err(bad(
                    url,
                    "an ssl URL has no path (percent-encode '/', '?' and '@' in a password, e.g. '/' as %2F)",
                ))
            }
        };
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                let user = percent_decode(user).map_err(|e| bad(url, e))?;
                if user.is_empty() {
                    return Err(bad(url, "the user before '@' is empty"));
                }
                let password = match password {
                    Some("") => return Err(bad(
                        url,
                        "the password after ':' is empty: leave out the ':' to connect without one",
                    )),
                    Some(password) => Some(percent_decode(password).map_err(|e| bad(url, e))?),
                    None => None,
                };
                (Some(user), password)
            }
        };
        let (host, port) = split_host_port(host_port).map_err(|e| bad(url, e))?;
        let mut parsed = TlsUrl {
            user,
            password,
            host,
            port,
            hostname: None,
            certname: None,
            certhash: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).map_err(|e| bad(url, e))?;
            if value.is_empty() {
                return Err(bad(url, format!("the parameter {key:?} has no value")));
            }
            let duplicate = match key {
                "hostname" => parsed.hostname.replace(value).is_some(),
                "certname" => {
                    cairn_certs::validate_name(&value).map_err(|e| bad(url, e))?;
                    parsed.certname.replace(value).is_some()
                }
                "certhash" => {
                    let pin = cairn_certs::parse_pin(&value).map_err(|e| bad(url, e))?;
                    parsed.certhash.replace(pin).is_some()
                }
                _ => {
                    return Err(bad(
                        url,
                        format!("unknown parameter {key:?}; known: hostname, certname, certhash"),
                    ))
                }
            };
            if duplicate {
                return Err(bad(url, format!("the parameter {key:?} is given twice")));
            }
        }
        let name = parsed.server_name();
        if ServerName::try_from(name).is_err() {
            return Err(bad(
                url,
                format!("{name:?} is neither a DNS name nor an IP address"),
            ));
        }
        Ok(ClientUrl::Tls(parsed))
    }
}

/// Splits `host[:port]` or `[v6]:port`; the port defaults to [`DEFAULT_PORT`].
fn split_host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let Some((v6, after)) = bracketed.split_once(']') else {
            return Err("an IPv6 address needs its closing ']', e.g. [::1]:27460".to_string());
        };
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(format!("[{v6}] is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(format!("unexpected {after:?} after [{v6}]")),
            },
        };
        (v6, port)
    } else {
        match text.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err("write an IPv6 address in brackets, e.g. ssl://[::1]:27460/".to_string())
            }
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("the URL names no host, e.g. ssl://db1.example.com:27460/".to_string());
    }
    if !host.contains(':')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(format!("{host:?} is not a host name or an IP address"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => match port.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "the port {port:?} is not a number from 1 to 65535 (leave it out for {DEFAULT_PORT})"
                ))
            }
            Ok(port) => port,
        },
    };
    Ok((host.to_string(), port))
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            let Some(byte) = hex else {
                return Err(format!(
                    "bad percent escape at {:?}: write '%' followed by two hex digits",
                    &text[at..]
                ));
            };
            out.push(byte);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a percent-encoded part is not UTF-8".to_string())
}

/// Encodes everything but unreserved characters (RFC 3986) as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn tls_url_text(url: &TlsUrl, with_password: bool) -> String {
    let mut text = String::from("ssl://");
    if let Some(user) = &url.user {
        text.push_str(&percent_encode(user));
        if let Some(password) = &url.password {
            text.push(':');
            if with_password {
                text.push_str(&percent_encode(password));
            } else {
                text.push_str("***");
            }
        }
        text.push('@');
    }
    if url.host.contains(':') {
        text.push_str(&format!("[{}]", url.host));
    } else {
        text.push_str(&url.host);
    }
    text.push_str(&format!(":{}/", url.port));
    let mut params = Vec::new();
    if let Some(hostname) = &url.hostname {
        params.push(format!("hostname={}", percent_encode(hostname)));
    }
    if let Some(certname) = &url.certname {
        params.push(format!("certname={certname}"));
    }
    if let Some(hash) = &url.certhash {
        params.push(format!("certhash={}", cairn_certs::format_pin(hash)));
    }
    if !params.is_empty() {
        text.push('?');
        text.push_str(&params.join("&"));
    }
    text
}

/// The whole URL, password included: it parses back to the same value.
impl fmt::Display for ClientUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientUrl::Tls(tls) => f.write_str(&tls_url_text(tls, true)),
            ClientUrl::Unix { path } => write!(f, "unix://{}", path.display()),
        }
    }
}

/// The URL without its password.
impl fmt::Debug for ClientUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str) -> TlsUrl {
        match url.parse::<ClientUrl>() {
            Ok(ClientUrl::Tls(tls)) => tls,
            other => panic!("{url}: expected a TLS URL, got {other:?}"),
        }
    }

    #[test]
    fn defaults_apply() {
        let url = tls("ssl://db1.example.com");
        assert_eq!(
            (url.user, url.password, url.host.as_str(), url.port),
            (None, None, "db1.example.com", DEFAULT_PORT)
        );
        assert_eq!(
            (url.hostname, url.certname, url.certhash),
            (None, None, None)
        );
        assert_eq!(tls("ssl://db1/").port, DEFAULT_PORT);
        assert_eq!(tls("ssl://db1:1234/").port, 1234);
    }

    #[test]
    fn user_and_password_are_percent_decoded() {
        let url = tls("ssl://al%69ce:p%40ss%3Aw%2Frd%C3%A9@db1:27460/");
        assert_eq!(url.user.as_deref(), Some("alice"));
        assert_eq!(url.password.as_deref(), Some("p@ss:w/rdé"));
        let only_user = tls("ssl://bob@db1/");
        assert_eq!(
            (only_user.user.as_deref(), only_user.password),
            (Some("bob"), None)
        );
        // An unencoded '@' in the password: the last '@' ends the user part.
        assert_eq!(tls("ssl://carol:a@b@db1/").password.as_deref(), Some("a@b"));
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let url = tls("ssl://[::1]:27461/");
        assert_eq!(
            (url.host.as_str(), url.port, url.server_name()),
            ("::1", 27461, "::1")
        );
        assert_eq!(tls("ssl://[fe80::2]").port, DEFAULT_PORT);
        assert_eq!(
            ClientUrl::Tls(url).to_string(),
            "ssl://[::1]:27461/",
            "printed back in brackets"
        );
    }

    #[test]
    fn query_parameters_parse() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let url = tls(&format!(
            "ssl://alice@10.0.0.5:9/?hostname=db1.internal&certname=ops&certhash=sha256:{hex}"
        ));
        assert_eq!(url.hostname.as_deref(), Some("db1.internal"));
        assert_eq!(url.server_name(), "db1.internal");
        assert_eq!(url.certname.as_deref(), Some("ops"));
        assert_eq!(
            url.certhash.map(|h| cairn_certs::format_pin(&h)),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(tls("ssl://10.0.0.5").server_name(), "10.0.0.5");
    }

    #[test]
    fn urls_print_back_to_the_same_value() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        for text in [
            "ssl://db1".to_string(),
            "ssl://alice:p%40ss%20w@db1:1/".to_string(),
            format!("ssl://a@[::1]/?hostname=localhost&certname=a&certhash=sha256:{hex}"),
            "unix:///var/lib/cairn/sock".to_string(),
            "unix://data/sock".to_string(),
        ] {
            let url: ClientUrl = text.parse().unwrap();
            let printed = url.to_string();
            assert_eq!(
                printed.parse::<ClientUrl>().unwrap(),
                url,
                "{text} -> {printed}"
            );
        }
        let url: ClientUrl = "ssl://alice:secret@db1/".parse().unwrap();
        assert_eq!(url.to_string(), "ssl://alice:secret@db1:27460/");
        assert_eq!(url.redacted(), "ssl://alice:***@db1:27460/");
        assert!(!format!("{url:?}").contains("secret"));
    }

    #[test]
    fn unix_urls_keep_their_path() {
        assert_eq!(
            "unix:///tmp/x/sock".parse::<ClientUrl>().unwrap(),
            ClientUrl::Unix {
                path: PathBuf::from("/tmp/x/sock")
            }
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, expected) in [
            ("http://db1", "use ssl://"),
            ("db1:27460", "use ssl://"),
            ("unix://", "needs the socket's path"),
            ("ssl://", "names no host"),
            ("ssl://alice@", "names no host"),
            ("ssl://@db1", "user before '@' is empty"),
            ("ssl://alice:@db1", "password after ':' is empty"),
            ("ssl://db1:0/", "not a number from 1 to 65535"),
            ("ssl://db1:99999/", "not a number from 1 to 65535"),
            ("ssl://db1:/", "not a number from 1 to 65535"),
            ("ssl://::1:27460/", "IPv6 address in brackets"),
            ("ssl://[::1/", "closing ']'"),
            ("ssl://[db1]:1/", "not an IPv6 address"),
            ("ssl://db1/data", "has no path"),
            ("ssl://db 1/", "not a host name"),
            ("ssl://a%zz@db1/", "bad percent escape"),
            ("ssl://a%ff@db1/", "not UTF-8"),
            ("ssl://db1/?color=red", "unknown parameter \"color\""),
            ("ssl://db1/?hostname=", "has no value"),
            ("ssl://db1/?hostname=a&hostname=b", "given twice"),
            ("ssl://db1/?certname=../x", "invalid name"),
            ("ssl://db1/?certhash=md5:00", "invalid certificate pin"),
            (
                "ssl://db1/?hostname=a%20b",
                "neither a DNS name nor an IP address",
            ),
        ] {
            match url.parse::<ClientUrl>() {
                Err(ClientError::Url(message)) => {
                    assert!(message.contains(expected), "{url}: {message}")
                }
                other => panic!("{url}: expected a URL error, got {other:?}"),
            }
        }
    }

    #[test]
    fn errors_hide_the_password() {
        let message = "ssl://alice:hunter2@db1/data"
            .parse::<ClientUrl>()
            .unwrap_err()
            .to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("alice:***@db1"), "{message}");
    }
}
