//! Where an archive came from, written beside it as one line of printable ASCII so a lost
//! ledger can be rebuilt from the backend alone (a Glacier description, at most 1,024
//! characters and never changeable, is the tightest place it must fit).
//!
//! The line starts with the archive name people recognise, followed by ` gb1:` and, separated
//! by `:`, kind (`f`/`d`, followed by the encoding's tag when the stored bytes are compressed
//! or encrypted: `d+zstd3+age`), upload time (Unix seconds), fingerprint and source path, the
//! last two percent-encoded (so any bytes round-trip, and plain ASCII paths stay readable).
//! An encrypted archive's line ends with a fifth field, its age recipients, comma-separated.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::{ArchiveMeta, Encoding, SourceKind};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Glacier's description limit, which every backend keeps to so one encoding serves all.
pub const MAX_LEN: usize = 1024;
const MARKER: &str = " gb1:";

/// Kept as is inside encoded fields; everything else (`:`, spaces, non-ASCII) is escaped.
const FIELD: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'=')
    .remove(b',')
    .remove(b'@')
    .remove(b'+');

/// What an origin line of ours says about its archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
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
    /// Layers on the stored bytes; recipients only when they fitted.
    pub encoding: Encoding,
}

fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect::<String>()
        .trim_start()
        .to_owned()
}

fn escape(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, FIELD).to_string()
}

/// How an index's description (a Glacier vault, where it is an archive of its own) starts;
/// the archive it describes follows.
const INDEX_MARKER: &str = "gb1-index:";

/// The description of the index of archive `archive_id` (printable ASCII: ids are).
pub fn index_description(archive_id: &str) -> String {
    printable(&format!("{INDEX_MARKER}{archive_id}"))
}

/// The archive whose index `description` describes, if it is an index's.
pub fn indexed_by_description(description: &str) -> Option<&str> {
    description
        .strip_prefix(INDEX_MARKER)
        .filter(|id| !id.is_empty())
}

/// The Python tool's description: just the archive name, made valid.
pub fn plain(meta: &ArchiveMeta) -> String {
    let name = printable(&meta.name);
    cut_on_char(&name, MAX_LEN).to_owned()
}

/// The longest start of `name` (printable ASCII, other bytes as `%XX`) of at most `limit`
/// bytes that ends on a whole character: never inside a `%XX` escape, nor between the escapes
/// of one UTF-8 sequence (so a shortened `café` never ends in `%C3`).
fn cut_on_char(name: &str, limit: usize) -> &str {
    if name.len() <= limit {
        return name;
    }
    let bytes = name.as_bytes();
    let escaped = |i: usize| -> Option<u8> {
        if bytes.get(i) != Some(&b'%') {
            return None;
        }
        let hex = name.get(i + 1..i + 3)?;
        u8::from_str_radix(hex, 16).ok()
    };
    let mut cut = 0;
    let mut i = 0;
    while i < bytes.len() {
        // One character: a literal byte, or an escaped UTF-8 lead byte and its continuations.
        let end = match escaped(i) {
            Some(lead) if lead >= 0xC0 => {
                let mut end = i + 3;
                while escaped(end).is_some_and(|b| (0x80..0xC0).contains(&b)) {
                    end += 3;
                }
                end
            }
            Some(_) => i + 3,
            None => i + 1,
        };
        if end > limit {
            break;
        }
        cut = end;
        i = end;
    }
    &name[..cut]
}

/// What [`encode`] had to leave out to stay within [`MAX_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// Everything fitted.
    None,
    /// The age recipients were left out: the archive still decrypts, but a failed restore
    /// cannot name the keys it needs.
    Recipients,
    /// The fingerprint was left out: a ledger rebuilt from the backend compares this source
    /// by time instead.
    Fingerprint,
    /// The name was shortened as well (the fingerprint was left out first).
    Name,
    /// The source path alone does not fit: only the name is stored, and the archive cannot be
    /// put back in a ledger rebuilt from the backend.
    Origin,
}

