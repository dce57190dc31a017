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

/// The checked bytes, opened for reading from the start.
pub(super) fn open(checked: &Checked) -> Result<std::fs::File, RestoreFailure> {
    match checked {
        Checked::Partial(path) => {
            std::fs::File::open(path).map_err(RestoreFailure::io("read", path))
        }
        Checked::Stored(file) => file
            .try_clone()
            .map_err(RestoreFailure::io("read", "the stored archive")),
    }
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
    let (true, Some(identities)) = (row.encoding.encrypted, identities) else {
        return Ok(());
    };
    // Read from the start, whatever read the stored file before.
    rewind(checked)?;
    let proven = identities
        .authenticate(open(checked)?)
        .map_err(RestoreFailure::Decode);
    rewind(checked)?;
    if proven? || row.plain_size.is_some() {
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

/// Puts a stored file's position back at the start after a read through [`open`] (its clones
/// share the position).
fn rewind(checked: &Checked) -> Result<(), RestoreFailure> {
    if let Checked::Stored(file) = checked {
        use std::io::Seek;
        (&*file)
            .seek(std::io::SeekFrom::Start(0))
            .map_err(RestoreFailure::io("read", "the stored archive"))?;
    }
    Ok(())
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
/// age's authentication or the end is missing. Reads from the start of `checked`, and leaves a
/// stored file's position back at the start.
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
    std::io::copy(&mut plain, &mut std::io::sink()).map_err(|e| damaged(row, e))?;
    rewind(checked)
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
