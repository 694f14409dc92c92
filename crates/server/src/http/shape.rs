//! How a method's result (in JSON) is shaped for an HTTP answer: as it is, or in the
//! shape the seeds' clients expect (Sage's daemon objects and session answer, Sync
//! Gateway's database objects), with an `ETag` where the answer has a version.

use cairn_proto::{ErrorCode, WireError};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use super::request::Input;

/// An answer's body and its `ETag`, if it has one.
pub struct Reply {
    pub body: Json,
    pub etag: Option<String>,
}

impl From<Json> for Reply {
    fn from(body: Json) -> Reply {
        Reply { body, etag: None }
    }
}

/// Shapes a method's result (some shapes read the request too: `resync_progress`).
pub type Shape = fn(Json, &Input) -> Result<Reply, WireError>;

pub fn as_is(result: Json, _: &Input) -> Result<Reply, WireError> {
    Ok(result.into())
}

/// `{"ok": true}` for methods that answer nothing (as Sync Gateway does).
pub fn ok(_: Json, _: &Input) -> Result<Reply, WireError> {
    Ok(json!({"ok": true}).into())
}

/// `login`'s answer as the seeds': `sessionToken` and `expiresOn`.
pub fn session(result: Json, _: &Input) -> Result<Reply, WireError> {
    let session = json!({
        "sessionToken": result["token"],
        "expiresOn": result["expires_ms"],
        "user": result["user"],
    });
    Ok(session.into())
}

/// A job as a Sage daemon object (the protocol's own fields follow, unchanged).
pub fn daemon(job: Json, _: &Input) -> Result<Reply, WireError> {
    Ok(daemon_object(job).into())
}

pub fn daemons(jobs: Json, _: &Input) -> Result<Reply, WireError> {
    let list = match jobs {
        Json::Array(jobs) => jobs.into_iter().map(daemon_object).collect(),
        _ => Vec::new(),
    };
    Ok(Json::Array(list).into())
}

fn daemon_object(job: Json) -> Json {
    let mut daemon = json!({
        "id": job["id"],
        "type": job["type"],
        "status": job["status"],
        "progressMessage": job["progress"]["message"],
        "progressCurrent": job["progress"]["current"],
        "progressTotal": job["progress"]["total"],
        "errorMessage": job["error"]["message"],
        "errorDetails": job["error"]["details"],
        "backupUrl": job["location"],
        "totalTimeMS": job["total_time_ms"],
        "startedBy": job["started_by"],
        "startedOn": job["started_on_ms"],
        "finishedOn": job["finished_on_ms"],
    });
    if let (Some(daemon), Json::Object(job)) = (daemon.as_object_mut(), job) {
        daemon.insert(
            "params".into(),
            job.get("params").cloned().unwrap_or_default(),
        );
        daemon.insert(
            "stats".into(),
            job.get("stats").cloned().unwrap_or_default(),
        );
    }
    daemon
}

/// A database as Sync Gateway shows one: `db_name`, `update_seq`, `state`, counts.
pub fn db_info(info: Json, _: &Input) -> Result<Reply, WireError> {
    Ok(db_object(info).into())
}

/// A database's counters and state, as Sync Gateway names them.
fn db_object(info: Json) -> Json {
    json!({
        "db_name": info["name"],
        "update_seq": info["last_seq"],
        "state": info["state"],
        "doc_count": info["doc_count"],
        "oldest_seq": info["oldest_seq"],
        "doc_bytes": info["doc_bytes"],
        "log_bytes": info["log_bytes"],
        "created_ms": info["created_ms"],
        "retention": info["retention"],
    })
}

/// The names of the databases, or with `?verbose=true` each as `GET /{db}/` shows it
/// (as Sync Gateway's `_all_dbs?verbose=true`).
pub fn db_names(infos: Json, input: &Input) -> Result<Reply, WireError> {
    let verbose = input.query_bool("verbose")?;
    let list = match infos {
        Json::Array(infos) if verbose => infos.into_iter().map(db_object).collect(),
        Json::Array(infos) => infos.into_iter().map(|i| i["name"].clone()).collect(),
        _ => Vec::new(),
    };
    Ok(Json::Array(list).into())
}

/// A database's configuration, with an `ETag` over its settings.
pub fn config(config: Json, _: &Input) -> Result<Reply, WireError> {
    let etag = config_etag(&config);
    Ok(Reply {
        body: config,
        etag: Some(etag),
    })
}

/// The `ETag` of a configuration: a hash of its settings (retention and indexes), so
/// that a change of state alone does not change it.
pub fn config_etag(config: &Json) -> String {
    let settings = json!({"retention": config["retention"], "indexes": config["indexes"]});
    let digest = Sha256::digest(settings.to_string().as_bytes());
    format!("\"{}\"", hex::encode(&digest[..12]))
}

/// A document, with its rev as the `ETag`.
pub fn doc(doc: Json, _: &Input) -> Result<Reply, WireError> {
    let etag = doc["rev"].as_u64().map(rev_etag);
    Ok(Reply { body: doc, etag })
}

/// A write's new rev, also as the `ETag`.
pub fn rev(result: Json, _: &Input) -> Result<Reply, WireError> {
    let etag = result["rev"].as_u64().map(rev_etag);
    Ok(Reply { body: result, etag })
}

fn rev_etag(rev: u64) -> String {
    format!("\"{rev}\"")
}

/// `GET /{db}/_resync`: the newest resync job of the database, as a daemon.
pub fn resync_progress(jobs: Json, input: &Input) -> Result<Reply, WireError> {
    let db = input.param("db")?;
    let newest = match jobs {
        Json::Array(jobs) => jobs.into_iter().find(|job| job["params"]["db"] == db),
        _ => None,
    };
    newest.map(|job| daemon_object(job).into()).ok_or_else(|| {
        WireError::new(
            ErrorCode::NotFound,
            format!("database {db:?} has no resync job: POST /{db}/_resync starts one"),
        )
    })
}