/// Name plus metadata, within [`MAX_LEN`]. When it would not fit, the recipients are dropped
/// first, then the fingerprint, then the name is shortened (on a whole character); a source path too long to fit at
/// all falls back to the plain name: the archive is still stored and recorded, but a ledger
/// rebuilt from the backend will not know it, which the [`Shortfall`] says so the caller can
/// warn.
pub fn encode(meta: &ArchiveMeta) -> (String, Shortfall) {
    let mut kind = match meta.kind {
        SourceKind::File => "f",
        SourceKind::Directory => "d",
    }
    .to_owned();
    let tag = meta.encoding.tag();
    if !tag.is_empty() {
        kind = format!("{kind}+{tag}");
    }
    let path = escape(meta.source_path.as_os_str().as_bytes());
    let time = meta.started_at.unix_timestamp();
    let name = printable(&meta.name);
    let fingerprint = utf8_percent_encode(&meta.fingerprint, FIELD).to_string();
    let recipients =
        utf8_percent_encode(&meta.encoding.recipients_list().unwrap_or_default(), FIELD)
            .to_string();
    let tail = |fingerprint: &str, recipients: &str| {
        let mut tail = format!("{MARKER}{kind}:{time}:{fingerprint}:{path}");
        if !recipients.is_empty() {
            tail.push(':');
            tail.push_str(recipients);
        }
        tail
    };
    let whole = tail(&fingerprint, &recipients);
    if name.len() + whole.len() <= MAX_LEN && !name.is_empty() {
        return (format!("{name}{whole}"), Shortfall::None);
    }
    let unnamed = tail(&fingerprint, "");
    if name.len() + unnamed.len() <= MAX_LEN && !name.is_empty() {
        return (format!("{name}{unnamed}"), Shortfall::Recipients);
    }
    let bare = tail("", "");
    if name.len() + bare.len() <= MAX_LEN && !name.is_empty() {
        return (format!("{name}{bare}"), Shortfall::Fingerprint);
    }
    // At least one name character: a description must not start with the marker's space.
    let head = cut_on_char(&name, MAX_LEN.saturating_sub(bare.len()));
    if !head.is_empty() {
        return (format!("{head}{bare}"), Shortfall::Name);
    }
    (plain(meta), Shortfall::Origin)
}

/// Reads a description written by `encode`; `None` for anything else (the Python tool's plain
/// names, other tools' archives).
pub fn decode(description: &str) -> Option<Origin> {
    let (name, fields) = description.rsplit_once(MARKER)?;
    let mut fields = fields.splitn(5, ':');
    let kind_field = fields.next()?;
    let (kind, tag) = kind_field.split_once('+').unwrap_or((kind_field, ""));
    let kind = match kind {
        "f" => SourceKind::File,
        "d" => SourceKind::Directory,
        _ => return None,
    };
    let mut encoding = Encoding::from_tag(tag)?;
    let started_at = fields
        .next()?
        .parse()
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok());
    let fingerprint = fields.next()?;
    let path: Vec<u8> = percent_decode_str(fields.next()?).collect();
    if !path.starts_with(b"/") {
        return None;
    }
    if let Some(recipients) = fields.next() {
        encoding.recipients =
            Encoding::parse_recipients(&percent_decode_str(recipients).decode_utf8_lossy());
    }
    Some(Origin {
        name: name.to_owned(),
        source_path: PathBuf::from(OsStr::from_bytes(&path)),
        kind,
        fingerprint: (!fingerprint.is_empty()).then(|| {
            percent_decode_str(fingerprint)
                .decode_utf8_lossy()
                .into_owned()
        }),
        started_at,
        encoding,
    })
}

