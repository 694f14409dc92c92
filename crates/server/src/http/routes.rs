//! The HTTP routes: the one table of what the HTTPS JSON API serves. Each row gives a
//! verb, a path (axum's syntax), the method of the native protocol it calls, how the
//! method's arguments are read from the request (path, query, body, headers), how the
//! result is shaped for the answer, and the answer's status. The router, the OpenAPI
//! document and the metrics' route labels are all made from this table, and a test
//! checks that every method of the protocol has a route.
//!
//! Paths: the service's routes are `/v1/admin/…` and `/v1/auth/…` (three segments or
//! more, the second never beginning with `_`), single segments without a trailing
//! slash (`/_up`, `/metrics`, `/openapi.json`, `/ui`) and paths whose first segment
//! begins with `_` (`/_ui/`, the console: no database's name does); a database's routes are `/{db}/` (with
//! its trailing slash), `/{db}/{key}` (two segments) and `/{db}/_…`. So no database
//! can shadow a service route, and the reverse: `/metrics/` is the database `metrics`,
//! `/v1/` the database `v1`, `/v1/admin` its document `admin`, `/v1/admin/status` the
//! service's status. Document keys that begin with `_` (or hold a `/`, percent-encoded as `%2F`)
//! are reached through `/{db}/_doc/{key}`.

use cairn_proto::{ErrorCode, Method, WireError};
use serde_json::{json, Map, Value as Json};

use super::console;
use super::request::Input;
use super::shape;

/// An HTTP verb of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Put,
    Post,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Put => "PUT",
            Verb::Post => "POST",
            Verb::Delete => "DELETE",
        }
    }
}

/// Reads a method's arguments (as a JSON object) from a request.
pub type ArgsFn = fn(&Input) -> Result<Json, WireError>;

/// What a route does.
#[derive(Clone, Copy)]
pub enum Action {
    /// Calls a method of the protocol.
    Call {
        method: Method,
        args: ArgsFn,
        shape: shape::Shape,
    },
    /// `/_up`: 200 while the service serves, 503 while it is DOWN.
    Up,
    /// `/openapi.json`: this table as an OpenAPI document.
    OpenApi,
    /// `/metrics`: the metrics, for admins and the users of `[metrics] users`.
    Metrics,
    /// `/_ui/…`: a file of the operator's console (no authentication: the page asks
    /// the API as the user who logs in).
    Console(console::Asset),
    /// `/ui`: to the console.
    ConsoleRedirect,
}

/// One row of the table.
#[derive(Clone, Copy)]
pub struct Route {
    pub verb: Verb,
    pub path: &'static str,
    pub action: Action,
    /// The status of a success.
    pub ok: u16,
    /// Statuses this route answers for some error codes instead of the table's (the
    /// seeds' own: 412 for a database that exists, 503 for a resync while online).
    pub statuses: &'static [(ErrorCode, u16)],
    /// A precondition checked before the call.
    pub precondition: Option<Precondition>,
    /// The query parameters the route reads; any other is refused.
    pub query: &'static [&'static str],
    pub summary: &'static str,
}

/// A check made before a route's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// `If-Match` must name the database configuration's current `ETag`.
    ConfigEtag,
}

const fn call(
    verb: Verb,
    path: &'static str,
    method: Method,
    args: ArgsFn,
    shape: shape::Shape,
    summary: &'static str,
) -> Route {
    Route {
        verb,
        path,
        action: Action::Call {
            method,
            args,
            shape,
        },
        ok: 200,
        statuses: &[],
        precondition: None,
        query: &[],
        summary,
    }
}

const fn special(verb: Verb, path: &'static str, action: Action, summary: &'static str) -> Route {
    Route {
        verb,
        path,
        action,
        ok: 200,
        statuses: &[],
        precondition: None,
        query: &[],
        summary,
    }
}

const fn created(mut route: Route) -> Route {
    route.ok = 201;
    route
}

const fn answering(mut route: Route, ok: u16) -> Route {
    route.ok = ok;
    route
}

const fn with_query(mut route: Route, query: &'static [&'static str]) -> Route {
    route.query = query;
    route
}

