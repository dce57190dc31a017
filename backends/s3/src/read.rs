//! What an object says about itself: its origin (metadata and tree-hash tag) and whether it
//! can be read (restore state).

use crate::*;

impl S3Archiver {
    /// Fills in a listed object's origin and tree hash.
    pub(crate) async fn describe_listed(
        &self,
        mut archive: ListedArchive,
    ) -> Result<ListedArchive> {
        let key = archive.archive_id.clone();
        let client = self.client().await?;
        let head = client
            .head_object()
            .bucket(self.bucket())
            .key(&key)
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("reading the metadata of {key}"), e))?;
        let metadata = head.metadata().cloned().unwrap_or_default();
        archive.origin = origin_from_metadata(&metadata);
        let mut tree_hash = metadata.get(TREE_HASH_TAG).cloned();
        if tree_hash.is_none() && archive.origin.is_some() {
            // Tags of archived objects cannot always be read (moto refuses for DEEP_ARCHIVE);
            // the hash is then unknown, which is not an error.
            tree_hash = self.tree_hash_tag(&key).await.ok().flatten();
        }
        archive.tree_hash = tree_hash.and_then(|h| h.parse().ok());
        Ok(archive)
    }

    /// The object's tree-hash tag, if it has one.
    pub(crate) async fn tree_hash_tag(&self, key: &str) -> Result<Option<String>> {
        let tags = self
            .client()
            .await?
            .get_object_tagging()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("reading the tags of {key}"), e))?;
        Ok(tags
            .tag_set()
            .iter()
            .find(|t| t.key() == TREE_HASH_TAG)
            .map(|t| t.value().to_owned()))
    }

    /// The object's restore state from HEAD: `x-amz-restore`, or its class when it has none.
    pub(crate) async fn head_state(&self, key: &str) -> Result<RestoreState> {
        let head = self
            .client()
            .await?
            .head_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
            .map_err(|e| ERRORS.map_missing(&format!("checking {key}"), key, e))?;
        Ok(match head.restore() {
            Some(r) if r.contains("ongoing-request=\"true\"") => {
                RestoreState::InProgress { request_id: None }
            }
            Some(_) => RestoreState::Ready,
            None => {
                let class = head
                    .storage_class()
                    .map(|c| c.as_str().to_owned())
                    .unwrap_or_default();
                if is_cold(&class) {
                    RestoreState::NotRequested
                } else {
                    RestoreState::Ready
                }
            }
        })
    }
}

/// Reads back what [`S3Archiver::metadata`] wrote; `None` for objects this tool did not write.
pub(crate) fn origin_from_metadata(metadata: &HashMap<String, String>) -> Option<Origin> {
    use std::os::unix::ffi::OsStrExt;
    let path: Vec<u8> =
        percent_encoding::percent_decode_str(metadata.get("gb-source-path")?).collect();
    if !path.starts_with(b"/") {
        return None;
    }
    // Written percent-encoded by `header_safe`.
    let text = |key: &str| {
        metadata.get(key).map(|value| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    };
    let mut encoding = match metadata.get("gb-encoding") {
        Some(tag) => glacier_backup_archiver::Encoding::from_tag(tag)?,
        None => glacier_backup_archiver::Encoding::plain(),
    };
    encoding.recipients = text("gb-recipients")
        .map(|list| glacier_backup_archiver::Encoding::parse_recipients(&list))
        .unwrap_or_default();
    Some(Origin {
        name: text("gb-name").unwrap_or_default(),
        source_path: std::ffi::OsStr::from_bytes(&path).into(),
        kind: SourceKind::parse(metadata.get("gb-kind")?)?,
        fingerprint: text("gb-fingerprint"),
        started_at: metadata
            .get("gb-started-at")
            .and_then(|t| t.parse().ok())
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok()),
        encoding,
    })
}
