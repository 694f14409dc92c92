//! Settings of a service: defaults, then `DIR/cairn.toml`, then `CAIRN_*` environment
//! variables, then command-line flags, each overriding the one before. Unknown settings
//! (in the file or as `CAIRN_*` variables) are errors, so that a typo never goes unseen.
//! The object store of remote backups (`[backup.s3]`) is the one exception to the order:
//! what the file says wins, and the standard `AWS_*` variables fill in what it leaves
//! out, as AWS's own tools treat them (an operator's shell may hold keys meant for
//! something else). The file's shape is in `file`, the table of every setting (its
//! variable, whether a reload applies it) in `table`.

mod file;
mod listen;
mod table;
mod webhooks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use croner::parser::{CronParser, Seconds};
use croner::Cron;

use crate::error::ServerError;
use cairn_remote::{Location, S3Settings, AWS_VARIABLES};
use file::parse_listen;

pub use listen::ListenUrl;
pub use table::{applied, differences};
pub use webhooks::{display_url, WebhookEventKind, WebhookSettings};

/// The unix socket every service serves, inside its working directory (root's).
pub const SOCKET_FILE: &str = "sock";
/// The unix socket of the HTTP API, inside the working directory (root's, mode 0600):
/// `curl --unix-socket DIR/http.sock http://cairn/v1/admin/status`.
pub const HTTP_SOCKET_FILE: &str = "http.sock";
/// The service's own certificate directory, inside its working directory.
pub const CERTS_DIR: &str = "certs";
/// Where backup jobs write by default, inside the working directory.
pub const BACKUPS_DIR: &str = "backups";
/// Scratch space, emptied at every start and never copied into a backup.
pub const TMP_DIR: &str = "tmp";

/// Name of the settings file inside a working directory.
pub const SETTINGS_FILE: &str = "cairn.toml";

/// The default TLS listener.
pub const DEFAULT_LISTEN: &str = "ssl://127.0.0.1:27460";

/// The default log filter.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Every setting of a running service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listeners besides the unix socket `DIR/sock`, which is always served.
    pub listen: Vec<ListenUrl>,
    pub max_connections: usize,
    /// Connections not authenticated yet (TLS handshakes included), at most (and never
    /// more than `max_connections`), so that a flood of them leaves room for users.
    pub max_unauthenticated_connections: usize,
    pub max_calls_per_connection: usize,
    /// Largest frame body after authentication.
    pub max_frame_bytes: usize,
    pub max_value_bytes: usize,
    pub session_ttl: Duration,
    pub map_size: usize,
    /// How long calls in flight may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// How long an unauthenticated connection may stay idle.
    pub unauthenticated_idle: Duration,
    /// How long an authenticated connection's frame may take to arrive once it began
    /// (`[limits] frame_timeout_secs`; before authentication, the idle time applies).
    pub frame_timeout: Duration,
    /// Password to give `root` at start (`--auth-passwd`, `CAIRN_AUTH_PASSWD`).
    pub root_password: Option<String>,
    /// Extra certificate directory searched after `DIR/certs` (`CAIRN_CERT_DIR`).
    pub cert_dir: Option<PathBuf>,
    /// Where backup jobs write (`[backup] dir`); `None`: `DIR/backups`.
    pub backup_dir: Option<PathBuf>,
    /// When to start backups by themselves (`[backup] schedule`, cron, UTC).
    pub backup_schedule: Option<String>,
    /// How many scheduled backups to keep (`[backup] keep`); `None`: all.
    pub backup_keep: Option<usize>,
    /// Where backups go in object storage (`[backup] url`); `None`: the backup directory.
    pub backup_url: Option<Location>,
    /// How to reach that object store (`[backup.s3]`, else the `AWS_*` variables).
    pub s3: S3Settings,
    /// The log filter (`[log] level`, an `EnvFilter` directive such as `info` or
    /// `warn,cairn_server=debug`); `RUST_LOG`, when set, wins at start.
    pub log_level: String,
    /// Automatic READ_ONLY below this much free space (`[status] min_free_bytes`)...
    pub min_free_bytes: u64,
    /// ... or below this share of the file system (`[status] min_free_percent`),
    /// whichever is smaller.
    pub min_free_percent: f64,
    /// How often free space is checked (`[status] free_space_check_secs`).
    pub free_space_check: Duration,
    /// Where events are POSTed (`[[webhooks]]`).
    pub webhooks: Vec<WebhookSettings>,
    /// How the service logs on stderr (`CAIRN_LOG_FORMAT`, `--log-format`).
    pub log_format: LogFormat,
    /// Users besides admins who may read `GET /metrics` (`[metrics] users`).
    pub metrics_users: Vec<String>,
    /// `HOST:PORT` of a plain-HTTP listener serving `/metrics` alone, without
    /// authentication (`[metrics] listen = "http://HOST:PORT"`).
    pub metrics_listen: Option<String>,
    /// How many MiB of journal entries the store keeps for mirrors
    /// (`[store] journal_retain_mib`).
    pub journal_retain_mib: u64,
    /// The leader this service mirrors (`[mirror] leader`, `--mirror`); `None`: this
    /// service is a leader.
    pub mirror_leader: Option<cairn_client::ClientUrl>,
    /// A session token of an admin of the leader (`[mirror] token`,
    /// `CAIRN_MIRROR_TOKEN`), when the leader's URL carries no password and no client
    /// certificate is presented.
    pub mirror_token: Option<String>,
    /// Whether a mirror forwards the writes it is sent to its leader
    /// (`[mirror] forward_writes`), or refuses them with `mirror_read_only`.
    pub mirror_forward_writes: bool,
    /// Above this lag, a mirror refuses reads with `mirror_lagging`
    /// (`[mirror] max_lag_secs`); `None`: never.
    pub mirror_max_lag: Option<Duration>,
}