const fn statuses(mut route: Route, statuses: &'static [(ErrorCode, u16)]) -> Route {
    route.statuses = statuses;
    route
}

/// The query parameters of `_all_docs`.
const SCAN_QUERY: &[&str] = &[
    "startkey",
    "endkey",
    "prefix",
    "after",
    "limit",
    "descending",
    "inclusive_end",
];
/// The query parameters of `_find`.
const FIND_QUERY: &[&str] = &[
    "key",
    "startkey",
    "endkey",
    "limit",
    "descending",
    "inclusive_end",
];
/// The query parameters of `_changes`.
const CHANGES_QUERY: &[&str] = &["feed", "since", "limit", "epoch", "heartbeat", "timeout"];
/// The query parameters of the mirror's journal stream.
const JOURNAL_QUERY: &[&str] = &["seq", "crc", "epoch", "heartbeat"];

use Verb::{Delete, Get, Post, Put};

/// Every route.
#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    special(Get, "/_up", Action::Up, "200 while the service serves, 503 while it is DOWN (for load balancers)"),
    special(Get, "/openapi.json", Action::OpenApi, "This API as an OpenAPI document"),
    special(Get, "/metrics", Action::Metrics, "Metrics in the Prometheus text format (admins, and [metrics] users)"),
    answering(special(Get, "/ui", Action::ConsoleRedirect, "To the operator's console (/_ui/)"), 302),
    special(Get, "/_ui/", Action::Console(console::Asset::Page), "The operator's console: a page that logs in and uses this API"),
    special(Get, "/_ui/console.js", Action::Console(console::Asset::Script), "The console's script"),
    special(Get, "/_ui/console.css", Action::Console(console::Asset::Style), "The console's style"),
    special(Get, "/_ui/favicon.svg", Action::Console(console::Asset::Icon), "The console's icon"),
    // Sessions.
    created(call(Post, "/v1/auth/session", Method::Login, login_args, shape::session, "Logs in: {\"username\" or \"email\", \"password\"}")),
    call(Delete, "/v1/auth/session", Method::Logout, logout_args, shape::as_is, "Logs out the session of the request's token"),
    call(Get, "/v1/auth/session", Method::WhoAmI, no_args, shape::as_is, "Who the request is"),
    call(Post, "/v1/auth/token", Method::Auth, body_args, shape::as_is, "Checks a session token: {\"token\"}"),
    // The service.
    call(Get, "/v1/admin/status", Method::Status, no_args, shape::as_is, "The service's status and messages"),
    call(Put, "/v1/admin/status", Method::StatusSet, body_args, shape::as_is, "Sets the status and both messages"),
    call(Get, "/v1/admin/usage", Method::Usage, no_args, shape::as_is, "How much room the data takes"),
    call(Post, "/v1/admin/config/reload", Method::ConfigReload, no_args, shape::as_is, "Reads the settings file again"),
    // Jobs, as the seeds' daemons.
    created(call(Post, "/v1/admin/daemon/backup", Method::BackupStart, body_args, shape::daemon, "Starts a backup job: {\"name\"} optional")),
    created(call(Post, "/v1/admin/daemon/restore", Method::RestoreStart, restore_args, shape::daemon, "Starts a restore job: {\"url\": NAME}")),
    with_query(call(Get, "/v1/admin/daemon", Method::JobsList, jobs_args, shape::daemons, "The jobs, newest first"), &["type", "status"]),
    call(Get, "/v1/admin/daemon/{id}", Method::JobsShow, job_args, shape::daemon, "One job"),
    call(Delete, "/v1/admin/daemon/{id}", Method::JobsCancel, job_args, shape::daemon, "Asks a running job to stop"),
    call(Get, "/v1/admin/backups", Method::BackupList, no_args, shape::as_is, "The complete backups"),
    call(Delete, "/v1/admin/backups/{name}", Method::BackupDelete, name_args, shape::as_is, "Deletes a backup"),
    // Users and grants.
    call(Get, "/v1/admin/users", Method::UserList, no_args, shape::as_is, "Every user"),
    created(call(Post, "/v1/admin/users", Method::UserAdd, body_args, shape::as_is, "Adds a user: {\"name\", \"password\", \"admin\"}")),
    call(Delete, "/v1/admin/users/{name}", Method::UserDelete, name_args, shape::as_is, "Deletes a user"),
    call(Put, "/v1/admin/users/{name}/password", Method::UserPasswd, passwd_args, shape::as_is, "Sets a user's password: {\"password\"}"),
    call(Put, "/v1/admin/users/{name}/grants/{db}", Method::UserGrant, grant_args, shape::as_is, "Grants access to a database: {\"access\": \"read\" or \"write\"}"),
    call(Delete, "/v1/admin/users/{name}/grants/{db}", Method::UserRevoke, grant_args, shape::as_is, "Revokes a grant"),
    // Sync (the destination of cairn-sync).
    call(Get, "/v1/admin/sync", Method::SyncStatus, no_args, shape::as_is, "Migration mode and each database's sync"),
    call(Post, "/v1/admin/sync/attach", Method::SyncAttach, body_args, shape::as_is, "Enters migration mode"),
    call(Post, "/v1/admin/sync/create", Method::SyncCreate, body_args, shape::as_is, "Creates a database the source created"),
    call(Post, "/v1/admin/sync/apply", Method::SyncApply, body_args, shape::as_is, "Applies changes of the source's log"),
    call(Post, "/v1/admin/sync/report", Method::SyncReport, body_args, shape::as_is, "Where the follower stands on a database"),
    call(Post, "/v1/admin/sync/detach", Method::SyncDetach, body_args, shape::as_is, "Leaves migration mode"),
    // Mirrors (the leader's side), streamed as newline-delimited JSON.
    call(Get, "/v1/admin/mirror/bootstrap", Method::MirrorBootstrap, no_args, shape::as_is, "A compacted copy of the environment: lines of {\"data\": base64}, then its bytes and SHA-256"),
    call(Post, "/v1/admin/mirror/forward", Method::MirrorForward, body_args, shape::as_is, "Runs a call a mirror was sent, as its caller: {\"method\", \"args\", \"user\"?, \"via\"?, \"token_hash\"?, \"peer\"?}"),
    call(Post, "/v1/admin/mirror/promote", Method::MirrorPromote, body_args, shape::as_is, "Makes this mirror the leader: {\"force\"?, \"advertise\"?}"),
    call(Post, "/v1/admin/mirror/handoff", Method::MirrorHandoff, body_args, shape::as_is, "A step of a mirror's graceful promotion: {\"mode\": \"begin\", \"complete\" or \"cancel\", …}"),
    with_query(call(Get, "/v1/admin/mirror/journal", Method::MirrorFollow, journal_args, shape::as_is, "The journal's entries after ?seq (with ?crc and ?epoch of its entry), as they commit"), JOURNAL_QUERY),
    // Databases, as Sync Gateway's.
    with_query(call(Get, "/_all_dbs", Method::DbList, no_args, shape::db_names, "The names of the databases the caller may read (?verbose=true: each database's counters and state)"), &["verbose"]),
    statuses(created(call(Put, "/{db}/", Method::DbCreate, db_body_args, shape::db_info, "Creates a database: {\"offline\": true} creates it offline")), &[(ErrorCode::DatabaseExists, 412)]),
    call(Get, "/{db}/", Method::DbInfo, db_name_args, shape::db_info, "A database's counters and state"),
    call(Delete, "/{db}/", Method::DbDrop, db_name_args, shape::ok, "Drops a database"),
    call(Post, "/{db}/_offline", Method::DbOffline, db_body_args, shape::as_is, "Takes a database offline"),
    call(Post, "/{db}/_online", Method::DbOnline, db_online_args, shape::as_is, "Brings a database online: {\"delay\": SECONDS} optional"),
    call(Get, "/{db}/_config", Method::DbConfig, db_name_args, shape::config, "A database's configuration (ETag)"),
    Route { precondition: Some(Precondition::ConfigEtag), ..statuses(call(Put, "/{db}/_config", Method::DbConfigSet, db_config_args, shape::config, "Replaces an offline database's configuration (If-Match)"), &[(ErrorCode::RevConflict, 412)]) },
    call(Get, "/{db}/_resync", Method::JobsList, resync_jobs_args, shape::resync_progress, "The database's newest resync job, as a daemon"),
    statuses(created(call(Post, "/{db}/_resync", Method::DbResync, db_name_args, shape::daemon, "Starts a resync job (503 while online)")), &[(ErrorCode::Conflict, 503)]),
    // Documents.
    with_query(call(Get, "/{db}/_all_docs", Method::Scan, scan_args, shape::as_is, "A page of documents in key order"), SCAN_QUERY),
    created(call(Post, "/{db}/_bulk_docs", Method::Batch, bulk_args, shape::as_is, "Writes and deletes documents, all or nothing: {\"ops\": [...]}")),
    with_query(call(Get, "/{db}/_find/{index}", Method::Find, find_args, shape::as_is, "Documents through an index: ?key=, or ?startkey= and ?endkey="), FIND_QUERY),
    with_query(call(Get, "/{db}/_changes", Method::Changes, changes_args, shape::as_is, "Changes: ?feed=normal, longpoll, continuous or eventsource"), CHANGES_QUERY),
    call(Get, "/{db}/_doc/{key}", Method::Get, doc_args, shape::doc, "Reads a document, whatever its key (ETag: its rev)"),
    with_query(created(call(Put, "/{db}/_doc/{key}", Method::Put, put_args, shape::rev, "Writes a document, whatever its key (?rev= or If-Match)")), &["rev"]),
    with_query(call(Delete, "/{db}/_doc/{key}", Method::Delete, delete_args, shape::rev, "Deletes a document, whatever its key (?rev= or If-Match)"), &["rev"]),
    call(Get, "/{db}/{key}", Method::Get, doc_args, shape::doc, "Reads a document (ETag: its rev)"),
    with_query(created(call(Put, "/{db}/{key}", Method::Put, put_args, shape::rev, "Writes a document (?rev= or If-Match)")), &["rev"]),
    with_query(call(Delete, "/{db}/{key}", Method::Delete, delete_args, shape::rev, "Deletes a document (?rev= or If-Match)"), &["rev"]),
];

