//! One handler per route of the Glacier API the fake answers.

use super::*;

pub(super) fn create_vault(s: &mut State, _: &Received<'_>, vault: &str) -> Reply {
    s.vaults.entry(vault.to_owned()).or_default();
    respond(
        StatusCode::CREATED,
        &[("location", format!("/-/vaults/{vault}"))],
        Bytes::new(),
    )
}

pub(super) fn describe_vault(s: &mut State, _: &Received<'_>, vault: &str) -> Reply {
    match s.vaults.get(vault) {
        Some(v) => json(
            StatusCode::OK,
            serde_json::json!({
                "VaultARN": format!("arn:aws:glacier:us-east-1:000000000000:vaults/{vault}"),
                "VaultName": vault,
                "CreationDate": "2026-01-01T00:00:00.000Z",
                "NumberOfArchives": v.archives.len(),
                "SizeInBytes": v.archives.values().map(|a| a.size).sum::<u64>(),
            }),
        ),
        None => missing(&format!("vault {vault}")),
    }
}

pub(super) fn upload_archive(s: &mut State, r: &Received<'_>, vault: &str) -> Reply {
    let id = s.id("archive-");
    let Some(v) = s.vaults.get_mut(vault) else {
        return missing(&format!("vault {vault}"));
    };
    let Some(description) = r.description.clone() else {
        return bad("invalid archive description");
    };
    if !valid_description(&description) {
        bad("invalid archive description")
    } else if r.body.is_empty() {
        bad("Invalid Content-Length: 0")
    } else {
        match check_hashes(
            r.hashes.as_ref(),
            r.get("x-amz-sha256-tree-hash"),
            r.get("x-amz-content-sha256"),
        ) {
            Err(message) => bad(message),
            Ok(hash) => {
                v.archives.insert(
                    id.clone(),
                    StoredArchive {
                        description,
                        size: r.body.len() as u64,
                        tree_hash: hash,
                        data: r.keep_data.then_some(r.body.clone()),
                    },
                );
                created_archive(vault, &id, hash)
            }
        }
    }
}

pub(super) fn initiate_upload(s: &mut State, r: &Received<'_>, vault: &str) -> Reply {
    let id = s.id("upload-");
    s.stats.uploads_started += 1;
    let Some(v) = s.vaults.get_mut(vault) else {
        return missing(&format!("vault {vault}"));
    };
    let Some(description) = r.description.clone() else {
        return bad("invalid archive description");
    };
    let part_size: u64 = r
        .get("x-amz-part-size")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    if !valid_description(&description) {
        bad("invalid archive description")
    } else if !valid_part_size(part_size) {
        bad("invalid part size: must be 1 MiB multiplied by a power of 2, up to 4 GiB")
    } else {
        v.uploads.insert(
            id.clone(),
            Upload {
                description,
                created: format!("2026-01-01T00:00:{:02}.000Z", v.uploads.len() % 60),
                part_size,
                parts: BTreeMap::new(),
            },
        );
        respond(
            StatusCode::CREATED,
            &[
                (
                    "location",
                    format!("/-/vaults/{vault}/multipart-uploads/{id}"),
                ),
                ("x-amz-multipart-upload-id", id),
            ],
            Bytes::new(),
        )
    }
}

pub(super) fn upload_part(s: &mut State, r: &Received<'_>, vault: &str, upload: &str) -> Reply {
    let parsed = r
        .get("content-range")
        .and_then(|range| parse_content_range(&range));
    let Some(u) = s
        .vaults
        .get_mut(vault)
        .and_then(|v| v.uploads.get_mut(upload))
    else {
        return missing(&format!("upload {upload}"));
    };
    match parsed {
        None => bad("missing or malformed Content-Range"),
        Some((start, end)) => {
            let len = end + 1 - start;
            if start % u.part_size != 0 || len > u.part_size || len != r.body.len() as u64 {
                bad("Content-Range does not match the part size or the body")
            } else if start / u.part_size >= MAX_PARTS {
                bad("a multipart upload holds at most 10,000 parts")
            } else if r.refuse_from.is_some_and(|n| start / u.part_size >= n) {
                bad("injected permanent refusal of this part")
            } else {
                match check_hashes(
                    r.hashes.as_ref(),
                    r.get("x-amz-sha256-tree-hash"),
                    r.get("x-amz-content-sha256"),
                ) {
                    Err(message) => bad(message),
                    Ok(hash) => {
                        let kept = if r.keep_data {
                            r.body.clone()
                        } else {
                            Bytes::new()
                        };
                        u.parts.insert(start, (kept, len, hash));
                        s.stats.parts_stored.push((upload.to_owned(), start));
                        respond(
                            StatusCode::NO_CONTENT,
                            &[("x-amz-sha256-tree-hash", hash.to_hex())],
                            Bytes::new(),
                        )
                    }
                }
            }
        }
    }
}

