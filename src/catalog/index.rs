//! The index stored beside each directory archive at the destination: what a machine that lost
//! its ledger needs to browse the archive and restore single entries from it: the archive's id,
//! size, tree hash, layers and origin, its catalog and its layout.
//!
//! The form: a first line `glacier-backup index 1`, a line of JSON (the archive's facts and the
//! two parts' lengths), the catalog, the layout, and a last line `sha256 <hex>` over everything
//! before it, so damage is found before anything is believed. `head -2` shows what it
//! describes. When the archive is encrypted, the whole index is encrypted to the same
//! recipients (file names are private too).

use std::io::{Read, Write};
use std::path::PathBuf;

use glacier_backup_archiver::{Encoding, SourceKind, TreeHash};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::Cataloged;
use crate::ledger::UploadRecord;

/// The first line of every index.
const FIRST_LINE: &[u8] = b"glacier-backup index 1\n";

/// What an index says: the archive's row (as the backup recorded it) and its catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// The archive's row, as far as an index tells it.
    pub row: UploadRecord,
    /// Its catalog and layout.
    pub catalog: Cataloged,
}

/// An index that cannot be believed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Not an index, cut short, or its hash does not match.
    #[error("damaged index: {0}")]
    Damaged(String),
    /// Encrypted, and cannot be opened or proven ours.
    #[error("{0}")]
    Encrypted(String),
}

impl Index {
    /// The index of `row` (a directory upload) with `catalog`, in its plain form.
    pub fn encode(row: &UploadRecord, catalog: &Cataloged) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let layout = catalog.layout.as_deref().unwrap_or_default();
        let facts = serde_json::json!({
            "archive_id": row.archive_id,
            "size": row.size,
            "tree_hash": row.tree_hash.map(|h| h.to_hex()),
            "path": hex::encode(row.path.as_os_str().as_bytes()),
            "path_shown": crate::shown(&row.path),
            "name": row.name,
            "fingerprint": row.fingerprint,
            "started_at": row.started_at.map(|t| t.unix_timestamp()),
            "layers": row.encoding.tag(),
            "recipients": row.encoding.recipients,
            "plain_size": row.plain_size,
            "base": catalog.base,
            "catalog_bytes": catalog.entries.len(),
            "layout_bytes": layout.len(),
        });
        let mut out = FIRST_LINE.to_vec();
        out.extend_from_slice(facts.to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&catalog.entries);
        out.extend_from_slice(layout);
        let digest = hex::encode(Sha256::digest(&out));
        out.extend_from_slice(format!("sha256 {digest}\n").as_bytes());
        out
    }

    /// Reads an index's plain form back, refusing it unless its hash matches.
    pub fn decode(bytes: &[u8], backend: &str) -> Result<Index, IndexError> {
        let damaged = |what: &str| IndexError::Damaged(what.to_owned());
        let body = bytes
            .strip_prefix(FIRST_LINE)
            .ok_or_else(|| damaged("not a glacier-backup index"))?;
        let trailer_at = bytes
            .len()
            .checked_sub(7 + 64 + 1)
            .ok_or_else(|| damaged("cut short"))?;
        let (hashed, trailer) = bytes.split_at(trailer_at);
        let digest = hex::encode(Sha256::digest(hashed));
        if trailer != format!("sha256 {digest}\n").as_bytes() {
            return Err(damaged("its hash does not match its bytes"));
        }
        let body = &body[..trailer_at - FIRST_LINE.len()];
        let line_end = body
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| damaged("no header line"))?;
        let facts: serde_json::Value = serde_json::from_slice(&body[..line_end])
            .map_err(|e| IndexError::Damaged(format!("header: {e}")))?;
        let parts = &body[line_end + 1..];
        let catalog_len = number(&facts, "catalog_bytes")?;
        let layout_len = number(&facts, "layout_bytes")?;
        if catalog_len.checked_add(layout_len) != Some(parts.len() as u64) {
            return Err(damaged("its parts do not add up"));
        }
        let (entries, layout) = parts.split_at(catalog_len as usize);
        Ok(Index {
            row: row_of(&facts, backend)?,
            catalog: Cataloged {
                entries: entries.to_vec(),
                layout: (!layout.is_empty()).then(|| layout.to_vec()),
                index_id: None,
                base: facts["base"].as_str().map(str::to_owned),
            },
        })
    }
}