/// What a key made by [`crate::keys::archive_key`] says about its archive: source path, kind
/// and time, but no fingerprint. For backends whose keys are all they keep.
pub fn from_key(key: &str) -> Option<Origin> {
    let (directories, last) = key.rsplit_once('/')?;
    let (stamp, rest) = last.split_at_checked(crate::keys::TIMESTAMP_LEN)?;
    let started_at = crate::keys::parse_timestamp(stamp)?;
    // What may follow: `.tar`, the encoding's suffix, and the `.N` a backend adds when the
    // name was taken, in that order.
    let rest = match rest.rsplit_once('.') {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => rest,
    };
    // The key cannot say to whom an archive was encrypted, nor at which level it was compressed.
    let (encoding, rest) = Encoding::split_suffix(rest);
    let kind = match rest {
        "" => SourceKind::File,
        ".tar" => SourceKind::Directory,
        _ => return None,
    };
    let mut path = Vec::new();
    for component in directories.split('/') {
        let raw: Vec<u8> = percent_decode_str(component).collect();
        if raw.is_empty() || raw == b"." || raw == b".." || raw.contains(&b'/') {
            return None;
        }
        path.push(b'/');
        path.extend_from_slice(&raw);
    }
    Some(Origin {
        name: String::new(),
        source_path: PathBuf::from(OsStr::from_bytes(&path)),
        kind,
        fingerprint: None,
        started_at: Some(started_at),
        encoding,
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
            encoding: Encoding::plain(),
            index_of: None,
            indexed_tree_hash: None,
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
        let (d, shortfall) = encode(&m);
        valid(&d);
        assert_eq!(shortfall, Shortfall::None);
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
        assert_eq!(decode(&encode(&m).0).unwrap().source_path, m.source_path);
    }

    #[test]
    fn very_long_names_and_paths_stay_within_the_limit() {
        let long_name = "n".repeat(255);
        let long_path = format!("/{}", "deep/".repeat(100)) + &long_name;
        let m = meta(long_path.as_bytes(), &long_name);
        let (d, shortfall) = encode(&m);
        valid(&d);
        assert_eq!(shortfall, Shortfall::Name, "the fingerprint goes first");
        let back = decode(&d).expect("still decodable after shortening");
        assert_eq!(back.source_path, m.source_path);
        assert_eq!(back.fingerprint, None);
        assert!(d.starts_with("nnn"), "{d}");

        let huge_path = format!("/{}", "x".repeat(4000));
        let (d, shortfall) = encode(&meta(huge_path.as_bytes(), "x.tar"));
        valid(&d);
        assert_eq!((d.as_str(), shortfall), ("x.tar", Shortfall::Origin));
    }

    #[test]
    fn the_fingerprint_is_dropped_before_the_name_is_shortened() {
        // Fits whole without the fingerprint (~95 characters), not with it.
        let path = format!("/{}", "p".repeat(900));
        let m = meta(path.as_bytes(), "photos.tar");
        let (d, shortfall) = encode(&m);
        valid(&d);
        assert_eq!(shortfall, Shortfall::Fingerprint);
        assert!(d.starts_with("photos.tar gb1:"), "{d}");
        assert_eq!(decode(&d).unwrap().fingerprint, None);
    }

    #[test]
    fn a_shortened_name_ends_on_a_whole_character() {
        // 200 "é" (each %C3%A9, 6 bytes) and a path leaving room for about 100 name bytes.
        let name = "%C3%A9".repeat(200) + ".tar";
        let path = format!("/{}", "p".repeat(900));
        for room in 0..40 {
            let m = meta(format!("{path}{}", "q".repeat(room)).as_bytes(), &name);
            let (d, shortfall) = encode(&m);
            valid(&d);
            assert_eq!(shortfall, Shortfall::Name);
            let head = decode(&d).unwrap().name;
            assert_eq!(head.len() % 6, 0, "cut inside a character: {head}");
            assert!(percent_decode_str(&head).decode_utf8().is_ok(), "{head}");
        }
        assert_eq!(cut_on_char("ab%C3%A9c", 5), "ab");
        assert_eq!(cut_on_char("ab%C3%A9c", 8), "ab%C3%A9");
        assert_eq!(cut_on_char("ab%2", 3), "ab%");
        assert_eq!(cut_on_char("%41%42", 4), "%41");
    }

    #[test]
    fn keys_give_back_path_kind_and_time() {
        use crate::keys::archive_key;
        let at = time::macros::datetime!(2026-11-26 02:19:07.123 UTC);
        let path = PathBuf::from(OsStr::from_bytes(b"/home/zo\xc3\xab/My Docs/\xff%x"));
        let key = archive_key(&path, at, true);
        let origin = from_key(&key).unwrap();
        assert_eq!(origin.source_path, path);
        assert_eq!(origin.kind, SourceKind::Directory);
        assert_eq!(origin.started_at, Some(at));
        let taken = from_key(&format!("{}.2", archive_key(&path, at, false))).unwrap();
        assert_eq!((taken.kind, taken.source_path), (SourceKind::File, path));
        for foreign in [
            "notes.txt",
            "a/b.tar",
            "a/20261126T021907.123Z.zip",
            "/20261126T021907.123Z",
            "a/../20261126T021907.123Z",
        ] {
            assert_eq!(from_key(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn the_encoding_and_its_recipients_round_trip_and_give_way_first() {
        let mut m = meta(b"/data/photos", "photos.tar");
        m.encoding = Encoding {
            compression: crate::Compression::Zstd(Some(3)),
            encrypted: true,
            recipients: vec!["age1aaa".into(), "age1bbb".into()],
        };
        let (d, shortfall) = encode(&m);
        valid(&d);
        assert_eq!(shortfall, Shortfall::None);
        assert!(d.contains(" gb1:d+zstd3+age:"), "{d}");
        let back = decode(&d).unwrap();
        assert_eq!(back.encoding, m.encoding);
        assert_eq!(back.source_path, m.source_path);
        assert_eq!(back.fingerprint.as_deref(), Some(m.fingerprint.as_str()));

        // Too long with the recipients: they go before the fingerprint.
        m.encoding.recipients = vec!["age1".to_owned() + &"q".repeat(58); 14];
        let (d, shortfall) = encode(&m);
        valid(&d);
        assert_eq!(shortfall, Shortfall::Recipients);
        let back = decode(&d).unwrap();
        assert!(back.encoding.encrypted && back.encoding.recipients.is_empty());
        assert!(back.fingerprint.is_some());

        assert_eq!(decode("x gb1:d+gzip:1:fp:/a"), None, "an unknown layer");
    }

    #[test]
    fn keys_carry_the_encoding_suffix() {
        use crate::keys::key_for;
        let mut m = meta(b"/data/photos", "photos.tar");
        m.encoding = Encoding::from_tag("zstd3+age").unwrap();
        let key = key_for(&m);
        assert!(key.ends_with(".tar.zst.age"), "{key}");
        for key in [key.clone(), format!("{key}.3")] {
            let origin = from_key(&key).unwrap();
            assert_eq!(origin.kind, SourceKind::Directory);
            assert_eq!(origin.encoding.tag(), "zstd+age");
        }
        m.kind = SourceKind::File;
        m.encoding = Encoding::from_tag("age").unwrap();
        let origin = from_key(&key_for(&m)).unwrap();
        assert_eq!(
            (origin.kind, origin.encoding.tag().as_str()),
            (SourceKind::File, "age")
        );
        assert_eq!(from_key("a/20261126T021907.123Z.age.tar"), None);
    }

    #[test]
    fn the_python_tools_plain_names_are_not_ours() {
        assert_eq!(decode("backup_20210320.tar"), None);
        valid(&plain(&meta(b"/a", "  spaced\u{7f}name")));
        assert_eq!(plain(&meta(b"/a", "  spaced name")), "spaced name");
    }
}