/// How the service logs on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: vec![DEFAULT_LISTEN
                .parse()
                .expect("the default listen URL parses")],
            max_connections: 1024,
            max_unauthenticated_connections: 256,
            max_calls_per_connection: 128,
            max_frame_bytes: cairn_proto::DEFAULT_MAX_FRAME,
            max_value_bytes: cairn_store::DEFAULT_MAX_VALUE_BYTES,
            session_ttl: Duration::from_secs(24 * 3600),
            map_size: cairn_store::DEFAULT_MAP_SIZE,
            shutdown_grace: Duration::from_secs(10),
            unauthenticated_idle: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(60),
            root_password: None,
            cert_dir: None,
            backup_dir: None,
            backup_schedule: None,
            backup_keep: None,
            backup_url: None,
            s3: S3Settings::default(),
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            min_free_bytes: 1 << 30,
            min_free_percent: 5.0,
            free_space_check: Duration::from_secs(30),
            webhooks: Vec::new(),
            log_format: LogFormat::default(),
            metrics_users: Vec::new(),
            metrics_listen: None,
            journal_retain_mib: cairn_store::DEFAULT_JOURNAL_RETAIN_BYTES >> 20,
            mirror_leader: None,
            mirror_token: None,
            mirror_forward_writes: true,
            mirror_max_lag: None,
        }
    }
}

/// Command-line overrides.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub listen: Vec<String>,
    pub auth_passwd: Option<String>,
    pub log_format: Option<LogFormat>,
    /// `--mirror URL`: the leader to mirror.
    pub mirror: Option<String>,
}

impl Settings {
    /// The options the service opens its store with.
    pub fn store_options(&self) -> cairn_store::StoreOptions {
        cairn_store::StoreOptions {
            map_size: self.map_size,
            max_value_bytes: self.max_value_bytes,
            journal_retain_bytes: self.journal_retain_mib << 20,
            ..cairn_store::StoreOptions::default()
        }
    }