fn no_args(_: &Input) -> Result<Json, WireError> {
    Ok(json!({}))
}

fn body_args(input: &Input) -> Result<Json, WireError> {
    match &input.body {
        Json::Null => Ok(json!({})),
        body @ Json::Object(_) => Ok(body.clone()),
        _ => Err(super::bad("the body must be a JSON object")),
    }
}

/// The body's fields with those given.
fn body_with(input: &Input, fields: &[(&str, Json)]) -> Result<Json, WireError> {
    let mut args = match body_args(input)? {
        Json::Object(map) => map,
        _ => Map::new(),
    };
    for (name, value) in fields {
        args.insert((*name).to_string(), value.clone());
    }
    Ok(Json::Object(args))
}

fn login_args(input: &Input) -> Result<Json, WireError> {
    let field = |name: &str| input.body.get(name).and_then(Json::as_str);
    let user = field("username")
        .or_else(|| field("email"))
        .or_else(|| field("user"))
        .ok_or_else(|| super::bad("give \"username\" (or \"email\") and \"password\""))?;
    Ok(json!({"user": user, "password": field("password").unwrap_or_default()}))
}

fn logout_args(input: &Input) -> Result<Json, WireError> {
    Ok(json!({"token": input.token}))
}

fn restore_args(input: &Input) -> Result<Json, WireError> {
    let name = input
        .body
        .get("url")
        .or_else(|| input.body.get("name"))
        .and_then(Json::as_str)
        .ok_or_else(|| super::bad("give the backup to restore: {\"url\": NAME}"))?;
    Ok(json!({"name": name}))
}

