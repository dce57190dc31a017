//! Whether a candidate needs uploading: new, changed since its last upload, or up to date;
//! and whether an empty one is an archive the destination cannot store.

use std::fmt;

use glacier_backup_archiver::Archiver;
use time::OffsetDateTime;

use super::CandidateError;
use crate::candidate::{Candidate, Scan};
use crate::ledger::{Ledger, UploadRecord};
use crate::resolve::Planned;

/// Why a candidate is (or is not) uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Never uploaded before.
    New,
    /// Changed since the upload at this time (if known).
    Changed {
        /// When the previous upload happened.
        since: Option<OffsetDateTime>,
    },
    /// Already uploaded, and re-uploads are off or it did not change.
    UpToDate {
        /// When it was uploaded (if known).
        at: Option<OffsetDateTime>,
        /// Whether its state was compared (`upload_if_changed`).
        checked: bool,
    },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = |t: &Option<OffsetDateTime>| match t {
            Some(t) => crate::display_time(*t),
            None => "an unknown time".into(),
        };
        match self {
            Decision::New => f.write_str("new"),
            Decision::Changed { since } => write!(f, "changed since its upload at {}", when(since)),
            Decision::UpToDate { at, checked: true } => {
                write!(f, "unchanged since its upload at {}", when(at))
            }
            Decision::UpToDate { at, checked: false } => {
                write!(f, "already uploaded at {}", when(at))
            }
        }
    }
}

/// Decides whether `planned` needs uploading. Returns the scan when one was taken, so it is
/// not taken twice.
pub fn decide(
    planned: &Planned,
    ledger: &Ledger,
) -> Result<(Decision, Option<Scan>), CandidateError> {
    let last = ledger.latest_upload(planned.candidate.source_path())?;
    let scan = match &last {
        Some(_) if planned.upload_if_changed => Some(planned.candidate.scan()?),
        _ => None,
    };
    Ok((
        decision(last.as_ref(), planned.upload_if_changed, scan.as_ref()),
        scan,
    ))
}

/// The decision for a candidate whose latest upload is `last`: `scan` is needed only when
/// there is one and `upload_if_changed` is set.
pub(super) fn decision(
    last: Option<&UploadRecord>,
    upload_if_changed: bool,
    scan: Option<&Scan>,
) -> Decision {
    match (last, scan) {
        (None, _) => Decision::New,
        (Some(last), Some(scan)) if upload_if_changed => {
            if changed_since(last, scan) {
                Decision::Changed {
                    since: last.uploaded_at,
                }
            } else {
                Decision::UpToDate {
                    at: last.uploaded_at,
                    checked: true,
                }
            }
        }
        (Some(last), _) => Decision::UpToDate {
            at: last.uploaded_at,
            checked: false,
        },
    }
}

/// Whether the source `scan` describes changed since the upload `last`: its fingerprint
/// differs, or, for a row of the Python tool (no fingerprint), something in it is newer than
/// the upload (the Python tool compared the mtime with the upload time; the newest mtime
/// anywhere in the tree also sees edits deep inside a directory). `backup` and `verify` share
/// this one rule, so a source one calls unchanged the other does too.
pub fn changed_since(last: &UploadRecord, scan: &Scan) -> bool {
    match (&last.fingerprint, last.uploaded_at) {
        (Some(recorded), _) => *recorded != scan.fingerprint.to_string(),
        (None, Some(at)) => scan.fingerprint.newest_mtime_ns > at.unix_timestamp_nanos(),
        (None, None) => true,
    }
}

/// Whether `candidate`, when empty, is an archive `archiver` cannot store (a file to a Glacier
/// vault; a directory's tar is never empty, nor is a compressed or encrypted archive: a zstd
/// frame, an age header). One rule for the run and its dry run.
pub(super) fn may_be_unstorable(
    candidate: &dyn Candidate,
    archiver: &dyn Archiver,
    format: &crate::codec::Format,
) -> bool {
    format.is_plain()
        && candidate.kind() == glacier_backup_archiver::SourceKind::File
        && !archiver.capabilities().stores_empty_archives
}
