//! Waiting for a service's job to end, for the end-to-end tests that start backups and
//! restores: the job is read again until it is COMPLETED (a FAILED or CANCELED job, or
//! a minute gone, is an error), riding through the moments a restore has the service's
//! store closed.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use cairn_client::Client;

/// Waits for the job `id` to complete.
pub async fn wait_job(client: &Client, id: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(job) = client.jobs_show(id).await {
            match job.status.as_str() {
                "COMPLETED" => return Ok(()),
                "FAILED" | "CANCELED" => bail!("job {id}: {job:?}"),
                _ => {}
            }
        }
        ensure!(
            Instant::now() < deadline,
            "job {id} did not end within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
