//! Starting, serving and stopping a service. `Service::start` prepares the working
//! directory (lock, sub-directories, store, root user, certificates, sockets) and binds
//! every listener; `Service::run` accepts connections until shutdown is asked for, then
//! stops accepting, lets calls in flight finish (bounded by the grace period), and
//! closes the store once every write is committed. `Service::reloader` reloads the
//! settings while it runs (see `crate::reload`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_certs::{CertDir, ClientAuth};
use cairn_remote::Remote;
use cairn_store::{DirLock, Store, UserRecord, Write};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Identity, Via, ROOT_USER};
use crate::error::ServerError;
use crate::handlers;
use crate::listen::ListenUrl;
use crate::shared::{ReloadSource, Shared};
use crate::Settings;

/// The unix socket every service serves, inside its working directory.
pub const SOCKET_FILE: &str = "sock";
/// Sub-directories of a working directory.
pub const CERTS_DIR: &str = "certs";
pub const BACKUPS_DIR: &str = "backups";
pub const TMP_DIR: &str = "tmp";

/// The longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS configuration of one listener, built again when the revocation lists in
/// the certificate directories change, so that a revocation takes effect at the next
/// handshake without a restart.
struct TlsSource {
    dirs: Vec<CertDir>,
    host_names: Vec<String>,
    client_auth: ClientAuth,
    current: std::sync::Mutex<(cairn_certs::CrlFingerprint, TlsAcceptor)>,
}

impl TlsSource {
    fn new(
        dirs: &[CertDir],
        host_names: Vec<String>,
        client_auth: ClientAuth,
    ) -> Result<TlsSource, ServerError> {
        let fingerprint = cairn_certs::crl_fingerprint(dirs)?;
        let config = cairn_certs::server_config(dirs, &host_names, client_auth.clone())?;
        Ok(TlsSource {
            dirs: dirs.to_vec(),
            host_names,
            client_auth,
            current: std::sync::Mutex::new((fingerprint, TlsAcceptor::from(Arc::new(config)))),
        })
    }

    /// The acceptor to use now: rebuilt first if a revocation list changed. A list that
    /// fails to load keeps the previous configuration in force, with an error logged.
    fn acceptor(&self) -> TlsAcceptor {
        let mut current = self.current.lock().expect("tls source lock");
        match cairn_certs::crl_fingerprint(&self.dirs) {
            Ok(fingerprint) if fingerprint != current.0 => {
                match cairn_certs::server_config(
                    &self.dirs,
                    &self.host_names,
                    self.client_auth.clone(),
                ) {
                    Ok(config) => {
                        tracing::warn!("revocation lists changed: TLS configuration reloaded");
                        *current = (fingerprint, TlsAcceptor::from(Arc::new(config)));
                    }
                    Err(error) => {
                        tracing::error!(%error, "revocation lists changed but do not load; keeping the previous ones")
                    }
                }
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "cannot read the revocation lists"),
        }
        current.1.clone()
    }
}

enum Listener {
    Tls {
        listener: TcpListener,
        tls: Arc<TlsSource>,
        url: String,
    },
    Unix {
        listener: UnixListener,
        url: String,
        /// Connections on the service's own socket are root.
        as_root: bool,
    },
}

impl Listener {
    fn url(&self) -> &str {
        match self {
            Listener::Tls { url, .. } | Listener::Unix { url, .. } => url,
        }
    }
}

/// A started service, listening but not yet serving.
pub struct Service {
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    dir: PathBuf,
    _lock: DirLock,
}

fn create_private_dir(path: &Path) -> Result<(), ServerError> {
    if !path.exists() {
        std::fs::create_dir_all(path)
            .map_err(|e| ServerError::io(format!("creating {}", path.display()), e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| ServerError::io(format!("securing {}", path.display()), e))?;
    }
    Ok(())
}

fn empty_dir(path: &Path) -> Result<(), ServerError> {
    let context = || format!("emptying {}", path.display());
    for entry in std::fs::read_dir(path).map_err(|e| ServerError::io(context(), e))? {
        let entry = entry.map_err(|e| ServerError::io(context(), e))?;
        let removed = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(entry.path())
        } else {
            std::fs::remove_file(entry.path())
        };
        removed.map_err(|e| ServerError::io(context(), e))?;
    }
    Ok(())
}

