//! What `cairn` reads besides its arguments: a password (the first line of stdin), the
//! JSON value of `put` (an argument, or stdin for `-`) and the JSON-lines operations of
//! `batch`. All of it is read and checked before anything is sent; bad input is a
//! [`UsageError`] (exit status 2).

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::Context;
use cairn_client::methods::{BatchOp, DbConfigSettings, IndexDefArgs, RetentionArgs};
use cairn_client::values::Op;
use rmpv::Value;

use crate::args::UsageError;
use cairn_client::json;

/// The first line of `reader`, without its line ending.
pub fn password(mut reader: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(UsageError::new("no password on stdin: give it on the first line").into());
    }
    Ok(password.to_string())
}

/// The value of `put`: `text` as JSON, or all of `stdin` when `text` is `-`.
pub fn value(text: &str, mut stdin: impl Read) -> anyhow::Result<Value> {
    let mut all = String::new();
    let text = if text == "-" {
        stdin
            .read_to_string(&mut all)
            .context("reading the value from stdin")?;
        &all
    } else {
        text
    };
    json::parse(text).map_err(|e| {
        UsageError::new(format!(
            "the value is not JSON ({e}): a string needs quotes, e.g. '\"hello\"'"
        ))
        .into()
    })
}

/// A value of `find`: JSON, or a bare word taken as a string.
pub fn index_value(text: &str) -> Value {
    json::parse(text).unwrap_or_else(|_| Value::from(text))
}

/// The configuration of `db config --set FILE` (`-`: stdin): JSON with `retention` and
/// `indexes`; the facts `db config` shows (`name`, `offline`, `state`,
/// `indexes_stale`) may be left in and are ignored, anything else is refused.
pub fn db_config(file: &Path, mut stdin: impl Read) -> anyhow::Result<DbConfigSettings> {
    let text = if file == Path::new("-") {
        let mut all = String::new();
        stdin
            .read_to_string(&mut all)
            .context("reading the configuration from stdin")?;
        all
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    parse_db_config(&text).map_err(|e| {
        UsageError::new(format!(
            "{}: not a database configuration: {e}",
            file.display()
        ))
        .into()
    })
}

/// The settings part of a configuration shown by `db config`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    retention: RetentionArgs,
    #[serde(default)]
    indexes: Vec<IndexDefArgs>,
    #[serde(default, rename = "name")]
    _name: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "offline")]
    _offline: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "state")]
    _state: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "indexes_stale")]
    _indexes_stale: Option<serde::de::IgnoredAny>,
}

fn parse_db_config(text: &str) -> Result<DbConfigSettings, serde_json::Error> {
    let file: ConfigFile = serde_json::from_str(text)?;
    Ok(DbConfigSettings {
        retention: file.retention,
        indexes: file.indexes,
    })
}

/// The operations of `batch`: one JSON object per non-blank line.
pub fn batch(reader: impl BufRead) -> anyhow::Result<Vec<BatchOp>> {
    let mut ops = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.context("reading operations from stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let op = batch_op(&line)
            .map_err(|e| UsageError::new(format!("stdin line {}: {e}", index + 1)))?;
        ops.push(op);
    }
    if ops.is_empty() {
        return Err(UsageError::new(
            "no operations on stdin: give one JSON object per line, e.g. {\"op\":\"put\",\"key\":\"k\",\"value\":1}",
        )
        .into());
    }
    Ok(ops)
}

