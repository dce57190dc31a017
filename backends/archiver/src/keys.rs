//! Readable, unique, printable-ASCII names for stored archives, shared by backends that choose
//! their own keys.

use std::path::Path;

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use time::OffsetDateTime;

/// Bytes kept as they are in keys; everything else is percent-encoded so that any file name
/// (spaces, unicode, invalid UTF-8) maps to one unambiguous ASCII key.
const KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'+')
    .remove(b'=')
    .remove(b',')
    .remove(b'@');

/// What an index's key adds to its archive's key: no archive key ends so (they end in a
/// timestamp and the encoding's suffixes).
pub const INDEX_SUFFIX: &str = ".gbindex";

/// The key of the index beside the archive keyed `archive_key`.
pub fn index_key(archive_key: &str) -> String {
    format!("{archive_key}{INDEX_SUFFIX}")
}

/// The archive whose index is keyed `key`, if it is an index's key.
pub fn indexed_by(key: &str) -> Option<&str> {
    key.strip_suffix(INDEX_SUFFIX)
        .filter(|parent| !parent.is_empty())
}

/// Percent-encodes one path component.
pub fn encode_component(raw: &[u8]) -> String {
    let encoded = percent_encode(raw, KEY_ESCAPES).to_string();
    // `.` and `..` would be taken as directory references by file systems and some tools.
    match encoded.as_str() {
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => encoded,
    }
}

/// `<source path without leading slash>/<UTC time>[.tar]`, each component percent-encoded.
pub fn archive_key(source: &Path, at: OffsetDateTime, is_tar: bool) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut key = String::new();
    for component in source.components() {
        if let std::path::Component::Normal(name) = component {
            key.push_str(&encode_component(name.as_bytes()));
            key.push('/');
        }
    }
    key.push_str(&timestamp(at));
    if is_tar {
        key.push_str(".tar");
    }
    key
}

/// [`archive_key`] for `meta`, with the suffix of its [`Encoding`](crate::Encoding) (`.zst`,
/// `.age`, `.zst.age`).
pub fn key_for(meta: &crate::ArchiveMeta) -> String {
    let mut key = archive_key(
        &meta.source_path,
        meta.started_at,
        meta.kind == crate::SourceKind::Directory,
    );
    key.push_str(meta.encoding.suffix());
    key
}

/// Length of a [`timestamp`].
pub const TIMESTAMP_LEN: usize = "20261126T021907.123Z".len();

/// Inverse of [`timestamp`].
pub fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
    );
    time::PrimitiveDateTime::parse(text, format)
        .ok()
        .map(|t| t.assume_utc())
}

/// Sortable UTC timestamp with milliseconds, safe in file names: `20261126T021907.123Z`.
pub fn timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn keys_are_readable_and_ascii() {
        let at = time::macros::datetime!(2026-11-26 02:19:07.123 UTC);
        assert_eq!(
            archive_key(Path::new("/home/me/My Docs"), at, true),
            "home/me/My%20Docs/20261126T021907.123Z.tar"
        );
        let weird = Path::new(OsStr::from_bytes(b"/x/caf\xc3\xa9/\xff%/.."));
        let key = archive_key(weird, at, false);
        assert_eq!(key, "x/caf%C3%A9/%FF%25/20261126T021907.123Z");
        assert!(key.bytes().all(|b| (0x21..0x7f).contains(&b)));
        assert_eq!(encode_component(b".."), "%2E%2E");
    }
}
