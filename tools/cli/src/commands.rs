//! The commands. Each reads and checks its input first (stdin, JSON), so that bad input
//! sends nothing; then it connects, makes its call and prints the result, as JSON with
//! `-o json` (the service's result, with values written by `cairn_client::json`) or as text.

use std::io;
use std::time::Duration;

use anyhow::Result;
use cairn_client::methods::{
    call, ChangesArgs, DbCreateArgs, FeedItem, FindArgs, FindCursor, MirrorPromoteArgs,
    RetentionArgs, ScanArgs,
};
use cairn_client::values::FeedKind;

use crate::args::{
    ChangesOptions, Cli, Command, DbCommand, FindOptions, ScanOptions, StatusCommand, UsageError,
    UserCommand,
};
use crate::connect::Target;
use crate::input;
use crate::output::{
    self, ChangeJson, ChangesJson, DocJson, Done, FeedMark, FindJson, Output, ScanJson,
};

/// Runs the command of `cli`.
pub async fn run(cli: Cli) -> Result<()> {
    let out = Output::new(cli.global.output);
    let target = Target::new(&cli.global)?;
    match cli.command {
        Command::Status { action: None } => {
            let status = target.connect().await?.status().await?;
            out.emit(&status, || output::status_text(&status))?;
        }
        Command::Status {
            action:
                Some(StatusCommand::Set {
                    status,
                    message,
                    pending,
                }),
        } => {
            let client = target.connect().await?;
            let status = client
                .status_set(status, message.as_deref(), pending.as_deref())
                .await?;
            out.emit(&status, || output::status_text(&status))?;
        }
        Command::Whoami => {
            let me = target.connect().await?.whoami().await?;
            out.emit(&me, || {
                let admin = if me.admin { " (admin)" } else { "" };
                format!("{}{admin} via {}", me.user, me.via)
            })?;
        }
        Command::Login {
            user,
            password_stdin,
        } => login(&target, &out, user, password_stdin).await?,
        Command::Logout { token } => {
            let Some(token) = token.or_else(|| target.options.token.clone()) else {
                return Err(UsageError::new(
                    "name the token to revoke: cairn logout TOKEN, or cairn --token TOKEN logout",
                )
                .into());
            };
            target.connect().await?.logout(Some(&token)).await?;
            out.emit(&Done { ok: true }, || "the token is revoked".to_string())?;
        }
        Command::Db(command) => db(&target, &out, command).await?,
        Command::Put {
            db,
            key,
            value,
            rev,
        } => {
            let value = input::value(&value, io::stdin().lock())?;
            let result = target.connect().await?.put(&db, &key, value, rev).await?;
            out.emit(&result, || format!("rev {}", result.rev))?;
        }
        Command::Get { db, key } => {
            let doc = target.connect().await?.get(&db, &key).await?;
            out.emit(&DocJson::new(&doc), || output::doc_text(&doc))?;
        }
        Command::Del { db, key, rev } => {
            let result = target.connect().await?.delete(&db, &key, rev).await?;
            out.emit(&result, || format!("deleted {key} (rev {})", result.rev))?;
        }
        Command::Scan(options) => scan(&target, &out, options).await?,
        Command::Batch { db } => {
            let ops = input::batch(io::stdin().lock())?;
            let count = ops.len();
            let result = target.connect().await?.batch(&db, ops).await?;
            out.emit(&result, || {
                let revs: Vec<String> = result.revs.iter().map(u64::to_string).collect();
                format!("applied {count} operations: revs {}", revs.join(", "))
            })?;
        }
        Command::Find(options) => find(&target, &out, options).await?,
        Command::Changes(options) => changes(&target, &out, options).await?,
        Command::User(command) => user(&target, &out, command).await?,
        Command::Backup(command) => crate::jobs::backup(&target, &out, command).await?,
        Command::Restore(command) => crate::jobs::restore(&target, &out, command).await?,
        Command::Jobs(command) => crate::jobs::jobs(&target, &out, command).await?,
        Command::Usage => {
            let usage = target.connect().await?.usage().await?;
            out.emit(&usage, || output::usage_text(&usage))?;
        }
        Command::Config(crate::args::ConfigCommand::Reload) => {
            let result = target.connect().await?.config_reload().await?;
            out.emit(&result, || output::reload_text(&result))?;
        }
        Command::Promote { force, advertise } => {
            let args = MirrorPromoteArgs { force, advertise };
            let result = target
                .connect()
                .await?
                .request::<call::MirrorPromote>(&args)
                .await?;
            out.emit(&result, || output::promote_text(&result))?;
        }
    }
    Ok(())
}