fn batch_op(line: &str) -> Result<BatchOp, String> {
    let Value::Map(entries) = json::parse(line).map_err(|e| format!("not JSON: {e}"))? else {
        return Err("an operation is a JSON object with \"op\" and \"key\"".to_string());
    };
    let (mut op, mut key, mut value, mut rev) = (None, None, None, None);
    for (field, field_value) in entries {
        match field.as_str() {
            Some("op") => match field_value.as_str().and_then(Op::parse) {
                Some(kind) => op = Some(kind),
                None => return Err(format!("\"op\" is \"put\" or \"del\", not {field_value}")),
            },
            Some("key") => match field_value.as_str() {
                Some(text) => key = Some(Value::from(text)),
                None => return Err(format!("\"key\" is a string, not {field_value}")),
            },
            Some("value") => value = Some(field_value),
            Some("rev") => match field_value.as_u64() {
                Some(n) => rev = Some(n),
                None => {
                    return Err(format!(
                        "\"rev\" is a non-negative integer, not {field_value}"
                    ))
                }
            },
            _ => {
                return Err(format!(
                    "unknown field {field}: an operation has \"op\", \"key\", \"value\" and \"rev\""
                ))
            }
        }
    }
    let op = op.ok_or("the operation has no \"op\" (\"put\" or \"del\")")?;
    let key = key.ok_or("the operation has no \"key\"")?;
    match (op, &value) {
        (Op::Put, None) => return Err("a put needs a \"value\"".to_string()),
        (Op::Del, Some(_)) => return Err("a del takes no \"value\"".to_string()),
        _ => {}
    }
    Ok(BatchOp {
        op,
        key,
        value,
        rev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_message(error: anyhow::Error) -> String {
        error
            .downcast::<UsageError>()
            .expect("a usage error")
            .to_string()
    }

    #[test]
    fn the_password_is_the_first_line() {
        assert_eq!(password(&b"s3cret\r\nmore\n"[..]).unwrap(), "s3cret");
        assert_eq!(password(&b" spaced \n"[..]).unwrap(), " spaced ");
        assert_eq!(password(&b"no newline"[..]).unwrap(), "no newline");
        assert!(usage_message(password(&b"\n"[..]).unwrap_err()).contains("no password"));
        assert!(password(&b""[..]).is_err());
    }

    #[test]
    fn values_come_from_the_argument_or_stdin() {
        assert_eq!(
            value("[1]", &b""[..]).unwrap(),
            Value::Array(vec![1.into()])
        );
        let from_stdin = value("-", &b" {\"a\": -1}\n"[..]).unwrap();
        assert_eq!(json::to_string(&from_stdin), "{\"a\":-1}");
        assert_eq!(value("-5", &b""[..]).unwrap(), Value::from(-5));
        let message = usage_message(value("hello", &b""[..]).unwrap_err());
        assert!(message.contains("needs quotes"), "{message}");
    }

    #[test]
    fn batch_lines_become_operations() {
        let text = concat!(
            "{\"op\":\"put\",\"key\":\"a\",\"value\":{\"n\":1},\"rev\":0}\n",
            "\n",
            "  {\"key\":\"b\",\"op\":\"del\"}  \n",
            "{\"op\":\"put\",\"key\":\"c\",\"value\":null}\n",
        );
        let ops = batch(text.as_bytes()).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(
            (ops[0].op.as_str(), &ops[0].key, ops[0].rev),
            ("put", &Value::from("a"), Some(0))
        );
        assert_eq!(json::to_string(ops[0].value.as_ref().unwrap()), "{\"n\":1}");
        assert_eq!((ops[1].op.as_str(), ops[1].value.is_none()), ("del", true));
        assert_eq!(ops[2].value, Some(Value::Nil), "a null value is a value");
    }

    #[test]
    fn bad_batch_lines_are_usage_errors_with_their_line() {
        for (text, expected) in [
            ("", "no operations"),
            ("\n  \n", "no operations"),
            (
                "{\"op\":\"put\",\"key\":\"a\",\"value\":1}\nnope\n",
                "line 2: not JSON",
            ),
            ("[1]", "line 1: an operation is a JSON object"),
            (
                "{\"op\":\"upsert\",\"key\":\"a\"}",
                "\"op\" is \"put\" or \"del\"",
            ),
            (
                "{\"op\":\"put\",\"key\":1,\"value\":1}",
                "\"key\" is a string",
            ),
            ("{\"op\":\"put\",\"key\":\"a\"}", "a put needs a \"value\""),
            (
                "{\"op\":\"del\",\"key\":\"a\",\"value\":1}",
                "a del takes no",
            ),
            (
                "{\"op\":\"del\",\"key\":\"a\",\"rev\":-1}",
                "non-negative integer",
            ),
            (
                "{\"op\":\"del\",\"key\":\"a\",\"why\":1}",
                "unknown field \"why\"",
            ),
            ("{\"key\":\"a\"}", "no \"op\""),
            ("{\"op\":\"del\"}", "no \"key\""),
        ] {
            let message = usage_message(batch(text.as_bytes()).unwrap_err());
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }
}
