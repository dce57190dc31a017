use std::path::PathBuf;

use super::*;

fn entry(path: &str, kind: EntryKind, size: u64, header_offset: u64) -> Entry {
    Entry {
        path: PathBuf::from(path),
        kind,
        size,
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        mtime: 1_700_000_000,
        link: (kind == EntryKind::Symlink).then(|| PathBuf::from("target")),
        header_offset,
        data_offset: header_offset + 512,
        stamp: None,
        sha256: None,
    }
}

/// A tree's entries laid out as our tar writer lays them out: each header right after the
/// previous entry's padded data.
fn laid_out(specs: &[(&str, EntryKind, u64)]) -> Vec<Entry> {
    let mut offset = 0;
    specs
        .iter()
        .map(|&(path, kind, size)| {
            let e = entry(path, kind, size, offset);
            offset = e.end_offset();
            e
        })
        .collect()
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut encoder = Encoder::new().unwrap();
    for e in entries {
        encoder.push(e).unwrap();
    }
    encoder.finish().unwrap()
}

fn decode(bytes: &[u8]) -> Result<Vec<Entry>, CatalogError> {
    Decoder::new(bytes)?.collect()
}

#[test]
fn entries_come_back_exactly() {
    let mut entries = laid_out(&[
        ("photos/", EntryKind::Directory, 0),
        ("photos/2019/", EntryKind::Directory, 0),
        ("photos/2019/IMG_0412.jpg", EntryKind::File, 5_000_000),
        ("photos/2019/link", EntryKind::Symlink, 0),
        ("photos/empty", EntryKind::File, 0),
        ("photos/notes.txt", EntryKind::File, 13),
    ]);
    // A long name takes extra header records; an old file has a negative step in mtime.
    entries[4].data_offset += 1024;
    entries[5].header_offset = entries[4].end_offset() + 1024;
    entries[5].data_offset = entries[5].header_offset + 512;
    entries[5].mtime = -5;
    entries[2].mode = 0o4755;
    entries[3].link = Some(PathBuf::from("../../elsewhere/ü"));
    assert_eq!(decode(&encode(&entries)).unwrap(), entries);
    assert!(decode(&encode(&[])).unwrap().is_empty());
}

#[test]
fn stamps_and_deleted_paths_come_back_exactly() {
    let mut entries = laid_out(&[
        ("photos/", EntryKind::Directory, 0),
        ("photos/a", EntryKind::File, 10),
        ("photos/b", EntryKind::File, 20),
    ]);
    entries[1].stamp = Some(Stamp {
        mtime_nsec: 999_999_999,
        ctime: 1_800_000_000,
        ctime_nsec: 1,
        inode: u64::MAX,
    });
    entries[2].stamp = Some(Stamp {
        mtime_nsec: 0,
        ctime: -3,
        ctime_nsec: 0,
        inode: 7,
    });
    // A file's SHA-256 (`verify_content`) rides with its stamp.
    entries[2].sha256 = Some([0xa5; 32]);
    let mut encoder = Encoder::new().unwrap();
    for e in &entries {
        encoder.push(e).unwrap();
    }
    let deleted = ["photos/gone/", "photos/gone2", "photos/old/deep/x"].map(PathBuf::from);
    for path in &deleted {
        encoder.delete(path);
    }
    let bytes = encoder.finish().unwrap();
    assert_eq!(decode(&bytes).unwrap(), entries);
    assert_eq!(Decoder::new(&bytes).unwrap().deletions().unwrap(), deleted);
    assert!(Decoder::new(&encode(&entries))
        .unwrap()
        .deletions()
        .unwrap()
        .is_empty());
}

/// Catalogs written before stamps (version 1) still read, with no stamps and no deletions.
#[test]
fn a_version_1_catalog_reads_without_stamps() {
    let mut records = Vec::new();
    records.push(b'f');
    format::put_varint(&mut records, 0);
    format::put_varint(&mut records, 3);
    records.extend_from_slice(b"d/f");
    for n in [0o644, 1000, 1000, 4, 10, 0, 512] {
        format::put_varint(&mut records, n);
    }
    records.extend_from_slice(&[0, 1]);
    let mut bytes = b"GBC1".to_vec();
    bytes.extend(zstd::encode_all(&records[..], 3).unwrap());
    let read = decode(&bytes).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!((read[0].size, read[0].mtime, read[0].stamp), (10, 2, None));
    assert!(Decoder::new(&bytes)
        .unwrap()
        .deletions()
        .unwrap()
        .is_empty());
}

#[test]
fn entries_out_of_stream_order_are_refused() {
    let entries = laid_out(&[("a/", EntryKind::Directory, 0), ("a/b", EntryKind::File, 9)]);
    let mut encoder = Encoder::new().unwrap();
    encoder.push(&entries[1]).unwrap();
    assert!(encoder.push(&entries[0]).is_err());
}

/// Every cut and every flipped byte gives an error or (where zstd cannot tell) other entries,
/// never a panic; a cut is always an error.
#[test]
fn damaged_bytes_are_refused_without_panicking() {
    let entries = laid_out(&[
        ("d/", EntryKind::Directory, 0),
        ("d/f", EntryKind::File, 70_000),
        ("d/l", EntryKind::Symlink, 0),
    ]);
    let bytes = encode(&entries);
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    for at in 0..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1 << bit;
            let _ = decode(&flipped);
        }
    }
    assert!(matches!(decode(b"GBC9...."), Err(CatalogError::Format(_))));
}

/// The ledger budget: a directory of 1,000,000 files must not add more than about 50 MiB. A
/// tree shaped like a photo library (folders by year and month, random file names, sizes and
/// times, as a real one has), measured at 240,000 entries, stays well below 50 bytes an entry.
#[test]
fn a_large_tree_costs_a_few_bytes_an_entry() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut encoder = Encoder::new().unwrap();
    let mut offset = 0;
    let mut count = 0u64;
    for year in 2000..2020i64 {
        for month in 1..=12i64 {
            let mut names: Vec<String> = (0..1000)
                .map(|_| format!("IMG_{:08x}.jpg", random() as u32))
                .collect();
            names.sort();
            for name in names {
                let path = format!("photos/{year}/{month:02}/{name}");
                let mut e = entry(&path, EntryKind::File, random() % 10_000_000, offset);
                e.mtime = 946_684_800
                    + (year - 2000) * 31_536_000
                    + month * 2_592_000
                    + (random() % 2_592_000) as i64;
                // Files copied in at once: inodes close together, ctimes a little after.
                e.stamp = Some(Stamp {
                    mtime_nsec: (random() % 1_000_000_000) as u32,
                    ctime: e.mtime + (random() % 1000) as i64,
                    ctime_nsec: (random() % 1_000_000_000) as u32,
                    inode: 5_000_000 + count * 3 + random() % 3,
                });
                offset = e.end_offset();
                encoder.push(&e).unwrap();
                count += 1;
            }
        }
    }
    let bytes = encoder.finish().unwrap();
    let per_entry = bytes.len() as f64 / count as f64;
    eprintln!(
        "catalog: {count} entries in {} bytes, {per_entry:.1} an entry",
        bytes.len()
    );
    assert!(count >= 200_000);
    // Random nanoseconds in both times cost about 8 of these bytes: 1,000,000 files stay near 26 MiB.
    assert!(per_entry < 32.0, "{per_entry:.1} bytes an entry");
    assert_eq!(Decoder::new(&bytes).unwrap().count() as u64, count);
}
