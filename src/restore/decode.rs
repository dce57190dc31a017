//! Undoing an archive's layers (age, then zstd) between the checked download and the file or
//! the extraction.

use std::io::Read;

use super::*;
use crate::codec::{decoder, DecodeError};

/// Fails an encrypted upload before anything is retrieved when no identity was given, or when
/// the identity's recipients are known and the archive's are not among them.
pub(super) fn check_identity(
    row: &UploadRecord,
    request: &RestoreRequest,
) -> Result<(), RestoreFailure> {
    if !row.encoding.encrypted {
        return Ok(());
    }
    let recipients = row.encoding.recipients.clone();
    match &request.identities {
        None => Err(RestoreFailure::Decode(DecodeError::NoIdentity {
            recipients,
        })),
        Some(identities) if identities.open_any_of(&recipients) == Some(false) => {
            Err(RestoreFailure::Decode(DecodeError::WrongIdentity {
                file: identities.file(),
                recipients,
            }))
        }
        Some(_) => Ok(()),
    }
}

/// The checked bytes, opened for reading from the start. A stored file's handles share one
/// position, so it is put back at the start whatever read it before.
pub(super) fn open(checked: &Checked) -> Result<std::fs::File, RestoreFailure> {
    match checked {
        Checked::Partial(path) => {
            std::fs::File::open(path).map_err(RestoreFailure::io("read", path))
        }
        Checked::Stored(file) => {
            use std::io::Seek;
            let mut file = file
                .try_clone()
                .map_err(RestoreFailure::io("read", "the stored archive"))?;
            file.seek(std::io::SeekFrom::Start(0))
                .map_err(RestoreFailure::io("read", "the stored archive"))?;
            Ok(file)
        }
    }
}

/// Whether the row was rebuilt from the destination (`inventory --rebuild-ledger`) rather than
/// written by an upload of this machine's: only uploads record the plain size of a compressed
/// or encrypted archive. Its size and tree hash are then the destination's word.
pub(super) fn rebuilt_from_destination(row: &UploadRecord) -> bool {
    !row.encoding.is_plain() && row.plain_size.is_none()
}

/// Whether an encrypted archive is known to be ours before anything of it is placed. A row
/// of this machine's own ledger is: its tree hash was recorded when the archive went up, and
/// the download matched it. A row rebuilt from the destination (which records no plain size)
/// is not: anyone with the public recipient can write a valid age file, and the destination
/// gave the tree hash too. Such an archive must carry the authentication stanza of the
/// identity's key (see [`crate::codec::auth`]), unless `trust_destination` says to restore it
/// anyway.
pub(super) fn check_authorship(
    row: &UploadRecord,
    checked: &Checked,
    identities: Option<&crate::codec::Identities>,
    trust_destination: bool,
) -> Result<(), RestoreFailure> {
    let Some(identities) = identities else {
        return Ok(());
    };
    if !row.encoding.encrypted || !rebuilt_from_destination(row) {
        return Ok(());
    }
    let proven = identities
        .authenticate(open(checked)?)
        .map_err(RestoreFailure::Decode)?;
    if proven {
        return Ok(());
    }
    if trust_destination {
        tracing::warn!(
            "{}: archive {} carries no proof that these backups wrote it (its row was rebuilt \
             from the destination); restored anyway, as --trust-destination says",
            shown(&row.path),
            row.archive_id
        );
        return Ok(());
    }
    Err(RestoreFailure::Unproven {
        archive_id: row.archive_id.clone(),
    })
}

/// The archive's own bytes, read from its checked bytes.
pub(super) fn plain_reader(
    row: &UploadRecord,
    checked: &Checked,
    identities: Option<&crate::codec::Identities>,
) -> Result<Box<dyn Read + Send>, RestoreFailure> {
    let reader = std::io::BufReader::with_capacity(1 << 20, open(checked)?);
    decoder(&row.encoding, identities, reader).map_err(RestoreFailure::Decode)
}

/// Decrypts the whole archive without keeping anything: fails as damaged when any chunk fails
/// age's authentication or the end is missing.
pub(super) fn authenticate(
    row: &UploadRecord,
    checked: &Checked,
    identities: Option<&crate::codec::Identities>,
) -> Result<(), RestoreFailure> {
    let encrypted_only = glacier_backup_archiver::Encoding {
        compression: glacier_backup_archiver::Compression::None,
        ..row.encoding.clone()
    };
    let reader = std::io::BufReader::with_capacity(1 << 20, open(checked)?);
    let mut plain = decoder(&encrypted_only, identities, reader).map_err(RestoreFailure::Decode)?;
    std::io::copy(&mut plain, &mut std::io::sink())
        .map(drop)
        .map_err(|e| damaged(row, e))
}

/// Writes the plain bytes of a file archive into `decoded`, synced: the file that is then
/// renamed into place. A failure leaves nothing at `decoded`.
pub(super) fn decode_file(
    row: &UploadRecord,
    checked: &Checked,
    decoded: &Path,
    identities: Option<&crate::codec::Identities>,
) -> Result<(), RestoreFailure> {
    let mut plain = plain_reader(row, checked, identities)?;
    let result = (|| {
        let mut out =
            std::fs::File::create(decoded).map_err(RestoreFailure::io("create", decoded))?;
        super::extract::copy_whole(&mut plain, &mut out).map_err(|e| damaged(row, e))?;
        out.sync_all().map_err(RestoreFailure::io("sync", decoded))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(decoded);
    }
    result
}

/// A read error while undoing the layers: age's authentication or zstd's checks failed, so the
/// stored bytes are not what was uploaded.
pub(super) fn damaged(row: &UploadRecord, error: std::io::Error) -> RestoreFailure {
    RestoreFailure::Damaged {
        archive_id: row.archive_id.clone(),
        detail: error.to_string(),
    }
}
