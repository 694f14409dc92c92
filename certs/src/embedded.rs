//! What a service's first start creates in `DIR/certs`: a CA, a host certificate for this
//! machine and a user certificate for the root user, each only if missing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::dir::{validate_name, CertDir, Kind};
use crate::error::Result;
use crate::san::San;
use crate::DEFAULT_DAYS;

/// Name of the host certificate [`ensure_embedded_default`] creates.
pub const EMBEDDED_HOST: &str = "localhost";

/// Makes sure `certdir` holds the CA `ca_name`, the host certificate `localhost` (names
/// `localhost`, `127.0.0.1`, `::1` and each of `host_names`) and the user certificate
/// `root_user`, creating each one that is missing, valid [`DEFAULT_DAYS`]. Returns the
/// files written: none when everything was there. An existing certificate is kept as it
/// is, even if `host_names` changed since.
pub fn ensure_embedded_default(
    certdir: &CertDir,
    ca_name: &str,
    host_names: &[String],
    root_user: &str,
) -> Result<Vec<PathBuf>> {
    validate_name(ca_name)?;
    validate_name(root_user)?;
    let mut sans = vec![
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    for host in host_names {
        sans.push(San::for_host(host)?);
    }
    certdir.create()?;
    let mut written = Vec::new();
    if !certdir.cert_path(Kind::Ca, ca_name)?.exists() {
        let paths = certdir.gen_ca(ca_name, DEFAULT_DAYS)?;
        written.extend([paths.key, paths.cert]);
    }
    if !certdir.cert_path(Kind::Host, EMBEDDED_HOST)?.exists() {
        let paths = certdir.gen_host(EMBEDDED_HOST, ca_name, &sans, DEFAULT_DAYS)?;
        written.extend([paths.key, paths.cert]);
    }
    if !certdir.cert_path(Kind::User, root_user)?.exists() {
        let paths = certdir.gen_user(root_user, ca_name, DEFAULT_DAYS)?;
        written.extend([paths.key, paths.cert]);
    }
    Ok(written)
}

/// This machine's host name (from `uname`), if it is one a certificate can name.
pub fn machine_hostname() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_str().ok()?.trim();
    San::for_host(name).ok().map(|_| name.to_string())
}
