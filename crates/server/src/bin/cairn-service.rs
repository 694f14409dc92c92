//! `cairn-service DIR`: runs a Cairn service on the working directory DIR, creating
//! everything it needs on the first start, until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cairn_server::{cairn_environment, Flags, Service, Settings};
use clap::{Parser, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

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

Settings come from DIR/cairn.toml, then CAIRN_* variables, then these flags. Backups in
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
    /// Log format on stderr (also CAIRN_LOG_FORMAT).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

fn install_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let environment = cairn_environment();
    let flags = Flags {
        listen: args.listen,
        auth_passwd: args.auth_passwd,
    };
    let settings = Settings::load(&args.dir, &environment, &flags)?;
    let service = Service::start(&args.dir, settings)
        .await
        .with_context(|| format!("starting on {}", args.dir.display()))?;
    for url in service.endpoints() {
        println!("listening on {url}");
    }
    println!("connect: cairn --dir {} status", args.dir.display());
    if let Some(tls) = service.endpoints().iter().find(|u| u.starts_with("ssl://")) {
        let address = tls.trim_start_matches("ssl://");
        let address = address.split('/').next().unwrap_or(address);
        println!(
            "     or: cairn --url ssl://root@{address}/ --certdir {}/certs status",
            args.dir.display()
        );
    }
    let shutdown = service.shutdown_token();
    tokio::spawn(async move {
        let mut terminate = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
        let mut interrupt = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
        tokio::select! {
            _ = terminate.recv() => tracing::warn!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::warn!("SIGINT: shutting down"),
        }
        shutdown.cancel();
    });
    service.run().await?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let format =
        args.log_format
            .unwrap_or_else(|| match std::env::var("CAIRN_LOG_FORMAT").as_deref() {
                Ok("json") => LogFormat::Json,
                _ => LogFormat::Text,
            });
    install_logging(format);
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
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cairn-service: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
