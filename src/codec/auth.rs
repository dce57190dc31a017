//! Proof that an encrypted archive was written by this tool's backups, not by anyone who knows
//! the public recipient.
//!
//! age alone cannot tell: the backup machine holds only recipients, which are public, so anyone
//! can write a valid age file for them. After `inventory --rebuild-ledger` every row (its size
//! and tree hash included) comes from the destination, so a replaced archive would restore
//! silently. An authentication key closes that: a secret the backup machine holds (derived from
//! the identity, so whoever holds the identity can derive it again and needs to keep nothing
//! else), with which each archive's header gets one extra stanza, `glacier-backup-auth TAG`,
//! where TAG is an HMAC-SHA-256 (HKDF-Extract) of the archive's file key under that key.
//!
//! The file key is what age's header MAC and every payload chunk are keyed from, so the tag
//! binds the whole archive: a new file (another file key) cannot carry a tag that verifies, and
//! a copied stanza does not verify against a new file key. The stock `age` tool skips stanzas
//! it does not know, so archives still open with it.

use std::path::Path;

use age_core::format::{FileKey, Stanza};
use age_core::secrecy::ExposeSecret;
use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;

/// The stanza type in the age header.
pub const STANZA_TAG: &str = "glacier-backup-auth";

/// How an authentication key is written in its file.
const KEY_PREFIX: &str = "GB-AUTH-KEY-";

/// Domain separation for the key derived from an identity.
const DERIVE_INFO: &[u8] = b"glacier-backup authentication key v1";

/// A secret that proves an archive was written by whoever holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey([u8; 32]);

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthKey(..)")
    }
}

/// An authentication key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthKeyError {
    /// It could not be read.
    #[error("authentication key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// It holds no key.
    #[error(
        "authentication key file {path} holds no {KEY_PREFIX}... line; make one with \
         `glacier-backup keygen --authentication-key-of IDENTITY -o FILE`"
    )]
    NoKey {
        /// The file.
        path: String,
    },
}

impl AuthKey {
    /// The key that belongs to `identity`: whoever holds the identity derives it again at
    /// restore, so nothing but the identity needs keeping safe.
    pub fn of_identity(identity: &age::x25519::Identity) -> Self {
        let secret = identity.to_string();
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, secret.expose_secret().as_bytes())
            .expand(DERIVE_INFO, &mut key)
            .expect("32 bytes is a valid HKDF-SHA-256 length");
        AuthKey(key)
    }

    /// The key as its file holds it: comments, then one `GB-AUTH-KEY-<hex>` line.
    pub fn to_file_text(&self, recipient: &str) -> String {
        format!(
            "# glacier-backup authentication key: archives made with it prove they are yours\n\
             # derived from the identity of {recipient}; keep it as private as that identity\n\
             {KEY_PREFIX}{}\n",
            hex::encode_upper(self.0)
        )
    }

    /// Reads a key file (see [`AuthKey::to_file_text`]).
    pub fn load(path: &Path) -> Result<Self, AuthKeyError> {
        let shown = glacier_backup_archiver::shown(path);
        let text = super::key_file::read_key_file(path).map_err(|source| AuthKeyError::Read {
            path: shown.clone(),
            source,
        })?;
        text.lines()
            .map(str::trim)
            .find_map(|line| {
                let hex_key = line.strip_prefix(KEY_PREFIX)?;
                let bytes: [u8; 32] = hex::decode(hex_key).ok()?.try_into().ok()?;
                Some(AuthKey(bytes))
            })
            .ok_or(AuthKeyError::NoKey { path: shown })
    }

    /// The tag of an archive whose file key is `file_key`.
    fn tag(&self, file_key: &[u8]) -> String {
        let (tag, _) = Hkdf::<Sha256>::extract(Some(&self.0), file_key);
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(tag)
    }

    /// The stanza that goes into the header of an archive with this file key.
    pub(crate) fn stanza(&self, file_key: &[u8]) -> Stanza {
        Stanza {
            tag: STANZA_TAG.to_owned(),
            args: vec![self.tag(file_key)],
            body: Vec::new(),
        }
    }

    /// Whether `stanzas` (an archive's header) hold this key's tag for `file_key`.
    pub(crate) fn signed(&self, stanzas: &[Stanza], file_key: &FileKey) -> bool {
        let expected = self.tag(file_key.expose_secret());
        stanzas
            .iter()
            .any(|s| s.tag == STANZA_TAG && s.args.first() == Some(&expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_round_trips_and_the_key_is_the_identitys_own() {
        let identity = age::x25519::Identity::generate();
        let key = AuthKey::of_identity(&identity);
        assert_eq!(
            key,
            AuthKey::of_identity(&identity),
            "derived the same twice"
        );
        assert_ne!(
            key,
            AuthKey::of_identity(&age::x25519::Identity::generate())
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.key");
        std::fs::write(&path, key.to_file_text("age1example")).unwrap();
        assert_eq!(AuthKey::load(&path).unwrap(), key);
        std::fs::write(&path, "# nothing here\n").unwrap();
        assert!(matches!(
            AuthKey::load(&path),
            Err(AuthKeyError::NoKey { .. })
        ));
    }

    #[test]
    fn a_tag_verifies_only_for_its_own_file_key_and_key() {
        let key = AuthKey([7; 32]);
        let stanza = key.stanza(&[1; 16]);
        let mine = FileKey::new(Box::new([1; 16]));
        let other = FileKey::new(Box::new([2; 16]));
        assert!(key.signed(std::slice::from_ref(&stanza), &mine));
        assert!(!key.signed(std::slice::from_ref(&stanza), &other));
        assert!(!AuthKey([8; 32]).signed(&[stanza], &mine));
        assert!(!key.signed(&[], &mine));
    }
}
