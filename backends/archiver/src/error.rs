//! The one error type every backend maps its failures into.

use std::io;

/// Boxed error from below (an SDK, the file system, the archive source).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in an [`Archiver`](crate::Archiver) call, and whether trying again may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No archive with that id exists in the backend.
    #[error("{backend}: archive {archive_id:?} not found")]
    NotFound {
        /// Backend name.
        backend: &'static str,
        /// The id that was looked up.
        archive_id: String,
    },

    /// The archive is in cold storage: request a restore and wait before reading it.
    #[error("{backend}: archive {archive_id:?} is in cold storage; request a restore first")]
    NeedsRestore {
        /// Backend name.
        backend: &'static str,
        /// The archive concerned.
        archive_id: String,
    },

    /// The stream of archive bytes failed (for example a source file changed while being read).
    /// Nothing was stored.
    #[error("reading the archive source failed")]
    Source(#[source] BoxError),

    /// Stored bytes do not match what was sent or recorded.
    #[error("{backend}: integrity check failed for {archive_id:?}: expected tree hash {expected}, got {actual}")]
    Integrity {
        /// Backend name.
        backend: &'static str,
        /// The archive concerned.
        archive_id: String,
        /// What was expected (hex).
        expected: String,
        /// What was found (hex).
        actual: String,
    },

    /// The backend cannot do this at all.
    #[error("{backend}: {operation} is not supported")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// What was asked.
        operation: &'static str,
    },

    /// The backend's settings are wrong; `message` says which setting and how to fix it.
    #[error("{backend}: {message}")]
    Config {
        /// Backend name.
        backend: &'static str,
        /// What to fix.
        message: String,
    },

    /// A local file operation failed.
    #[error("{backend}: {context}")]
    Io {
        /// Backend name.
        backend: &'static str,
        /// What was being done, naming the path.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A part sent without its bytes because an earlier run stored it ([`Part::held`]) is
    /// not in the upload being continued (the service dropped it, or the upload is new): the
    /// caller must send it again, with its bytes.
    ///
    /// [`Part::held`]: crate::Part::held
    #[error("{backend}: part {number} of the continued upload is no longer stored; it must be sent again")]
    PartNotHeld {
        /// Backend name.
        backend: &'static str,
        /// The part's number, from 1.
        number: u64,
    },

    /// A remote service refused or failed the call.
    #[error("{backend}: {message}")]
    Remote {
        /// Backend name.
        backend: &'static str,
        /// `code: message` as the service gave it, plus what was being done.
        message: String,
        /// True when retrying later may succeed (throttling, 5xx, timeouts).
        temporary: bool,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// True when the same call may succeed if tried again later.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Remote { temporary, .. } => *temporary,
            Error::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    /// The byte range to read from an archive of `len` bytes: `range`, or all of it. A range
    /// reaching past the end is an error rather than a silently shorter read.
    pub fn check_range(
        backend: &'static str,
        archive_id: &str,
        range: Option<std::ops::Range<u64>>,
        len: u64,
    ) -> Result<std::ops::Range<u64>, Error> {
        let range = range.unwrap_or(0..len);
        if range.start > range.end || range.end > len {
            return Err(Error::Remote {
                backend,
                message: format!(
                    "range {range:?} is outside archive {archive_id:?} of {len} bytes"
                ),
                temporary: false,
                source: None,
            });
        }
        Ok(range)
    }

    /// An [`Error::Io`] naming what was being done.
    pub fn io(backend: &'static str, context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            backend,
            context: context.into(),
            source,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