    /// Settings for the working directory `dir`: defaults, the file, the environment
    /// (`env`: the `CAIRN_*` variables and the `AWS_VARIABLES`), then the flags.
    pub fn load(
        dir: &Path,
        env: &BTreeMap<String, String>,
        flags: &Flags,
    ) -> Result<Settings, ServerError> {
        let mut settings = Settings::default();
        let path = dir.join(SETTINGS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => settings.apply_file(&path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ServerError::io(format!("reading {}", path.display()), e)),
        }
        settings.apply_variables(env)?;
        settings.apply_aws_env(env)?;
        if !flags.listen.is_empty() {
            settings.listen = parse_listen(&flags.listen)?;
        }
        if let Some(password) = &flags.auth_passwd {
            settings.root_password = Some(password.clone());
        }
        if let Some(format) = flags.log_format {
            settings.log_format = format;
        }
        if let Some(url) = &flags.mirror {
            settings.mirror_leader =
                Some(parse_leader(url).map_err(|reason| ServerError::Settings {
                    source_name: "--mirror".to_string(),
                    reason,
                })?);
        }
        settings.check()?;
        Ok(settings)
    }

    /// Checks that the settings fit together.
    pub(crate) fn check(&self) -> Result<(), ServerError> {
        let fail = |reason: &str| {
            Err(ServerError::Settings {
                source_name: "settings".to_string(),
                reason: reason.to_string(),
            })
        };
        if self.max_unauthenticated_connections == 0 {
            return fail("max_unauthenticated_connections must be at least 1");
        }
        if self.max_connections == 0 {
            return fail("max_connections must be at least 1");
        }
        if self.max_calls_per_connection == 0 {
            return fail("max_calls_per_connection must be at least 1");
        }
        if self.max_frame_bytes < cairn_proto::MAX_UNAUTHENTICATED_FRAME {
            return fail("max_frame_bytes must be at least 65536");
        }
        if self.max_value_bytes.saturating_add(64 << 10) > self.max_frame_bytes {
            return fail("max_value_bytes must leave 64 KiB of room under max_frame_bytes");
        }
        if self.frame_timeout.is_zero() {
            return fail("frame_timeout_secs must be at least 1");
        }
        if self.unauthenticated_idle.is_zero() {
            return fail("unauthenticated_idle_secs must be at least 1");
        }
        if self.session_ttl.is_zero() {
            return fail("session_ttl_secs must be at least 1");
        }
        if !(0.0..=100.0).contains(&self.min_free_percent) {
            return fail("[status] min_free_percent must be between 0 and 100");
        }
        if self.free_space_check.is_zero() {
            return fail("[status] free_space_check_secs must be at least 1");
        }
        if self.journal_retain_mib == 0 {
            return fail("[store] journal_retain_mib must be at least 1");
        }
        if self.mirror_max_lag.is_some_and(|lag| lag.is_zero()) {
            return fail("[mirror] max_lag_secs must be at least 1 (leave it out for no limit)");
        }
        if self.backup_keep == Some(0) {
            return fail("[backup] keep must be at least 1 (leave it out to keep every backup)");
        }
        if let Some(url) = &self.backup_url {
            if self.backup_dir.is_some() {
                return fail("[backup] dir and url exclude each other: with a url, backups go to object storage only");
            }
            match (&self.s3.access_key_id, &self.s3.secret_access_key) {
                (Some(_), Some(_)) => {}
                (Some(_), None) => return fail(&format!(
                    "[backup] url {url}: an access key id without its secret_access_key (or AWS_SECRET_ACCESS_KEY)"
                )),
                _ => return fail(&format!(
                    "[backup] url {url} needs credentials: set [backup.s3] access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                )),
            }
        }
        Ok(())
    }
}

/// Parses a leader's URL (`ssl://…` or `unix://…`, as the `cairn` CLI takes them).
pub fn parse_leader(url: &str) -> Result<cairn_client::ClientUrl, String> {
    url.parse::<cairn_client::ClientUrl>()
        .map_err(|e| format!("not a leader's URL: {e}"))
}

/// Parses a backup schedule: standard 5-field cron, or 6 fields with seconds first.
pub fn parse_schedule(schedule: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(schedule)
        .map_err(|e| format!("{schedule:?} is not a cron schedule ({e}); e.g. \"0 3 * * *\""))
}

/// Checks a schedule at settings time: it parses and matches some time to come.
pub fn check_schedule(schedule: &str) -> Result<(), String> {
    let cron = parse_schedule(schedule)?;
    cron.find_next_occurrence(&chrono::Utc::now(), false)
        .map(drop)
        .map_err(|_| format!("{schedule:?} never matches"))
}

/// The `CAIRN_*` variables and the `AWS_VARIABLES` of this process.
pub fn cairn_environment() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(name, _)| name.starts_with("CAIRN_") || AWS_VARIABLES.contains(&name.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flags_beat_environment_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = Settings::load(dir.path(), &env(&[]), &Flags::default()).unwrap();
        assert_eq!(defaults.max_connections, 1024);
        assert_eq!(defaults.listen[0].to_string(), DEFAULT_LISTEN);

        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            "listen = [\"ssl://127.0.0.1:1111\"]\n[limits]\nmax_connections = 7\nmax_calls_per_connection = 3\n",
        )
        .unwrap();
        let from_file = Settings::load(dir.path(), &env(&[]), &Flags::default()).unwrap();
        assert_eq!(
            (
                from_file.max_connections,
                from_file.max_calls_per_connection
            ),
            (7, 3)
        );
        assert_eq!(from_file.listen[0].to_string(), "ssl://127.0.0.1:1111");

        let variables = env(&[
            ("CAIRN_MAX_CONNECTIONS", "9"),
            ("CAIRN_LISTEN", "unix:///tmp/x.sock"),
        ]);
        let from_env = Settings::load(dir.path(), &variables, &Flags::default()).unwrap();
        assert_eq!(
            (from_env.max_connections, from_env.max_calls_per_connection),
            (9, 3)
        );
        assert_eq!(from_env.listen[0].to_string(), "unix:///tmp/x.sock");

        let flags = Flags {
            listen: vec!["ssl://127.0.0.1:0".into()],
            auth_passwd: Some("secret".into()),
            log_format: None,
            mirror: Some("ssl://root@db1:27460/".into()),
        };
        let from_flags = Settings::load(dir.path(), &variables, &flags).unwrap();
        assert_eq!(from_flags.listen[0].to_string(), "ssl://127.0.0.1:0");
        assert_eq!(from_flags.root_password.as_deref(), Some("secret"));
        assert_eq!(
            from_flags.mirror_leader.map(|url| url.redacted()),
            Some("ssl://root@db1:27460/".to_string())
        );
        let bad = Flags {
            mirror: Some("http://db1/".into()),
            ..Flags::default()
        };
        let refused = Settings::load(dir.path(), &variables, &bad).unwrap_err();
        assert!(refused.to_string().contains("--mirror"), "{refused}");
    }