/// The row an index's facts describe.
fn row_of(facts: &serde_json::Value, backend: &str) -> Result<UploadRecord, IndexError> {
    use std::os::unix::ffi::OsStringExt;
    let damaged = |what: &str| IndexError::Damaged(format!("header: {what}"));
    let text = |key: &str| facts[key].as_str().map(str::to_owned);
    let path = text("path")
        .and_then(|hex_path| hex::decode(hex_path).ok())
        .map(|bytes| PathBuf::from(std::ffi::OsString::from_vec(bytes)))
        .ok_or_else(|| damaged("no source path"))?;
    let mut encoding = Encoding::from_tag(&text("layers").unwrap_or_default())
        .ok_or_else(|| damaged("unknown layers"))?;
    encoding.recipients = facts["recipients"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(UploadRecord {
        path,
        name: text("name").unwrap_or_default(),
        archive_id: text("archive_id").ok_or_else(|| damaged("no archive id"))?,
        description: None,
        backend: backend.to_owned(),
        kind: Some(SourceKind::Directory),
        size: Some(number(facts, "size")?),
        tree_hash: text("tree_hash").and_then(|h| h.parse::<TreeHash>().ok()),
        fingerprint: text("fingerprint"),
        started_at: facts["started_at"]
            .as_i64()
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()),
        uploaded_at: None,
        encoding,
        plain_size: facts["plain_size"].as_u64(),
    })
}

fn number(facts: &serde_json::Value, key: &str) -> Result<u64, IndexError> {
    facts[key]
        .as_u64()
        .ok_or_else(|| IndexError::Damaged(format!("header: no {key}")))
}

/// The index as stored: encrypted with `seal` (a new one, to the archive's recipients) when
/// the archive is encrypted.
pub fn seal(plain: &[u8], seal: Option<&crate::codec::Seal>) -> std::io::Result<Vec<u8>> {
    let Some(seal) = seal else {
        return Ok(plain.to_vec());
    };
    let mut writer = seal.writer(Vec::new())?;
    writer.write_all(plain)?;
    writer.finish()
}

