//! Archive descriptions: Glacier's only per-archive metadata, at most 1,024 printable ASCII
//! characters, never changeable. Ours start with the archive name people recognise, followed by
//! `gb1:` and base64url-encoded JSON carrying what is needed to rebuild the ledger from a vault
//! inventory (source path as raw bytes, kind, fingerprint, upload time).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use glacier_backup_archiver::{ArchiveMeta, SourceKind};
use serde::{Deserialize, Serialize};

/// Glacier's limit.
pub const MAX_LEN: usize = 1024;
const MARKER: &str = " gb1:";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Encoded {
    /// Source path, base64url of its bytes (paths need not be UTF-8).
    p: String,
    /// `file` or `directory`.
    k: String,
    /// Fingerprint; left out when the description would be too long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    f: Option<String>,
    /// Upload start, RFC 3339.
    t: String,
}

/// What a description of ours says about its archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The archive name at the front (possibly shortened).
    pub name: String,
    /// Absolute source path.
    pub source_path: PathBuf,
    /// File or directory.
    pub kind: SourceKind,
    /// Fingerprint, when it fitted.
    pub fingerprint: Option<String>,
    /// Upload start time.
    pub started_at: Option<time::OffsetDateTime>,
}

fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect::<String>()
        .trim_start()
        .to_owned()
}

/// The seed's description: just the archive name, made valid.
pub fn plain(meta: &ArchiveMeta) -> String {
    let mut name = printable(&meta.name);
    name.truncate(MAX_LEN);
    name
}

/// Name plus encoded metadata, within [`MAX_LEN`]. When it would not fit, the fingerprint is
/// dropped first, then the name is shortened; a source path too long to fit at all falls back
/// to the plain name (the archive is still stored and recorded, only not rebuildable).
pub fn encode(meta: &ArchiveMeta) -> String {
    let started = meta
        .started_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut payload = Encoded {
        p: URL_SAFE_NO_PAD.encode(meta.source_path.as_os_str().as_bytes()),
        k: meta.kind.as_str().to_owned(),
        f: Some(meta.fingerprint.clone()),
        t: started,
    };
    let name = printable(&meta.name);
    for with_fingerprint in [true, false] {
        if !with_fingerprint {
            payload.f = None;
        }
        let json = serde_json::to_vec(&payload).expect("plain data serializes");
        let tail = format!("{MARKER}{}", URL_SAFE_NO_PAD.encode(json));
        if tail.len() <= MAX_LEN {
            let room = MAX_LEN - tail.len();
            let mut head = name.clone();
            head.truncate(room);
            if head.is_empty() {
                // A description must not start with the marker's space, which Glacier drops.
                head.push('_');
                if head.len() + tail.len() > MAX_LEN {
                    continue;
                }
            }
            return head + &tail;
        }
    }
    plain(meta)
}

/// Reads a description written by [`encode`]; `None` for anything else (the seed's plain names,
/// other tools' archives).
pub fn decode(description: &str) -> Option<Decoded> {
    let (name, encoded) = description.rsplit_once(MARKER)?;
    let json = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let payload: Encoded = serde_json::from_slice(&json).ok()?;
    let path = URL_SAFE_NO_PAD.decode(&payload.p).ok()?;
    Some(Decoded {
        name: name.to_owned(),
        source_path: PathBuf::from(OsStr::from_bytes(&path)),
        kind: SourceKind::parse(&payload.k)?,
        fingerprint: payload.f,
        started_at: time::OffsetDateTime::parse(
            &payload.t,
            &time::format_description::well_known::Rfc3339,
        )
        .ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(path: &[u8], name: &str) -> ArchiveMeta {
        ArchiveMeta {
            source_path: PathBuf::from(OsStr::from_bytes(path)),
            name: name.into(),
            kind: SourceKind::Directory,
            fingerprint: "v1:entries=3:bytes=10:sha256=".to_owned() + &"ab".repeat(32),
            size_hint: 0,
            started_at: time::macros::datetime!(2026-11-26 02:19:07 UTC),
            resume: None,
            upload_started: None,
        }
    }

    fn valid(description: &str) {
        assert!(
            description.len() <= MAX_LEN,
            "{} characters",
            description.len()
        );
        assert!(
            description.bytes().all(|b| (0x20..=0x7e).contains(&b)),
            "{description}"
        );
        assert!(!description.starts_with(' '));
    }

    #[test]
    fn unicode_paths_round_trip_through_printable_ascii() {
        let m = meta(
            "/home/zoë/Фото 2026/日本".as_bytes(),
            "%E6%97%A5%E6%9C%AC.tar",
        );
        let d = encode(&m);
        valid(&d);
        assert!(d.starts_with("%E6%97%A5%E6%9C%AC.tar gb1:"), "{d}");
        let back = decode(&d).unwrap();
        assert_eq!(back.source_path, m.source_path);
        assert_eq!(back.kind, SourceKind::Directory);
        assert_eq!(back.fingerprint.as_deref(), Some(m.fingerprint.as_str()));
        assert_eq!(back.started_at, Some(m.started_at));
    }

    #[test]
    fn invalid_utf8_paths_round_trip() {
        let m = meta(b"/data/\xff\xfe", "%FF%FE.tar");
        assert_eq!(decode(&encode(&m)).unwrap().source_path, m.source_path);
    }

    #[test]
    fn very_long_names_and_paths_stay_within_the_limit() {
        let long_name = "n".repeat(900);
        let long_path = format!("/{}", "deep/".repeat(100)) + &long_name;
        let m = meta(long_path.as_bytes(), &long_name);
        let d = encode(&m);
        valid(&d);
        let back = decode(&d).expect("still decodable after shortening");
        assert_eq!(back.source_path, m.source_path);

        let huge_path = format!("/{}", "x".repeat(4000));
        let d = encode(&meta(huge_path.as_bytes(), "x.tar"));
        valid(&d);
        assert_eq!(d, "x.tar");
    }

    #[test]
    fn the_seeds_plain_names_are_not_ours() {
        assert_eq!(decode("backup_20210320.tar"), None);
        valid(&plain(&meta(b"/a", "  spaced\u{7f}name")));
        assert_eq!(plain(&meta(b"/a", "  spaced name")), "spaced name");
    }
}
