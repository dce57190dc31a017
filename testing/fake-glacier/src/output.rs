//! What the fake sends back: part listings, assembled archives, inventories, job output.

use super::*;

pub(crate) fn list_parts(u: &Upload, upload: &str, query: &str) -> Reply {
    // Small pages, so that callers must follow the marker.
    const PAGE: usize = 3;
    let marker: u64 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("marker="))
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let page: Vec<_> = u.parts.range(marker..).take(PAGE + 1).collect();
    let next = (page.len() > PAGE).then(|| page[PAGE].0.to_string());
    let parts: Vec<_> = page
        .iter()
        .take(PAGE)
        .map(|(start, (_, len, hash))| {
            serde_json::json!({"RangeInBytes": format!("{}-{}", start, *start + len - 1), "SHA256TreeHash": hash.to_hex()})
        })
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({
            "ArchiveDescription": u.description,
            "MultipartUploadId": upload,
            "PartSizeInBytes": u.part_size,
            "Parts": parts,
            "Marker": next,
        }),
    )
}

/// Checks completion the way Glacier does: parts contiguous from 0, all full but the last,
/// covering exactly the claimed size, with the claimed tree hash.
pub(crate) fn assemble(
    u: &Upload,
    size: Option<u64>,
    claimed: Option<&str>,
) -> Result<(Bytes, TreeHash, u64), String> {
    let size = size.ok_or("missing x-amz-archive-size")?;
    if u.parts.is_empty() {
        return Err("the upload has no parts".into());
    }
    let mut hashes = Vec::new();
    let mut data = Vec::new();
    let mut expected_offset = 0;
    let count = u.parts.len();
    for (i, (offset, (bytes, len, hash))) in u.parts.iter().enumerate() {
        if *offset != expected_offset {
            return Err(format!("part missing at offset {expected_offset}"));
        }
        if i + 1 < count && *len != u.part_size {
            return Err(format!("part at {offset} is shorter than the part size"));
        }
        hashes.push(hash.0);
        data.extend_from_slice(bytes);
        expected_offset += len;
    }
    if expected_offset != size {
        return Err(format!(
            "parts cover {expected_offset} bytes, archive size says {size}"
        ));
    }
    let hash = TreeHash(treehash::of_parts(&hashes));
    if !claimed.is_some_and(|c| c.eq_ignore_ascii_case(&hash.to_hex())) {
        return Err("Checksum mismatch: the archive tree hash does not match its parts".into());
    }
    Ok((Bytes::from(data), hash, size))
}

/// The vault's inventory as Glacier's job output gives it, dated `taken`.
pub(crate) fn inventory(vault: &str, v: &Vault, taken: &str) -> Bytes {
    let list: Vec<_> = v
        .archives
        .iter()
        .map(|(id, a)| {
            serde_json::json!({
                "ArchiveId": id,
                "ArchiveDescription": a.description,
                "CreationDate": "2026-01-01T00:00:00Z",
                "Size": a.size,
                "SHA256TreeHash": a.tree_hash.to_hex(),
            })
        })
        .collect();
    let body = serde_json::json!({
        "VaultARN": format!("arn:aws:glacier:us-east-1:012345678901:vaults/{vault}"),
        "InventoryDate": taken,
        "ArchiveList": list,
    });
    Bytes::from(body.to_string())
}

pub(crate) fn describe(v: &Vault, id: &str, job: &Job) -> serde_json::Value {
    let done = job.ready_at <= Instant::now();
    if job.inventory.is_some() {
        return serde_json::json!({
            "JobId": id,
            "Action": "InventoryRetrieval",
            "Completed": done,
            "StatusCode": if done { "Succeeded" } else { "InProgress" },
            "CreationDate": "2026-01-01T00:00:00.000Z",
        });
    }
    let archive = v.archives.get(&job.archive_id);
    let size = archive.map_or(0, |a| a.size);
    let (start, end) = job.range.unwrap_or((0, size));
    // The range's own tree hash, only when it is tree-hash aligned (as Glacier gives it).
    let range_hash = match (archive.and_then(|a| a.data.as_ref()), job.range) {
        (_, None) => archive.map(|a| a.tree_hash.to_hex()),
        (Some(data), Some(_)) if tree_hash_aligned(start, end - start, size) => Some(hex::encode(
            treehash::of(&data[start as usize..end as usize]),
        )),
        _ => None,
    };
    serde_json::json!({
        "JobId": id,
        "Action": "ArchiveRetrieval",
        "ArchiveId": job.archive_id,
        "Completed": done,
        "StatusCode": if done { "Succeeded" } else { "InProgress" },
        "Tier": job.tier,
        "ArchiveSizeInBytes": archive.map(|a| a.size),
        "ArchiveSHA256TreeHash": archive.map(|a| a.tree_hash.to_hex()),
        "RetrievalByteRange": format!("{start}-{}", end.saturating_sub(1)),
        "SHA256TreeHash": range_hash,
        "CreationDate": "2026-01-01T00:00:00.000Z",
    })
}

/// A retrieval job's output: the archive, or the `job_range` it retrieved, read whole or by
/// the request's `range` (relative to the output). The output's tree hash comes for a
/// tree-hash aligned read of a job whose own range is tree-hash aligned. `corrupt`: one byte
/// of the output is flipped after its tree hash is taken.
pub(crate) fn job_output(
    archive: &StoredArchive,
    job_range: Option<(u64, u64)>,
    range: Option<&str>,
    corrupt: bool,
) -> Reply {
    let Some(data) = &archive.data else {
        return bad("this fake was told not to keep archive bytes");
    };
    let (job_start, job_end) = job_range.unwrap_or((0, data.len() as u64));
    let job_aligned = tree_hash_aligned(job_start, job_end - job_start, data.len() as u64);
    let data = data.slice(job_start as usize..job_end as usize);
    let len = data.len() as u64;
    let (start, end) = match range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
    {
        None => (0, len.saturating_sub(1)),
        Some((a, b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b && b < len => (a, b),
            _ => {
                return error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidParameterValueException",
                    "bad range",
                )
            }
        },
    };
    let slice = data.slice(start as usize..(end + 1) as usize);
    let mut headers = vec![("content-type", "application/octet-stream".to_owned())];
    let aligned = job_aligned && tree_hash_aligned(start, end + 1 - start, len);
    if aligned {
        headers.push(("x-amz-sha256-tree-hash", hex::encode(treehash::of(&slice))));
    }
    let slice = match corrupt && !slice.is_empty() {
        true => {
            let mut damaged = slice.to_vec();
            damaged[slice.len() / 2] ^= 0x20;
            Bytes::from(damaged)
        }
        false => slice,
    };
    let status = if range.is_some() {
        headers.push(("content-range", format!("bytes {start}-{end}/{len}")));
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    respond(status, &headers, slice)
}