pub(super) fn list_parts_of(s: &mut State, r: &Received<'_>, vault: &str, upload: &str) -> Reply {
    match s.vaults.get(vault).and_then(|v| v.uploads.get(upload)) {
        None => missing(&format!("upload {upload}")),
        Some(u) => list_parts(u, upload, r.query),
    }
}

pub(super) fn complete_upload(s: &mut State, r: &Received<'_>, vault: &str, upload: &str) -> Reply {
    let id = s.id("archive-");
    let Some(v) = s.vaults.get_mut(vault) else {
        return missing(&format!("vault {vault}"));
    };
    let size: Option<u64> = r.get("x-amz-archive-size").and_then(|v| v.parse().ok());
    let claimed = r.get("x-amz-sha256-tree-hash");
    let again = v.completed.get(upload).cloned();
    match (v.uploads.get(upload), again) {
        (None, Some((id, done_size, done_hash))) => {
            let same =
                size == Some(done_size) && claimed.as_deref() == Some(done_hash.to_hex().as_str());
            if same {
                created_archive(vault, &id, done_hash)
            } else {
                bad("the upload was completed with another size or tree hash")
            }
        }
        (None, None) => missing(&format!("upload {upload}")),
        (Some(u), _) => match assemble(u, size, claimed.as_deref()) {
            Err(message) => bad(&message),
            Ok((data, hash, size)) => {
                let u = v.uploads.remove(upload).expect("present");
                v.completed
                    .insert(upload.to_owned(), (id.clone(), size, hash));
                v.archives.insert(
                    id.clone(),
                    StoredArchive {
                        description: u.description,
                        size,
                        tree_hash: hash,
                        data: r.keep_data.then_some(data),
                    },
                );
                created_archive(vault, &id, hash)
            }
        },
    }
}

pub(super) fn list_uploads(s: &mut State, _: &Received<'_>, vault: &str) -> Reply {
    match s.vaults.get(vault) {
        None => missing(&format!("vault {vault}")),
        Some(v) => {
            let mut list: Vec<_> = v
            .uploads
            .iter()
            .map(|(id, u)| {
                serde_json::json!({
                    "MultipartUploadId": id,
                    "ArchiveDescription": u.description,
                    "PartSizeInBytes": u.part_size,
                    "CreationDate": u.created,
                    "VaultARN": format!("arn:aws:glacier:us-east-1:000000000000:vaults/{vault}"),
                })
            })
            .collect();
            list.sort_by(|a, b| {
                a["MultipartUploadId"]
                    .as_str()
                    .cmp(&b["MultipartUploadId"].as_str())
            });
            json(
                StatusCode::OK,
                serde_json::json!({"UploadsList": list, "Marker": null}),
            )
        }
    }
}

pub(super) fn abort_upload(s: &mut State, _: &Received<'_>, vault: &str, upload: &str) -> Reply {
    match s
        .vaults
        .get_mut(vault)
        .and_then(|v| v.uploads.remove(upload))
    {
        Some(_) => respond(StatusCode::NO_CONTENT, &[], Bytes::new()),
        None => missing(&format!("upload {upload}")),
    }
}

/// DeleteArchive: 204, or 404 for an archive the vault does not hold.
pub(super) fn delete_archive(s: &mut State, _: &Received<'_>, vault: &str, archive: &str) -> Reply {
    match s
        .vaults
        .get_mut(vault)
        .and_then(|v| v.archives.remove(archive))
    {
        Some(_) => {
            s.stats.deleted.push(archive.to_owned());
            respond(StatusCode::NO_CONTENT, &[], Bytes::new())
        }
        None => missing(&format!("archive {archive}")),
    }
}

