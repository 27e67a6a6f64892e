//! Credentials: password hashes and the random secrets behind sessions, API tokens,
//! invitations and guest links.
//!
//! - Passwords are hashed with Argon2id (the `argon2` crate's default parameters: 19 MiB,
//!   2 passes, 1 lane), a random 16-byte salt each time, and stored as a PHC string
//!   (`$argon2id$v=19$m=19456,t=2,p=1$…`), so the parameters travel with the hash and can be
//!   raised later without breaking existing ones. [`verify_password`] compares in constant
//!   time (the crate's) and reads the parameters from the stored string.
//! - A secret ([`new_secret`]) is a prefix naming its kind followed by 32 random bytes from the
//!   operating system, base64url without padding (43 characters): `pgs_…` for a session
//!   cookie, `pgt_…` for an API token, `pgi_…` for an invitation, `pgg_…` for a guest link.
//!   The prefix lets a leaked secret be recognised (by secret scanners, in logs) and a secret
//!   of the wrong kind be refused without a lookup.
//! - Only a secret's [`secret_hash`] (SHA-256, lowercase hex) is stored, never the secret: the
//!   secret has 256 bits of entropy, so a fast hash is enough and lookups stay indexed.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64ct::{Base64UrlUnpadded, Encoding};
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::OsRng;
use sha2::{Digest, Sha256};

/// What a secret is for: its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecretKind {
    /// A sign-in session cookie: `pgs_`.
    Session,
    /// A personal API token (bearer): `pgt_`.
    ApiToken,
    /// An invitation link: `pgi_`.
    Invitation,
    /// A guest link to a stage's share links: `pgg_`.
    GuestLink,
}

impl SecretKind {
    pub const ALL: [SecretKind; 4] =
        [SecretKind::Session, SecretKind::ApiToken, SecretKind::Invitation, SecretKind::GuestLink];

    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::Session => "pgs_",
            SecretKind::ApiToken => "pgt_",
            SecretKind::Invitation => "pgi_",
            SecretKind::GuestLink => "pgg_",
        }
    }

    /// Whether `secret` has the shape of a secret of this kind (prefix, 43 base64url
    /// characters). Says nothing of whether it is valid.
    pub fn matches(self, secret: &str) -> bool {
        secret.strip_prefix(self.prefix()).is_some_and(|rest| {
            rest.len() == SECRET_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    }
}

/// Random bytes in a secret.
pub const SECRET_BYTES: usize = 32;
/// Characters after the prefix: 32 bytes in base64url without padding.
pub const SECRET_CHARS: usize = 43;

/// A password hashing failure (the crate's; not expected with the default parameters).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password: Argon2id, a fresh random salt, a PHC string.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the stored PHC string `hash` (constant-time comparison). False
/// too when `hash` is not a valid PHC string.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Spends the time of a [`verify_password`] and returns false: for a sign-in with an unknown
/// username, so that the answer takes as long as for a known one with a wrong password (no
/// username enumeration by timing).
pub fn verify_password_of_nobody(password: &str) -> bool {
    static NOBODY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = NOBODY
        .get_or_init(|| hash_password(&new_secret(SecretKind::Session)).expect("hashing with the default parameters"));
    let _ = verify_password(password, hash);
    false
}

/// A new random secret of `kind`: its prefix and 32 random bytes, base64url without padding.
pub fn new_secret(kind: SecretKind) -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut bytes);
    format!("{}{}", kind.prefix(), Base64UrlUnpadded::encode_string(&bytes))
}

/// What the store keeps of a secret: its SHA-256, 64 lowercase hex digits.
pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(!hash.contains("correct horse battery"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("", &hash));
        assert!(!verify_password("correct horse battery", "not a PHC string"));
        assert!(!verify_password("correct horse battery", ""));
    }

    #[test]
    fn nobody_has_a_password() {
        assert!(!verify_password_of_nobody("correct horse battery"));
        assert!(!verify_password_of_nobody(""));
    }

    #[test]
    fn two_hashes_of_one_password_differ_and_both_verify() {
        let a = hash_password("same password here").unwrap();
        let b = hash_password("same password here").unwrap();
        assert_ne!(a, b, "the salt is random");
        assert!(verify_password("same password here", &a));
        assert!(verify_password("same password here", &b));
    }

    #[test]
    fn secrets_are_unique_and_have_the_documented_shape() {
        let mut seen = HashSet::new();
        for kind in SecretKind::ALL {
            for _ in 0..200 {
                let s = new_secret(kind);
                assert!(s.starts_with(kind.prefix()), "{s}");
                assert_eq!(s.len(), 4 + SECRET_CHARS, "{s}");
                assert!(kind.matches(&s), "{s}");
                assert!(!s.contains('=') && !s.contains('+') && !s.contains('/'), "{s}");
                assert!(seen.insert(s), "a secret repeated");
            }
        }
        let prefixes: HashSet<_> = SecretKind::ALL.iter().map(|k| k.prefix()).collect();
        assert_eq!(prefixes.len(), 4);
        let token = new_secret(SecretKind::ApiToken);
        assert!(!SecretKind::Session.matches(&token));
        assert!(!SecretKind::ApiToken.matches(&token[..token.len() - 1]));
        assert!(!SecretKind::ApiToken.matches(&format!("{token}x")));
        assert!(!SecretKind::ApiToken.matches("pgt_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"));
    }

    #[test]
    fn the_stored_hash_is_not_the_secret() {
        let s = new_secret(SecretKind::Session);
        let h = secret_hash(&s);
        assert_eq!(h.len(), 64);
        assert!(h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(h, s);
        assert!(!h.contains(&s[4..]));
        assert_eq!(h, secret_hash(&s), "deterministic");
        assert_ne!(h, secret_hash(&new_secret(SecretKind::Session)));
        // The SHA-256 test vector for "abc".
        assert_eq!(secret_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
