//! What the crash writer (`cairn-crash-writer`) and the crash test agree on: the
//! database it writes, the role of each of its threads, the keys and values each role
//! writes, and the acknowledgement line printed after every write that returned `Ok`.
//!
//! Every key tells who wrote it, so that the checker can classify each change-log entry:
//! - `hot-{i}` (`i < HOT_KEYS`): a small shared key set that the hot threads overwrite
//!   and delete, mostly under rev conditions; the value is a msgpack string naming the
//!   write;
//! - `r{run}-t{thread}-{n}`: written once by a unique-key thread; the value is `n`;
//! - `r{run}-t{thread}-b{n}-{j}`: op `j` of batch `n` of a batch thread, written once;
//!   the value is `n * BATCH_OPS + j`.
//!
//! An acknowledgement is one line, `ack put KEY REV HEX` or `ack del KEY REV`, where
//! `HEX` is the msgpack value in lowercase hex.

use anyhow::{bail, ensure, Context, Result};

/// The database the crash writer writes.
pub const DATABASE: &str = "crash";

/// Number of shared hot keys.
pub const HOT_KEYS: u64 = 8;

/// Operations in each batch of a batch thread.
pub const BATCH_OPS: u64 = 3;

/// What one writer thread does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Overwrites and deletes the hot keys, each write conditioned on the rev it read.
    Hot,
    /// Writes batches of `BATCH_OPS` new keys, all or nothing.
    Batch,
    /// Writes one new key at a time.
    Unique,
}

/// The role of thread `thread`: threads 0 and 1 are hot, thread 2 batches, the rest
/// write unique keys.
pub fn role(thread: u32) -> Role {
    match thread {
        0 | 1 => Role::Hot,
        2 => Role::Batch,
        _ => Role::Unique,
    }
}

/// Key of hot key number `i`.
pub fn hot_key(i: u64) -> String {
    format!("hot-{i}")
}

/// Key of the `n`th write of a unique-key thread.
pub fn unique_key(run: u32, thread: u32, n: u64) -> String {
    format!("r{run}-t{thread}-{n}")
}

/// Key of op `j` of batch `n` of a batch thread.
pub fn batch_key(run: u32, thread: u32, n: u64, j: u64) -> String {
    format!("r{run}-t{thread}-b{n}-{j}")
}

/// Name of the `n`th write of a hot thread: the hot value is this string in msgpack.
pub fn hot_write_name(run: u32, thread: u32, n: u64) -> String {
    format!("r{run}-t{thread}-{n}")
}

/// Who wrote a key, as read back from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Hot(u64),
    Unique {
        run: u32,
        thread: u32,
        n: u64,
    },
    Batch {
        run: u32,
        thread: u32,
        n: u64,
        j: u64,
    },
}

/// Classifies a key written by the crash writer; `None` for any other key.
pub fn parse_key(key: &str) -> Option<KeyKind> {
    if let Some(i) = key.strip_prefix("hot-") {
        let i = parse_decimal(i)?;
        return (i < HOT_KEYS).then_some(KeyKind::Hot(i));
    }
    let rest = key.strip_prefix('r')?;
    let mut parts = rest.split('-');
    let run = u32::try_from(parse_decimal(parts.next()?)?).ok()?;
    let thread = u32::try_from(parse_decimal(parts.next()?.strip_prefix('t')?)?).ok()?;
    let third = parts.next()?;
    let kind = match third.strip_prefix('b') {
        Some(n) => {
            let n = parse_decimal(n)?;
            let j = parse_decimal(parts.next()?)?;
            if j >= BATCH_OPS {
                return None;
            }
            KeyKind::Batch { run, thread, n, j }
        }
        None => KeyKind::Unique {
            run,
            thread,
            n: parse_decimal(third)?,
        },
    };
    if parts.next().is_some() || key != render_key(kind) {
        return None;
    }
    Some(kind)
}

/// The key of a `KeyKind`, the inverse of `parse_key`.
pub fn render_key(kind: KeyKind) -> String {
    match kind {
        KeyKind::Hot(i) => hot_key(i),
        KeyKind::Unique { run, thread, n } => unique_key(run, thread, n),
        KeyKind::Batch { run, thread, n, j } => batch_key(run, thread, n, j),
    }
}

/// A plain decimal number: digits only, no sign, no leading zero.
fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// msgpack uint 64 (`0xcf` then 8 big-endian bytes).
pub fn msgpack_u64(n: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(0xcf);
    out.extend_from_slice(&n.to_be_bytes());
    out
}

/// msgpack str: fixstr up to 31 bytes, str 8 up to 255.
pub fn msgpack_str(s: &str) -> Vec<u8> {
    let len = u8::try_from(s.len()).expect("crash-writer strings are short");
    let mut out = Vec::with_capacity(s.len() + 2);
    if len < 32 {
        out.push(0xa0 | len);
    } else {
        out.extend_from_slice(&[0xd9, len]);
    }
    out.extend_from_slice(s.as_bytes());
    out
}

