//! [`Client`]: a handle on one connection to a service. It is cheap to clone, and every
//! clone may call at once from any task: calls are pipelined on the one connection and
//! their answers matched by id. [`Client::connect`] opens the connection and
//! authenticates it (a URL password logs in; a token authenticates with `auth`; a client
//! certificate or the service's own unix socket needs neither). Besides the raw
//! [`Client::call`] and [`Client::stream`], there is one typed method per method of the
//! protocol, taking and returning the types of `cairn_proto::methods`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::methods::{self, call, NoArgs};
use cairn_proto::methods::{
    AuthArgs, BatchArgs, BatchOp, BatchResult, ChangesArgs, ChangesResult, DbCreateArgs, DbInfo,
    DbNameArgs, DeleteArgs, Doc, GetArgs, LoginArgs, LoginResult, LogoutArgs, PutArgs,
    RetentionArgs, RevResult, ScanArgs, ScanResult, StatusResult, UserAddArgs, UserGrantArgs,
    UserInfo, UserNameArgs, UserPasswdArgs, UserRevokeArgs, WhoAmI,
};
use cairn_proto::values::{Access, FeedKind, JobKind, JobStatus, ServiceMode};
use cairn_proto::Call;
use rmpv::Value;
use serde::de::DeserializeOwned;

use crate::connection::Connection;
use crate::docs_page::{DocsPage, ScanPages};
use crate::error::ClientError;
use crate::stream::{CallStream, FeedStream};
use crate::transport;
use crate::url::ClientUrl;

/// How to connect, besides the URL.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Certificate directories, searched in order for CAs (`cas/`) and user certificates
    /// (`users/`). Empty: the default directory (`$CAIRN_CERT_DIR`, else
    /// `~/.cairn/certs`). A CLI given `--dir DIR` passes `DIR/certs`.
    pub cert_dirs: Vec<PathBuf>,
    /// The user certificate to present (`users/NAME.crt`). `None`: the URL's
    /// `certname=`, else the URL's user's certificate when a directory holds one.
    pub client_cert: Option<String>,
    /// A session token (from `login`) to authenticate with, using `auth`.
    pub token: Option<String>,
    /// The largest frame the client sends or accepts (default: the service's default).
    pub max_frame: usize,
    /// Calls in flight at once (the service's default limit); more wait for a slot.
    pub max_calls_in_flight: usize,
    /// How long reaching the service (TCP and TLS handshake) may take.
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            cert_dirs: Vec::new(),
            client_cert: None,
            token: None,
            max_frame: cairn_proto::DEFAULT_MAX_FRAME,
            max_calls_in_flight: 128,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl ConnectOptions {
    /// Options that use the certificate directory of the working directory `dir`
    /// (`DIR/certs`), as the CLI does when given `--dir DIR`.
    pub fn for_working_dir(dir: &Path) -> ConnectOptions {
        ConnectOptions {
            cert_dirs: vec![dir.join("certs")],
            ..ConnectOptions::default()
        }
    }
}

/// Shows everything but the token.
impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("cert_dirs", &self.cert_dirs)
            .field("client_cert", &self.client_cert)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("max_frame", &self.max_frame)
            .field("max_calls_in_flight", &self.max_calls_in_flight)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// A connection to a service; clones share it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    url: String,
    login: Option<LoginResult>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.url)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Decodes the answer to `method` into `T`.
pub(crate) fn decode<T: DeserializeOwned>(method: &str, value: Value) -> Result<T, ClientError> {
    rmpv::ext::from_value(value).map_err(|e| {
        ClientError::Protocol(format!(
            "the answer to `{method}` does not parse ({e}): is the service of another version?"
        ))
    })
}

impl Client {
    /// Connects to `url` and authenticates: with the URL's user and password (`login`),
    /// else with `options.token` (`auth`), else by the client certificate presented or
    /// the unix socket, if at all.
    pub async fn connect(url: &ClientUrl, options: &ConnectOptions) -> Result<Client, ClientError> {
        let connection = transport::open(url, options).await?;
        let credentials = match url {
            ClientUrl::Tls(tls) => tls.user.as_deref().zip(tls.password.as_deref()),
            ClientUrl::Unix { .. } => None,
        };
        let mut login = None;
        if let Some((user, password)) = credentials {
            let args = LoginArgs {
                user: user.to_string(),
                password: password.to_string(),
            };
            let method = call::Login::METHOD.name();
            let value = connection.call(method, methods::to_value(&args)).await?;
            login = Some(decode(method, value)?);
        } else if let Some(token) = &options.token {
            let args = AuthArgs {
                token: token.clone(),
            };
            connection
                .call(call::Auth::METHOD.name(), methods::to_value(&args))
                .await?;
        }
        Ok(Client {
            inner: Arc::new(Inner {
                connection,
                url: url.redacted(),
                login,
            }),
        })
    }

