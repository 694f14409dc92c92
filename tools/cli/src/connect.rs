//! Where the service is and how to authenticate, from the global options: `--dir DIR` is
//! the unix socket `DIR/sock` (as root) with the certificates of `DIR/certs`; `--url`
//! is any client URL, with `--certdir` for its CAs and user certificates; `--token`
//! authenticates a connection whose URL carries no password.

use cairn_client::{Client, ClientError, ClientUrl, ConnectOptions};

use crate::args::{Global, UsageError};

/// A service to connect to, and how.
pub struct Target {
    pub url: ClientUrl,
    pub options: ConnectOptions,
}

impl Target {
    pub fn new(global: &Global) -> Result<Target, UsageError> {
        let url = match (&global.dir, &global.url) {
            (Some(dir), _) => ClientUrl::Unix {
                path: dir.join("sock"),
            },
            (None, Some(url)) => url.clone(),
            (None, None) => {
                return Err(UsageError::new(
                    "say where the service is: --dir DIR (its unix socket DIR/sock) or --url URL (see cairn --help)",
                ))
            }
        };
        let mut options = match (&global.certdir, &global.dir) {
            (Some(certdir), _) => ConnectOptions {
                cert_dirs: vec![certdir.clone()],
                ..ConnectOptions::default()
            },
            (None, Some(dir)) => ConnectOptions::for_working_dir(dir),
            (None, None) => ConnectOptions::default(),
        };
        options.token = global.token.clone();
        Ok(Target { url, options })
    }

    /// Connects and authenticates as the URL and options say.
    pub async fn connect(&self) -> Result<Client, ClientError> {
        Client::connect(&self.url, &self.options).await
    }

    /// The URL's user, if it names one.
    pub fn url_user(&self) -> Option<&str> {
        match &self.url {
            ClientUrl::Tls(tls) => tls.user.as_deref(),
            ClientUrl::Unix { .. } => None,
        }
    }

    /// True when the URL carries a password (connecting logs in).
    pub fn url_has_password(&self) -> bool {
        matches!(&self.url, ClientUrl::Tls(tls) if tls.password.is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;

    use super::*;
    use crate::args::Cli;

    fn target(args: &[&str]) -> Result<Target, UsageError> {
        let mut argv = vec!["cairn"];
        argv.extend_from_slice(args);
        argv.push("status");
        Target::new(&Cli::try_parse_from(argv).unwrap().global)
    }

    #[test]
    fn dir_means_its_socket_and_certificates() {
        let t = target(&["--dir", "/srv/data", "--token", "T"]).unwrap();
        assert_eq!(
            t.url,
            ClientUrl::Unix {
                path: PathBuf::from("/srv/data/sock")
            }
        );
        assert_eq!(t.options.cert_dirs, [PathBuf::from("/srv/data/certs")]);
        assert_eq!(t.options.token.as_deref(), Some("T"));
        assert_eq!((t.url_user(), t.url_has_password()), (None, false));
    }

    #[test]
    fn a_url_uses_certdir_or_the_default() {
        let t = target(&["--url", "ssl://alice:pw@db1/", "--certdir", "/c"]).unwrap();
        assert_eq!(t.options.cert_dirs, [PathBuf::from("/c")]);
        assert_eq!((t.url_user(), t.url_has_password()), (Some("alice"), true));
        let t = target(&["--url", "ssl://bob@db1/"]).unwrap();
        assert!(t.options.cert_dirs.is_empty(), "the client's default");
        assert_eq!((t.url_user(), t.url_has_password()), (Some("bob"), false));
    }

    #[test]
    fn no_service_is_a_usage_error() {
        let message = target(&[]).err().expect("a usage error").to_string();
        assert!(message.contains("--dir DIR"), "{message}");
    }
}
