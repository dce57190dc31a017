//! age keys: recipients from the configuration, identity files for restores, and new keys.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use glacier_backup_archiver::shown;

use super::key_file::read_key_file;
use super::key_file::read_key_file_and_mode;

/// Parses one X25519 recipient (`age1...`); the error says what was wrong with it, and never
/// repeats any of a secret key given by mistake.
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient, String> {
    let text = text.trim();
    if text
        .get(..15)
        .is_some_and(|start| start.eq_ignore_ascii_case("AGE-SECRET-KEY-"))
    {
        return Err(
            "this is a secret key (an identity), not a recipient: keep it out of the \
                    config, in the identity file, and give its public age1... recipient here \
                    (`glacier-backup keygen` printed it)"
                .into(),
        );
    }
    age::x25519::Recipient::from_str(text).map_err(|_| {
        let shown = if text.len() > 20 {
            format!("{}...", &text[..text.floor_char_boundary(20)])
        } else {
            text.to_owned()
        };
        format!(
            "{shown:?} is not an age X25519 recipient (age1 followed by 58 characters, as \
             `glacier-backup keygen` or `age-keygen` print them)"
        )
    })
}

/// The recipients of a text in age's recipients-file format: one per line, `#` comments and
/// blank lines ignored. The error names the line.
pub fn parse_recipients_file(text: &str) -> Result<Vec<age::x25519::Recipient>, String> {
    let mut recipients = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        recipients.push(parse_recipient(line).map_err(|e| format!("line {}: {e}", number + 1))?);
    }
    Ok(recipients)
}

/// An identity file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// It could not be read.
    #[error("identity file {path}: {source}; give a readable file made by `glacier-backup keygen` or `age-keygen`")]
    Read {
        /// The file.
        path: String,
        /// The OS or parse error.
        source: io::Error,
    },
    /// It holds no identity this tool can use.
    #[error("identity file {path}: {message}")]
    Unusable {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// The identities of one identity file, to decrypt with.
pub struct Identities {
    file: Option<PathBuf>,
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// The recipients of the X25519 identities among them, to tell before any download
    /// whether they open an archive.
    recipients: Vec<String>,
    /// The authentication keys these identities derive (see [`super::auth`]).
    authentication: Vec<super::auth::AuthKey>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("file", &self.file)
            .field("count", &self.identities.len())
            .finish()
    }
}

impl Identities {
    /// Reads an identity file (age's format: `AGE-SECRET-KEY-1...` lines, `#` comments). A file
    /// that others may read is used, with a warning.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let read_error = |source| IdentityError::Read {
            path: shown(path),
            source,
        };
        let (text, mode) = read_key_file_and_mode(path).map_err(read_error)?;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "identity file {} can be read by other users (mode {:o}); make it private: \
                 chmod 600 {}",
                shown(path),
                mode & 0o777,
                shown(path)
            );
        }
        let x25519: Vec<age::x25519::Identity> = text
            .lines()
            .filter_map(|line| age::x25519::Identity::from_str(line.trim()).ok())
            .collect();
        let recipients = x25519
            .iter()
            .map(|identity| identity.to_public().to_string())
            .collect();
        let authentication = x25519
            .iter()
            .map(super::auth::AuthKey::of_identity)
            .collect();
        let parsed = age::IdentityFile::from_buffer(text.as_bytes()).map_err(read_error)?;
        let identities = parsed
            .into_identities()
            .map_err(|e| IdentityError::Unusable {
                path: shown(path),
                message: e.to_string(),
            })?;
        if identities.is_empty() {
            return Err(IdentityError::Unusable {
                path: shown(path),
                message: "holds no identity; give the file `glacier-backup keygen` wrote".into(),
            });
        }
        Ok(Identities {
            file: Some(path.to_path_buf()),
            identities,
            recipients,
            authentication,
        })
    }

    /// One identity held in memory (tests, library callers).
    pub fn from_identity(identity: age::x25519::Identity) -> Self {
        Identities {
            file: None,
            recipients: vec![identity.to_public().to_string()],
            authentication: vec![super::auth::AuthKey::of_identity(&identity)],
            identities: vec![Box::new(identity)],
        }
    }

    /// Whether these identities open an archive encrypted to `recipients`: `None` when that
    /// cannot be told before trying (recipients unknown, or identities of other kinds).
    pub fn open_any_of(&self, recipients: &[String]) -> Option<bool> {
        if recipients.is_empty() || self.recipients.len() != self.identities.len() {
            return None;
        }
        Some(recipients.iter().any(|r| self.recipients.contains(r)))
    }

    /// The identities, as age's decryptor takes them.
    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities
            .iter()
            .map(|identity| identity.as_ref() as &dyn age::Identity)
    }

    /// Whether the age file read from `stored` carries the authentication stanza of one of
    /// these identities' keys, verified against its file key (only the header is read; a
    /// header whose MAC fails is an error, as decryption would find).
    pub fn authenticate(&self, stored: impl io::Read) -> Result<bool, super::DecodeError> {
        let witness = Witness {
            identities: self,
            proven: std::cell::Cell::new(false),
            file_key: std::cell::Cell::new(None),
        };
        let decryptor = age::Decryptor::new_buffered(io::BufReader::new(stored))
            .map_err(|e| super::DecodeError::Header(e.to_string()))?;
        match decryptor.decrypt(std::iter::once(&witness as &dyn age::Identity)) {
            Ok(_) => Ok(witness.proven.get()),
            Err(age::DecryptError::NoMatchingKeys) => Err(super::DecodeError::WrongIdentity {
                file: self.file(),
                recipients: Vec::new(),
            }),
            Err(e) => Err(super::DecodeError::Header(e.to_string())),
        }
    }

    /// The file key of the age file whose header (through the payload nonce) is `header`,
    /// unwrapped by these identities; the header's MAC is checked with it.
    pub fn file_key(&self, header: &[u8]) -> Result<[u8; 16], super::DecodeError> {
        let witness = Witness {
            identities: self,
            proven: std::cell::Cell::new(false),
            file_key: std::cell::Cell::new(None),
        };
        let decryptor = age::Decryptor::new_buffered(header)
            .map_err(|e| super::DecodeError::Header(e.to_string()))?;
        match decryptor.decrypt(std::iter::once(&witness as &dyn age::Identity)) {
            Ok(_) => witness
                .file_key
                .get()
                .ok_or_else(|| super::DecodeError::Header("no file key unwrapped".into())),
            Err(age::DecryptError::NoMatchingKeys) => Err(super::DecodeError::WrongIdentity {
                file: self.file(),
                recipients: Vec::new(),
            }),
            Err(e) => Err(super::DecodeError::Header(e.to_string())),
        }
    }

    /// The file they came from, for messages.
    pub fn file(&self) -> String {
        self.file
            .as_deref()
            .map_or_else(|| "the given identity".to_owned(), shown)
    }
}