    /// The URL connected to, without its password.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// What the login made by [`Client::connect`] returned (its session token), if it
    /// logged in.
    pub fn login_result(&self) -> Option<&LoginResult> {
        self.inner.login.as_ref()
    }

    /// True once the connection has ended; every call then fails.
    pub fn is_closed(&self) -> bool {
        self.inner.connection.is_closed()
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.inner.connection
    }

    /// Calls `method` with `args` (a map, or nil) and waits for its result.
    pub async fn call(&self, method: &str, args: Value) -> Result<Value, ClientError> {
        self.inner.connection.call(method, args).await
    }

    /// Calls `method` as a stream of items ended by an end value.
    pub async fn stream(&self, method: &str, args: Value) -> Result<CallStream, ClientError> {
        let (id, events) = self.inner.connection.stream(method, args).await?;
        Ok(CallStream::new(self.clone(), id, method, events))
    }

    /// Calls the method `C` with its arguments and decodes its result (the types the
    /// protocol's method table gives it).
    pub async fn request<C: Call>(&self, args: &C::Args) -> Result<C::Result, ClientError> {
        let method = C::METHOD.name();
        self.inner
            .connection
            .call_typed(method, args)
            .await?
            .decode(method)
    }

    /// `status`: the service's availability; needs no authentication.
    pub async fn status(&self) -> Result<StatusResult, ClientError> {
        self.request::<call::Status>(&NoArgs {}).await
    }

    /// `status.set` (admin): sets the service's status and messages.
    pub async fn status_set(
        &self,
        status: ServiceMode,
        current_message: Option<&str>,
        pending_maintenance_message: Option<&str>,
    ) -> Result<StatusResult, ClientError> {
        let args = methods::StatusSetArgs {
            status,
            current_message: current_message.map(str::to_string),
            pending_maintenance_message: pending_maintenance_message.map(str::to_string),
        };
        self.request::<call::StatusSet>(&args).await
    }

    /// `login`: authenticates the connection as `user`; the result's token can
    /// authenticate other connections ([`ConnectOptions::token`]).
    pub async fn login(&self, user: &str, password: &str) -> Result<LoginResult, ClientError> {
        let args = LoginArgs {
            user: user.to_string(),
            password: password.to_string(),
        };
        self.request::<call::Login>(&args).await
    }

    /// `auth`: authenticates the connection with a session token.
    pub async fn auth(&self, token: &str) -> Result<WhoAmI, ClientError> {
        let args = AuthArgs {
            token: token.to_string(),
        };
        self.request::<call::Auth>(&args).await
    }

    /// `logout`: revokes `token`, or (with `None`) the token this connection
    /// authenticated with, which also ends its authentication.
    pub async fn logout(&self, token: Option<&str>) -> Result<(), ClientError> {
        let args = LogoutArgs {
            token: token.map(str::to_string),
        };
        self.request::<call::Logout>(&args).await
    }

