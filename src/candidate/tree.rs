//! A directory candidate's fingerprint and its tar archive, both from one walk.

use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::catalog::{self, Encoder};

use super::{
    copy_exact, walk_tree, ArchiveSink, EntryType, Fingerprint, Scan, SourceError, TreeEntry,
    TAR_BLOCK,
};
use crate::chain::Changes;

pub(super) fn scan_tree(root: &Path, skip: &[PathBuf]) -> Result<Scan, SourceError> {
    let mut scanner = Scanner::default();
    walk_tree(root, skip, |entry| scanner.add(&entry))?;
    Ok(scanner.finish())
}

/// A directory's [`Scan`], built one walked entry at a time: by `scan_tree`, or alongside an
/// increment's diff so a chained directory is walked once to decide and to diff.
pub struct Scanner {
    digest: Sha256,
    entries: u64,
    bytes: u64,
    newest: i128,
    size_estimate: u64,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            digest: Sha256::new(),
            entries: 0,
            bytes: 0,
            newest: i128::MIN,
            size_estimate: 2 * TAR_BLOCK,
        }
    }
}

impl Scanner {
    /// Adds one entry of the walk (special files are not archived, so not scanned).
    pub fn add(&mut self, entry: &TreeEntry<'_>) -> Result<(), SourceError> {
        let kind = entry.entry_type();
        if kind == EntryType::Special {
            return Ok(());
        }
        let name = entry.archive_path.as_os_str().as_bytes();
        let link = match kind {
            EntryType::Symlink => entry.read_link()?.into_vec(),
            _ => Vec::new(),
        };
        let size = if kind == EntryType::File {
            entry.meta.len()
        } else {
            0
        };
        let digest = &mut self.digest;
        digest.update((name.len() as u64).to_le_bytes());
        digest.update(name);
        digest.update([kind as u8]);
        digest.update(size.to_le_bytes());
        // A directory's mtime only says its entries changed, which the entries themselves show;
        // leaving it out keeps unrelated activity (a SQLite journal coming and going) from
        // counting as a change.
        if kind != EntryType::Dir {
            digest.update(entry.meta.mtime_ns().to_le_bytes());
        }
        digest.update(entry.meta.mode().to_le_bytes());
        digest.update(entry.meta.uid().to_le_bytes());
        digest.update(entry.meta.gid().to_le_bytes());
        digest.update((link.len() as u64).to_le_bytes());
        digest.update(&link);
        self.entries += 1;
        self.bytes += size;
        self.newest = self.newest.max(entry.meta.mtime_ns());
        let name_len = name.len() + usize::from(kind == EntryType::Dir && !name.ends_with(b"/"));
        self.size_estimate += entry_size(name_len, link.len(), size);
        Ok(())
    }

    /// The scan of every entry added.
    pub fn finish(self) -> Scan {
        Scan {
            fingerprint: Fingerprint {
                entries: self.entries,
                bytes: self.bytes,
                newest_mtime_ns: self.newest,
                digest: self.digest.finalize().into(),
            },
            size_estimate: self.size_estimate,
        }
    }
}