/// The string inside a msgpack fixstr or str 8 value, if the value is exactly that.
pub fn msgpack_str_value(value: &[u8]) -> Option<&str> {
    let (len, body) = match *value.first()? {
        b @ 0xa0..=0xbf => (usize::from(b & 0x1f), &value[1..]),
        0xd9 => (usize::from(*value.get(1)?), &value[2..]),
        _ => return None,
    };
    (body.len() == len).then(|| std::str::from_utf8(body).ok())?
}

/// The value a unique-key or batch key must hold; `None` for a hot key, whose value
/// depends on which write last reached it.
pub fn expected_value(kind: KeyKind) -> Option<Vec<u8>> {
    match kind {
        KeyKind::Hot(_) => None,
        KeyKind::Unique { n, .. } => Some(msgpack_u64(n)),
        KeyKind::Batch { n, j, .. } => Some(msgpack_u64(n * BATCH_OPS + j)),
    }
}

/// One acknowledged write, as printed by the crash writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    Put {
        key: String,
        rev: u64,
        value: Vec<u8>,
    },
    Delete {
        key: String,
        rev: u64,
    },
}

impl Ack {
    pub fn key(&self) -> &str {
        match self {
            Ack::Put { key, .. } | Ack::Delete { key, .. } => key,
        }
    }

    pub fn rev(&self) -> u64 {
        match self {
            Ack::Put { rev, .. } | Ack::Delete { rev, .. } => *rev,
        }
    }

    /// The line printed for this acknowledgement, newline included.
    pub fn to_line(&self) -> String {
        match self {
            Ack::Put { key, rev, value } => format!("ack put {key} {rev} {}\n", hex(value)),
            Ack::Delete { key, rev } => format!("ack del {key} {rev}\n"),
        }
    }

    /// Parses one complete line (without its newline).
    pub fn parse(line: &str) -> Result<Ack> {
        let fields: Vec<&str> = line.split(' ').collect();
        let rev = |field: &str| -> Result<u64> {
            parse_decimal(field)
                .filter(|rev| *rev > 0)
                .with_context(|| format!("bad rev {field:?} in ack line {line:?}"))
        };
        let ack = match fields.as_slice() {
            ["ack", "put", key, rev_field, value] => Ack::Put {
                key: key.to_string(),
                rev: rev(rev_field)?,
                value: unhex(value).with_context(|| format!("bad value in {line:?}"))?,
            },
            ["ack", "del", key, rev_field] => Ack::Delete {
                key: key.to_string(),
                rev: rev(rev_field)?,
            },
            _ => bail!("not an ack line: {line:?}"),
        };
        ensure!(
            format!("{line}\n") == ack.to_line(),
            "ack line {line:?} is not in canonical form"
        );
        Ok(ack)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a lowercase hex string.
pub fn unhex(text: &str) -> Result<Vec<u8>> {
    ensure!(
        text.len() % 2 == 0 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "not lowercase hex: {text:?}"
    );
    (0..text.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&text[i..i + 2], 16)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for kind in [
            KeyKind::Hot(7),
            KeyKind::Unique {
                run: 3,
                thread: 4,
                n: 0,
            },
            KeyKind::Batch {
                run: 0,
                thread: 2,
                n: 12,
                j: 2,
            },
        ] {
            assert_eq!(parse_key(&render_key(kind)), Some(kind));
        }
        for bad in [
            "hot-8",
            "hot-01",
            "r1-t2",
            "r1-t2-",
            "r1-t2-3-4",
            "r1-t2-b3-3",
            "x",
            "r01-t1-1",
        ] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn acks_round_trip() {
        for ack in [
            Ack::Put {
                key: "hot-1".into(),
                rev: 42,
                value: msgpack_str("r0-t1-5"),
            },
            Ack::Delete {
                key: "hot-2".into(),
                rev: 7,
            },
        ] {
            let line = ack.to_line();
            assert_eq!(Ack::parse(line.trim_end_matches('\n')).unwrap(), ack);
        }
        for bad in [
            "ack put k 0 00",
            "ack put k 1 0",
            "ack put k 1 0G",
            "ack del k",
            "ack del k 1 x",
            "ack del k 01",
        ] {
            assert!(Ack::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn msgpack_helpers() {
        assert_eq!(msgpack_u64(1), [0xcf, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(msgpack_str_value(&msgpack_str("abc")), Some("abc"));
        let long = "x".repeat(40);
        assert_eq!(msgpack_str_value(&msgpack_str(&long)), Some(long.as_str()));
        assert_eq!(msgpack_str_value(&[0xa2, b'a']), None);
    }
}