async fn login(
    target: &Target,
    out: &Output,
    user: Option<String>,
    password_stdin: bool,
) -> Result<()> {
    let result = if password_stdin {
        if target.url_has_password() {
            return Err(UsageError::new(
                "the URL carries a password already: leave out --password-stdin",
            )
            .into());
        }
        let Some(user) = user.or_else(|| target.url_user().map(str::to_string)) else {
            return Err(UsageError::new(
                "name the user to log in as: --user NAME, or ssl://NAME@HOST/ in the URL",
            )
            .into());
        };
        let password = input::password(io::stdin().lock())?;
        target.connect().await?.login(&user, &password).await?
    } else {
        if !target.url_has_password() {
            return Err(UsageError::new(
                "login needs a password: give it on stdin with --password-stdin, or in the URL (ssl://USER:PASSWORD@HOST/)",
            )
            .into());
        }
        if user.is_some() && user.as_deref() != target.url_user() {
            return Err(UsageError::new(
                "--user differs from the URL's user: give the user in one place",
            )
            .into());
        }
        let client = target.connect().await?;
        client
            .login_result()
            .cloned()
            .expect("connecting with a URL password logs in")
    };
    out.emit(&result, || result.token.clone())?;
    Ok(())
}

async fn db(target: &Target, out: &Output, command: DbCommand) -> Result<()> {
    let client = target.connect().await?;
    match command {
        DbCommand::Create {
            name,
            max_changes,
            max_age_secs,
            offline,
        } => {
            let args = DbCreateArgs {
                name: name.clone(),
                retention: RetentionArgs {
                    max_changes,
                    max_age_secs,
                },
                offline,
            };
            let info = client.db_create_with(&args).await?;
            out.emit(&info, || {
                format!("created database {name}\n{}", output::db_info_text(&info))
            })?;
        }
        DbCommand::Offline { name, reason } => {
            let done = client.db_offline(&name, reason.as_deref()).await?;
            out.emit(&done, || output::db_state_text(&done))?;
        }
        DbCommand::Online {
            name,
            delay,
            reason,
        } => {
            let done = client.db_online(&name, delay, reason.as_deref()).await?;
            out.emit(&done, || output::db_state_text(&done))?;
        }
        DbCommand::Config { name, set: None } => {
            let config = client.db_config(&name).await?;
            out.emit(&config, || output::pretty_json(&config))?;
        }
        DbCommand::Config {
            name,
            set: Some(file),
        } => {
            let settings = input::db_config(&file, io::stdin().lock())?;
            let config = client.db_config_set(&name, settings).await?;
            out.emit(&config, || output::pretty_json(&config))?;
            if config.indexes_stale && !out.is_json() {
                eprintln!("cairn: the indexes are stale: rebuild them with cairn db resync {name}");
            }
        }
        DbCommand::Resync { name, wait } => {
            let job = client.db_resync(&name).await?;
            crate::jobs::started(&client, out, job, wait).await?;
        }
        DbCommand::Drop { name } => {
            client.db_drop(&name).await?;
            out.emit(&Done { ok: true }, || format!("dropped database {name}"))?;
        }
        DbCommand::List => {
            let infos = client.db_list().await?;
            out.emit(&infos, || output::db_table(&infos))?;
        }
        DbCommand::Info { name } => {
            let info = client.db_info(&name).await?;
            out.emit(&info, || output::db_info_text(&info))?;
        }
    }
    Ok(())
}

async fn scan(target: &Target, out: &Output, options: ScanOptions) -> Result<()> {
    let args = ScanArgs {
        db: options.db,
        prefix: options.prefix,
        start: options.start,
        start_exclusive: options.start_exclusive,
        end: options.end,
        end_inclusive: options.end_inclusive,
        limit: options.limit,
        reverse: options.reverse,
        after: options.after,
    };
    let page = target.connect().await?.scan(&args).await?;
    out.emit(&ScanJson::new(&page), || {
        if page.docs.is_empty() {
            "no documents".to_string()
        } else {
            output::docs_table(&page.docs)
        }
    })?;
    if let (Some(last), true, false) = (page.docs.last(), page.more, out.is_json()) {
        eprintln!(
            "cairn: more documents follow: resume with --after {:?}",
            last.key
        );
    }
    Ok(())
}

async fn find(target: &Target, out: &Output, options: FindOptions) -> Result<()> {
    let after = match (options.after_value, options.after_key) {
        (Some(value), Some(key)) => Some(FindCursor {
            value: input::index_value(&value),
            key,
        }),
        _ => None,
    };
    let args = FindArgs {
        db: options.db,
        index: options.index,
        value: options.value.as_deref().map(input::index_value),
        start: options.start.as_deref().map(input::index_value),
        start_exclusive: options.start_exclusive,
        end: options.end.as_deref().map(input::index_value),
        end_inclusive: options.end_inclusive,
        limit: options.limit,
        reverse: options.reverse,
        after,
    };
    let page = target.connect().await?.find(&args).await?;
    out.emit(&FindJson::new(&page), || {
        if page.docs.is_empty() {
            "no documents".to_string()
        } else {
            output::found_table(&page.docs)
        }
    })?;
    if let (Some(last), true, false) = (page.docs.last(), page.more, out.is_json()) {
        eprintln!(
            "cairn: more documents follow: resume with --after-value '{}' --after-key {:?}",
            cairn_client::json::to_string(&last.index_value),
            last.key
        );
    }
    Ok(())
}