    #[test]
    fn unknown_or_bad_settings_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let unknown_var = Settings::load(
            dir.path(),
            &env(&[("CAIRN_MAX_CONECTIONS", "9")]),
            &Flags::default(),
        );
        assert!(unknown_var
            .unwrap_err()
            .to_string()
            .contains("CAIRN_MAX_CONECTIONS"));
        let not_a_number = Settings::load(
            dir.path(),
            &env(&[("CAIRN_MAX_CONNECTIONS", "many")]),
            &Flags::default(),
        );
        assert!(not_a_number
            .unwrap_err()
            .to_string()
            .contains("whole number"));

        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            "[limits]\nmax_conections = 7\n",
        )
        .unwrap();
        let message = Settings::load(dir.path(), &env(&[]), &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("max_conections"), "{message}");

        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            "[limits]\nmax_connections = 0\n",
        )
        .unwrap();
        assert!(Settings::load(dir.path(), &env(&[]), &Flags::default()).is_err());

        std::fs::write(dir.path().join(SETTINGS_FILE), "listen = [\"http://x\"]\n").unwrap();
        assert!(Settings::load(dir.path(), &env(&[]), &Flags::default()).is_err());
    }

    #[test]
    fn a_value_limit_without_room_under_the_frame_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let largest = u64::MAX.to_string();
        let message = Settings::load(
            dir.path(),
            &env(&[("CAIRN_MAX_VALUE_BYTES", &largest)]),
            &Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("max_value_bytes must leave 64 KiB"),
            "{message}"
        );
    }

    #[test]
    fn webhooks_are_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = |text: &str| std::fs::write(dir.path().join(SETTINGS_FILE), text).unwrap();
        let load = || Settings::load(dir.path(), &env(&[]), &Flags::default());
        assert!(load().unwrap().webhooks.is_empty());

        file(concat!(
            "[[webhooks]]\nurl = \"https://hooks.example.net/cairn\"\n",
            "events = [\"status_changed\", \"job_finished\", \"status_changed\"]\n",
            "[[webhooks]]\nurl = \"http://127.0.0.1:8080/x\"\nevents = [\"db_state_changed\"]\n",
            "timeout = 0.5\nretries = 0\n",
        ));
        let webhooks = load().unwrap().webhooks;
        assert_eq!(
            webhooks,
            [
                WebhookSettings {
                    url: "https://hooks.example.net/cairn".into(),
                    events: vec![
                        WebhookEventKind::StatusChanged,
                        WebhookEventKind::JobFinished
                    ],
                    timeout: Duration::from_secs(5),
                    retries: 5,
                },
                WebhookSettings {
                    url: "http://127.0.0.1:8080/x".into(),
                    events: vec![WebhookEventKind::DbStateChanged],
                    timeout: Duration::from_millis(500),
                    retries: 0,
                },
            ]
        );

        let good = "[[webhooks]]\nurl = \"http://h/\"\nevents = [\"job_finished\"]\n";
        for (text, needles) in [
            (
                "[[webhooks]]\nurl = \"ftp://h/x\"\nevents = [\"job_finished\"]\n".to_string(),
                vec!["[[webhooks]] #1", "http:// or https://"],
            ),
            (
                "[[webhooks]]\nurl = \"hooks.example.net\"\nevents = [\"job_finished\"]\n"
                    .to_string(),
                vec!["[[webhooks]] #1", "not a URL"],
            ),
            (
                format!("{good}[[webhooks]]\nurl = \"http://h/\"\nevents = [\"job_done\"]\n"),
                vec![
                    "[[webhooks]] #2",
                    "unknown event \"job_done\"",
                    "status_changed",
                ],
            ),
            (
                "[[webhooks]]\nurl = \"http://h/\"\nevents = []\n".to_string(),
                vec!["[[webhooks]] #1", "events is empty"],
            ),
            (
                format!("{good}timeout = 0\n"),
                vec!["[[webhooks]] #1", "timeout 0"],
            ),
            (format!("{good}timeout = -2.5\n"), vec!["timeout -2.5"]),
            (format!("{good}retry = 3\n"), vec!["retry"]),
            (
                "[[webhooks]]\nevents = [\"job_finished\"]\n".to_string(),
                vec!["url"],
            ),
        ] {
            file(&text);
            let error = load().unwrap_err().to_string();
            for needle in needles {
                assert!(error.contains(needle), "{text}: {error}");
            }
        }
    }

    #[test]
    fn status_thresholds_and_the_log_level_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = |text: &str| std::fs::write(dir.path().join(SETTINGS_FILE), text).unwrap();
        let load = || Settings::load(dir.path(), &env(&[]), &Flags::default());
        let defaults = load().unwrap();
        assert_eq!(
            (
                defaults.min_free_bytes,
                defaults.min_free_percent,
                defaults.free_space_check,
                defaults.log_level.as_str()
            ),
            (1 << 30, 5.0, Duration::from_secs(30), "info")
        );
        file("[status]\nmin_free_bytes = 5\nmin_free_percent = 0.5\nfree_space_check_secs = 1\n[log]\nlevel = \"warn,cairn_server=debug\"\n[limits]\nunauthenticated_idle_secs = 3\n");
        let set = load().unwrap();
        assert_eq!(
            (
                set.min_free_bytes,
                set.min_free_percent,
                set.free_space_check,
                set.log_level.as_str(),
                set.unauthenticated_idle
            ),
            (
                5,
                0.5,
                Duration::from_secs(1),
                "warn,cairn_server=debug",
                Duration::from_secs(3)
            )
        );
        for (text, needle) in [
            ("[status]\nmin_free_percent = 101\n", "min_free_percent"),
            (
                "[status]\nfree_space_check_secs = 0\n",
                "free_space_check_secs",
            ),
            ("[log]\nlevel = \"info,=x=y\"\n", "[log] level"),
            ("[log]\nlevel = 3\n", "line 2"),
            ("\n\n[status\n", "line 3"),
        ] {
            file(text);
            let error = load().unwrap_err().to_string();
            assert!(error.contains(needle), "{text:?}: {error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn remote_backups_take_the_file_then_the_aws_variables() {
        let dir = tempfile::tempdir().unwrap();
        let file = |text: &str| std::fs::write(dir.path().join(SETTINGS_FILE), text).unwrap();
        let load =
            |pairs: &[(&str, &str)]| Settings::load(dir.path(), &env(pairs), &Flags::default());
        let aws = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_REGION", "env-region"),
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_SESSION_TOKEN", "envtoken"),
            ("AWS_PROFILE", "ignored"),
        ];

        file("[backup]\nurl = \"s3://cairn-backups/prod/db1/\"\n");
        let from_env = load(&aws).unwrap();
        let location = from_env.backup_url.unwrap();
        assert_eq!(location.to_string(), "s3://cairn-backups/prod/db1");
        assert_eq!(
            from_env.s3,
            S3Settings {
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("env-region".into()),
                access_key_id: Some("ENVKEY".into()),
                secret_access_key: Some("envsecret".into()),
                session_token: Some("envtoken".into()),
            }
        );

        file("[backup]\nurl = \"s3://cairn\"\n[backup.s3]\nendpoint = \"http://127.0.0.1:3900\"\nregion = \"garage\"\naccess_key_id = \"GKFILE\"\nsecret_access_key = \"filesecret\"\n");
        let from_file = load(&aws).unwrap();
        assert_eq!(
            from_file.s3,
            S3Settings {
                endpoint: Some("http://127.0.0.1:3900".into()),
                region: Some("garage".into()),
                access_key_id: Some("GKFILE".into()),
                secret_access_key: Some("filesecret".into()),
                session_token: None,
            },
            "the file wins, and its credentials never mix with the environment's"
        );
        let endpoint_only =
            "[backup]\nurl = \"s3://cairn\"\n[backup.s3]\nendpoint = \"https://s3.example.net\"\n";
        file(endpoint_only);
        let mixed = load(&aws).unwrap();
        assert_eq!(mixed.s3.endpoint.as_deref(), Some("https://s3.example.net"));
        assert_eq!(mixed.s3.access_key_id.as_deref(), Some("ENVKEY"));

        // Refused: no credentials, a bad url or endpoint, unknown keys, s3 without a url,
        // and a url with a backup directory.
        let error = load(&[]).unwrap_err().to_string();
        assert!(error.contains("needs credentials"), "{error}");
        for (text, needle) in [
            (
                "[backup]\nurl = \"https://cairn/x\"\n",
                "s3://BUCKET/PREFIX",
            ),
            ("[backup]\nurl = \"s3://cairn/a/../b\"\n", "prefix"),
            (
                "[backup]\nurl = \"s3://cairn\"\n[backup.s3]\nendpoint = \"127.0.0.1:3900\"\n",
                "not an endpoint URL",
            ),
            (
                "[backup]\nurl = \"s3://cairn\"\n[backup.s3]\nsecret_key = \"x\"\n",
                "secret_key",
            ),
            ("[backup.s3]\nregion = \"garage\"\n", "[backup] url"),
            (
                "[backup]\ndir = \"/b\"\nurl = \"s3://cairn\"\n",
                "exclude each other",
            ),
        ] {
            file(text);
            let error = load(&aws).unwrap_err().to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
        // Without a url the AWS variables are no business of the service's.
        file("");
        let plain = load(&[("AWS_ENDPOINT_URL", "nonsense")]).unwrap();
        assert!(plain.backup_url.is_none());
    }
}
