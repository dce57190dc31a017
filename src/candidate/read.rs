//! Reading a source file exactly as it was listed, noticing when it changes underneath, and the
//! error for a source that could not be archived as it was.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use glacier_backup_archiver::shown;
use sha2::{Digest, Sha256};

/// A source could not be archived as it was.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file changed while it was being read; the archive would not match any real state.
    #[error(
        "{}: {what} while being archived; it will be tried again on the next run",
        shown(path)
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// What was noticed.
        what: &'static str,
    },
    /// A file disappeared between listing and reading.
    #[error(
        "{}: vanished while being archived; it will be tried again on the next run",
        shown(path)
    )]
    Vanished {
        /// The file.
        path: PathBuf,
    },
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", shown(path))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The consumer of the archive stopped reading (upload failed or cancelled).
    #[error("archiving stopped because the upload ended")]
    Stopped,
    /// Compressing or encrypting the archive failed (zstd or age refused, or memory ran out).
    #[error("cannot compress or encrypt the archive: {0}")]
    Encode(String),
}

impl SourceError {
    /// Wraps an I/O error on `path`, recognising a vanished file.
    pub fn io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            SourceError::Vanished {
                path: path.to_path_buf(),
            }
        } else {
            SourceError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    /// Recovers a `SourceError` that travelled inside an `io::Error` (through the tar
    /// builder), or wraps a plain one as an error on `path`.
    pub fn from_io(error: io::Error, path: &Path) -> Self {
        if error.get_ref().is_some_and(|e| e.is::<SourceError>()) {
            let inner = error.into_inner().expect("checked above");
            return *inner.downcast::<SourceError>().expect("checked above");
        }
        if error.kind() == io::ErrorKind::BrokenPipe {
            return SourceError::Stopped;
        }
        SourceError::io(path, error)
    }
}

/// Modification time in nanoseconds since the epoch (negative before 1970).
pub fn mtime_ns(meta: &Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// Reads exactly the `len` bytes a file had when it was listed, and fails if it turns out to be
/// shorter, longer, or modified by the time the read ends.
pub struct ExactFileReader {
    file: File,
    path: PathBuf,
    remaining: u64,
    mtime: i128,
    /// The SHA-256 of what was read, when asked for ([`ExactFileReader::digesting`]).
    digest: Option<Sha256>,
}

impl ExactFileReader {
    /// Opens `path` and checks it still has the size and mtime in `listed`.
    pub fn open(path: &Path, listed: &Metadata) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|e| SourceError::io(path, e))?;
        Self::checked(file, path, listed.len(), mtime_ns(listed))
    }

    /// Reads `file`, opened as `path`, which was listed with this size and mtime.
    pub(super) fn checked(
        file: File,
        path: &Path,
        listed_len: u64,
        listed_mtime: i128,
    ) -> Result<Self, SourceError> {
        let now = file.metadata().map_err(|e| SourceError::io(path, e))?;
        if !now.is_file() {
            return Err(SourceError::Changed {
                path: path.to_path_buf(),
                what: "is no longer a regular file",
            });
        }
        if now.len() != listed_len || mtime_ns(&now) != listed_mtime {
            return Err(SourceError::Changed {
                path: path.to_path_buf(),
                what: "changed between listing and reading",
            });
        }
        Ok(ExactFileReader {
            file,
            path: path.to_path_buf(),
            remaining: listed_len,
            mtime: listed_mtime,
            digest: None,
        })
    }

    /// Also hashes the bytes read (SHA-256), for [`ExactFileReader::finish`] to return.
    pub fn digesting(mut self) -> Self {
        self.digest = Some(Sha256::new());
        self
    }

    /// Reads the file through only to hash it (what `verify_content` compares), in large
    /// reads; checked as [`ExactFileReader::finish`] checks.
    pub fn digest_all(self) -> Result<[u8; 32], SourceError> {
        let mut reader = self.digesting();
        let mut buffer = vec![0u8; reader.remaining.min(super::READ_CHUNK as u64) as usize];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SourceError::from_io(e, &reader.path)),
            }
        }
        // Digesting, `finish` gives the digest.
        Ok(reader.finish()?.unwrap_or_default())
    }

    /// Checks, after all bytes were read, that the file neither grew nor was modified; returns
    /// the SHA-256 of its bytes when [`ExactFileReader::digesting`].
    pub fn finish(mut self) -> Result<Option<[u8; 32]>, SourceError> {
        let mut probe = [0u8; 1];
        let extra = self
            .file
            .read(&mut probe)
            .map_err(|e| SourceError::io(&self.path, e))?;
        let meta = self
            .file
            .metadata()
            .map_err(|e| SourceError::io(&self.path, e))?;
        if extra > 0 {
            return Err(self.changed("grew"));
        }
        if mtime_ns(&meta) != self.mtime {
            return Err(self.changed("was modified"));
        }
        Ok(self.digest.take().map(|digest| digest.finalize().into()))
    }

    fn changed(&self, what: &'static str) -> SourceError {
        SourceError::Changed {
            path: self.path.clone(),
            what,
        }
    }
}

impl Read for ExactFileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self
            .file
            .read(&mut buf[..want])
            .map_err(|e| io::Error::other(SourceError::io(&self.path, e)))?;
        if n == 0 {
            return Err(io::Error::other(self.changed("shrank")));
        }
        self.remaining -= n as u64;
        if let Some(digest) = &mut self.digest {
            digest.update(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn open(path: &Path) -> ExactFileReader {
        ExactFileReader::open(path, &std::fs::metadata(path).unwrap()).unwrap()
    }

    #[test]
    fn a_file_that_grows_while_read_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let mut reader = open(&path);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        let mut sink = Vec::new();
        reader.read_to_end(&mut sink).unwrap();
        assert_eq!(sink.len(), 10_000, "reads exactly the listed size");
        let err = reader.finish().unwrap_err();
        assert!(
            matches!(err, SourceError::Changed { what: "grew", .. }),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_shrinks_while_read_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let mut reader = open(&path);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(10)
            .unwrap();
        let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
        let err = SourceError::from_io(err, &path);
        assert!(
            matches!(err, SourceError::Changed { what: "shrank", .. }),
            "{err}"
        );
    }

    #[test]
    fn a_file_rewritten_in_place_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"original").unwrap();
        let mut reader = open(&path);
        let mut sink = Vec::new();
        reader.read_to_end(&mut sink).unwrap();
        let later = filetime::FileTime::from_unix_time(2_000_000_000, 0);
        filetime::set_file_mtime(&path, later).unwrap();
        assert!(matches!(
            reader.finish(),
            Err(SourceError::Changed {
                what: "was modified",
                ..
            })
        ));
    }

    #[test]
    fn a_file_that_vanished_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            ExactFileReader::open(&path, &meta),
            Err(SourceError::Vanished { .. })
        ));
    }
}
