//! Carrying out an [`Action`] on a certificate directory, printing each file written as
//! `key saved: PATH`, `cert saved: PATH`, `csr saved: PATH`, `p12 saved: PATH` or
//! `CRL saved: PATH`.

use std::path::Path;

use anyhow::{bail, Result};
use cairn_certs::{CertDir, CertPaths, Kind, San};

use crate::args::Action;
use crate::password;

/// Does `action` in `dir`.
pub fn run(dir: &CertDir, action: Action) -> Result<()> {
    match action {
        Action::Ca {
            name,
            days,
            key_type,
        } => saved_pair(&dir.gen_ca_with(&name, days, key_type)?),
        Action::Host {
            name,
            ca,
            sans,
            days,
            key_type,
        } => saved_pair(&dir.gen_host_with(&name, &ca, &parse_sans(&sans)?, days, key_type)?),
        Action::User {
            name,
            ca,
            days,
            key_type,
        } => saved_pair(&dir.gen_user_with(&name, &ca, days, key_type)?),
        Action::HostCsr {
            name,
            sans,
            key_type,
        } => {
            let paths = dir.gen_host_csr(&name, &parse_sans(&sans)?, key_type)?;
            saved("key", &paths.key);
            saved("csr", &paths.csr);
        }
        Action::UserCsr { name, key_type } => {
            let paths = dir.gen_user_csr(&name, key_type)?;
            saved("key", &paths.key);
            saved("csr", &paths.csr);
        }
        Action::SignCsr {
            path,
            ca,
            host,
            sans,
            days,
        } => {
            let cert = if host {
                dir.sign_host_csr(&path, &ca, &parse_sans(&sans)?, days)?
            } else {
                dir.sign_user_csr(&path, &ca, days)?
            };
            saved("cert", &cert);
        }
        Action::P12 {
            name,
            password_stdin,
        } => {
            let target = dir.p12_path(&name)?;
            let password = password::read(password_stdin, &target.display().to_string())?;
            saved("p12", &dir.gen_p12(&name, &password)?);
        }
        Action::Revoke { ca, kind, name } => {
            let kind = match kind {
                Some(kind) => kind,
                None => kind_of(dir, &name)?,
            };
            let revocation = dir.revoke(&ca, kind, &name)?;
            println!(
                "revoked: {} (serial {})",
                revocation.cert.display(),
                revocation.serial
            );
            saved("CRL", &revocation.crl);
        }
        Action::Import { kind, path } => {
            let imported = dir.import(kind, &path)?;
            if let Some(key) = &imported.key {
                saved("key", key);
            }
            if let Some(cert) = &imported.cert {
                saved("cert", cert);
            }
        }
    }
    Ok(())
}

/// Parses `DNS:NAME,IP:ADDRESS,...`; empty gives none.
fn parse_sans(list: &str) -> Result<Vec<San>> {
    Ok(list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?)
}

/// Whether `NAME` of `--revokeas CA NAME` is a user or a host: the one that has a
/// certificate, and a user if neither has (its error then names users/NAME.crt).
fn kind_of(dir: &CertDir, name: &str) -> Result<Kind> {
    let user = dir.cert_path(Kind::User, name)?.exists();
    let host = dir.cert_path(Kind::Host, name)?.exists();
    if user && host {
        bail!("both users/{name}.crt and hosts/{name}.crt exist: say which with --user {name} or --server {name}");
    }
    Ok(if host { Kind::Host } else { Kind::User })
}

fn saved_pair(paths: &CertPaths) {
    saved("key", &paths.key);
    saved("cert", &paths.cert);
}

fn saved(what: &str, path: &Path) {
    println!("{what} saved: {}", path.display());
}