async fn changes(target: &Target, out: &Output, options: ChangesOptions) -> Result<()> {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let continuous = options.feed == FeedKind::Continuous;
    let args = ChangesArgs {
        db: options.db,
        since: options.since,
        limit: options.limit,
        feed: Some(options.feed),
        timeout_ms: options.timeout.filter(|_| !continuous).map(millis),
        heartbeat_ms: options.heartbeat.map(millis),
        epoch: options.epoch,
        // A continuous feed is followed through `changes_feed`, which asks for batches.
        batched: false,
    };
    let client = target.connect().await?;
    if continuous {
        return follow(&client, out, &args, options.timeout).await;
    }
    let page = client.changes(&args).await?;
    out.emit(&ChangesJson::new(&page), || {
        let mut text: String = page
            .changes
            .iter()
            .map(|change| output::change_line(change) + "\n")
            .collect();
        text.push_str(&format!("last_seq {}", page.last_seq));
        if let Some(reason) = &page.end_reason {
            text.push_str(&format!("\nended: {reason}"));
        }
        text
    })?;
    Ok(())
}

/// A continuous feed: prints each change (and, as JSON, each heartbeat) as it comes,
/// until the service ends the feed or `stop_after` passes.
async fn follow(
    client: &cairn_client::Client,
    out: &Output,
    args: &ChangesArgs,
    stop_after: Option<Duration>,
) -> Result<()> {
    let mut feed = client.changes_feed(args).await?;
    // A stop too far off for the clock to hold is no stop.
    let mut deadline = stop_after.and_then(|after| tokio::time::Instant::now().checked_add(after));
    loop {
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, feed.next()).await {
                Ok(next) => next,
                Err(_) => {
                    feed.cancel();
                    deadline = None;
                    continue;
                }
            },
            None => feed.next().await,
        };
        match next {
            Some(Ok(FeedItem::Change(change))) => {
                out.emit(&ChangeJson::item(&change), || output::change_line(&change))?
            }
            Some(Ok(FeedItem::Heartbeat { last_seq })) => {
                if out.is_json() {
                    out.json_line(&FeedMark::heartbeat(last_seq))?;
                }
            }
            Some(Err(error)) => return Err(error.into()),
            None => break,
        }
    }
    if let Some(end) = feed.end() {
        out.emit(&FeedMark::end(end), || {
            format!("end: {} (last_seq {})", end.reason, end.last_seq)
        })?;
    }
    Ok(())
}

async fn user(target: &Target, out: &Output, command: UserCommand) -> Result<()> {
    let done = Done { ok: true };
    match command {
        UserCommand::Add {
            name,
            admin,
            password_stdin,
        } => {
            let password = password_stdin
                .then(|| input::password(io::stdin().lock()))
                .transpose()?;
            let client = target.connect().await?;
            client.user_add(&name, password.as_deref(), admin).await?;
            out.emit(&done, || format!("added user {name}"))?;
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            if !password_stdin {
                return Err(UsageError::new(
                    "the new password is read from stdin: pass --password-stdin and give it on the first line",
                )
                .into());
            }
            let password = input::password(io::stdin().lock())?;
            target
                .connect()
                .await?
                .user_passwd(&name, &password)
                .await?;
            out.emit(&done, || format!("changed the password of {name}"))?;
        }
        UserCommand::Grant { name, db, access } => {
            let client = target.connect().await?;
            client.user_grant(&name, &db, access).await?;
            out.emit(&done, || format!("granted {access} on {db} to {name}"))?;
        }
        UserCommand::Revoke { name, db } => {
            target.connect().await?.user_revoke(&name, &db).await?;
            out.emit(&done, || format!("revoked the grant of {name} on {db}"))?;
        }
        UserCommand::List => {
            let users = target.connect().await?.user_list().await?;
            out.emit(&users, || output::user_table(&users))?;
        }
        UserCommand::Show { name } => {
            let users = target.connect().await?.user_list().await?;
            let user = users
                .into_iter()
                .find(|u| u.name == name)
                .ok_or_else(|| anyhow::anyhow!("no user {name:?}: see `cairn user list`"))?;
            out.emit(&user, || output::user_details(&user))?;
        }
        UserCommand::Del { name } => {
            target.connect().await?.user_delete(&name).await?;
            out.emit(&done, || format!("deleted user {name}"))?;
        }
    }
    Ok(())
}
