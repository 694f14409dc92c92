//! Index definitions: the rules a database's `IndexDef`s follow (at most
//! `MAX_INDEXES`, names by the database naming rule and unique, fields valid JSON
//! pointers) and the definitions compiled for use (`Compiled`: the pointer parsed into
//! its reference tokens).

use std::collections::HashSet;

use crate::error::{Result, StoreError};
use crate::format::IndexDef;
use crate::validate::validate_database_name;

/// Most indexes one database may declare.
pub const MAX_INDEXES: usize = 16;

/// Longest `field` (JSON pointer) of an index definition, in bytes.
pub const MAX_INDEX_FIELD_BYTES: usize = 1024;

/// Checks index definitions: at most 16, names by the database naming rule and unique,
/// fields valid JSON pointers. `InvalidArgument` with the first problem.
pub fn validate_index_defs(defs: &[IndexDef]) -> Result<()> {
    let invalid = |reason: String| Err(StoreError::InvalidArgument { reason });
    if defs.len() > MAX_INDEXES {
        return invalid(format!(
            "a database has at most {MAX_INDEXES} indexes, not {}",
            defs.len()
        ));
    }
    let mut names = HashSet::new();
    for def in defs {
        if let Err(StoreError::InvalidName { reason, .. }) = validate_database_name(&def.name) {
            return invalid(format!("invalid index name {:?}: {reason}", def.name));
        }
        if !names.insert(def.name.as_str()) {
            return invalid(format!("two indexes are named {:?}", def.name));
        }
        if def.field.len() > MAX_INDEX_FIELD_BYTES {
            return invalid(format!(
                "the field of index {:?} is longer than {MAX_INDEX_FIELD_BYTES} bytes",
                def.name
            ));
        }
        if let Err(reason) = parse_pointer(&def.field) {
            return invalid(format!(
                "the field {:?} of index {:?} {reason}",
                def.field, def.name
            ));
        }
    }
    Ok(())
}

/// The reference tokens of a JSON pointer: "" is the whole value; otherwise it starts
/// with `/` and `~0`, `~1` stand for `~` and `/`.
pub(super) fn parse_pointer(field: &str) -> std::result::Result<Vec<String>, String> {
    if field.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = field.strip_prefix('/') else {
        return Err("must be empty or start with '/' (a JSON pointer)".to_string());
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => return Err("has a '~' not followed by 0 or 1".to_string()),
                }
            }
            Ok(out)
        })
        .collect()
}

/// The byte that stands for the index at `position` in an `indexes` key. A database
/// declares at most `MAX_INDEXES` indexes, so only a damaged configuration record can
/// make this fail (`Corrupt`).
pub(crate) fn position_byte(position: usize) -> Result<u8> {
    u8::try_from(position).map_err(|_| StoreError::Corrupt {
        table: crate::format::table::CONFIGS,
        reason: format!("index position {position} does not fit the byte of an index key"),
    })
}

/// The indexes of one database, ready to apply to documents.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub name: String,
    pub pointer: Vec<String>,
    pub unique: bool,
}

/// Compiles stored definitions; a definition that no longer parses is `Corrupt`.
pub(crate) fn compile(defs: &[IndexDef]) -> Result<Vec<Compiled>> {
    defs.iter()
        .map(|def| {
            Ok(Compiled {
                name: def.name.clone(),
                pointer: parse_pointer(&def.field).map_err(|reason| StoreError::Corrupt {
                    table: crate::format::table::CONFIGS,
                    reason: format!("index {:?}: field {reason}", def.name),
                })?,
                unique: def.unique,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(field: &str) -> Vec<String> {
        parse_pointer(field).unwrap()
    }

    #[test]
    fn pointers_parse_per_rfc_6901() {
        assert_eq!(pointer(""), Vec::<String>::new());
        assert_eq!(pointer("/"), vec![""]);
        assert_eq!(pointer("/a/b"), vec!["a", "b"]);
        assert_eq!(pointer("/a~1b/m~0n"), vec!["a/b", "m~n"]);
        assert_eq!(pointer("/~01"), vec!["~1"]);
        assert!(parse_pointer("a").is_err());
        assert!(parse_pointer("/a~").is_err());
        assert!(parse_pointer("/a~2").is_err());
    }

    #[test]
    fn definitions_are_checked() {
        let def = |name: &str, field: &str| IndexDef {
            name: name.to_string(),
            field: field.to_string(),
            unique: false,
        };
        assert!(validate_index_defs(&[def("by_a", "/a"), def("whole", "")]).is_ok());
        for (defs, needle) in [
            (vec![def("Bad", "/a")], "invalid index name"),
            (vec![def("a", "/a"), def("a", "/b")], "two indexes"),
            (vec![def("a", "a")], "JSON pointer"),
            (vec![def("a", "/~")], "'~'"),
            (
                (0..17).map(|i| def(&format!("i{i}"), "/a")).collect(),
                "at most 16",
            ),
        ] {
            let err = validate_index_defs(&defs).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidArgument { .. })
                    && err.to_string().contains(needle),
                "{err}"
            );
        }
    }
}
