//! The fake's own SHA-256 tree hash, written from AWS's description apart from the client's
//! (`glacier_backup_archiver::treehash`), so a mistake in one is not repeated in the other:
//! SHA-256 of each 1 MiB chunk, then adjacent pairs hashed together, level by level, an odd
//! node carried up as it is, until one is left.

use sha2::{Digest, Sha256};

const CHUNK: usize = 1 << 20;

/// The tree hash of `data` (of nothing: the SHA-256 of nothing).
pub fn of(data: &[u8]) -> [u8; 32] {
    if data.is_empty() {
        return Sha256::digest([]).into();
    }
    reduce(
        data.chunks(CHUNK)
            .map(|c| Sha256::digest(c).into())
            .collect(),
    )
}

/// The tree hash of an archive from its parts' tree hashes, when every part but the last is
/// the same power-of-two number of MiB: each is then a whole subtree of the archive's tree.
pub fn of_parts(parts: &[[u8; 32]]) -> [u8; 32] {
    if parts.is_empty() {
        return Sha256::digest([]).into();
    }
    reduce(parts.to_vec())
}

fn reduce(mut level: Vec<[u8; 32]>) -> [u8; 32] {
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut hasher = Sha256::new();
                    hasher.update(left);
                    hasher.update(right);
                    hasher.finalize().into()
                }
                [single] => *single,
                _ => unreachable!("chunks(2) gives one or two"),
            })
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_vectors() {
        let a = vec![b'a'; 3 * CHUNK];
        let hex = |h: [u8; 32]| hex::encode(h);
        assert_eq!(
            hex(of(&a[..CHUNK])),
            "9bc1b2a288b26af7257a36277ae3816a7d4f16e89c1e7e77d0a5c48bad62b360"
        );
        assert_eq!(
            hex(of(&a[..CHUNK + 1])),
            "8dd49bbc6297567fac3852c2deddcdbc57358bc403c10d4f6dc64b143ad9b27b"
        );
        assert_eq!(
            hex(of(&a)),
            "70239f4f2ead7561f69d48b956b547edef52a1280a93c262c0b582190be7db17"
        );
        // The SDK's own test vector: 105,906,680 bytes of a repeated pattern, also from parts.
        let data: Vec<u8> = b"01245678912"
            .iter()
            .copied()
            .cycle()
            .take(105_906_680)
            .collect();
        let expected = "3d417484359fc9f5a3bafd576dc47b8b2de2bf2d4fdac5aa2aff768f2210d386";
        assert_eq!(hex(of(&data)), expected);
        let parts: Vec<_> = data.chunks(8 * CHUNK).map(of).collect();
        assert_eq!(hex(of_parts(&parts)), expected);
    }
}