/// Makes sure `root` exists and, when a password is given, that it is root's.
async fn ensure_root(store: &Store, password: Option<&str>) -> Result<(), ServerError> {
    let existing = store.snapshot()?.user(ROOT_USER)?;
    let password_hash = match (&existing, password) {
        (_, None) => None,
        (Some(record), Some(password))
            if auth::verify_password(record.password_hash.clone(), password.to_string()).await =>
        {
            None
        }
        (_, Some(password)) => Some(hash_for_start(password).await?),
    };
    let (record, create) = match existing {
        Some(record) if password_hash.is_none() && record.admin => return Ok(()),
        Some(mut record) => {
            record.admin = true;
            record.locked = false;
            if password_hash.is_some() {
                record.password_hash = password_hash;
            }
            (record, false)
        }
        None => (
            UserRecord {
                admin: true,
                locked: false,
                created_ms: handlers::now_ms(),
                password_hash,
                grants: Default::default(),
            },
            true,
        ),
    };
    let had_password = record.password_hash.is_some();
    handlers::write(
        store,
        Write::SaveUser {
            name: ROOT_USER.to_string(),
            record,
            create,
        },
    )
    .await
    .map_err(|e| ServerError::Settings {
        source_name: "root user".to_string(),
        reason: e.message,
    })?;
    tracing::warn!(password = had_password, "root user saved");
    Ok(())
}

async fn hash_for_start(password: &str) -> Result<String, ServerError> {
    auth::hash_password(password.to_string())
        .await
        .map_err(|e| ServerError::Settings {
            source_name: "--auth-passwd".to_string(),
            reason: e.message,
        })
}

impl Service {
    /// Prepares `dir` (creating everything on a first start) and binds the listeners.
    /// A reload re-reads the file alone (see [`Service::start_with_reload`]).
    pub async fn start(dir: &Path, settings: Settings) -> Result<Service, ServerError> {
        Service::start_with_reload(dir, settings, ReloadSource::default()).await
    }