/// A deterministic GNU tar of `root`: entries named from the directory's own name down, sorted
/// by name; modes, owners (numeric) and mtimes kept; symlinks stored as links; no access times
/// or user names, so the same tree always gives the same bytes.
/// With a `catalog`, every entry archived is recorded in it with where its header and data lie
/// in the tar.
///
/// With `increment`, the tar is an increment in GNU tar's incremental format: every directory
/// as a dumpdir entry (type `D`) listing what it holds (`Y` a file or link in this archive, `N`
/// one unchanged since the base, `D` a directory), then only the files and links in
/// [`Changes::stored`]; the catalog also records [`Changes::deleted`].
///
/// With `digests`, the catalog records each file's SHA-256, hashed as the file is written.
pub(super) fn write_tar(
    root: &Path,
    skip: &[PathBuf],
    out: &mut dyn ArchiveSink,
    mut catalog: Option<&mut Encoder>,
    increment: Option<&Changes>,
    digests: bool,
) -> Result<(), SourceError> {
    let mut builder = tar::Builder::new(Counted { out, written: 0 });
    walk_tree(root, skip, |entry| {
        let kind = entry.entry_type();
        let stored = match (kind, increment) {
            (EntryType::Special, _) => {
                tracing::warn!(
                    "skipping {}: sockets, fifos and devices are not archived",
                    glacier_backup_archiver::shown(&entry.path)
                );
                return Ok(());
            }
            (EntryType::File | EntryType::Symlink, Some(changes)) => {
                changes.stored.contains(&entry.archive_path)
            }
            _ => true,
        };
        if !stored {
            return Ok(());
        }
        let fail = |e: io::Error| SourceError::from_io(e, &entry.path);
        builder.get_mut().out.entry_boundary().map_err(fail)?;
        let header_offset = builder.get_ref().written;
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.meta.mode() & 0o7777);
        header.set_uid(u64::from(entry.meta.uid()));
        header.set_gid(u64::from(entry.meta.gid()));
        header.set_mtime(u64::try_from(entry.meta.mtime()).unwrap_or(0));
        header.set_size(0);
        let written = match kind {
            EntryType::Dir => {
                let dumpdir = increment.map(|changes| dumpdir(&entry, changes));
                append_dir(&mut builder, &mut header, &entry, dumpdir.as_deref())?
            }
            EntryType::Symlink => append_link(&mut builder, &mut header, &entry)?,
            _ => append_file(&mut builder, &mut header, &entry, digests)?,
        };
        if let Some(catalog) = catalog.as_deref_mut() {
            catalog
                .push(&cataloged(&entry, &header, header_offset, written))
                .map_err(fail)?;
        }
        Ok(())
    })?;
    if let (Some(catalog), Some(changes)) = (catalog, increment) {
        for path in &changes.deleted {
            catalog.delete(path);
        }
    }
    builder
        .into_inner()
        .map_err(|e| SourceError::from_io(e, root))?;
    Ok(())
}

type Builder<'a> = tar::Builder<Counted<'a>>;

/// What an entry's writing tells its catalog record: where its data starts, and a link's target.
struct Written {
    data_offset: u64,
    link: Option<PathBuf>,
    sha256: Option<[u8; 32]>,
}

/// A directory, as GNU tar marks it, with a trailing slash; in an increment, a dumpdir entry
/// whose data is `dumpdir`.
fn append_dir(
    builder: &mut Builder<'_>,
    header: &mut tar::Header,
    entry: &TreeEntry<'_>,
    dumpdir: Option<&[u8]>,
) -> Result<Written, SourceError> {
    let fail = |e: io::Error| SourceError::from_io(e, &entry.path);
    let mut name = entry.archive_path.clone().into_os_string();
    if !name.as_bytes().ends_with(b"/") {
        name.push("/");
    }
    let data = match dumpdir {
        Some(dumpdir) => {
            header.set_entry_type(tar::EntryType::new(GNU_DUMPDIR));
            header.set_size(dumpdir.len() as u64);
            dumpdir
        }
        None => {
            header.set_entry_type(tar::EntryType::Directory);
            &[]
        }
    };
    builder.append_data(header, &name, data).map_err(fail)?;
    let end = builder.get_ref().written;
    Ok(Written {
        data_offset: end - (data.len() as u64).div_ceil(TAR_BLOCK) * TAR_BLOCK,
        link: None,
        sha256: None,
    })
}

fn append_link(
    builder: &mut Builder<'_>,
    header: &mut tar::Header,
    entry: &TreeEntry<'_>,
) -> Result<Written, SourceError> {
    let target = entry.read_link()?;
    header.set_entry_type(tar::EntryType::Symlink);
    builder
        .append_link(header, &entry.archive_path, &target)
        .map_err(|e| SourceError::from_io(e, &entry.path))?;
    Ok(Written {
        data_offset: builder.get_ref().written,
        link: Some(PathBuf::from(target)),
        sha256: None,
    })
}