/// The plain form of a stored index: decrypted with `identities` when it is an age file, and
/// then only if it proves it was written by these backups (its authentication stanza), unless
/// `trust_destination`.
pub fn open(
    stored: &[u8],
    identities: Option<&crate::codec::Identities>,
    trust_destination: bool,
) -> Result<Vec<u8>, IndexError> {
    if stored.starts_with(FIRST_LINE) {
        return Ok(stored.to_vec());
    }
    let encrypted = |message: String| IndexError::Encrypted(message);
    let identities = identities.ok_or_else(|| {
        encrypted("the index is encrypted; give the identity file with --identity".into())
    })?;
    let proven = identities
        .authenticate(stored)
        .map_err(|e| encrypted(e.to_string()))?;
    if !proven && !trust_destination {
        return Err(encrypted(
            "the index carries no proof that these backups wrote it; give the identity whose \
             authentication key the backups used, or --trust-destination"
                .into(),
        ));
    }
    let decryptor = age::Decryptor::new_buffered(stored).map_err(|e| encrypted(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(identities.iter())
        .map_err(|e| encrypted(e.to_string()))?;
    let mut plain = Vec::new();
    reader
        .read_to_end(&mut plain)
        .map_err(|e| IndexError::Damaged(format!("age: {e}")))?;
    Ok(plain)
}

/// Stores the index of `record`'s archive (with `catalog`) beside it, through the one upload
/// owner, encrypted with `seal` when the archive is encrypted: the index's id.
pub async fn store_index(
    archiver: &dyn glacier_backup_archiver::Archiver,
    record: &UploadRecord,
    catalog: &Cataloged,
    seal_with: Option<&crate::codec::Seal>,
) -> Result<String, String> {
    use glacier_backup_archiver::parts::parts_from_bytes;
    let stored = seal(&Index::encode(record, catalog), seal_with).map_err(|e| e.to_string())?;
    let size = stored.len() as u64;
    let meta = glacier_backup_archiver::ArchiveMeta {
        source_path: record.path.clone(),
        name: format!("{}.index", record.name),
        kind: SourceKind::File,
        fingerprint: String::new(),
        size_hint: size,
        started_at: OffsetDateTime::now_utc(),
        encoding: Encoding {
            recipients: record.encoding.recipients.clone(),
            ..Encoding::plain()
        },
        index_of: Some(record.archive_id.clone()),
        indexed_tree_hash: record.tree_hash,
    };
    let parts = parts_from_bytes(stored.into(), archiver.part_size(size));
    crate::upload::put_journaled(archiver, &meta, None, parts, None)
        .await
        .map(|index| index.archive_id)
        .map_err(|e| crate::error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> UploadRecord {
        UploadRecord {
            path: PathBuf::from("/data/фото"),
            name: "фото.tar".into(),
            archive_id: "data/%D1%84/20261207T000000.000Z.tar".into(),
            description: None,
            backend: "local".into(),
            kind: Some(SourceKind::Directory),
            size: Some(123_456),
            tree_hash: Some(glacier_backup_archiver::treehash::tree_hash(b"x")),
            fingerprint: Some("v1:fp".into()),
            started_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).ok(),
            uploaded_at: None,
            encoding: Encoding::plain(),
            plain_size: None,
        }
    }

    #[test]
    fn an_index_round_trips_and_any_damage_is_refused() {
        let catalog = Cataloged {
            entries: b"GBC1 entries".to_vec(),
            layout: Some(b"GBL1 layout".to_vec()),
            index_id: None,
            base: None,
        };
        let bytes = Index::encode(&row(), &catalog);
        let back = Index::decode(&bytes, "local").unwrap();
        assert_eq!(back.row, row());
        assert_eq!(back.catalog, catalog);
        for at in [0, 30, bytes.len() / 2, bytes.len() - 3] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1;
            assert!(Index::decode(&flipped, "local").is_err(), "flipped at {at}");
        }
        assert!(Index::decode(&bytes[..bytes.len() - 1], "local").is_err());
    }

    #[test]
    fn an_encrypted_index_opens_only_with_proof_it_is_ours() {
        let identity = age::x25519::Identity::generate();
        let auth = crate::codec::auth::AuthKey::of_identity(&identity);
        let recipients = [identity.to_public()];
        let identities = crate::codec::Identities::from_identity(identity);
        let catalog = Cataloged {
            entries: vec![1, 2],
            layout: None,
            index_id: None,
            base: None,
        };
        let plain = Index::encode(&row(), &catalog);
        let ours = crate::codec::Seal::authenticated(&recipients, Some(&auth)).unwrap();
        let stored = seal(&plain, Some(&ours)).unwrap();
        assert!(
            !stored.windows(8).any(|w| w == b"/data/\xd1"),
            "names are private"
        );
        assert_eq!(open(&stored, Some(&identities), false).unwrap(), plain);
        assert!(open(&stored, None, false).is_err());
        // Anyone with the public recipient can write one: without the stanza it is refused.
        let forged = seal(&plain, Some(&crate::codec::Seal::new(&recipients).unwrap())).unwrap();
        assert!(open(&forged, Some(&identities), false).is_err());
        assert_eq!(open(&forged, Some(&identities), true).unwrap(), plain);
    }
}