    /// As [`Service::start`], with what a reload (`config.reload`, SIGHUP) reads the
    /// settings again with: the variables and flags `settings` came from, and how to
    /// change the log filter.
    pub async fn start_with_reload(
        dir: &Path,
        settings: Settings,
        reload_source: ReloadSource,
    ) -> Result<Service, ServerError> {
        create_private_dir(dir)?;
        let lock = DirLock::acquire(dir)?;
        for sub in [CERTS_DIR, BACKUPS_DIR, TMP_DIR] {
            create_private_dir(&dir.join(sub))?;
        }
        empty_dir(&dir.join(TMP_DIR))?;

        let options = settings.store_options();
        let store_dir = dir.to_path_buf();
        let store = tokio::task::spawn_blocking(move || Store::open_or_create(&store_dir, options))
            .await
            .map_err(|e| ServerError::io("opening the store", std::io::Error::other(e)))??;
        ensure_root(&store, settings.root_password.as_deref()).await?;
        handlers::write(
            &store,
            Write::PurgeSessions {
                now_ms: handlers::now_ms(),
            },
        )
        .await
        .map_err(|e| ServerError::io("purging sessions", std::io::Error::other(e.message)))?;

        let cert_dirs = certificate_dirs(dir, &settings)?;
        let ca_name = format!("cairn-{}", &store.meta().service_id[..8]);
        let host_names: Vec<String> = cairn_certs::machine_hostname().into_iter().collect();
        let written =
            cairn_certs::ensure_embedded_default(&cert_dirs[0], &ca_name, &host_names, ROOT_USER)?;
        for path in written {
            tracing::info!(path = %path.display(), "certificate file created");
        }

        let mut listeners = Vec::new();
        let socket = dir.join(SOCKET_FILE);
        listeners.push(bind_unix(&socket, true)?);
        for url in &settings.listen {
            listeners.push(match url {
                ListenUrl::Unix { path } => bind_unix(path, false)?,
                ListenUrl::Tls {
                    address,
                    host_names,
                    required_ca,
                } => bind_tls(address, host_names, required_ca, &cert_dirs).await?,
            });
        }
        let interrupted = crate::jobs::fail_interrupted(&store).await.map_err(|e| {
            ServerError::io("marking interrupted jobs", std::io::Error::other(e.message))
        })?;
        if interrupted > 0 {
            tracing::warn!(
                jobs = interrupted,
                "jobs interrupted by the last stop are marked FAILED"
            );
        }
        let backup_dir = match &settings.backup_dir {
            Some(path) if path.is_relative() => dir.join(path),
            Some(path) => path.clone(),
            None => dir.join(BACKUPS_DIR),
        };
        create_private_dir(&backup_dir)?;
        remove_partial_backups(&backup_dir);
        let remote = match &settings.backup_url {
            Some(location) => {
                let remote = Remote::new(location.clone(), &settings.s3).map_err(|e| {
                    ServerError::Settings {
                        source_name: "[backup] url".to_string(),
                        reason: e.to_string(),
                    }
                })?;
                tracing::info!(url = %location, "backups go to object storage");
                Some(remote)
            }
            None => None,
        };
        let mut shared = Shared::new(
            store.clone(),
            settings,
            dir.to_path_buf(),
            backup_dir,
            remote,
        );
        shared.databases.load(&store)?;
        shared.reload_source = reload_source;
        let shared = Arc::new(shared);
        // The automatic READ_ONLY reasons hold from the first call.
        crate::health::check(&shared).await;
        Ok(Service {
            shared,
            listeners,
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The URLs the service listens on, with the real ports.
    pub fn endpoints(&self) -> Vec<String> {
        self.listeners.iter().map(|l| l.url().to_string()).collect()
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Cancel it to shut the service down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// A handle that reloads the settings while the service runs (for SIGHUP).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
        }
    }

    /// Serves until the shutdown token is cancelled, then stops cleanly.
    pub async fn run(self) -> Result<(), ServerError> {
        crate::schedule::restart(&self.shared).map_err(|reason| ServerError::Settings {
            source_name: "[backup] schedule".to_string(),
            reason,
        })?;
        crate::health::spawn(self.shared.clone());
        let connections = TaskTracker::new();
        let slots = Arc::new(AtomicUsize::new(0));
        let accepting = TaskTracker::new();
        for listener in self.listeners {
            accepting.spawn(accept_loop(
                listener,
                self.shared.clone(),
                connections.clone(),
                slots.clone(),
            ));
        }
        accepting.close();
        accepting.wait().await;
        tracing::warn!("shutting down: no new connections; waiting for calls in flight");
        connections.close();
        let grace = self.shared.settings().shutdown_grace + Duration::from_secs(2);
        if tokio::time::timeout(grace, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the grace period");
        }
        let _ = std::fs::remove_file(self.dir.join(SOCKET_FILE));
        self.shared
            .jobs
            .stop_all(self.shared.settings().shutdown_grace)
            .await;
        // Webhook events still queued (jobs just interrupted, …) get a short grace.
        self.shared
            .webhooks
            .shutdown(crate::webhooks::SHUTDOWN_GRACE)
            .await;
        // Closing the store waits for the writer's last commit.
        let store = self.shared.take_store();
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .map_err(|e| ServerError::io("closing the store", std::io::Error::other(e)))?;
        tracing::warn!("stopped");
        Ok(())
    }
}

/// Reloads the settings of a running service (see `crate::reload`).
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl Reloader {
    /// Reads `DIR/cairn.toml` again and applies what can change at run time, on behalf
    /// of `who`; an invalid file changes nothing and its error says why.
    pub async fn reload(
        &self,
        who: &str,
    ) -> Result<cairn_proto::methods::ConfigReloadResult, cairn_proto::WireError> {
        crate::reload::reload(&self.shared, who).await
    }
}

/// An open connection, counted against `max_connections` until it is dropped.
struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    /// A slot, unless `max` connections are open already.
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<ConnectionSlot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| ConnectionSlot(open.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Removes what backups cut short by a crash left (`NAME.partial`).
fn remove_partial_backups(backup_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(backup_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "partial") {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::warn!(path = %path.display(), "removed an unfinished backup"),
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "cannot remove an unfinished backup")
                }
            }
        }
    }
}

fn certificate_dirs(dir: &Path, settings: &Settings) -> Result<Vec<CertDir>, ServerError> {
    let mut dirs = vec![CertDir::new(dir.join(CERTS_DIR))];
    let extra = match &settings.cert_dir {
        Some(path) => Some(path.clone()),
        None => CertDir::default_path().ok(),
    };
    if let Some(path) = extra.filter(|p| p.is_dir()) {
        dirs.push(CertDir::new(path));
    }
    Ok(dirs)
}

