//! `cairn-service DIR`: runs a Cairn service on the working directory DIR, creating
//! everything it needs on the first start, until SIGINT or SIGTERM; SIGHUP reloads
//! `DIR/cairn.toml` (as `cairn config reload`). Under systemd (`Type=notify`) it says
//! when it is ready, reloading and stopping.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use cairn_server::{
    cairn_environment, Flags, LogFormat, LogLevelSetter, ReloadSource, Service, Settings,
};
use clap::Parser;
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter};

/// Run a Cairn database service on a working directory.
#[derive(Debug, Parser)]
#[command(
    name = "cairn-service",
    version,
    after_help = "\
Examples:
  cairn-service ./data
      first start: creates ./data with its store, certificates and root user;
      serves ./data/sock (root) and TLS on ssl://127.0.0.1:27460
  cairn-service ./data --listen ssl://0.0.0.0:27460/?hostname=db1 --listen unix:///run/cairn.sock
  CAIRN_AUTH_PASSWD=secret cairn-service ./data --log-format json
  cairn-service ./replica --mirror 'ssl://root@db1:27460/'
      a read replica of db1: copies it when ./replica is empty, then follows it;
      writes sent to it go to db1 (the leader's CA and root's certificate in ./replica/certs)

Settings come from DIR/cairn.toml, then CAIRN_* variables, then these flags; the log filter
is RUST_LOG when set, else [log] level (default info). SIGHUP (or `cairn config reload`)
reads DIR/cairn.toml again and applies what can change at run time. Backups in
object storage ([backup] url = \"s3://BUCKET/PREFIX\") take [backup.s3] from the file,
else the AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables."
)]
struct Args {
    /// The working directory (created on first start).
    dir: PathBuf,
    /// Listen URL: ssl://HOST:PORT[/?hostname=NAME,...&ca=CA] or unix://PATH (port 0
    /// picks a free port). Repeatable; replaces the default ssl://127.0.0.1:27460.
    #[arg(long, value_name = "URL")]
    listen: Vec<String>,
    /// Password for the root user (also CAIRN_AUTH_PASSWD).
    #[arg(long, value_name = "PASSWORD")]
    auth_passwd: Option<String>,
    /// Log format on stderr: text or json (also CAIRN_LOG_FORMAT).
    #[arg(long, value_name = "FORMAT", value_parser = |v: &str| v.parse::<LogFormat>())]
    log_format: Option<LogFormat>,
    /// Mirror the leader at URL (ssl://USER@HOST:PORT/ or unix://PATH; also
    /// CAIRN_MIRROR_LEADER or [mirror] leader): an empty DIR copies the leader first.
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
}

/// Installs the stderr subscriber: the filter is `RUST_LOG` when set, else `level`
/// (`[log] level`). Returns what changes the filter at run time (a reload).
fn install_logging(format: LogFormat, level: &str) -> LogLevelSetter {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init(),
    }
    Arc::new(move |level: &str| {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

/// What the service starts with, read before logging is installed (its filter is a
/// setting).
struct Start {
    settings: Settings,
    environment: BTreeMap<String, String>,
    flags: Flags,
}

async fn run(args: Args, start: Start, log_level: LogLevelSetter) -> anyhow::Result<()> {
    let reload_source = ReloadSource {
        env: start.environment,
        flags: start.flags,
        log_level: Some(log_level),
    };
    let service = Service::start_with_reload(&args.dir, start.settings, reload_source)
        .await
        .with_context(|| format!("starting on {}", args.dir.display()))?;
    let reloader = service.reloader();
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let mut reloading = vec![NotifyState::Reloading];
            reloading.extend(NotifyState::monotonic_usec_now().ok());
            tell_systemd(&reloading);
            let status = match reloader.reload("SIGHUP").await {
                Ok(result) => {
                    tracing::warn!(
                        changed = result.changed.len(),
                        needs_restart = result.needs_restart.len(),
                        "SIGHUP: settings reloaded"
                    );
                    "serving; settings reloaded".to_string()
                }
                Err(error) => {
                    tracing::error!(
                        error = %error.message,
                        "SIGHUP: settings not reloaded; the running settings stay in force"
                    );
                    format!("serving; settings not reloaded: {}", error.message)
                }
            };
            tell_systemd(&[NotifyState::Ready, NotifyState::Status(&status)]);
        }
    });
    let shutdown = service.shutdown_token();
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::warn!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::warn!("SIGINT: shutting down"),
        }
        tell_systemd(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
        shutdown.cancel();
    });
    // Ready once every signal has its handler: a reload asked at once is not lost.
    print_banner(&service, &args.dir);
    tell_systemd(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("serving {}", args.dir.display())),
    ]);
    service.run().await?;
    Ok(())
}

fn main() -> ExitCode {
    let args = match cairn_clidoc::parse::<Args>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let environment = cairn_environment();
    let flags = Flags {
        listen: args.listen.clone(),
        auth_passwd: args.auth_passwd.clone(),
        log_format: args.log_format,
        mirror: args.mirror.clone(),
    };
    let settings = match Settings::load(&args.dir, &environment, &flags) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("cairn-service: error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let log_level = install_logging(settings.log_format, &settings.log_level);
    let start = Start {
        settings,
        environment,
        flags,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cairn-service: error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, start, log_level)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cairn-service: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Tells systemd (a `Type=notify` unit: `NOTIFY_SOCKET` is set) how the service is
/// doing: `READY=1` once it serves, `RELOADING=1` while SIGHUP reloads the settings,
/// `STOPPING=1` at shutdown. Without `NOTIFY_SOCKET` this does nothing.
fn tell_systemd(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// Says where the service listens and how to connect, on stdout. A stdout that went away
/// (a closed pipe) must not stop the service: what cannot be written is dropped.
fn print_banner(service: &Service, dir: &std::path::Path) {
    use std::io::Write;
    let mut lines = Vec::new();
    for url in service.endpoints() {
        lines.push(format!("listening on {url}"));
    }
    lines.push(format!("connect: cairn --dir {} status", dir.display()));
    if let Some(tls) = service.endpoints().iter().find(|u| u.starts_with("ssl://")) {
        let address = tls.trim_start_matches("ssl://");
        let address = address.split('/').next().unwrap_or(address);
        lines.push(format!(
            "     or: cairn --url ssl://root@{address}/ --certdir {}/certs status",
            dir.display()
        ));
    }
    lines.push(format!(
        "     or: curl --unix-socket {}/{} http://cairn/v1/admin/status",
        dir.display(),
        cairn_server::HTTP_SOCKET_FILE
    ));
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        if writeln!(stdout, "{line}").is_err() {
            return;
        }
    }
    let _ = stdout.flush();
}
