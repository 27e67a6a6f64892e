//! Secret configuration values are sealed at rest (XChaCha20-Poly1305) with the server's key:
//! what the database holds is `enc:v2:<hex nonce+ciphertext>`, never the value. The place of
//! the value (project ID, stage ID and key, see [`Place`]) is the associated data: a sealed
//! value copied into another stage's or another key's row does not open. `enc:v1:` values
//! (sealed before places were bound, without associated data) still open. Values stored before
//! a key was set (plain text) still read back; they are sealed when next saved. Only entries
//! marked secret are opened: a plain setting that happens to start with `enc:` is not sealed.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::path::Path;

const PREFIX_V1: &str = "enc:v1:";
/// How a value sealed with its place starts (the current form).
pub(crate) const PREFIX: &str = "enc:v2:";
const NONCE_LEN: usize = 24;

/// Where a secret value belongs: its associated data when sealed.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    pub project: &'a str,
    pub stage: &'a str,
    pub key: &'a str,
}

impl Place<'_> {
    /// IDs and keys hold no NUL character, so NUL-separated fields cannot be confused.
    fn associated_data(&self) -> Vec<u8> {
        format!("pergola-config\0{}\0{}\0{}", self.project, self.stage, self.key).into_bytes()
    }
}

/// Seals and opens secret values with one 256-bit key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the key must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    #[error("a sealed value could not be opened (a different key, or a damaged value)")]
    Unreadable,
    #[error("cannot read or create the key file {0}: {1}")]
    KeyFile(String, std::io::Error),
}

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        Self { cipher: XChaCha20Poly1305::new(&key.into()) }
    }

    /// A key from 64 hex characters (e.g. `PERGOLA_SECRET_KEY`).
    pub fn from_hex(hex: &str) -> Result<Self, SecretError> {
        let bytes = from_hex(hex.trim()).ok_or(SecretError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        Ok(Self::new(key))
    }

    /// The key in `path`, created (random, readable by the owner only) when there is none.
    pub fn from_key_file(path: &Path) -> Result<Self, SecretError> {
        let failed = |e| SecretError::KeyFile(path.display().to_string(), e);
        match std::fs::read_to_string(path) {
            Ok(_) => Self::read_key_file(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Written whole under a name of its own, then linked into place: servers
                // starting at once on one shared data directory end up with one key, and none
                // reads a key half written.
                let key: [u8; 32] = XChaCha20Poly1305::generate_key(&mut OsRng).into();
                let hex = to_hex(&key);
                let draft =
                    path.with_extension(format!("key.{}", to_hex(&XChaCha20Poly1305::generate_nonce(&mut OsRng)[..8])));
                let linked = write_new(&draft, &hex).and_then(|()| std::fs::hard_link(&draft, path));
                let _ = std::fs::remove_file(&draft);
                match linked {
                    Ok(()) => Ok(Self::new(key)),
                    // Another server made it first: its key is the one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::read_key_file(path),
                    // A file system without hard links: made in place (a reader waits for it
                    // to be whole, see `read_key_file`).
                    Err(_) => match write_new(path, &hex) {
                        Ok(()) => Ok(Self::new(key)),
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::read_key_file(path),
                        Err(e) => Err(failed(e)),
                    },
                }
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// The key in the file `path`, waiting (a second at most) while it is shorter than a key:
    /// another server may be writing it this moment.
    fn read_key_file(path: &Path) -> Result<Self, SecretError> {
        let failed = |e| SecretError::KeyFile(path.display().to_string(), e);
        for _ in 0..50 {
            let hex = std::fs::read_to_string(path).map_err(failed)?;
            if hex.trim().len() >= 64 {
                return Self::from_hex(&hex);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self::from_hex(&std::fs::read_to_string(path).map_err(failed)?)
    }

    /// The stored form of a secret value that belongs at `place`.
    pub fn seal(&self, value: &str, place: Place<'_>) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = place.associated_data();
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: value.as_bytes(), aad: &aad })
            .expect("encryption of a byte string cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{PREFIX}{}", to_hex(&bytes))
    }

    /// The `enc:v1:` form (no associated data) older servers stored, for tests of reading it.
    #[cfg(any(test, feature = "testing"))]
    pub fn seal_v1(&self, value: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self.cipher.encrypt(&nonce, value.as_bytes()).expect("encryption of a byte string cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{PREFIX_V1}{}", to_hex(&bytes))
    }

    /// The value of a stored secret of `place` (plain text stored before sealing existed reads
    /// as it is). Call it for entries marked secret only.
    pub fn open(&self, stored: &str, place: Place<'_>) -> Result<String, SecretError> {
        let (hex, aad) = if let Some(hex) = stored.strip_prefix(PREFIX) {
            (hex, place.associated_data())
        } else if let Some(hex) = stored.strip_prefix(PREFIX_V1) {
            (hex, Vec::new())
        } else {
            return Ok(stored.to_owned());
        };
        let bytes = from_hex(hex).filter(|b| b.len() > NONCE_LEN).ok_or(SecretError::Unreadable)?;
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| SecretError::Unreadable)?;
        String::from_utf8(plain).map_err(|_| SecretError::Unreadable)
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX) || stored.starts_with(PREFIX_V1)
}

/// Writes `text` to the new file `path` (readable by its owner only), to the disk.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: Place<'static> = Place { project: "shop", stage: "prod", key: "API_TOKEN" };

    #[test]
    fn sealed_values_open_only_with_their_key() {
        let a = SecretBox::new([7; 32]);
        let sealed = a.seal("s3cr3t value", HERE);
        assert!(is_sealed(&sealed) && sealed.starts_with("enc:v2:") && !sealed.contains("s3cr3t"));
        assert_ne!(a.seal("s3cr3t value", HERE), sealed, "a fresh nonce every time");
        assert_eq!(a.open(&sealed, HERE).unwrap(), "s3cr3t value");
        assert_eq!(a.open("legacy plain", HERE).unwrap(), "legacy plain");
        let b = SecretBox::new([8; 32]);
        assert!(matches!(b.open(&sealed, HERE), Err(SecretError::Unreadable)));
        // Every byte of the sealed form is authenticated: flip any one hex digit (of the
        // nonce, the ciphertext or the tag) and it no longer opens.
        let hex_start = PREFIX.len();
        for at in [hex_start, hex_start + 2 * NONCE_LEN, sealed.len() - 1] {
            let mut damaged = sealed.clone().into_bytes();
            damaged[at] = if damaged[at] == b'0' { b'1' } else { b'0' };
            let damaged = String::from_utf8(damaged).unwrap();
            assert_ne!(damaged, sealed);
            assert!(matches!(a.open(&damaged, HERE), Err(SecretError::Unreadable)), "digit {at} flipped");
        }
        assert!(a.open("enc:v1:zz", HERE).is_err());
        assert!(a.open("enc:v2:zz", HERE).is_err());
    }

    #[test]
    fn sealed_values_open_only_in_their_place() {
        let a = SecretBox::new([7; 32]);
        let sealed = a.seal("s3cr3t", HERE);
        for elsewhere in [
            Place { project: "other", ..HERE },
            Place { stage: "qa", ..HERE },
            Place { key: "OTHER_TOKEN", ..HERE },
            // The fields are separated: moving characters between them is another place.
            Place { project: "shopprod", stage: "", key: "API_TOKEN" },
        ] {
            assert!(matches!(a.open(&sealed, elsewhere), Err(SecretError::Unreadable)), "{elsewhere:?}");
        }
        // The enc:v1 form has no place: it opens anywhere, as it did.
        let v1 = a.seal_v1("old");
        assert!(v1.starts_with("enc:v1:") && is_sealed(&v1));
        assert_eq!(a.open(&v1, HERE).unwrap(), "old");
        assert_eq!(a.open(&v1, Place { stage: "qa", ..HERE }).unwrap(), "old");
        // A v2 value relabelled v1 (its associated data dropped) does not open either.
        let relabelled = sealed.replacen("enc:v2:", "enc:v1:", 1);
        assert!(matches!(a.open(&relabelled, HERE), Err(SecretError::Unreadable)));
    }

    #[test]
    fn keys_come_from_hex_or_a_file_created_once() {
        assert!(SecretBox::from_hex(&"ab".repeat(32)).is_ok());
        for bad in ["", "abc", &"ab".repeat(31), &"zz".repeat(32)] {
            assert!(matches!(SecretBox::from_hex(bad), Err(SecretError::BadKey)), "{bad}");
        }
        let dir = std::env::temp_dir().join(format!("pergola-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret.key");
        let first = SecretBox::from_key_file(&path).unwrap();
        let sealed = first.seal("x", HERE);
        let again = SecretBox::from_key_file(&path).unwrap();
        assert_eq!(again.open(&sealed, HERE).unwrap(), "x", "the same key next time");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Servers starting at once on one shared, empty data directory: every one gets the key
    /// (none fails, none reads a half-written file), and it is the same key; no draft is left.
    #[test]
    fn servers_creating_the_key_file_at_once_share_one_key() {
        for _ in 0..20 {
            let dir = std::env::temp_dir().join(format!("pergola-key-race-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("secret.key");
            let boxes: Vec<SecretBox> = std::thread::scope(|scope| {
                let made: Vec<_> = (0..4).map(|_| scope.spawn(|| SecretBox::from_key_file(&path).unwrap())).collect();
                made.into_iter().map(|m| m.join().unwrap()).collect()
            });
            let sealed = boxes[0].seal("x", HERE);
            for other in &boxes[1..] {
                assert_eq!(other.open(&sealed, HERE).unwrap(), "x", "one key");
            }
            let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(left, [std::ffi::OsString::from("secret.key")]);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
