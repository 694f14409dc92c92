//! The admin commands around background jobs: `backup start|list|delete`,
//! `restore start`, and `jobs list|show|wait|cancel`. `jobs wait` (and `--wait`) polls
//! the job and draws a progress bar on stderr when it is a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_client::methods::Job;
use cairn_client::{Client, Method};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{BackupCommand, JobsCommand, RestoreCommand};
use crate::connect::Target;
use crate::output::{self, Done, Output};

/// How often `jobs wait` asks for the job.
const POLL: Duration = Duration::from_millis(250);

pub async fn backup(target: &Target, out: &Output, command: BackupCommand) -> Result<()> {
    let client = target.connect().await?;
    match command {
        BackupCommand::Start { name, wait } => {
            let job = client.backup_start(name.as_deref()).await?;
            started(&client, out, job, wait).await?;
        }
        BackupCommand::List => {
            let list = client.backup_list().await?;
            out.emit(&list, || {
                let rows = list
                    .iter()
                    .map(|b| {
                        vec![
                            b.name.clone(),
                            output::utc(b.created_ms),
                            output::bytes(b.bytes),
                            b.databases.to_string(),
                            b.location.clone(),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "CREATED", "SIZE", "DATABASES", "LOCATION"], rows)
            })?;
        }
        BackupCommand::Delete { name } => {
            client.backup_delete(&name).await?;
            out.emit(&Done { ok: true }, || format!("deleted backup {name}"))?;
        }
    }
    Ok(())
}

pub async fn restore(target: &Target, out: &Output, command: RestoreCommand) -> Result<()> {
    let client = target.connect().await?;
    match command {
        RestoreCommand::Start { name, wait } => {
            let job = client.restore_start(&name).await?;
            started(&client, out, job, wait).await?;
        }
    }
    Ok(())
}

pub async fn jobs(target: &Target, out: &Output, command: JobsCommand) -> Result<()> {
    let client = target.connect().await?;
    match command {
        JobsCommand::List { kind, status } => {
            // The filters travel as typed: the service judges them (a bad one is its
            // `bad_request`, naming the values it takes).
            let filter = |name: &str, text: Option<String>| {
                text.map(|text| (rmpv::Value::from(name), rmpv::Value::from(text)))
            };
            let args = [filter("type", kind), filter("status", status)];
            let answer = client
                .call(
                    Method::JobsList.name(),
                    rmpv::Value::Map(args.into_iter().flatten().collect()),
                )
                .await?;
            let list: Vec<Job> = rmpv::ext::from_value(answer).context(
                "the answer to jobs.list does not parse: is the service of another version?",
            )?;
            out.emit(&list, || jobs_table(&list))?;
        }
        JobsCommand::Show { id } => {
            let job = client.jobs_show(id).await?;
            out.emit(&job, || job_text(&job))?;
        }
        JobsCommand::Wait { id } => {
            let job = wait(&client, id).await?;
            out.emit(&job, || job_text(&job))?;
            check_completed(&job)?;
        }
        JobsCommand::Cancel { id } => {
            let job = client.jobs_cancel(id).await?;
            out.emit(&job, || format!("job {id}: cancel asked ({})", job.status))?;
        }
    }
    Ok(())
}

/// Prints a just-started job, or waits for it with `--wait`.
pub async fn started(client: &Client, out: &Output, job: Job, wait_for_it: bool) -> Result<()> {
    if !wait_for_it {
        return out
            .emit(&job, || {
                format!(
                    "job {} started ({}); follow it with: cairn jobs wait {}",
                    job.id, job.kind, job.id
                )
            })
            .map_err(Into::into);
    }
    let job = wait(client, job.id).await?;
    out.emit(&job, || job_text(&job))?;
    check_completed(&job)
}

fn check_completed(job: &Job) -> Result<()> {
    if job.status == "COMPLETED" {
        return Ok(());
    }
    let why = job
        .error
        .as_ref()
        .map_or(String::new(), |e| format!(": {}", e.message));
    bail!("job {} ended {}{why}", job.id, job.status)
}

/// Polls the job until it is final, drawing a progress bar on a terminal.
async fn wait(client: &Client, id: u64) -> Result<Job> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    loop {
        let job = client.jobs_show(id).await?;
        if let Some(bar) = &bar {
            bar.set_length(job.progress.total.max(job.progress.current));
            bar.set_position(job.progress.current);
            bar.set_message(format!("job {} {}", job.id, job.status));
        }
        if matches!(job.status.as_str(), "COMPLETED" | "FAILED" | "CANCELED") {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(job);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn job_text(job: &Job) -> String {
    let mut lines = vec![
        format!("job:        {}", job.id),
        format!("type:       {}", job.kind),
        format!("status:     {}", job.status),
        format!(
            "progress:   {} / {} {}",
            job.progress.current, job.progress.total, job.progress.message
        ),
        format!(
            "started:    {} by {}",
            output::utc(job.started_on_ms),
            job.started_by
        ),
    ];
    if let Some(finished) = job.finished_on_ms {
        lines.push(format!(
            "finished:   {} ({} ms)",
            output::utc(finished),
            job.total_time_ms.unwrap_or(0)
        ));
    }
    if let Some(location) = &job.location {
        lines.push(format!("location:   {location}"));
    }
    if !job.stats.is_empty() {
        let stats: Vec<String> = job.stats.iter().map(|(k, v)| format!("{k} {v}")).collect();
        lines.push(format!("counts:     {}", stats.join(", ")));
    }
    if let Some(error) = &job.error {
        lines.push(format!("error:      {}", error.message));
    }
    lines.join("\n")
}

fn jobs_table(list: &[Job]) -> String {
    let rows = list
        .iter()
        .map(|job| {
            vec![
                job.id.to_string(),
                job.kind.to_string(),
                job.status.to_string(),
                output::utc(job.started_on_ms),
                job.started_by.clone(),
                job.params.get("name").cloned().unwrap_or_default(),
                job.error
                    .as_ref()
                    .map(|e| e.message.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &["ID", "TYPE", "STATUS", "STARTED", "BY", "NAME", "ERROR"],
        rows,
    )
}
