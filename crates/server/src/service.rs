//! Starting, serving and stopping a service. `Service::start` prepares the working
//! directory (lock, sub-directories, store, root user, certificates, sockets) and binds
//! every listener; `Service::run` accepts connections until shutdown is asked for, then
//! stops accepting, lets calls in flight finish (bounded by the grace period), and
//! closes the store once every write is committed. `Service::reloader` reloads the
//! settings while it runs (see `crate::ops::reload`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_certs::CertDir;
use cairn_client::ClientUrl;
use cairn_remote::Remote;
use cairn_store::{DirLock, Store, UserRecord, Write};
use tokio_util::sync::CancellationToken;

use crate::auth::{self, ROOT_USER};
use crate::config::{
    ListenUrl, Settings, BACKUPS_DIR, CERTS_DIR, HTTP_SOCKET_FILE, SOCKET_FILE, TMP_DIR,
};
use crate::error::ServerError;
use crate::net::{self, Listener, Serves};
use crate::ops::mirror::promote::{self, Role};
use crate::ops::mirror::{self, Mirror};
use crate::ops::shared::{ReloadSource, Shared};
use crate::ops::{health, jobs, reload, schedule, webhooks};
use crate::storage::{now_ms, write};

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
                created_ms: now_ms(),
                password_hash,
                grants: Default::default(),
            },
            true,
        ),
    };
    let had_password = record.password_hash.is_some();
    write(
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
        let cert_dirs = certificate_dirs(dir, &settings)?;
        // A mirror reaches its leader with the certificates of the extra directory
        // first (the leader's CA, an admin's client certificate), then its own.
        let leader_cert_dirs: Vec<PathBuf> = cert_dirs
            .iter()
            .rev()
            .map(|d| d.root().to_path_buf())
            .collect();
        let mirror = leader_to_follow(dir, &settings)?
            .map(|leader| Arc::new(Mirror::new(leader, &settings, &leader_cert_dirs)));
        let bootstrapped = match &mirror {
            Some(mirror) if mirror::needs_bootstrap(dir) => {
                mirror::bootstrap(dir, mirror).await?;
                true
            }
            _ => false,
        };
        let options = settings.store_options();
        let store_dir = dir.to_path_buf();
        let store = tokio::task::spawn_blocking(move || Store::open_or_create(&store_dir, options))
            .await
            .map_err(|e| ServerError::io("opening the store", std::io::Error::other(e)))??;
        // Only once the store opened: a directory refused (another format, an
        // unfinished migration) is left as it was.
        for sub in [CERTS_DIR, BACKUPS_DIR, TMP_DIR] {
            create_private_dir(&dir.join(sub))?;
        }
        empty_dir(&dir.join(TMP_DIR))?;
        if let Some(mirror) = &mirror {
            // A mirror's store takes its leader's writes only, from now on.
            store.set_mirror(true);
            if !bootstrapped {
                mirror.check_leader(&store.meta().service_id).await?;
            }
            if settings.root_password.is_some() {
                tracing::warn!("a mirror keeps its leader's users: --auth-passwd is ignored (set root's password on the leader)");
            }
        } else {
            ensure_root(&store, settings.root_password.as_deref()).await?;
            write(&store, Write::PurgeSessions { now_ms: now_ms() })
                .await
                .map_err(|e| {
                    ServerError::io("purging sessions", std::io::Error::other(e.message))
                })?;
        }

        let service_ca = format!("cairn-{}", &store.meta().service_id[..8]);
        let ca_name = match &mirror {
            // A mirror holds its leader's service id but not its CA's key: its own CA
            // takes another name, so that clients can trust both.
            Some(_) => mirror_ca_name(&cert_dirs[0], &service_ca)?,
            None => service_ca,
        };
        let host_names: Vec<String> = cairn_certs::machine_hostname().into_iter().collect();
        let written =
            cairn_certs::ensure_embedded_default(&cert_dirs[0], &ca_name, &host_names, ROOT_USER)?;
        for path in written {
            tracing::info!(path = %path.display(), "certificate file created");
        }

        let mut listeners = Vec::new();
        listeners.push(net::bind_unix(
            &dir.join(SOCKET_FILE),
            true,
            Serves::Native,
        )?);
        listeners.push(net::bind_unix(
            &dir.join(HTTP_SOCKET_FILE),
            true,
            Serves::Http,
        )?);
        for url in &settings.listen {
            listeners.push(match url {
                ListenUrl::Unix { path } => net::bind_unix(path, false, Serves::Native)?,
                ListenUrl::Tls {
                    address,
                    host_names,
                    required_ca,
                    http_only,
                } => {
                    let serves = if *http_only {
                        Serves::Http
                    } else {
                        Serves::Both
                    };
                    net::bind_tls(address, host_names, required_ca, serves, &cert_dirs).await?
                }
            });
        }
        if let Some(address) = &settings.metrics_listen {
            listeners.push(net::bind_metrics(address).await?);
        }
        let interrupted = if mirror.is_some() {
            0
        } else {
            jobs::fail_interrupted(&store).await.map_err(|e| {
                ServerError::io("marking interrupted jobs", std::io::Error::other(e.message))
            })?
        };
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
        shared.set_mirror(mirror);
        shared.leader_cert_dirs = leader_cert_dirs;
        shared.ca_name = ca_name;
        shared.endpoints = listeners.iter().map(|l| l.url().to_string()).collect();
        let shared = Arc::new(shared);
        // The automatic READ_ONLY reasons hold from the first call.
        health::check(&shared).await;
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
        match self.shared.mirror() {
            Some(mirror) => {
                // Its leader's backups are the mirror's: it writes no jobs of its own.
                self.shared
                    .background
                    .spawn(mirror::follow(self.shared.clone(), mirror));
            }
            None => schedule::restart(&self.shared).map_err(|reason| ServerError::Settings {
                source_name: "[backup] schedule".to_string(),
                reason,
            })?,
        }
        health::spawn(self.shared.clone());
        net::serve(self.listeners, self.shared.clone()).await;
        for socket in [SOCKET_FILE, HTTP_SOCKET_FILE] {
            let _ = std::fs::remove_file(self.dir.join(socket));
        }
        // Free-space checks, delayed starts and the schedule end with the shutdown.
        self.shared.background.close();
        if tokio::time::timeout(
            self.shared.settings().shutdown_grace,
            self.shared.background.wait(),
        )
        .await
        .is_err()
        {
            tracing::warn!("background tasks still running after the grace period");
        }
        self.shared
            .jobs
            .stop_all(self.shared.settings().shutdown_grace)
            .await;
        // Webhook events still queued (jobs just interrupted, …) get a short grace.
        self.shared
            .webhooks
            .shutdown(webhooks::SHUTDOWN_GRACE)
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

/// Reloads the settings of a running service (see `crate::ops::reload`).
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
        reload::reload(&self.shared, who).await
    }
}