fn jobs_args(input: &Input) -> Result<Json, WireError> {
    let mut args = Map::new();
    for name in ["type", "status"] {
        if let Some(value) = input.query(name) {
            args.insert(name.into(), json!(value));
        }
    }
    Ok(Json::Object(args))
}

fn resync_jobs_args(_: &Input) -> Result<Json, WireError> {
    Ok(json!({"type": "RESYNC"}))
}

fn job_args(input: &Input) -> Result<Json, WireError> {
    let id = input.param("id")?;
    let id: u64 = id
        .parse()
        .map_err(|_| super::bad(format!("job id {id:?} is not a number")))?;
    Ok(json!({"id": id}))
}

fn name_args(input: &Input) -> Result<Json, WireError> {
    Ok(json!({"name": input.param("name")?}))
}

fn passwd_args(input: &Input) -> Result<Json, WireError> {
    body_with(input, &[("name", json!(input.param("name")?))])
}

fn grant_args(input: &Input) -> Result<Json, WireError> {
    body_with(
        input,
        &[
            ("name", json!(input.param("name")?)),
            ("db", json!(input.param("db")?)),
        ],
    )
}

fn db_name_args(input: &Input) -> Result<Json, WireError> {
    Ok(json!({"name": input.param("db")?}))
}

/// The body's fields with the database of the path as `name`.
fn db_body_args(input: &Input) -> Result<Json, WireError> {
    body_with(input, &[("name", json!(input.param("db")?))])
}

