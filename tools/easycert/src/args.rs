//! The command line of `cairn-easycert`: clap's parsing, then [`Args::action`], which
//! turns the options into the one thing to do or a usage error (exit status 2).

use std::path::PathBuf;

use cairn_certs::{KeyType, Kind};
use clap::builder::PossibleValuesParser;
use clap::builder::TypedValueParser;
use clap::{Parser, ValueHint};

/// Validity of a new CA, in days, when --days is not given.
const CA_DAYS: u32 = 3650;
/// Validity of a new host or user certificate, in days, when --days is not given.
const LEAF_DAYS: u32 = 825;

const EXAMPLES: &str = "\
Examples:
  cairn-easycert --ca acme
  cairn-easycert --server db1.example.com --signas acme --server-sans DNS:db1,IP:10.0.0.1
  cairn-easycert alice --signas acme
  cairn-easycert --csr --server db2.example.com        # key + CSR for an external CA
  cairn-easycert --csr bob
  cairn-easycert --sign-csr /tmp/db2.example.com.csr --signas acme --server
  cairn-easycert --sign-csr /tmp/bob.csr --signas acme
  cairn-easycert --p12 alice --password-stdin < password.txt
  cairn-easycert --revokeas acme alice
  cairn-easycert --importfile cas /tmp/partner-ca.crt

Files (under --certdir): cas/NAME.{crt,key}, hosts/NAME.{crt,key,csr},
users/NAME.{crt,key,csr,p12}, crls/CA.crl. Directories are mode 0700, keys and .p12
bundles 0600. Existing files are never overwritten.";

/// Creates and manages the certificates of Cairn services and their users: a CA, host
/// certificates signed by it, user certificates for client authentication, CSRs for an
/// external CA, encrypted PKCS#12 bundles, and revocation lists that services enforce.
#[derive(Debug, Parser)]
#[command(name = "cairn-easycert", version, after_help = EXAMPLES)]
pub struct Args {
    /// The user NAME: with --signas, a user certificate (CN=NAME, clientAuth); with --csr, a
    /// key and CSR; with --revokeas, the user's (or host's) certificate to revoke
    #[arg(value_name = "NAME")]
    name: Option<String>,

    /// The certificate directory [default: $CAIRN_CERT_DIR, else ~/.cairn/certs]
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    certdir: Option<PathBuf>,

    /// Create the self-signed CA NAME
    #[arg(long, value_name = "NAME")]
    ca: Option<String>,

    /// A host certificate for NAME (serverAuth, NAME as a subject alternative name); with
    /// --sign-csr and no NAME: sign the CSR as a host certificate
    #[arg(long, value_name = "NAME", num_args = 0..=1)]
    server: Option<Option<String>>,

    /// The user NAME, as the positional NAME
    #[arg(long, value_name = "NAME")]
    user: Option<String>,

    /// The CA (cas/CA.{crt,key}) that signs the certificate
    #[arg(long, value_name = "CA")]
    signas: Option<String>,

    /// More names for a host certificate, comma-separated: DNS:NAME or IP:ADDRESS
    #[arg(long, value_name = "SANS")]
    server_sans: Option<String>,

    /// Make a key and a certificate signing request (hosts/ or users/NAME.csr) instead of a
    /// certificate, for an external CA
    #[arg(long)]
    csr: bool,

    /// Sign the CSR at PATH with --signas CA: a user certificate, or a host certificate
    /// with --server; the certificate is named after the CSR's CN, and gets only the names
    /// given here, whatever extensions the CSR asks for
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath)]
    sign_csr: Option<PathBuf>,

    /// Write users/NAME.p12: the user's certificate, key and CA, encrypted with a password
    /// (asked on the terminal, or see --password-stdin)
    #[arg(long, value_name = "NAME")]
    p12: Option<String>,

    /// Read the --p12 password from the first line of standard input
    #[arg(long)]
    password_stdin: bool,

    /// Revoke a certificate signed by CA (NAME, --user NAME or --server NAME) and rewrite
    /// crls/CA.crl
    #[arg(long, value_name = "CA")]
    revokeas: Option<String>,

    /// Copy the PEM certificates and key of PATH into cas/, hosts/ or users/ as NAME.crt
    /// and NAME.key, NAME being PATH's file name without its extension
    #[arg(long, num_args = 2, value_names = ["cas|hosts|users", "PATH"])]
    importfile: Option<Vec<String>>,

    /// Validity in days [default: 3650 for a CA, 825 for hosts and users]
    #[arg(long, value_name = "N")]
    days: Option<u32>,

    /// The type of a new key [default: ecdsa-p256]
    #[arg(
        long,
        value_name = "TYPE",
        value_parser = PossibleValuesParser::new(KeyType::ALL.map(KeyType::name))
            .try_map(|s| s.parse::<KeyType>())
    )]
    key_type: Option<KeyType>,
}

