//! The rules the real service checks, applied to each request.

use super::*;

pub(crate) fn valid_description(d: &str) -> bool {
    d.len() <= 1024 && d.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// 1 MiB times a power of two, up to 4 GiB.
pub(crate) fn valid_part_size(size: u64) -> bool {
    size.is_power_of_two() && (1 << 20..=4096 << 20).contains(&size)
}

/// Parts in one multipart upload, as Glacier allows.
pub(crate) const MAX_PARTS: u64 = 10_000;

/// What an uploaded body hashes to, both ways Glacier checks it.
pub(crate) struct BodyHashes {
    pub(crate) tree: TreeHash,
    pub(crate) linear: String,
}

impl BodyHashes {
    pub(crate) fn of(body: &[u8]) -> Self {
        BodyHashes {
            tree: TreeHash(treehash::of(body)),
            linear: hex::encode(Sha256::digest(body)),
        }
    }
}

/// The body's tree hash, when the claimed tree hash and payload SHA-256 (both required, as
/// Glacier requires them of uploads) match it.
pub(crate) fn check_hashes(
    hashes: Option<&BodyHashes>,
    tree: Option<String>,
    content: Option<String>,
) -> Result<TreeHash, &'static str> {
    let hashes = hashes.ok_or("Invalid Content-Length: 0")?;
    let Some(tree) = tree else {
        return Err("missing x-amz-sha256-tree-hash");
    };
    if !tree.eq_ignore_ascii_case(&hashes.tree.to_hex()) {
        return Err("Checksum mismatch: the tree hash does not match the body");
    }
    match content {
        None => Err("missing x-amz-content-sha256"),
        Some(content) if !content.eq_ignore_ascii_case(&hashes.linear) => {
            Err("x-amz-content-sha256 does not match the body")
        }
        Some(_) => Ok(hashes.tree),
    }
}

/// `bytes a-b/*` -> (a, b).
pub(crate) fn parse_content_range(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix("bytes ")?.strip_suffix("/*")?;
    let (a, b) = rest.split_once('-')?;
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b).then_some((a, b))
}

/// Whether Glacier sends a range's tree hash: the range must be one subtree of the archive's
/// tree, a power-of-two number of MiB starting at a multiple of that size (or such a span cut
/// short by the archive's end).
pub(crate) fn tree_hash_aligned(start: u64, len: u64, archive_len: u64) -> bool {
    const MIB: u64 = 1 << 20;
    let span = len.div_ceil(MIB).next_power_of_two() * MIB;
    start.is_multiple_of(span) && (len == span || start + len == archive_len)
}
