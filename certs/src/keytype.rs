//! Key types of new certificates and CSRs: ECDSA P-256 (the default), Ed25519 and RSA
//! 4096. ring makes P-256 keys. An Ed25519 key is 32 random bytes, written as a PKCS#8 v1
//! document: ring's own v2 documents (with the public key) are unreadable by OpenSSL 3.0.
//! ring cannot generate RSA keys, so the pure-Rust `rsa` crate makes those (only the
//! generation: ring signs with them once loaded from PKCS#8).

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use rsa::pkcs8::EncodePrivateKey;

use crate::error::{CertError, Result};

const RSA_BITS: usize = 4096;

/// PKCS#8 v1 of an Ed25519 key up to its 32-byte seed (RFC 8410): version 0, algorithm
/// id-Ed25519, an OCTET STRING holding the OCTET STRING of the seed.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The kind of private key a new certificate or CSR gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256.
    #[default]
    EcdsaP256,
    /// Ed25519.
    Ed25519,
    /// RSA with a 4096-bit modulus, PKCS#1 v1.5 signatures with SHA-256 (slow to make).
    Rsa4096,
}

impl KeyType {
    /// Every key type, in the order a help text lists them.
    pub const ALL: [KeyType; 3] = [KeyType::EcdsaP256, KeyType::Ed25519, KeyType::Rsa4096];

    /// The name a command line gives: `ecdsa-p256`, `ed25519` or `rsa-4096`.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    /// A new private key of this type.
    pub(crate) fn generate(self) -> Result<KeyPair> {
        Ok(match self {
            KeyType::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
            KeyType::Ed25519 => {
                let mut der = [0u8; ED25519_PKCS8_V1_PREFIX.len() + 32];
                der[..ED25519_PKCS8_V1_PREFIX.len()].copy_from_slice(&ED25519_PKCS8_V1_PREFIX);
                getrandom::fill(&mut der[ED25519_PKCS8_V1_PREFIX.len()..])?;
                KeyPair::try_from(der.as_slice())?
            }
            KeyType::Rsa4096 => {
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
                    .map_err(|e| CertError::KeyGeneration(e.to_string()))?;
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| CertError::KeyGeneration(e.to_string()))?;
                KeyPair::try_from(der.as_bytes())?
            }
        })
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyType {
    type Err = CertError;

    /// Parses a [`KeyType::name`], in any case.
    fn from_str(s: &str) -> Result<KeyType> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| CertError::BadKeyType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for key_type in KeyType::ALL {
            assert_eq!(key_type.name().parse::<KeyType>().unwrap(), key_type);
            assert_eq!(key_type.to_string(), key_type.name());
        }
        assert_eq!("ED25519".parse::<KeyType>().unwrap(), KeyType::Ed25519);
        assert!(matches!(
            "rsa-2048".parse::<KeyType>(),
            Err(CertError::BadKeyType(_))
        ));
        assert_eq!(KeyType::default(), KeyType::EcdsaP256);
    }

    #[test]
    fn fast_key_types_generate_signing_keys() {
        for (key_type, alg) in [
            (KeyType::EcdsaP256, &PKCS_ECDSA_P256_SHA256),
            (KeyType::Ed25519, &rcgen::PKCS_ED25519),
        ] {
            let key = key_type.generate().unwrap();
            assert_eq!(key.algorithm(), alg);
            assert_ne!(
                key_type.generate().unwrap().public_key_raw(),
                key.public_key_raw()
            );
        }
        // Ed25519 keys are PKCS#8 v1: version 0, no public key after the seed.
        let der = KeyType::Ed25519.generate().unwrap().serialize_der();
        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], ED25519_PKCS8_V1_PREFIX);
    }
}