/// The one thing a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `--ca NAME`.
    Ca {
        name: String,
        days: u32,
        key_type: KeyType,
    },
    /// `--server NAME --signas CA`.
    Host {
        name: String,
        ca: String,
        sans: String,
        days: u32,
        key_type: KeyType,
    },
    /// `NAME --signas CA`.
    User {
        name: String,
        ca: String,
        days: u32,
        key_type: KeyType,
    },
    /// `--csr --server NAME`.
    HostCsr {
        name: String,
        sans: String,
        key_type: KeyType,
    },
    /// `--csr NAME`.
    UserCsr { name: String, key_type: KeyType },
    /// `--sign-csr PATH --signas CA [--server]`.
    SignCsr {
        path: PathBuf,
        ca: String,
        host: bool,
        sans: String,
        days: u32,
    },
    /// `--p12 NAME`.
    P12 { name: String, password_stdin: bool },
    /// `--revokeas CA NAME`: `kind` is `None` for a positional NAME (a user, else a host).
    Revoke {
        ca: String,
        kind: Option<Kind>,
        name: String,
    },
    /// `--importfile KIND PATH`.
    Import { kind: Kind, path: PathBuf },
}

impl Args {
    /// The certificate directory given, if any.
    pub fn certdir(&self) -> Option<&PathBuf> {
        self.certdir.as_ref()
    }

