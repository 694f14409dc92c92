//! Certificate pins: the SHA-256 of a certificate's DER, written `sha256:HEX`, which a
//! client can trust instead of a CA (see [`crate::Trust::Pin`]).

use sha2::{Digest, Sha256};

use crate::error::{CertError, Result};

const PREFIX: &str = "sha256:";

/// The SHA-256 of a DER-encoded certificate.
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Formats a pin as `sha256:` and 64 lower-case hex digits.
pub fn format_pin(hash: &[u8; 32]) -> String {
    format!("{PREFIX}{}", hex::encode(hash))
}

/// Parses `sha256:HEX`: 64 hex digits in either case, optionally separated by `:` as
/// `openssl x509 -fingerprint -sha256` prints them.
pub fn parse_pin(text: &str) -> Result<[u8; 32]> {
    let bad = || CertError::BadPin(text.to_string());
    let prefix = text.get(..PREFIX.len()).ok_or_else(bad)?;
    if !prefix.eq_ignore_ascii_case(PREFIX) {
        return Err(bad());
    }
    let digits: String = text[PREFIX.len()..].chars().filter(|&c| c != ':').collect();
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&digits, &mut hash).map_err(|_| bad())?;
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let hash = cert_sha256(b"abc");
        let text = format_pin(&hash);
        assert_eq!(
            text,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_pin(&text).unwrap(), hash);
        assert_eq!(parse_pin(&text.to_uppercase()).unwrap(), hash);
        let colons = hash
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_pin(&format!("sha256:{colons}")).unwrap(), hash);
    }

    #[test]
    fn refuses_bad_pins() {
        let digits = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        for bad in [
            digits.to_string(),
            format!("sha1:{digits}"),
            format!("sha256:{}", &digits[2..]),
            format!("sha256:{digits}00"),
            format!("sha256:{}zz", &digits[2..]),
            "".to_string(),
            "sha2".to_string(),
        ] {
            assert!(
                matches!(parse_pin(&bad), Err(CertError::BadPin(_))),
                "{bad}"
            );
        }
    }
}