/// The header (and any long-name record) goes through the builder with no data; the contents
/// follow with large reads, then the padding to a whole block.
fn append_file(
    builder: &mut Builder<'_>,
    header: &mut tar::Header,
    entry: &TreeEntry<'_>,
    digest: bool,
) -> Result<Written, SourceError> {
    let fail = |e: io::Error| SourceError::from_io(e, &entry.path);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(entry.meta.len());
    let mut reader = entry.open_exact()?;
    if digest {
        reader = reader.digesting();
    }
    builder
        .append_data(header, &entry.archive_path, io::empty())
        .map_err(fail)?;
    let out = builder.get_mut();
    let data_offset = out.written;
    let written = copy_exact(&mut reader, out, &entry.path)?;
    let padding = (TAR_BLOCK - written % TAR_BLOCK) % TAR_BLOCK;
    out.write_all(&[0u8; TAR_BLOCK as usize][..padding as usize])
        .map_err(fail)?;
    let sha256 = reader.finish()?;
    Ok(Written {
        data_offset,
        link: None,
        sha256,
    })
}

/// The catalog's record of an entry just written.
fn cataloged(
    entry: &TreeEntry<'_>,
    header: &tar::Header,
    header_offset: u64,
    written: Written,
) -> catalog::Entry {
    let kind = match entry.entry_type() {
        EntryType::Dir => catalog::EntryKind::Directory,
        EntryType::Symlink => catalog::EntryKind::Symlink,
        _ => catalog::EntryKind::File,
    };
    catalog::Entry {
        path: entry.archive_path.clone(),
        kind,
        // A dumpdir's data counts: the catalog's entries tile the stream.
        size: header.size().unwrap_or(0),
        mode: entry.meta.mode() & 0o7777,
        uid: u64::from(entry.meta.uid()),
        gid: u64::from(entry.meta.gid()),
        // As the header has it: a time before 1970 is stored as 0.
        mtime: entry.meta.mtime().max(0),
        link: written.link,
        header_offset,
        data_offset: written.data_offset,
        stamp: Some(entry.meta.stamp()),
        sha256: written.sha256,
    }
}

/// An entry's header blocks as our tar writer writes them: one, and GNU long-name records for
/// a name or link target of 100 bytes or more.
fn header_size(name_len: usize, link_len: usize) -> u64 {
    let long = |len: usize| match len >= 100 {
        true => TAR_BLOCK + (len as u64 + 1).div_ceil(TAR_BLOCK) * TAR_BLOCK,
        false => 0,
    };
    TAR_BLOCK + long(name_len) + long(link_len)
}

/// An entry's whole size in our tar: its header blocks, then its data padded to a block.
pub(crate) fn entry_size(name_len: usize, link_len: usize, data_len: u64) -> u64 {
    header_size(name_len, link_len) + data_len.div_ceil(TAR_BLOCK) * TAR_BLOCK
}

/// GNU tar's type flag for a directory with its dumpdir.
pub const GNU_DUMPDIR: u8 = b'D';

/// A directory's dumpdir: for each entry it holds, a code and its name, each ended by a zero
/// byte, then one more. Sockets, fifos and devices are not archived, so not listed.
fn dumpdir(dir: &TreeEntry<'_>, changes: &Changes) -> Vec<u8> {
    let mut dumpdir = Vec::new();
    for child in dir.children {
        let code = match child.meta.kind() {
            EntryType::Special => continue,
            EntryType::Dir => b'D',
            _ if changes.stored.contains(&dir.archive_path.join(&child.name)) => b'Y',
            _ => b'N',
        };
        dumpdir.push(code);
        dumpdir.extend_from_slice(child.name.as_bytes());
        dumpdir.push(0);
    }
    dumpdir.push(0);
    dumpdir
}

/// The sink, counting the bytes written: where each entry starts in the tar.
struct Counted<'a> {
    out: &'a mut dyn ArchiveSink,
    written: u64,
}