    /// What to do, or a usage error saying what is wrong with the options.
    pub fn action(&self) -> Result<Action, String> {
        let modes = [
            ("--ca", self.ca.is_some()),
            ("--sign-csr", self.sign_csr.is_some()),
            ("--p12", self.p12.is_some()),
            ("--revokeas", self.revokeas.is_some()),
            ("--importfile", self.importfile.is_some()),
        ];
        let given: Vec<&str> = modes.iter().filter(|m| m.1).map(|m| m.0).collect();
        if given.len() > 1 {
            return Err(format!("{} do not go together", given.join(" and ")));
        }
        let user = match (&self.name, &self.user) {
            (Some(_), Some(_)) => return Err("give the user name once: NAME or --user NAME".into()),
            (name, user) => name.clone().or_else(|| user.clone()),
        };
        let host_flag = matches!(self.server, Some(None));
        let host = self.server.clone().flatten();
        let key_type = self.key_type.unwrap_or_default();
        let sans = self.server_sans.clone().unwrap_or_default();

        if let Some(name) = &self.ca {
            self.only(
                "--ca",
                &["--days", "--key-type"],
                user.is_none() && self.server.is_none(),
            )?;
            return Ok(Action::Ca {
                name: name.clone(),
                days: self.days.unwrap_or(CA_DAYS),
                key_type,
            });
        }
        if let Some(path) = &self.sign_csr {
            if host.is_some() {
                return Err(
                    "with --sign-csr, --server takes no NAME: the CSR's CN names the certificate"
                        .into(),
                );
            }
            let allowed: &[&str] = if host_flag {
                &["--signas", "--server-sans", "--days"]
            } else {
                &["--signas", "--days"]
            };
            self.only("--sign-csr", allowed, user.is_none())?;
            return Ok(Action::SignCsr {
                path: path.clone(),
                ca: self.signas("--sign-csr")?,
                host: host_flag,
                sans,
                days: self.days.unwrap_or(LEAF_DAYS),
            });
        }
        if host_flag {
            return Err("--server needs a NAME (only --sign-csr takes it alone)".into());
        }
        if let Some(name) = &self.p12 {
            self.only(
                "--p12",
                &["--password-stdin"],
                user.is_none() && host.is_none(),
            )?;
            return Ok(Action::P12 {
                name: name.clone(),
                password_stdin: self.password_stdin,
            });
        }
        if let Some(ca) = &self.revokeas {
            self.only("--revokeas", &[], true)?;
            let (kind, name) = match (host, user, self.user.is_some()) {
                (Some(_), Some(_), _) => {
                    return Err(
                        "--revokeas revokes one certificate: a user NAME or --server NAME".into(),
                    )
                }
                (Some(host), None, _) => (Some(Kind::Host), host),
                (None, Some(user), true) => (Some(Kind::User), user),
                (None, Some(name), false) => (None, name),
                (None, None, _) => {
                    return Err(
                        "--revokeas needs the certificate to revoke: a user NAME or --server NAME"
                            .into(),
                    )
                }
            };
            return Ok(Action::Revoke {
                ca: ca.clone(),
                kind,
                name,
            });
        }
        if let Some(import) = &self.importfile {
            self.only("--importfile", &[], user.is_none() && host.is_none())?;
            let kind = match import[0].as_str() {
                "cas" => Kind::Ca,
                "hosts" => Kind::Host,
                "users" => Kind::User,
                other => {
                    return Err(format!(
                        "--importfile takes cas, hosts or users, not {other:?}"
                    ))
                }
            };
            return Ok(Action::Import {
                kind,
                path: PathBuf::from(&import[1]),
            });
        }
        match (host, user) {
            (Some(_), Some(_)) => Err("give a host (--server NAME) or a user NAME, not both".into()),
            (Some(name), None) if self.csr => {
                self.only("--csr", &["--csr", "--server-sans", "--key-type"], true)?;
                Ok(Action::HostCsr { name, sans, key_type })
            }
            (None, Some(name)) if self.csr => {
                self.only("--csr", &["--csr", "--key-type"], true)?;
                Ok(Action::UserCsr { name, key_type })
            }
            (Some(name), None) => {
                self.only("--server", &["--signas", "--server-sans", "--days", "--key-type"], true)?;
                Ok(Action::Host {
                    name,
                    ca: self.signas("--server NAME")?,
                    sans,
                    days: self.days.unwrap_or(LEAF_DAYS),
                    key_type,
                })
            }
            (None, Some(name)) => {
                self.only("a user NAME", &["--signas", "--days", "--key-type"], true)?;
                Ok(Action::User {
                    name,
                    ca: self.signas("a user NAME")?,
                    days: self.days.unwrap_or(LEAF_DAYS),
                    key_type,
                })
            }
            (None, None) if self.csr => Err("--csr needs --server NAME or a user NAME".into()),
            (None, None) => Err(
                "nothing to do: give --ca NAME, --server NAME --signas CA, NAME --signas CA, --csr, --sign-csr, --p12, --revokeas or --importfile (see --help)"
                    .into(),
            ),
        }
    }

    /// Checks that of the optional flags only `allowed` are given with `mode`, and that
    /// `no_names` holds (no NAME or --server NAME that the mode does not take).
    fn only(&self, mode: &str, allowed: &[&str], no_names: bool) -> Result<(), String> {
        if !no_names {
            return Err(format!("{mode} takes no other certificate NAME"));
        }
        let optional = [
            ("--signas", self.signas.is_some()),
            ("--server-sans", self.server_sans.is_some()),
            ("--csr", self.csr),
            ("--password-stdin", self.password_stdin),
            ("--days", self.days.is_some()),
            ("--key-type", self.key_type.is_some()),
        ];
        match optional
            .iter()
            .find(|(flag, given)| *given && !allowed.contains(flag))
        {
            Some((flag, _)) => Err(format!("{flag} does not go with {mode}")),
            None => Ok(()),
        }
    }

    /// The --signas CA that `mode` needs.
    fn signas(&self, mode: &str) -> Result<String, String> {
        self.signas
            .clone()
            .ok_or_else(|| format!("{mode} needs --signas CA: the CA that signs it"))
    }
}
