//! The SHA-256 tree hash that Glacier uses for integrity checks, which every backend records.
//!
//! Leaves are SHA-256 digests of 1 MiB chunks; adjacent pairs are hashed together level by level,
//! an odd last node is carried up unchanged. Because complete subtrees of 2^k leaves are
//! independent, parts of `2^k MiB` can be hashed separately (and in parallel) and combined later
//! with [`TreeHashBuilder`], which keeps only O(log n) nodes whatever the archive size.

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// Size of one leaf of the tree.
pub const LEAF_SIZE: usize = 1 << 20;

/// A SHA-256 tree hash (or any SHA-256 node of the tree).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeHash(pub [u8; 32]);

impl TreeHash {
    /// The tree hash of zero bytes: the SHA-256 of the empty string.
    pub fn empty() -> Self {
        TreeHash(Sha256::digest([]).into())
    }

    /// Lower-case hex, as AWS sends and expects it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeHash({})", self.to_hex())
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("not a SHA-256 tree hash (expected 64 hex digits): {0:?}")]
pub struct ParseTreeHashError(String);

impl FromStr for TreeHash {
    type Err = ParseTreeHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseTreeHashError(s.to_owned()))?;
        Ok(TreeHash(out))
    }
}

fn combine(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Tree hash of a whole buffer. Leaves are hashed on several cores when there are enough of them.
pub fn tree_hash(data: &[u8]) -> TreeHash {
    tree_hash_of_leaves(&leaf_hashes(data))
}

/// The SHA-256 of each MiB of `data` (the last may cover less): the tree hash's leaves, which
/// check any MiB-aligned span of the bytes alone. On several cores when there are enough.
pub fn leaf_hashes(data: &[u8]) -> Vec<[u8; 32]> {
    if data.len() >= 2 * LEAF_SIZE {
        data.par_chunks(LEAF_SIZE)
            .map(|c| Sha256::digest(c).into())
            .collect()
    } else {
        data.chunks(LEAF_SIZE)
            .map(|c| Sha256::digest(c).into())
            .collect()
    }
}

/// The tree hash of bytes whose leaves (see [`leaf_hashes`]) are `leaves`.
pub fn tree_hash_of_leaves(leaves: &[[u8; 32]]) -> TreeHash {
    if leaves.is_empty() {
        return TreeHash::empty();
    }
    let mut builder = TreeHashBuilder::new();
    for leaf in leaves {
        builder
            .push_subtree(0, TreeHash(*leaf))
            .expect("leaves are always aligned");
    }
    builder.finish()
}

/// `log2(len / LEAF_SIZE)` when `len` is a power-of-two number of MiB, the sizes whose tree hash
/// is a complete subtree of the archive's tree.
pub fn subtree_level(len: u64) -> Option<u32> {
    if len >= LEAF_SIZE as u64 && len.is_power_of_two() {
        Some(len.trailing_zeros() - LEAF_SIZE.trailing_zeros())
    } else {
        None
    }
}

/// Combines the tree hashes of consecutive parts into the tree hash of their concatenation.
///
/// Every part but the last must be a power-of-two number of MiB, and no larger than the parts
/// before it (the usual case: all parts the same size). The last part may be any length.
#[derive(Debug, Default, Clone)]
pub struct TreeHashBuilder {
    /// Complete subtrees, strictly decreasing in level from bottom to top of the stack.
    stack: Vec<(u32, [u8; 32])>,
    tail: Option<[u8; 32]>,
}

/// A part was pushed that cannot be combined into a tree hash.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeHashPushError {
    /// A part was pushed after a part whose length was not a power of two MiB.
    #[error("a part followed the final (shorter) part of the archive")]
    AfterTail,
    /// A part larger than an earlier part breaks the tree's alignment.
    #[error("part of level {level} follows a smaller part of level {previous}")]
    Misaligned {
        /// Level of the rejected part.
        level: u32,
        /// Level of the part before it.
        previous: u32,
    },
}

impl TreeHashBuilder {
    /// An empty builder; finishing it gives [`TreeHash::empty`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a part of `len` bytes whose own tree hash is `hash`.
    pub fn push_part(&mut self, len: u64, hash: TreeHash) -> Result<(), TreeHashPushError> {
        if self.tail.is_some() {
            return Err(TreeHashPushError::AfterTail);
        }
        match subtree_level(len) {
            Some(level) => self.push_subtree(level, hash),
            None => {
                self.tail = Some(hash.0);
                Ok(())
            }
        }
    }

    fn push_subtree(&mut self, level: u32, hash: TreeHash) -> Result<(), TreeHashPushError> {
        if let Some(&(previous, _)) = self.stack.last() {
            if previous < level {
                return Err(TreeHashPushError::Misaligned { level, previous });
            }
        }
        let mut node = (level, hash.0);
        while let Some(&(top_level, top)) = self.stack.last() {
            if top_level != node.0 {
                break;
            }
            self.stack.pop();
            node = (node.0 + 1, combine(&top, &node.1));
        }
        self.stack.push(node);
        Ok(())
    }

    /// The tree hash of everything pushed so far.
    pub fn finish(&self) -> TreeHash {
        // Folding from the right reproduces the level-by-level pairing with odd nodes carried up.
        let mut acc = self.tail;
        for (_, node) in self.stack.iter().rev() {
            acc = Some(match acc {
                Some(right) => combine(node, &right),
                None => *node,
            });
        }
        acc.map(TreeHash).unwrap_or_else(TreeHash::empty)
    }
}

