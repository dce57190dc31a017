//! age keys: recipients from the configuration, identity files for restores, and new keys.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use glacier_backup_archiver::shown;

/// Parses one X25519 recipient (`age1...`); the error says what was wrong with it.
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient, String> {
    let text = text.trim();
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
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        let mode = file.metadata().map_err(read_error)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "identity file {} can be read by other users (mode {:o}); make it private: \
                 chmod 600 {}",
                shown(path),
                mode & 0o777,
                shown(path)
            );
        }
        // age's own limit for identity files.
        let mut text = String::new();
        io::Read::read_to_string(&mut io::Read::take(&mut file, 16 << 20), &mut text)
            .map_err(read_error)?;
        let recipients = text
            .lines()
            .filter_map(|line| age::x25519::Identity::from_str(line.trim()).ok())
            .map(|identity| identity.to_public().to_string())
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
        })
    }

    /// One identity held in memory (tests, library callers).
    pub fn from_identity(identity: age::x25519::Identity) -> Self {
        Identities {
            file: None,
            recipients: vec![identity.to_public().to_string()],
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

    /// The file they came from, for messages.
    pub fn file(&self) -> String {
        self.file
            .as_deref()
            .map_or_else(|| "the given identity".to_owned(), shown)
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
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        None => io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

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