/// Unwraps the file key as the identities do, and notes it, and whether the header also
/// carries the authentication stanza of one of their keys for that file key.
struct Witness<'a> {
    identities: &'a Identities,
    proven: std::cell::Cell<bool>,
    file_key: std::cell::Cell<Option<[u8; 16]>>,
}

impl age::Identity for Witness<'_> {
    fn unwrap_stanza(
        &self,
        stanza: &age_core::format::Stanza,
    ) -> Option<Result<age_core::format::FileKey, age::DecryptError>> {
        self.unwrap_stanzas(std::slice::from_ref(stanza))
    }

    fn unwrap_stanzas(
        &self,
        stanzas: &[age_core::format::Stanza],
    ) -> Option<Result<age_core::format::FileKey, age::DecryptError>> {
        let file_key = self
            .identities
            .iter()
            .find_map(|identity| identity.unwrap_stanzas(stanzas))?;
        if let Ok(key) = &file_key {
            use age_core::secrecy::ExposeSecret;
            self.file_key.set(Some(*key.expose_secret()));
            let proven = self
                .identities
                .authentication
                .iter()
                .any(|auth| auth.signed(stanzas, key));
            self.proven.set(proven);
        }
        Some(file_key)
    }
}

/// A new X25519 identity written to `out` in age's identity-file format (as `age-keygen`
/// writes it: creation time, public key, secret key). A file is created 0600 and never
/// replaced. Returns the recipient to put in `[encryption] recipients`.
pub fn keygen(out: Option<&Path>) -> io::Result<String> {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let created = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let text = format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    match out {
        Some(path) => {
            let auth = authentication_key_path(path);
            if auth.exists() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", shown(&auth)),
                ));
            }
            write_private(path, &text)?;
            let key = super::auth::AuthKey::of_identity(&identity);
            write_private(&auth, &key.to_file_text(&recipient))?;
        }
        None => io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(recipient)
}

/// Where `keygen -o FILE` writes the identity's authentication key: `FILE.auth`.
pub fn authentication_key_path(identity_file: &Path) -> PathBuf {
    let mut name = identity_file.as_os_str().to_owned();
    name.push(".auth");
    PathBuf::from(name)
}

/// The authentication key of the first X25519 identity in `identity_file`, written to `out`
/// (0600, never replacing a file) or stdout. Returns that identity's recipient.
pub fn authentication_key_of(identity_file: &Path, out: Option<&Path>) -> io::Result<String> {
    let text = read_key_file(identity_file)?;
    let identity = text
        .lines()
        .find_map(|line| age::x25519::Identity::from_str(line.trim()).ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds no X25519 identity (AGE-SECRET-KEY-1...)",
                    shown(identity_file)
                ),
            )
        })?;
    let recipient = identity.to_public().to_string();
    let text = super::auth::AuthKey::of_identity(&identity).to_file_text(&recipient);
    match out {
        Some(path) => write_private(path, &text)?,
        None => io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(recipient)
}

/// Creates `path` (mode 0600, failing if it exists) holding `text`, synced.
fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn recipients_files_skip_comments_and_name_a_bad_line() {
        let a = age::x25519::Identity::generate().to_public().to_string();
        let b = age::x25519::Identity::generate().to_public().to_string();
        let text = format!("# laptop\n{a}\n\n   {b}  \n");
        let parsed = parse_recipients_file(&text).unwrap();
        let back: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        assert_eq!(back, [a.clone(), b]);
        let err = parse_recipients_file(&format!("{a}\nage1nope\n")).unwrap_err();
        assert!(err.starts_with("line 2: \"age1nope\" is not"), "{err}");
    }

    #[test]
    fn keygen_writes_a_private_file_once_that_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        let recipient = keygen(Some(&path)).unwrap();
        assert!(recipient.starts_with("age1"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("# public key: {recipient}")),
            "{text}"
        );
        assert_eq!(
            keygen(Some(&path)).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        Identities::load(&path).unwrap();
        std::fs::write(dir.path().join("empty"), "# nothing\n").unwrap();
        let err = Identities::load(&dir.path().join("empty")).unwrap_err();
        assert!(err.to_string().contains("holds no identity"), "{err}");
    }
}
