//! A real S3-compatible object store for end-to-end tests: a garage server started on
//! 127.0.0.1 (free ports, a temporary directory, one node with an applied layout), with a
//! bucket and an access key that may read and write it, killed when the value drops.
//! The binary is `GARAGE_BIN`, else one [`crate::garage_install`] puts in the user's cache;
//! every wait is bounded. `objects` lists what the bucket holds, through the same S3 API
//! the service uses, so that a test sees exactly what was left behind.

use std::fs::File;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cairn_remote::{Location, Remote, S3Settings};

/// The region garage is configured with (and clients must sign for).
pub const REGION: &str = "garage";
/// The bucket every test server has.
pub const BUCKET: &str = "cairn-tests";

/// The longest garage may take to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one garage admin command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A running garage server.
pub struct Garage {
    child: Child,
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    /// `http://127.0.0.1:PORT`: the S3 API.
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    _dir: tempfile::TempDir,
}

/// The garage binary: `GARAGE_BIN`, else the one in the user's cache, which is installed
/// on first use; or an error that says how to install it.
pub fn garage_bin() -> Result<PathBuf> {
    let Some(bin) = std::env::var_os("GARAGE_BIN").map(PathBuf::from) else {
        return crate::garage_install::cached_garage();
    };
    if !bin.is_file() {
        bail!(
            "GARAGE_BIN is {}, which is not a file: point it at a garage {} binary, or unset it and the S3 tests install one",
            bin.display(),
            crate::garage_install::GARAGE_VERSION
        );
    }
    Ok(bin)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

impl Garage {
    /// Starts a garage server with the bucket `BUCKET` and a key allowed to read, write
    /// and own it, and waits until its S3 API answers.
    pub fn start() -> Result<Garage> {
        let bin = garage_bin()?;
        let dir = tempfile::tempdir()?;
        let (rpc_port, s3_port) = (free_port()?, free_port()?);
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = {meta:?}\n\
                 data_dir = {data:?}\n\
                 db_engine = \"lmdb\"\n\
                 replication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                 rpc_secret = \"{secret}\"\n\
                 \n\
                 [s3_api]\n\
                 s3_region = \"{REGION}\"\n\
                 api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                 root_domain = \".s3.garage.localhost\"\n",
                meta = dir.path().join("meta").display().to_string(),
                data = dir.path().join("data").display().to_string(),
                secret = random_hex(32)?,
            ),
        )?;
        let log = dir.path().join("garage.log");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut garage = Garage {
            child,
            bin,
            config,
            log,
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            bucket: BUCKET.to_string(),
            key_id: format!("GK{}", random_hex(12)?),
            secret: random_hex(32)?,
            _dir: dir,
        };
        garage.set_up(s3_port)?;
        Ok(garage)
    }

    fn set_up(&mut self, s3_port: u16) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while self.run(&["status"]).is_err() {
            if let Some(status) = self.child.try_wait()? {
                bail!("garage exited with {status}: {}", self.log_text());
            }
            if Instant::now() > deadline {
                bail!(
                    "garage did not answer within {START_TIMEOUT:?}: {}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let node = self.run(&["node", "id", "-q"])?;
        let node = node
            .lines()
            .next()
            .and_then(|line| line.split('@').next())
            .filter(|id| !id.is_empty())
            .with_context(|| format!("garage node id printed {node:?}"))?
            .to_string();
        self.run(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])?;
        self.run(&["layout", "apply", "--version", "1"])?;
        self.run(&["bucket", "create", &self.bucket.clone()])?;
        let (key_id, secret) = (self.key_id.clone(), self.secret.clone());
        self.run(&[
            "key",
            "import",
            "--yes",
            "-n",
            "cairn-tests",
            &key_id,
            &secret,
        ])?;
        self.run(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            &self.bucket.clone(),
            "--key",
            &key_id,
        ])?;
        while TcpStream::connect(("127.0.0.1", s3_port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "garage's S3 API did not listen within {START_TIMEOUT:?}: {}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Runs `garage -c CONFIG ARGS` (bounded in time); returns its stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        run_bounded(&self.bin, &self.config, args)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `AWS_*` variables that reach this server with the test key.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
        ]
    }

    /// The bucket's `prefix` as the service reaches it, with the test key.
    pub fn remote(&self, prefix: &str) -> Result<Remote> {
        let location: Location = format!("s3://{}/{prefix}", self.bucket)
            .parse()
            .map_err(|e: String| anyhow!(e))?;
        let settings = S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some(REGION.to_string()),
            access_key_id: Some(self.key_id.clone()),
            secret_access_key: Some(self.secret.clone()),
            session_token: None,
        };
        Ok(Remote::new(location, &settings)?)
    }

    /// The objects under `prefix` (every level), as `(key, size)`, sorted by key.
    pub fn objects(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let remote = self.remote(prefix)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut objects: Vec<(String, u64)> = runtime
            .block_on(remote.stored_objects())?
            .into_iter()
            .map(|object| (object.key, object.size))
            .collect();
        objects.sort();
        Ok(objects)
    }

    /// Multipart uploads begun in the bucket and neither completed nor aborted, as
    /// `garage bucket info` counts them.
    pub fn unfinished_uploads(&self) -> Result<u64> {
        let info = self.run(&["bucket", "info", &self.bucket])?;
        Ok(info
            .lines()
            .find_map(|line| {
                let (label, value) = line.split_once(':')?;
                let label = label.trim().to_lowercase();
                (label.contains("unfinished") && label.contains("upload"))
                    .then(|| value.split_whitespace().next()?.parse().ok())
                    .flatten()
            })
            .unwrap_or(0))
    }
}

fn run_bounded(bin: &Path, config: &Path, args: &[&str]) -> Result<String> {
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "garage {} did not finish within {COMMAND_TIMEOUT:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "garage {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
