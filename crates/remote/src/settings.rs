//! How to reach an object store: `S3Settings` (endpoint, region, credentials), filled in
//! from the standard `AWS_*` variables the way AWS's own tools read them. The service
//! (`[backup.s3]`, then the variables) and `cairn-backup` (its flags, then the variables)
//! both resolve their settings here.

use std::fmt;

/// The standard `AWS_*` variables read for what the settings leave out; other `AWS_*`
/// variables are left alone.
pub const AWS_VARIABLES: &[&str] = &[
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// The region signed for when none is set.
const DEFAULT_REGION: &str = "us-east-1";

/// How to reach the object store.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `http://HOST:PORT` or `https://…`; `None`: AWS's own endpoint for the region.
    pub endpoint: Option<String>,
    /// `None`: `DEFAULT_REGION`.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "(hidden)");
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .finish()
    }
}

impl S3Settings {
    /// Fills in what these settings leave out from the `AWS_*` variables that `var`
    /// looks up (an empty value counts as unset): the endpoint from
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`; the region from `AWS_REGION`, else
    /// `AWS_DEFAULT_REGION`; and the credentials as a whole, all three from the variables
    /// when no access key is set (keys never mix). Returns the variable the endpoint came
    /// from, if it came from one, for an error about it (see `check_endpoint`).
    pub fn fill_from_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Option<&'static str> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let mut endpoint_from = None;
        if self.endpoint.is_none() {
            for name in ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"] {
                if let Some(endpoint) = var(name) {
                    self.endpoint = Some(endpoint);
                    endpoint_from = Some(name);
                    break;
                }
            }
        }
        if self.region.is_none() {
            self.region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"));
        }
        if self.access_key_id.is_none() {
            self.access_key_id = var("AWS_ACCESS_KEY_ID");
            self.secret_access_key = var("AWS_SECRET_ACCESS_KEY");
            self.session_token = var("AWS_SESSION_TOKEN");
        }
        endpoint_from
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or(DEFAULT_REGION)
    }
}

/// An object store endpoint: an `http://` or `https://` URL with a host. The error is
/// the reason, to be prefixed with where the endpoint came from.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let host = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .map(|rest| rest.split('/').next().unwrap_or(""));
    match host {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(format!(
            "{endpoint:?} is not an endpoint URL; e.g. http://127.0.0.1:3900"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_variables_fill_in_what_is_left_out() {
        let mut empty = S3Settings::default();
        let from = empty.fill_from_env(env(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:3900"),
            ("AWS_DEFAULT_REGION", "default-region"),
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_SESSION_TOKEN", "envtoken"),
        ]));
        assert_eq!(from, Some("AWS_ENDPOINT_URL_S3"), "the S3 endpoint first");
        assert_eq!(
            empty,
            S3Settings {
                endpoint: Some("http://127.0.0.1:3900".into()),
                region: Some("default-region".into()),
                access_key_id: Some("ENVKEY".into()),
                secret_access_key: Some("envsecret".into()),
                session_token: Some("envtoken".into()),
            }
        );

        let mut set = S3Settings {
            endpoint: Some("https://s3.example.net".into()),
            region: Some("garage".into()),
            access_key_id: Some("GKFILE".into()),
            ..S3Settings::default()
        };
        let from = set.fill_from_env(env(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_REGION", "env-region"),
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
        ]));
        assert_eq!(from, None);
        assert_eq!(set.endpoint.as_deref(), Some("https://s3.example.net"));
        assert_eq!(set.region(), "garage");
        assert_eq!(
            (
                set.access_key_id.as_deref(),
                set.secret_access_key.as_deref()
            ),
            (Some("GKFILE"), None),
            "an access key set keeps the variables' secret out"
        );

        let mut blank = S3Settings::default();
        blank.fill_from_env(env(&[("AWS_REGION", ""), ("AWS_ACCESS_KEY_ID", "")]));
        assert_eq!(blank, S3Settings::default(), "empty values count as unset");
        assert_eq!(blank.region(), DEFAULT_REGION);
    }

    #[test]
    fn endpoints_are_http_urls_with_a_host() {
        for good in [
            "http://127.0.0.1:3900",
            "https://s3.example.net/",
            "https://h",
        ] {
            assert!(check_endpoint(good).is_ok(), "{good}");
        }
        for bad in ["127.0.0.1:3900", "ftp://h", "http://", "https:///x", ""] {
            let reason = check_endpoint(bad).unwrap_err();
            assert!(reason.contains("not an endpoint URL"), "{bad}: {reason}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let settings = S3Settings {
            access_key_id: Some("GK1".into()),
            secret_access_key: Some("very-secret".into()),
            session_token: Some("token-secret".into()),
            ..S3Settings::default()
        };
        let shown = format!("{settings:?}");
        assert!(
            shown.contains("GK1")
                && !shown.contains("very-secret")
                && !shown.contains("token-secret"),
            "{shown}"
        );
    }
}