pub(super) fn start_job(s: &mut State, r: &Received<'_>, vault: &str) -> Reply {
    let id = s.id("job-");
    let request: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let taken = s.behaviour.inventory_date.clone();
    let Some(v) = s.vaults.get_mut(vault) else {
        return missing(&format!("vault {vault}"));
    };
    let archive_id = request["ArchiveId"].as_str().unwrap_or_default().to_owned();
    if request["Type"] == "inventory-retrieval" {
        v.jobs.insert(
            id.clone(),
            Job {
                archive_id: String::new(),
                inventory: Some(inventory(vault, v, &taken)),
                tier: "Standard".into(),
                ready_at: Instant::now() + r.job_delay,
                range: None,
            },
        );
        respond(StatusCode::ACCEPTED, &[("x-amz-job-id", id)], Bytes::new())
    } else if request["Type"] != "archive-retrieval" {
        bad("this fake runs archive-retrieval and inventory-retrieval jobs only")
    } else if !v.archives.contains_key(&archive_id) {
        missing(&format!("archive {archive_id}"))
    } else {
        let size = v.archives[&archive_id].size;
        let range = match request["RetrievalByteRange"]
            .as_str()
            .map(|r| retrieval_range(r, size))
        {
            None => None,
            Some(Ok(range)) => Some(range),
            Some(Err(message)) => return bad(message),
        };
        let tier = request["Tier"].as_str().unwrap_or("Standard").to_owned();
        s.stats.retrievals_started += 1;
        s.stats.retrieval_ranges.push(range);
        let v = s.vaults.get_mut(vault).expect("looked up above");
        v.jobs.insert(
            id.clone(),
            Job {
                archive_id,
                inventory: None,
                tier,
                ready_at: Instant::now() + r.job_delay,
                range,
            },
        );
        respond(
            StatusCode::ACCEPTED,
            &[
                ("location", format!("/-/vaults/{vault}/jobs/{id}")),
                ("x-amz-job-id", id),
            ],
            Bytes::new(),
        )
    }
}

/// A `RetrievalByteRange` (`START-END`, inclusive) as Glacier takes it: START a multiple of
/// 1 MiB, END + 1 a multiple of 1 MiB or the archive's size. Returned as start..end.
fn retrieval_range(text: &str, size: u64) -> Result<(u64, u64), &'static str> {
    const MIB: u64 = 1 << 20;
    let refused =
        "RetrievalByteRange must be megabyte aligned: START a multiple of 1 MiB, END + 1 \
                   a multiple of 1 MiB or the archive size";
    let (start, end) = text.split_once('-').ok_or(refused)?;
    let (start, end) = (
        start.parse::<u64>().map_err(|_| refused)?,
        end.parse::<u64>().map_err(|_| refused)? + 1,
    );
    let aligned = start.is_multiple_of(MIB) && (end.is_multiple_of(MIB) || end == size);
    if start >= end || end > size || !aligned {
        return Err(refused);
    }
    Ok((start, end))
}

pub(super) fn list_jobs(s: &mut State, _: &Received<'_>, vault: &str) -> Reply {
    match s.vaults.get(vault) {
        None => missing(&format!("vault {vault}")),
        Some(v) => {
            let listed = {
                let list: Vec<_> = v
                    .jobs
                    .iter()
                    .map(|(id, job)| describe(v, id, job))
                    .collect();
                serde_json::json!({"JobList": list, "Marker": null})
            };
            s.stats.job_lists += 1;
            json(StatusCode::OK, listed)
        }
    }
}

pub(super) fn describe_job(s: &mut State, _: &Received<'_>, vault: &str, job: &str) -> Reply {
    match s
        .vaults
        .get(vault)
        .and_then(|v| v.jobs.get(job).map(|j| describe(v, job, j)))
    {
        Some(description) => json(StatusCode::OK, description),
        None => missing(&format!("job {job}")),
    }
}

pub(super) fn job_output_of(s: &mut State, r: &Received<'_>, vault: &str, job: &str) -> Reply {
    let found = s.vaults.get(vault).and_then(|v| {
        v.jobs.get(job).map(|j| {
            (
                j.ready_at,
                j.inventory.clone(),
                v.archives.get(&j.archive_id).cloned(),
                j.range,
            )
        })
    });
    match found {
        None => missing(&format!("job {job}")),
        Some((ready_at, _, _, _)) if ready_at > Instant::now() => {
            bad("the job is not finished yet")
        }
        Some((_, Some(inventory), _, _)) => respond(
            StatusCode::OK,
            &[("content-type", "application/json".to_owned())],
            inventory,
        ),
        Some((_, None, None, _)) => missing("archive"),
        Some((_, None, Some(archive), range)) => {
            let start = r
                .range
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, _)| a.parse().ok())
                .unwrap_or(0);
            let corrupt = s.behaviour.corrupt_output_at == Some(start);
            if corrupt {
                s.behaviour.corrupt_output_at = None;
            }
            let reply = job_output(&archive, range, r.range, corrupt);
            if let Ok(response) = &reply {
                if response.status().is_success() {
                    let len = hyper::body::Body::size_hint(response.body())
                        .exact()
                        .unwrap_or(0);
                    s.stats.output_bytes += len;
                    s.stats.outputs.push((start, len));
                }
            }
            reply
        }
    }
}