fn db_online_args(input: &Input) -> Result<Json, WireError> {
    let mut args = db_body_args(input)?;
    if let Some(delay) = args.as_object_mut().and_then(|a| a.remove("delay")) {
        args["delay_secs"] = delay;
    }
    Ok(args)
}

fn db_config_args(input: &Input) -> Result<Json, WireError> {
    let mut settings = body_args(input)?;
    if let Some(map) = settings.as_object_mut() {
        // The facts GET shows are not settings: a config read and sent back is accepted.
        for fact in ["name", "offline", "state", "indexes_stale"] {
            map.remove(fact);
        }
    }
    Ok(json!({"name": input.param("db")?, "config": settings}))
}

fn doc_args(input: &Input) -> Result<Json, WireError> {
    Ok(json!({"db": input.param("db")?, "key": input.key()?}))
}

fn put_args(input: &Input) -> Result<Json, WireError> {
    if input.no_body {
        return Err(super::bad(
            "give the document's value as the JSON body (null is a value; nothing is not)",
        ));
    }
    Ok(json!({
        "db": input.param("db")?,
        "key": input.key()?,
        "value": input.body,
        "rev": input.rev()?,
    }))
}

fn delete_args(input: &Input) -> Result<Json, WireError> {
    Ok(json!({"db": input.param("db")?, "key": input.key()?, "rev": input.rev()?}))
}

fn bulk_args(input: &Input) -> Result<Json, WireError> {
    body_with(input, &[("db", json!(input.param("db")?))])
}

fn scan_args(input: &Input) -> Result<Json, WireError> {
    let mut args = Map::new();
    args.insert("db".into(), json!(input.param("db")?));
    for (query, field) in [
        ("startkey", "start"),
        ("endkey", "end"),
        ("prefix", "prefix"),
        ("after", "after"),
    ] {
        if let Some(value) = input.query(query) {
            args.insert(field.into(), json!(super::request::unquote(value)));
        }
    }
    scan_flags(input, &mut args)?;
    Ok(Json::Object(args))
}

/// `limit`, `descending` and `inclusive_end`, common to `_all_docs` and `_find`.
fn scan_flags(input: &Input, args: &mut Map<String, Json>) -> Result<(), WireError> {
    if let Some(limit) = input.query_u64("limit")? {
        args.insert("limit".into(), json!(limit));
    }
    args.insert("reverse".into(), json!(input.query_bool("descending")?));
    args.insert(
        "end_inclusive".into(),
        json!(input.query_bool("inclusive_end")?),
    );
    Ok(())
}

