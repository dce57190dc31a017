//! Uploads: one part with PutObject, more as a resumable multipart upload with a CRC64NVME
//! checksum on every part and the whole, and part receipts recorded for a later run.

use crate::*;

impl S3Archiver {
    /// A key for a new archive that no object has yet (`.1`, `.2`... appended if needed).
    pub(crate) async fn fresh_key(&self, meta: &ArchiveMeta) -> Result<String> {
        let base = format!(
            "{}{}",
            self.settings.prefix,
            archive_key(
                &meta.source_path,
                meta.started_at,
                meta.kind == SourceKind::Directory
            )
        );
        let client = self.client().await?;
        let mut key = base.clone();
        for n in 1..1000 {
            match client
                .head_object()
                .bucket(self.bucket())
                .key(&key)
                .send()
                .await
            {
                Ok(_) => key = format!("{base}.{n}"),
                Err(e) if ERRORS.is_not_found(&e) => return Ok(key),
                Err(e) => return Err(ERRORS.map(&format!("checking key {key}"), e)),
            }
        }
        Err(remote(format!("no free key near {base}"), false))
    }

    pub(crate) async fn put_single(&self, meta: &ArchiveMeta, part: Part) -> Result<ArchiveRef> {
        PartChecker::new(NAME, true).accept(&part)?;
        let key = self.fresh_key(meta).await?;
        let (sse, kms_key) = self.encryption();
        let mut metadata = Self::metadata(meta);
        metadata.insert(TREE_HASH_TAG.to_owned(), part.tree_hash.to_hex());
        let checksum = crc64(&part.data);
        let size = part.data.len() as u64;
        let out = self
            .client()
            .await?
            .put_object()
            .bucket(self.bucket())
            .key(&key)
            .storage_class(StorageClass::from(self.settings.storage_class.as_str()))
            .set_metadata(Some(metadata))
            .tagging(format!("{TREE_HASH_TAG}={}", part.tree_hash.to_hex()))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_crc64_nvme(&checksum)
            .body(SdkByteStream::from(part.data))
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("uploading {key}"), e))?;
        check_crc(&key, out.checksum_crc64_nvme(), &checksum)?;
        Ok(ArchiveRef {
            archive_id: key,
            size,
            tree_hash: part.tree_hash,
            description: None,
        })
    }

    /// Continues the upload named by `meta.resume` (`<upload id>\n<key>`) if S3 still has it,
    /// or starts a new one and reports its token on `meta.upload_events`. What S3 holds comes
    /// from ListParts, or, when S3's answer cannot be read, from the receipts recorded by the
    /// earlier run.
    pub(crate) async fn start_or_resume(
        &self,
        meta: &ArchiveMeta,
    ) -> Result<(String, String, StoredParts)> {
        if let Some((upload_id, key)) = meta.resume.as_deref().and_then(|t| t.split_once('\n')) {
            match self.stored_parts(key, upload_id).await {
                Ok(stored) => {
                    tracing::info!(
                        "{}: resuming upload {upload_id}: S3 already has {} part(s)",
                        shown(&meta.source_path),
                        stored.len()
                    );
                    return Ok((upload_id.to_owned(), key.to_owned(), stored));
                }
                Err(Error::NotFound { .. }) => tracing::warn!(
                    "{}: earlier upload {upload_id} no longer exists; starting over",
                    shown(&meta.source_path)
                ),
                Err(e) if e.is_temporary() => return Err(e),
                Err(e) if !meta.resume_receipts.is_empty() => {
                    // Some S3 stand-ins answer ListParts in a form the SDK cannot read; the
                    // receipts recorded part by part say the same.
                    tracing::warn!(
                        "{}: cannot list the parts of earlier upload {upload_id} ({e}); resuming \
                         from the {} part(s) recorded in the ledger",
                        shown(&meta.source_path),
                        meta.resume_receipts.len()
                    );
                    return Ok((
                        upload_id.to_owned(),
                        key.to_owned(),
                        parse_receipts(&meta.resume_receipts),
                    ));
                }
                Err(e) => {
                    tracing::warn!(
                        "{}: cannot list the parts of earlier upload {upload_id} ({e}); starting over",
                        shown(&meta.source_path)
                    );
                    let token = format!("{upload_id}\n{key}");
                    if let Err(abort) = self.abort_upload(&token).await {
                        tracing::warn!("could not abort upload {upload_id}: {abort}");
                    }
                }
            }
        }
        let key = self.fresh_key(meta).await?;
        let (sse, kms_key) = self.encryption();
        let out = self
            .client()
            .await?
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(&key)
            .storage_class(StorageClass::from(self.settings.storage_class.as_str()))
            .set_metadata(Some(Self::metadata(meta)))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_type(ChecksumType::FullObject)
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("starting a multipart upload of {key}"), e))?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| remote("S3 returned no upload id".into(), false))?
            .to_owned();
        if let Some(tx) = &meta.upload_events {
            // A closed channel means nobody records resumable uploads; nothing to do about it.
            let _ = tx.send(UploadEvent::Started(format!("{upload_id}\n{key}")));
        }
        Ok((upload_id, key, StoredParts::new()))
    }

    pub(crate) async fn stored_parts(&self, key: &str, upload_id: &str) -> Result<StoredParts> {
        let client = self.client().await?;
        let mut stored = StoredParts::new();
        let mut marker: Option<String> = None;
        loop {
            let out = client
                .list_parts()
                .bucket(self.bucket())
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| {
                    ERRORS.map_missing(
                        "listing the parts of an earlier upload",
                        &format!("multipart upload {upload_id}"),
                        e,
                    )
                })?;
            for part in out.parts() {
                if let (Some(number), Some(etag)) = (part.part_number(), part.e_tag()) {
                    let size = part.size().unwrap_or(0) as u64;
                    stored.insert(
                        number,
                        (
                            size,
                            etag.to_owned(),
                            part.checksum_crc64_nvme().map(str::to_owned),
                        ),
                    );
                }
            }
            if out.is_truncated() != Some(true) {
                return Ok(stored);
            }
            marker = out.next_part_number_marker().map(str::to_owned);
        }
    }

    pub(crate) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part: Part,
        checksum: String,
        events: Option<&tokio::sync::mpsc::UnboundedSender<UploadEvent>>,
    ) -> Result<CompletedPart> {
        let size = part.data.len();
        let number = i32::try_from(part.index + 1).expect("at most 10,000 parts");
        let out = self
            .client()
            .await?
            .upload_part()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_crc64_nvme(&checksum)
            .body(SdkByteStream::from(part.data))
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("uploading part {number} of {key}"), e))?;
        check_crc(
            &format!("part {number}"),
            out.checksum_crc64_nvme(),
            &checksum,
        )?;
        self.parts_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let (Some(tx), Some(etag)) = (events, out.e_tag()) {
            let _ = tx.send(UploadEvent::PartStored {
                number: number as u64,
                receipt: format!("{etag}\t{checksum}\t{size}"),
            });
        }
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .checksum_crc64_nvme(checksum)
            .build())
    }

    pub(crate) async fn put_multipart(
        &self,
        meta: &ArchiveMeta,
        parts: PartStream,
    ) -> Result<ArchiveRef> {
        let (upload_id, key, stored) = self.start_or_resume(meta).await?;
        // S3 knows nothing of tree hashes, so the parts' hashes are checked here.
        let mut checker = PartChecker::new(NAME, true);
        let mut whole = crc64fast_nvme::Digest::new();
        let mut completed: Vec<CompletedPart> = Vec::new();
        let mut skipped = 0u64;
        let max_parts = self.settings.max_parts;
        let outcome = upload_concurrently(parts, self.settings.connection.concurrency, |part| {
            checker.accept(&part)?;
            if part.index >= max_parts {
                return Err(remote(
                    format!(
                        "the archive outgrew {max_parts} parts of {} bytes; set a larger [s3] part_size",
                        part.data.len()
                    ),
                    false,
                ));
            }
            whole.write(&part.data);
            let checksum = crc64(&part.data);
            let number = i32::try_from(part.index + 1).expect("part count is limited above");
            if let Some((size, etag, stored_crc)) = stored.get(&number) {
                if *size == part.data.len() as u64 && stored_crc.as_deref() == Some(checksum.as_str()) {
                    completed.push(
                        CompletedPart::builder()
                            .part_number(number)
                            .e_tag(etag)
                            .checksum_crc64_nvme(checksum)
                            .build(),
                    );
                    skipped += 1;
                    return Ok(None);
                }
            }
            Ok(Some(self.upload_part(&key, &upload_id, part, checksum, meta.upload_events.as_ref())))
        })
        .await;
        let outcome = outcome.map(|uploaded| completed.extend(uploaded));
        if let Err(e) = outcome {
            if meta.upload_events.is_none() {
                if let Err(abort) = self.abort_upload(&format!("{upload_id}\n{key}")).await {
                    tracing::warn!("could not abort upload {upload_id}: {abort}");
                }
            }
            return Err(e);
        }
        if skipped > 0 {
            tracing::info!("{skipped} part(s) were already in S3 and were not sent again");
        }
        completed.sort_by_key(|p| p.part_number());
        let checksum = BASE64.encode(whole.sum64().to_be_bytes());
        let client = self.client().await?;
        let out = client
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(&key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .checksum_type(ChecksumType::FullObject)
            .checksum_crc64_nvme(&checksum)
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("completing the upload of {key}"), e))?;
        check_crc(&key, out.checksum_crc64_nvme(), &checksum)?;
        let tree_hash = checker.tree_hash();
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .tag_set(
                aws_sdk_s3::types::Tag::builder()
                    .key(TREE_HASH_TAG)
                    .value(tree_hash.to_hex())
                    .build()
                    .expect("key and value are set"),
            )
            .build()
            .expect("tag set is set");
        client
            .put_object_tagging()
            .bucket(self.bucket())
            .key(&key)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("tagging {key} with its tree hash"), e))?;
        Ok(ArchiveRef {
            archive_id: key,
            size: checker.size(),
            tree_hash,
            description: None,
        })
    }
}

/// Receipts written by `upload_part` (`ETag \t CRC64 \t size`) back into stored parts.
pub(crate) fn parse_receipts(receipts: &[(u64, String)]) -> StoredParts {
    receipts
        .iter()
        .filter_map(|(number, receipt)| {
            let mut fields = receipt.split('\t');
            let (etag, crc, size) = (fields.next()?, fields.next()?, fields.next()?.parse().ok()?);
            Some((
                i32::try_from(*number).ok()?,
                (size, etag.to_owned(), Some(crc.to_owned())),
            ))
        })
        .collect()
}

pub(crate) fn check_crc(what: &str, reported: Option<&str>, ours: &str) -> Result<()> {
    match reported {
        Some(theirs) if theirs != ours => Err(Error::Integrity {
            backend: NAME,
            archive_id: what.to_owned(),
            expected: ours.to_owned(),
            actual: theirs.to_owned(),
        }),
        _ => Ok(()),
    }
}