/// Incremental tree hash over a byte stream of any chunking, for verifying downloads.
#[derive(Clone, Default)]
pub struct TreeHasher {
    builder: TreeHashBuilder,
    leaf: Sha256,
    leaf_len: usize,
    total: u64,
}

impl TreeHasher {
    /// A hasher that has seen no bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds more bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        while !data.is_empty() {
            let take = (LEAF_SIZE - self.leaf_len).min(data.len());
            self.leaf.update(&data[..take]);
            self.leaf_len += take;
            data = &data[take..];
            if self.leaf_len == LEAF_SIZE {
                let leaf = std::mem::take(&mut self.leaf).finalize();
                self.leaf_len = 0;
                self.builder
                    .push_subtree(0, TreeHash(leaf.into()))
                    .expect("full leaves are always aligned");
            }
        }
    }

    /// Number of bytes fed so far.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// True when no bytes were fed.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The tree hash of all bytes fed.
    pub fn finish(mut self) -> TreeHash {
        if self.leaf_len > 0 {
            let leaf = self.leaf.finalize();
            self.builder.tail = Some(leaf.into());
        }
        self.builder.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook algorithm, level by level, to check the incremental ones against.
    fn naive(data: &[u8]) -> TreeHash {
        if data.is_empty() {
            return TreeHash::empty();
        }
        let mut level: Vec<[u8; 32]> = data
            .chunks(LEAF_SIZE)
            .map(|c| Sha256::digest(c).into())
            .collect();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| {
                    if p.len() == 2 {
                        combine(&p[0], &p[1])
                    } else {
                        p[0]
                    }
                })
                .collect();
        }
        TreeHash(level[0])
    }

    #[test]
    fn aws_vectors() {
        let a = vec![b'a'; 3 * LEAF_SIZE];
        assert_eq!(
            tree_hash(&a[..LEAF_SIZE]).to_hex(),
            "9bc1b2a288b26af7257a36277ae3816a7d4f16e89c1e7e77d0a5c48bad62b360"
        );
        assert_eq!(
            tree_hash(&a[..LEAF_SIZE + 1]).to_hex(),
            "8dd49bbc6297567fac3852c2deddcdbc57358bc403c10d4f6dc64b143ad9b27b"
        );
        assert_eq!(
            tree_hash(&a).to_hex(),
            "70239f4f2ead7561f69d48b956b547edef52a1280a93c262c0b582190be7db17"
        );
    }

    #[test]
    fn sdk_vector_105_mb() {
        let pattern = b"01245678912";
        let data: Vec<u8> = pattern.iter().copied().cycle().take(105_906_680).collect();
        let expected = "3d417484359fc9f5a3bafd576dc47b8b2de2bf2d4fdac5aa2aff768f2210d386";
        assert_eq!(tree_hash(&data).to_hex(), expected);
        let mut parts = TreeHashBuilder::new();
        for part in data.chunks(8 * LEAF_SIZE) {
            parts.push_part(part.len() as u64, tree_hash(part)).unwrap();
        }
        assert_eq!(parts.finish().to_hex(), expected);
    }

    #[test]
    fn empty_input_is_sha256_of_nothing() {
        let expected = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(tree_hash(&[]).to_hex(), expected);
        assert_eq!(TreeHasher::new().finish().to_hex(), expected);
        assert_eq!(TreeHashBuilder::new().finish().to_hex(), expected);
    }

    #[test]
    fn every_way_agrees_with_the_naive_algorithm() {
        let data: Vec<u8> = (0..(13 * LEAF_SIZE + 4321))
            .map(|i| (i * 7 + i / 991) as u8)
            .collect();
        for len in [
            1,
            1000,
            LEAF_SIZE - 1,
            LEAF_SIZE,
            2 * LEAF_SIZE,
            5 * LEAF_SIZE + 3,
        ]
        .into_iter()
        .chain([7, 8, 9, 12, 13].map(|m| m * LEAF_SIZE))
        .chain([data.len()])
        {
            let slice = &data[..len];
            let expected = naive(slice);
            assert_eq!(tree_hash(slice), expected, "whole buffer, len {len}");

            let mut streamed = TreeHasher::new();
            for chunk in slice.chunks(333_333) {
                streamed.update(chunk);
            }
            assert_eq!(streamed.len(), len as u64);
            assert_eq!(streamed.finish(), expected, "streamed, len {len}");

            for part_mib in [1, 2, 4] {
                let mut parts = TreeHashBuilder::new();
                for part in slice.chunks(part_mib * LEAF_SIZE) {
                    parts.push_part(part.len() as u64, tree_hash(part)).unwrap();
                }
                assert_eq!(parts.finish(), expected, "{part_mib} MiB parts, len {len}");
            }
        }
    }

    #[test]
    fn misuse_is_reported_not_miscomputed() {
        let mut b = TreeHashBuilder::new();
        b.push_part(10, TreeHash::empty()).unwrap();
        assert_eq!(
            b.push_part(LEAF_SIZE as u64, TreeHash::empty()),
            Err(TreeHashPushError::AfterTail)
        );
        let mut b = TreeHashBuilder::new();
        b.push_part(LEAF_SIZE as u64, TreeHash::empty()).unwrap();
        assert!(matches!(
            b.push_part(4 * LEAF_SIZE as u64, TreeHash::empty()),
            Err(TreeHashPushError::Misaligned { .. })
        ));
    }

    #[test]
    fn hex_round_trip_and_rejects_garbage() {
        let h = tree_hash(b"hello");
        assert_eq!(h.to_hex().parse::<TreeHash>().unwrap(), h);
        assert!("xyz".parse::<TreeHash>().is_err());
    }
}