    /// `whoami`: the user of the connection and how it authenticated.
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.request::<call::WhoAmI>(&NoArgs {}).await
    }

    /// `db.create`: a new database with a change-log retention.
    pub async fn db_create(
        &self,
        db: &str,
        retention: RetentionArgs,
    ) -> Result<DbInfo, ClientError> {
        self.db_create_with(&DbCreateArgs {
            name: db.to_string(),
            retention,
            offline: false,
        })
        .await
    }

    /// `db.create` with every argument (e.g. `offline`: created offline).
    pub async fn db_create_with(&self, args: &DbCreateArgs) -> Result<DbInfo, ClientError> {
        self.request::<call::DbCreate>(args).await
    }

    /// `db.offline`: refuses new calls on the database, lets those in flight finish, ends
    /// its live feeds; answers once it is offline.
    pub async fn db_offline(
        &self,
        db: &str,
        reason: Option<&str>,
    ) -> Result<methods::DbStateResult, ClientError> {
        let args = methods::DbOfflineArgs {
            name: db.to_string(),
            reason: reason.map(str::to_string),
        };
        self.request::<call::DbOffline>(&args).await
    }

    /// `db.online`: at once, or `Starting` for `delay_secs` first.
    pub async fn db_online(
        &self,
        db: &str,
        delay_secs: Option<u64>,
        reason: Option<&str>,
    ) -> Result<methods::DbStateResult, ClientError> {
        let args = methods::DbOnlineArgs {
            name: db.to_string(),
            delay_secs,
            reason: reason.map(str::to_string),
        };
        self.request::<call::DbOnline>(&args).await
    }

    /// `db.config`: a database's configuration and state.
    pub async fn db_config(&self, db: &str) -> Result<methods::DbConfig, ClientError> {
        let args = DbNameArgs {
            name: db.to_string(),
        };
        self.request::<call::DbConfig>(&args).await
    }

    /// `db.config.set`: replaces the configuration of an offline database.
    pub async fn db_config_set(
        &self,
        db: &str,
        config: methods::DbConfigSettings,
    ) -> Result<methods::DbConfig, ClientError> {
        let args = methods::DbConfigSetArgs {
            name: db.to_string(),
            config,
        };
        self.request::<call::DbConfigSet>(&args).await
    }

    /// `db.resync`: starts a job rebuilding the indexes of an offline database.
    pub async fn db_resync(&self, db: &str) -> Result<methods::Job, ClientError> {
        let args = DbNameArgs {
            name: db.to_string(),
        };
        self.request::<call::DbResync>(&args).await
    }

    /// `find`: documents by a secondary index.
    pub async fn find(&self, args: &methods::FindArgs) -> Result<methods::FindResult, ClientError> {
        self.request::<call::Find>(args).await
    }

    /// `db.drop`: removes a database, its documents and its change log.
    pub async fn db_drop(&self, db: &str) -> Result<(), ClientError> {
        let args = DbNameArgs {
            name: db.to_string(),
        };
        self.request::<call::DbDrop>(&args).await
    }

    /// `db.list`: the databases the user may read, in name order.
    pub async fn db_list(&self) -> Result<Vec<DbInfo>, ClientError> {
        self.request::<call::DbList>(&NoArgs {}).await
    }

    /// `db.info`: a database's counters.
    pub async fn db_info(&self, db: &str) -> Result<DbInfo, ClientError> {
        let args = DbNameArgs {
            name: db.to_string(),
        };
        self.request::<call::DbInfo>(&args).await
    }

    /// `get`: a document (error `not_found` when there is none).
    pub async fn get(&self, db: &str, key: &str) -> Result<Doc, ClientError> {
        let args = GetArgs {
            db: db.to_string(),
            key: Value::from(key),
        };
        self.request::<call::Get>(&args).await
    }

    /// `put`: writes a document, only if its rev is `rev` when one is given (0: only if
    /// it does not exist); answers once the write is durable.
    pub async fn put(
        &self,
        db: &str,
        key: &str,
        value: Value,
        rev: Option<u64>,
    ) -> Result<RevResult, ClientError> {
        let args = PutArgs {
            db: db.to_string(),
            key: Value::from(key),
            value,
            rev,
        };
        self.request::<call::Put>(&args).await
    }

    /// `delete`: removes a document, only if its rev is `rev` when one is given.
    pub async fn delete(
        &self,
        db: &str,
        key: &str,
        rev: Option<u64>,
    ) -> Result<RevResult, ClientError> {
        let args = DeleteArgs {
            db: db.to_string(),
            key: Value::from(key),
            rev,
        };
        self.request::<call::Delete>(&args).await
    }

    /// `scan`: one page of documents in key order.
    pub async fn scan(&self, args: &ScanArgs) -> Result<ScanResult, ClientError> {
        self.request::<call::Scan>(args).await
    }

    /// `scan`, its page kept as the bytes it came in: the documents are lent from it,
    /// their values decoded only when asked for (`DocRef::value`).
    pub async fn scan_page(&self, args: &ScanArgs) -> Result<DocsPage, ClientError> {
        let method = call::Scan::METHOD.name();
        let answer = self.inner.connection.call_typed(method, args).await?;
        DocsPage::from_answer(method, answer)
    }

    /// Every page of `args`'s range from `args.after` on, as `scan_page` reads them,
    /// each next page asked for as soon as the one before arrives.
    pub fn scan_pages(&self, args: ScanArgs) -> ScanPages {
        ScanPages::new(self.clone(), args)
    }

    /// `batch`: operations on one database, applied all or nothing.
    pub async fn batch(&self, db: &str, ops: Vec<BatchOp>) -> Result<BatchResult, ClientError> {
        let args = BatchArgs {
            db: db.to_string(),
            ops,
        };
        self.request::<call::Batch>(&args).await
    }

    /// `changes` with a `normal` (default) or `longpoll` feed: one page of changes.
    pub async fn changes(&self, args: &ChangesArgs) -> Result<ChangesResult, ClientError> {
        self.request::<call::Changes>(args).await
    }

    /// `changes` with a `continuous` feed (whatever `args.feed` says), `batched`: changes
    /// as they commit, until canceled or ended by the service.
    pub async fn changes_feed(&self, args: &ChangesArgs) -> Result<FeedStream, ClientError> {
        let args = ChangesArgs {
            feed: Some(FeedKind::Continuous),
            batched: true,
            ..args.clone()
        };
        let stream = self
            .stream(call::Changes::METHOD.name(), methods::to_value(&args))
            .await?;
        Ok(FeedStream::new(stream))
    }

    /// `user.add`: a new user; one without a password can only use a client certificate.
    pub async fn user_add(
        &self,
        user: &str,
        password: Option<&str>,
        admin: bool,
    ) -> Result<(), ClientError> {
        let args = UserAddArgs {
            name: user.to_string(),
            password: password.map(str::to_string),
            admin,
        };
        self.request::<call::UserAdd>(&args).await
    }

    /// `user.passwd`: sets a user's password.
    pub async fn user_passwd(&self, user: &str, password: &str) -> Result<(), ClientError> {
        let args = UserPasswdArgs {
            name: user.to_string(),
            password: password.to_string(),
        };
        self.request::<call::UserPasswd>(&args).await
    }

    /// `user.grant`: gives a user `read` or `write` (which includes read) on a database.
    pub async fn user_grant(
        &self,
        user: &str,
        db: &str,
        access: Access,
    ) -> Result<(), ClientError> {
        let args = UserGrantArgs {
            name: user.to_string(),
            db: db.to_string(),
            access,
        };
        self.request::<call::UserGrant>(&args).await
    }

    /// `user.revoke`: removes a user's grant on a database.
    pub async fn user_revoke(&self, user: &str, db: &str) -> Result<(), ClientError> {
        let args = UserRevokeArgs {
            name: user.to_string(),
            db: db.to_string(),
        };
        self.request::<call::UserRevoke>(&args).await
    }

    /// `user.list`: every user with its grants.
    pub async fn user_list(&self) -> Result<Vec<UserInfo>, ClientError> {
        self.request::<call::UserList>(&NoArgs {}).await
    }

    /// `user.delete`: removes a user and revokes its tokens.
    pub async fn user_delete(&self, user: &str) -> Result<(), ClientError> {
        let args = UserNameArgs {
            name: user.to_string(),
        };
        self.request::<call::UserDelete>(&args).await
    }

    /// `backup.start`: starts a backup job (`name` defaults to the UTC time).
    pub async fn backup_start(&self, name: Option<&str>) -> Result<methods::Job, ClientError> {
        let args = methods::BackupStartArgs {
            name: name.map(str::to_string),
        };
        self.request::<call::BackupStart>(&args).await
    }

    /// `backup.list`: the complete backups, newest first.
    pub async fn backup_list(&self) -> Result<Vec<methods::BackupInfo>, ClientError> {
        self.request::<call::BackupList>(&NoArgs {}).await
    }

    /// `backup.delete`.
    pub async fn backup_delete(&self, backup: &str) -> Result<(), ClientError> {
        let args = methods::BackupNameArgs {
            name: backup.to_string(),
        };
        self.request::<call::BackupDelete>(&args).await
    }

    /// `restore.start`: starts a restore job from one of the service's backups.
    pub async fn restore_start(&self, backup: &str) -> Result<methods::Job, ClientError> {
        let args = methods::BackupNameArgs {
            name: backup.to_string(),
        };
        self.request::<call::RestoreStart>(&args).await
    }

    /// `jobs.list`, filtered by type and status when given.
    pub async fn jobs_list(
        &self,
        kind: Option<JobKind>,
        status: Option<JobStatus>,
    ) -> Result<Vec<methods::Job>, ClientError> {
        let args = methods::JobsListArgs { kind, status };
        self.request::<call::JobsList>(&args).await
    }

    /// `jobs.show`.
    pub async fn jobs_show(&self, id: u64) -> Result<methods::Job, ClientError> {
        self.request::<call::JobsShow>(&methods::JobIdArgs { id })
            .await
    }

    /// `jobs.cancel`.
    pub async fn jobs_cancel(&self, id: u64) -> Result<methods::Job, ClientError> {
        self.request::<call::JobsCancel>(&methods::JobIdArgs { id })
            .await
    }

    /// `usage` (admin): the room the service's data, directory and backups take.
    pub async fn usage(&self) -> Result<methods::UsageResult, ClientError> {
        self.request::<call::Usage>(&NoArgs {}).await
    }

    /// `config.reload` (admin): the service reads its settings file again and applies
    /// what can change at run time; an invalid file is refused and changes nothing.
    pub async fn config_reload(&self) -> Result<methods::ConfigReloadResult, ClientError> {
        self.request::<call::ConfigReload>(&NoArgs {}).await
    }
}
