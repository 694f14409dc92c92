//! The operator's console in a real headless browser (Debian's Chromium through
//! selenium and chromedriver), against a real service over HTTPS: the script
//! `tests/browser/console_test.py` logs in, takes a database offline with its button,
//! starts a backup and watches its progress bar reach 100%, sees the banner follow a
//! READ_ONLY an admin sets with the CLI, checks that a user who is not an admin sees no
//! admin control, and that the browser's console holds no error. The screenshot it takes
//! is kept in cargo's target directory for review.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use cairn_tests::cli::{cairn_exe, Endpoint};
use cairn_tests::process::ServiceProcess;

#[test]
fn the_console_logs_in_and_drives_databases_jobs_and_the_status() -> Result<()> {
    let python = cairn_tests::selenium::python()?;
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().join("data");
    let service = ServiceProcess::start(
        &dir,
        &[
            "--auth-passwd",
            "console-root-pw",
            "--listen",
            "ssl://127.0.0.1:0",
            "--listen",
            "https://127.0.0.1:0",
        ],
    )?;
    let cli = Endpoint::unix(&service);
    cli.run(&["db", "create", "docs"]).ok();
    cli.run_with_stdin(
        &["user", "add", "alice", "--password-stdin"],
        "alice-pw-1\n",
    )
    .ok();
    cli.run(&["user", "grant", "alice", "docs", "read"]).ok();
    let https = service
        .https_address
        .clone()
        .context("the service's https:// listener")?;
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/console_test.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(format!("https://{https}"))
        .arg(cairn_exe())
        .arg(&dir)
        .arg(&screenshot)
        .output()
        .context("running the browser script")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(output.status.success(), "the browser script failed: {said}");
    for step in [
        "the console is at /_ui/",
        "docs went offline after its button",
        "the backup's progress bar reached 100%",
        "the banner shows READ_ONLY and its message",
        "alice sees the databases and no admin control",
        "no error in the browser's console",
    ] {
        ensure!(
            said.contains(step),
            "the script did not get to {step:?}: {said}"
        );
    }
    ensure!(
        std::fs::metadata(&screenshot)?.len() > 10_000,
        "a screenshot"
    );
    eprintln!("the console's screenshot: {}", screenshot.display());
    drop(service);
    Ok(())
}
