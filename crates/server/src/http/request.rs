//! What a route reads from a request: the path's parameters (percent-decoded), the
//! query's, the JSON body, the `If-Match` header and the session token the request
//! carried, with the checks that give a bad value a clear `bad_request`.

use std::collections::HashMap;

use axum::http::HeaderMap;
use cairn_proto::WireError;
use serde_json::Value as Json;

use super::bad;

/// A request as the routes' argument readers see it.
pub struct Input {
    pub params: HashMap<String, String>,
    pub query: HashMap<String, String>,
    pub body: Json,
    pub headers: HeaderMap,
    /// The session token the request carried (`sessionToken` or `Bearer`).
    pub token: Option<String>,
    /// Whether a document key may begin with `_` here (only under `/{db}/_doc/`).
    pub any_key: bool,
    /// The query parameters the route reads.
    pub declared: &'static [&'static str],
    /// The request had no body at all (as opposed to a JSON `null`).
    pub no_body: bool,
}

impl Input {
    pub fn param(&self, name: &str) -> Result<&str, WireError> {
        self.params
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| bad(format!("the path lacks {{{name}}}")))
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        debug_assert!(
            self.declared.contains(&name),
            "?{name} is read but not declared in the route table"
        );
        self.query.get(name).map(String::as_str)
    }

    /// Refuses query parameters the route does not read (a typo is not ignored).
    pub fn check_query(&self) -> Result<(), WireError> {
        match self
            .query
            .keys()
            .find(|k| !self.declared.contains(&k.as_str()))
        {
            None => Ok(()),
            Some(unknown) if self.declared.is_empty() => Err(bad(format!(
                "?{unknown} is no parameter of this route, which takes none"
            ))),
            Some(unknown) => Err(bad(format!(
                "?{unknown} is no parameter of this route; it takes {}",
                self.declared.join(", ")
            ))),
        }
    }

    pub fn query_u64(&self, name: &str) -> Result<Option<u64>, WireError> {
        self.query(name)
            .map(|text| {
                text.parse()
                    .map_err(|_| bad(format!("?{name}={text:?} is not a whole number")))
            })
            .transpose()
    }

    pub fn query_bool(&self, name: &str) -> Result<bool, WireError> {
        match self.query(name) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(other) => Err(bad(format!("?{name}={other:?} is not true or false"))),
        }
    }

    /// The document key of the path. Keys that begin with `_` are the database's own
    /// routes at `/{db}/_…`: such a document is reached through `/{db}/_doc/{key}`.
    pub fn key(&self) -> Result<&str, WireError> {
        let key = self.param("key")?;
        if key.starts_with('_') && !self.any_key {
            let db = self.param("db")?;
            return Err(bad(format!(
                "/{db}/{key} is no route; a document whose key begins with _ is at /{db}/_doc/{key}"
            )));
        }
        Ok(key)
    }

    /// The rev a write is conditional on: `?rev=` or `If-Match` (an ETag, quoted or not).
    pub fn rev(&self) -> Result<Option<u64>, WireError> {
        if let Some(rev) = self.query_u64("rev")? {
            return Ok(Some(rev));
        }
        let Some(value) = self.headers.get(axum::http::header::IF_MATCH) else {
            return Ok(None);
        };
        let text = value.to_str().unwrap_or_default().trim();
        let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
        text.parse()
            .map(Some)
            .map_err(|_| bad(format!("If-Match {text:?} is not a document's rev")))
    }
}

/// A query value given as a JSON string (`"a"`, as CouchDB's keys are) or bare (`a`).
pub fn unquote(text: &str) -> String {
    match serde_json::from_str::<Json>(text) {
        Ok(Json::String(s)) => s,
        _ => text.to_string(),
    }
}

/// A query value that may be any JSON scalar (`5`, `true`, `"5"`); bare text is a string.
pub fn query_value(text: &str) -> Json {
    match serde_json::from_str::<Json>(text) {
        Ok(value @ (Json::String(_) | Json::Number(_) | Json::Bool(_))) => value,
        _ => Json::String(text.to_string()),
    }
}