fn find_args(input: &Input) -> Result<Json, WireError> {
    let mut args = Map::new();
    args.insert("db".into(), json!(input.param("db")?));
    args.insert("index".into(), json!(input.param("index")?));
    for (query, field) in [("key", "value"), ("startkey", "start"), ("endkey", "end")] {
        if let Some(value) = input.query(query) {
            args.insert(field.into(), super::request::query_value(value));
        }
    }
    scan_flags(input, &mut args)?;
    Ok(Json::Object(args))
}

fn journal_args(input: &Input) -> Result<Json, WireError> {
    let mut args = Map::new();
    args.insert("seq".into(), json!(input.query_u64("seq")?.unwrap_or(0)));
    for (query, field) in [
        ("crc", "crc"),
        ("epoch", "epoch"),
        ("heartbeat", "heartbeat_ms"),
    ] {
        if let Some(value) = input.query_u64(query)? {
            args.insert(field.into(), json!(value));
        }
    }
    Ok(Json::Object(args))
}

fn changes_args(input: &Input) -> Result<Json, WireError> {
    let mut args = Map::new();
    args.insert("db".into(), json!(input.param("db")?));
    // eventsource is a continuous feed written as server-sent events.
    let feed = match input.query("feed").unwrap_or("normal") {
        "eventsource" => "continuous",
        other => other,
    };
    args.insert("feed".into(), json!(feed));
    // heartbeat and timeout are in milliseconds, as Sync Gateway's.
    for (query, field) in [
        ("since", "since"),
        ("limit", "limit"),
        ("epoch", "epoch"),
        ("heartbeat", "heartbeat_ms"),
        ("timeout", "timeout_ms"),
    ] {
        if let Some(value) = input.query_u64(query)? {
            args.insert(field.into(), json!(value));
        }
    }
    Ok(Json::Object(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_has_a_route() {
        for method in Method::ALL {
            assert!(
                ROUTES
                    .iter()
                    .any(|r| matches!(r.action, Action::Call { method: m, .. } if m == *method)),
                "no HTTP route calls {method}"
            );
        }
    }

    #[test]
    fn protocol_md_lists_every_route_with_its_method_and_status() {
        let doc = include_str!("../../../proto/PROTOCOL.md");
        for route in ROUTES {
            let method = match route.action {
                Action::Call { method, .. } => format!("`{method}`"),
                Action::Up
                | Action::OpenApi
                | Action::Metrics
                | Action::Console(_)
                | Action::ConsoleRedirect => "—".to_string(),
            };
            let start = format!("| `{} {}` | {method}", route.verb.as_str(), route.path);
            let row = doc
                .lines()
                .find(|line| line.starts_with(&start))
                .unwrap_or_else(|| panic!("PROTOCOL.md lacks the route row {start}"));
            assert!(
                row.ends_with(&format!("| {} |", route.ok)),
                "{row}: status {}",
                route.ok
            );
        }
        let rows = doc
            .lines()
            .filter(|l| {
                l.starts_with("| `GET /")
                    || l.starts_with("| `PUT /")
                    || l.starts_with("| `POST /")
                    || l.starts_with("| `DELETE /")
            })
            .count();
        assert_eq!(
            rows,
            ROUTES.len(),
            "PROTOCOL.md lists routes the table lacks"
        );
    }

    #[test]
    fn service_routes_and_database_routes_never_overlap() {
        for route in ROUTES {
            let segments: Vec<&str> = route.path.trim_start_matches('/').split('/').collect();
            let database = segments[0] == "{db}";
            if database {
                let shape_ok = match segments.as_slice() {
                    [_, ""] | [_, "{key}"] => true,
                    [_, rest @ ..] => rest[0].starts_with('_'),
                    _ => false,
                };
                assert!(shape_ok, "{} breaks the database routes' shape", route.path);
            } else if segments[0] == "v1" {
                assert!(
                    segments.len() >= 3 && !segments[1].starts_with('_'),
                    "{} could be a database's route",
                    route.path
                );
            } else if segments[0].starts_with('_') && segments.len() > 1 {
                // No database's name begins with `_`: `/_ui/…` is the service's.
            } else {
                assert!(
                    segments.len() == 1 && !segments[0].is_empty(),
                    "{} could be a database's route",
                    route.path
                );
            }
        }
    }
}