/// The leader this service follows: the one a promotion left in `DIR/role.json`, else
/// the settings' (`[mirror] leader`, `--mirror`); `None` for a leader.
fn leader_to_follow(dir: &Path, settings: &Settings) -> Result<Option<ClientUrl>, ServerError> {
    let configured = settings.mirror_leader.clone();
    match promote::load_role(dir)? {
        None => Ok(configured),
        Some(Role::Leader {
            since_ms,
            promoted_from,
        }) => {
            if let Some(url) = configured {
                tracing::warn!(settings = %url.redacted(), %promoted_from, since_ms, "this service was promoted to leader: the leader its settings name is not followed (remove {} to follow it again)", promote::ROLE_FILE);
            }
            Ok(None)
        }
        Some(Role::Mirror { leader, since_ms }) => {
            let url =
                crate::config::parse_leader(&leader).map_err(|reason| ServerError::Settings {
                    source_name: promote::ROLE_FILE.to_string(),
                    reason,
                })?;
            tracing::warn!(leader = %url.redacted(), since_ms, "this service handed over to a mirror: it follows it");
            Ok(Some(url))
        }
    }
}

/// The name of a mirror's own CA: `SERVICE_CA-mirror-XXXXXXXX`, the one already in
/// `certs/cas`, else with a new random suffix (two mirrors of one leader differ).
fn mirror_ca_name(certs: &CertDir, service_ca: &str) -> Result<String, ServerError> {
    let prefix = format!("{service_ca}-mirror-");
    let cas = certs.root().join("cas");
    let existing = std::fs::read_dir(&cas).ok().and_then(|entries| {
        entries.flatten().find_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".crt")
                .filter(|n| n.starts_with(&prefix))
                .map(str::to_string)
        })
    });
    if let Some(name) = existing {
        return Ok(name);
    }
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix)
        .map_err(|e| ServerError::io("drawing a CA name", std::io::Error::other(e.to_string())))?;
    Ok(format!("{prefix}{}", hex::encode(suffix)))
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
