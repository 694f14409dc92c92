//! Where backups are in object storage: `Location`, `s3://BUCKET/PREFIX`, the place a
//! service keeps its backups; `BackupUrl`, `s3://BUCKET/PREFIX/NAME`, one backup in such
//! a place (as `cairn-backup` names it); and the rule for a backup's name, which is never
//! a path.

use std::fmt;
use std::str::FromStr;

use crate::manifest::ARCHIVE_SUFFIX;

/// `s3://BUCKET/PREFIX`: where a service keeps its backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    /// `a/b`, without slashes at either end; empty for the bucket's top.
    pub prefix: String,
}

impl FromStr for Location {
    type Err = String;

    fn from_str(url: &str) -> Result<Location, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?}: use s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(format!(
                "{url:?}: the bucket name {bucket:?} is not one S3 accepts (3-63 of a-z 0-9 . -)"
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        let prefix_ok = prefix.is_empty()
            || prefix.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            });
        if !prefix_ok {
            return Err(format!(
                "{url:?}: the prefix {prefix:?} must be names of A-Z a-z 0-9 . _ - separated by /"
            ));
        }
        Ok(Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// `s3://BUCKET/PREFIX/NAME`: the backup `NAME` in the location `s3://BUCKET/PREFIX`.
/// `s3://BUCKET/PREFIX/NAME.tar.zst`, the archive's URL that backup lists show, names
/// the same backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupUrl {
    pub location: Location,
    pub name: String,
}

impl FromStr for BackupUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<BackupUrl, String> {
        let usage =
            || format!("{url:?}: use s3://BUCKET/PREFIX/NAME, the backup NAME under PREFIX");
        let rest = url.strip_prefix("s3://").ok_or_else(usage)?;
        let (place, last) = rest.rsplit_once('/').ok_or_else(usage)?;
        let name = last.strip_suffix(ARCHIVE_SUFFIX).unwrap_or(last);
        if name.is_empty() || place.ends_with('/') {
            return Err(usage());
        }
        check_backup_name(name).map_err(|reason| format!("{url:?}: {reason}"))?;
        Ok(BackupUrl {
            location: format!("s3://{place}").parse()?,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for BackupUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.location, self.name)
    }
}

/// A backup name: 1-128 of `A-Z a-z 0-9 . _ -`, not starting with `.` (never a path).
/// The error says so.
pub fn check_backup_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "backup name {name:?}: use 1-128 of A-Z a-z 0-9 . _ -, not starting with ."
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_a_bucket_and_a_plain_prefix() {
        let full: Location = "s3://cairn-backups/prod/db1/".parse().unwrap();
        assert_eq!(
            (full.bucket.as_str(), full.prefix.as_str()),
            ("cairn-backups", "prod/db1")
        );
        assert_eq!(full.to_string(), "s3://cairn-backups/prod/db1");
        let top: Location = "s3://bucket".parse().unwrap();
        assert_eq!(
            (top.prefix.as_str(), top.to_string().as_str()),
            ("", "s3://bucket")
        );
        for bad in [
            "http://bucket/x",
            "s3://",
            "s3://Bucket/x",
            "s3://b/x",
            "s3://bucket/a//b",
            "s3://bucket/../x",
            "s3://bucket/a b",
        ] {
            assert!(bad.parse::<Location>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_backup_url_is_a_location_and_a_name() {
        let url: BackupUrl = "s3://cairn-backups/prod/db1/nightly-1".parse().unwrap();
        assert_eq!(url.location.to_string(), "s3://cairn-backups/prod/db1");
        assert_eq!(url.name, "nightly-1");
        assert_eq!(url.to_string(), "s3://cairn-backups/prod/db1/nightly-1");
        let top: BackupUrl = "s3://cairn-backups/b1".parse().unwrap();
        assert_eq!(
            (top.location.prefix.as_str(), top.name.as_str()),
            ("", "b1")
        );
        let archive: BackupUrl = "s3://cairn-backups/p/b1.tar.zst".parse().unwrap();
        assert_eq!(archive.name, "b1", "the archive's URL names its backup");
        for (bad, needle) in [
            ("s3://cairn-backups", "s3://BUCKET/PREFIX/NAME"),
            ("s3://cairn-backups/p/", "s3://BUCKET/PREFIX/NAME"),
            ("s3://cairn-backups/p/.tar.zst", "s3://BUCKET/PREFIX/NAME"),
            ("/backups/b1", "s3://BUCKET/PREFIX/NAME"),
            ("s3://cairn-backups/p/.hidden", "backup name"),
            ("s3://Bad/p/b1", "bucket name"),
            ("s3://cairn-backups/a//b1", "s3://BUCKET/PREFIX/NAME"),
            ("s3://cairn-backups/a/../b1", "prefix"),
        ] {
            let error = bad.parse::<BackupUrl>().unwrap_err();
            assert!(error.contains(needle), "{bad}: {error}");
        }
    }

    #[test]
    fn backup_names_are_never_paths() {
        for good in ["20261121T030000Z", "nightly-1", "a.b_c"] {
            assert!(check_backup_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "a b", &"x".repeat(129)] {
            assert!(check_backup_name(bad).is_err(), "{bad:?}");
        }
    }
}