impl io::Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl ArchiveSink for Counted<'_> {
    fn read_from(&mut self, reader: &mut dyn io::Read) -> io::Result<usize> {
        let n = self.out.read_from(reader)?;
        self.written += n as u64;
        Ok(n)
    }

    fn entry_boundary(&mut self) -> io::Result<()> {
        self.out.entry_boundary()
    }
}

#[cfg(test)]
mod tests {
    use crate::candidate::{Candidate, PathCandidate};
    use glacier_backup_archiver::SourceKind;

    #[test]
    fn size_estimate_is_exact_for_ordinary_trees() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a"), vec![1u8; 1000]).unwrap();
        std::fs::write(root.join("sub/b"), b"").unwrap();
        std::fs::write(root.join("sub").join("x".repeat(150)), b"long").unwrap();
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        let candidate = PathCandidate::new(root, SourceKind::Directory);
        let scan = candidate.scan().unwrap();
        let mut tar = Vec::new();
        candidate.write_archive(&mut tar).unwrap();
        assert_eq!(scan.size_estimate, tar.len() as u64);
        assert_eq!(scan.fingerprint.entries, 6);
        assert_eq!(scan.fingerprint.bytes, 1004);
    }

    /// The catalog written with the tar says where every entry lies: its header and data
    /// positions are the ones the tar crate finds reading the archive back, long names,
    /// links, empty files and directories included.
    #[test]
    fn the_catalog_locates_every_entry_the_tar_holds() {
        use crate::catalog::{Decoder, Encoder, EntryKind};
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        std::fs::create_dir_all(root.join("sub").join("d".repeat(120))).unwrap();
        std::fs::write(root.join("a"), vec![1u8; 1000]).unwrap();
        std::fs::write(root.join("sub/b"), b"").unwrap();
        std::fs::write(root.join("sub").join("x".repeat(150)), b"long").unwrap();
        std::fs::write(root.join("z"), vec![2u8; 70_000]).unwrap();
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        let candidate = PathCandidate::new(root, SourceKind::Directory);
        let mut tar = Vec::new();
        let mut encoder = Encoder::new().unwrap();
        candidate.write_cataloged(&mut tar, &mut encoder).unwrap();
        let catalog = encoder.finish().unwrap();
        let cataloged: Vec<_> = Decoder::new(&catalog)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();

        let mut archive = tar::Archive::new(&tar[..]);
        let read: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.path().unwrap().to_path_buf();
                (
                    name,
                    e.raw_header_position(),
                    e.raw_file_position(),
                    e.size(),
                )
            })
            .collect();
        assert_eq!(cataloged.len(), read.len());
        for (entry, (name, header, data, size)) in cataloged.iter().zip(&read) {
            assert_eq!(&entry.path, name);
            assert_eq!(entry.data_offset, *data, "{name:?}");
            assert_eq!(entry.size, *size, "{name:?}");
            // A long name's own records come first: the catalog starts at those.
            assert!(entry.header_offset <= *header, "{name:?}");
            let bytes = &tar[entry.data_offset as usize..][..entry.size as usize];
            if entry.kind == EntryKind::File {
                let on_disk = std::fs::read(tmp.path().join(name)).unwrap();
                assert_eq!(bytes, &on_disk[..], "{name:?}");
            }
        }
        let link = cataloged
            .iter()
            .find(|e| e.kind == EntryKind::Symlink)
            .unwrap();
        assert_eq!(link.link.as_deref(), Some(std::path::Path::new("a")));
        // Entries tile the stream: each starts where the one before ended.
        for pair in cataloged.windows(2) {
            assert_eq!(
                pair[0].end_offset(),
                pair[1].header_offset,
                "{:?}",
                pair[1].path
            );
        }
        // Without a catalog, the same bytes.
        let mut plain = Vec::new();
        candidate.write_archive(&mut plain).unwrap();
        assert_eq!(plain, tar);
    }
}