fn bind_unix(path: &Path, as_root: bool) -> Result<Listener, ServerError> {
    let url = format!("unix://{}", path.display());
    // A socket file left by a service that died; the directory lock says none runs now.
    if as_root && path.exists() {
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
        url: url.clone(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ServerError::io(format!("securing {}", path.display()), e))?;
    Ok(Listener::Unix {
        listener,
        url,
        as_root,
    })
}

async fn bind_tls(
    address: &str,
    host_names: &[String],
    required_ca: &Option<String>,
    cert_dirs: &[CertDir],
) -> Result<Listener, ServerError> {
    let names = if host_names.is_empty() {
        vec![cairn_certs::EMBEDDED_HOST.to_string()]
    } else {
        host_names.to_vec()
    };
    let client_auth = match required_ca {
        Some(ca) => ClientAuth::Required { ca: ca.clone() },
        None => ClientAuth::Optional,
    };
    let tls = Arc::new(TlsSource::new(cert_dirs, names, client_auth)?);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind {
            url: format!("ssl://{address}"),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| ServerError::io("reading the bound address", e))?;
    let url = ListenUrl::Tls {
        address: local.to_string(),
        host_names: host_names.to_vec(),
        required_ca: required_ca.clone(),
    }
    .to_string();
    Ok(Listener::Tls { listener, tls, url })
}

async fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    connections: TaskTracker,
    slots: Arc<AtomicUsize>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = shared.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, listener = listener.url(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The limit in force now: a reload changes it for the next connections.
        let max = shared.settings().max_connections;
        let slot = ConnectionSlot::take(&slots, max);
        let shared = shared.clone();
        let tls = match &listener {
            Listener::Tls { tls, .. } => Some(tls.acceptor()),
            Listener::Unix { .. } => None,
        };
        let as_root = matches!(listener, Listener::Unix { as_root: true, .. });
        connections.spawn(async move {
            match (stream, tls) {
                (Accepted::Tcp(tcp), Some(acceptor)) => {
                    let Ok(Ok(tls_stream)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    else {
                        tracing::info!(%peer, "TLS handshake failed");
                        return;
                    };
                    if slot.is_none() {
                        refuse_full(tls_stream, max).await;
                        return;
                    }
                    let identity = certificate_identity(&shared, tls_stream.get_ref().1, &peer);
                    match identity {
                        Ok(identity) => {
                            crate::connection::serve(shared, tls_stream, identity, peer).await
                        }
                        Err(error) => refuse(tls_stream, error).await,
                    }
                }
                (Accepted::Unix(unix), _) => {
                    if slot.is_none() {
                        refuse_full(unix, max).await;
                        return;
                    }
                    let identity = as_root.then(|| Identity {
                        user: ROOT_USER.to_string(),
                        via: Via::Socket,
                        token_hash: None,
                    });
                    crate::connection::serve(shared, unix, identity, peer).await
                }
                (Accepted::Tcp(_), None) => {}
            }
            drop(slot);
        });
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<(Accepted, String)> {
    match listener {
        Listener::Tls { listener, .. } => {
            let (stream, peer) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((Accepted::Tcp(stream), peer.to_string()))
        }
        Listener::Unix { listener, url, .. } => {
            let (stream, _) = listener.accept().await?;
            Ok((Accepted::Unix(stream), url.clone()))
        }
    }
}

/// The user a verified client certificate names, if the connection presented one.
fn certificate_identity(
    shared: &Shared,
    session: &rustls::ServerConnection,
    peer: &str,
) -> Result<Option<Identity>, cairn_proto::WireError> {
    let Some(chain) = session.peer_certificates() else {
        return Ok(None);
    };
    let refused = |why: String| {
        tracing::info!(%peer, reason = %why, "client certificate refused");
        cairn_proto::WireError::new(cairn_proto::ErrorCode::BadCredentials, why)
    };
    let user = cairn_certs::peer_user(chain)
        .ok_or_else(|| refused("the client certificate has no CN naming a user".to_string()))?;
    let record = shared
        .store()
        .map_err(|e| refused(e.message))?
        .snapshot()
        .and_then(|s| s.user(&user))
        .map_err(|e| refused(e.to_string()))?;
    match record {
        Some(record) if !record.locked => Ok(Some(Identity {
            user,
            via: Via::Certificate,
            token_hash: None,
        })),
        _ => Err(refused(format!(
            "the client certificate names {user:?}, who is no user here or is locked"
        ))),
    }
}

async fn refuse<S: tokio::io::AsyncWrite + Unpin>(mut stream: S, error: cairn_proto::WireError) {
    use tokio::io::AsyncWriteExt;
    let body = cairn_proto::Message::Error { id: 0, error }.encode();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let _ = stream.write_all(&frame).await;
    let _ = stream.shutdown().await;
}

async fn refuse_full<S: tokio::io::AsyncWrite + Unpin>(stream: S, max: usize) {
    tracing::warn!(max, "connection refused: the connection limit is reached");
    refuse(
        stream,
        cairn_proto::WireError::new(
            cairn_proto::ErrorCode::TooManyConnections,
            format!("the service serves at most {max} connections: try again later"),
        ),
    )
    .await;
}
