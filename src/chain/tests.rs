use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::candidate::{Candidate, PathCandidate};
use crate::catalog::{Encoder, EntryKind};
use glacier_backup_archiver::SourceKind;

/// An archive of `root` (an increment when `changes` are given) and its catalog.
fn archive(root: &Path, changes: Option<Changes>) -> (Vec<u8>, Vec<u8>) {
    let mut candidate = PathCandidate::new(root.to_path_buf(), SourceKind::Directory);
    if let Some(changes) = changes {
        candidate = candidate.incremental(Arc::new(changes));
    }
    let mut tar = Vec::new();
    let mut catalog = Encoder::new().unwrap();
    candidate.write_cataloged(&mut tar, &mut catalog).unwrap();
    (tar, catalog.finish().unwrap())
}

/// What a restore must give back of a tree: per path below it, the kind, mode, and a file's
/// bytes and mtime or a link's target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File(u32, Vec<u8>, i64),
    Link(PathBuf),
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut nodes = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                Node::Link(fs::read_link(&path).unwrap())
            } else if meta.is_dir() {
                stack.push(path.clone());
                Node::Dir(mode)
            } else {
                Node::File(mode, fs::read(&path).unwrap(), meta.mtime())
            };
            nodes.insert(path.strip_prefix(root).unwrap().to_path_buf(), node);
        }
    }
    nodes
}

/// The tree a chain's state describes, each file's bytes read from the archive holding it at
/// the catalog's offsets.
fn from_state(catalogs: &[Vec<u8>], tars: &[Vec<u8>]) -> BTreeMap<PathBuf, Node> {
    let layers: Vec<&[u8]> = catalogs.iter().map(Vec::as_slice).collect();
    let mut nodes = BTreeMap::new();
    for held in Composed::new(&layers).unwrap() {
        let Held { entry, layer } = held.unwrap();
        let Ok(path) = entry.path.strip_prefix("tree") else {
            panic!("{:?} outside the top", entry.path)
        };
        if path.as_os_str().is_empty() {
            continue;
        }
        let node = match entry.kind {
            EntryKind::Directory => Node::Dir(entry.mode),
            EntryKind::Symlink => Node::Link(entry.link.clone().unwrap()),
            EntryKind::File => {
                let start = entry.data_offset as usize;
                let bytes = tars[layer][start..start + entry.size as usize].to_vec();
                Node::File(entry.mode, bytes, entry.mtime)
            }
        };
        nodes.insert(path.to_path_buf(), node);
    }
    nodes
}

/// What stock GNU tar extracts from the full and then each increment, in order.
fn gnu_tar_extract(tars: &[Vec<u8>], work: &Path) -> BTreeMap<PathBuf, Node> {
    let out = work.join("gnu");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).unwrap();
    for (n, tar) in tars.iter().enumerate() {
        let file = work.join(format!("layer-{n}.tar"));
        fs::write(&file, tar).unwrap();
        let extracted = std::process::Command::new("tar")
            .args(["--extract", "--incremental", "-f"])
            .arg(&file)
            .arg("-C")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            extracted.status.success(),
            "layer {n}: {}",
            String::from_utf8_lossy(&extracted.stderr)
        );
    }
    snapshot(&out.join("tree"))
}

struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Every file, link and directory below `root`, but `root`.
fn all(root: &Path, dirs: bool) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = snapshot(root)
        .into_iter()
        .filter(|(_, node)| dirs == matches!(node, Node::Dir(_)))
        .map(|(path, _)| root.join(path))
        .collect();
    found.sort();
    found
}

/// One random edit: add, change, delete or rename files and directories, change modes,
/// replace a file by a directory or a directory by a file, add or retarget links.
fn edit(root: &Path, random: &mut Random, round: usize) {
    let files = all(root, false);
    let dirs = all(root, true);
    let pick = |random: &mut Random, from: &[PathBuf]| from[random.below(from.len())].clone();
    let any_dir = |random: &mut Random| match dirs.is_empty() || random.below(3) == 0 {
        true => root.to_path_buf(),
        false => pick(random, &dirs),
    };
    let content = |random: &mut Random| vec![random.below(256) as u8; random.below(3000)];
    match random.below(10) {
        0 | 1 => {
            let dir = any_dir(random);
            fs::write(
                dir.join(format!("new-{round}-{}", random.below(100))),
                content(random),
            )
            .unwrap();
        }
        2 if !files.is_empty() => {
            let file = pick(random, &files);
            if !file.is_symlink() {
                fs::write(&file, content(random)).unwrap();
            }
        }
        3 if !files.is_empty() => fs::remove_file(pick(random, &files)).unwrap(),
        4 if !files.is_empty() => {
            let file = pick(random, &files);
            let to = any_dir(random).join(format!("renamed-{round}"));
            fs::rename(file, to).unwrap();
        }
        5 => {
            let dir = any_dir(random).join(format!("dir-{round}"));
            fs::create_dir_all(dir.join("inner")).unwrap();
            fs::write(dir.join("inner/f"), content(random)).unwrap();
        }
        6 if !dirs.is_empty() => {
            let dir = pick(random, &dirs);
            match random.below(2) {
                0 => fs::remove_dir_all(dir).unwrap(),
                _ => fs::rename(&dir, dir.with_file_name(format!("moved-{round}"))).unwrap(),
            }
        }
        7 if !files.is_empty() => {
            let file = pick(random, &files);
            if !file.is_symlink() {
                let mode = [0o600, 0o644, 0o755, 0o640][random.below(4)];
                fs::set_permissions(file, fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        8 if !files.is_empty() && !dirs.is_empty() => {
            // A file becomes a directory, and a directory a file.
            let file = pick(random, &files);
            fs::remove_file(&file).unwrap();
            fs::create_dir(&file).unwrap();
            fs::write(file.join("was-a-file"), content(random)).unwrap();
            let dir = pick(random, &dirs);
            if dir.exists() && !file.starts_with(&dir) {
                fs::remove_dir_all(&dir).unwrap();
                fs::write(&dir, content(random)).unwrap();
            }
        }
        _ => {
            let link = any_dir(random).join(format!("link-{round}"));
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(format!("target-{}", random.below(5)), &link).unwrap();
            if let Some(old) = files.iter().find(|f| f.is_symlink()) {
                fs::remove_file(old).unwrap();
                std::os::unix::fs::symlink(format!("other-{round}"), old).unwrap();
            }
        }
    }
}

/// Twenty rounds of random edits, an increment after each: the chain's composed state reads
/// back every earlier tree exactly (each file's bytes from the archive holding its newest
/// version), and stock GNU tar extracting the full and the increments in order gives it too.
#[test]
fn a_chain_of_increments_gives_back_every_tree_and_stock_tar_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/one"), b"one").unwrap();
    fs::write(root.join("a/b/two"), vec![2u8; 5000]).unwrap();
    fs::write(root.join("top"), b"top").unwrap();
    std::os::unix::fs::symlink("a/one", root.join("link")).unwrap();
    let (tar, catalog) = archive(&root, None);
    let (mut tars, mut catalogs) = (vec![tar], vec![catalog]);
    let mut trees = vec![snapshot(&root)];
    let mut random = Random(0x2545_F491_4F6C_DD1D);
    for round in 0..20 {
        for _ in 0..1 + random.below(4) {
            edit(&root, &mut random, round);
        }
        let layers: Vec<&[u8]> = catalogs.iter().map(Vec::as_slice).collect();
        let (_, changes) = diff(&root, &[], Composed::new(&layers).unwrap(), false).unwrap();
        let estimate = changes.size_estimate;
        let (tar, catalog) = archive(&root, Some(changes));
        assert_eq!(
            estimate,
            tar.len() as u64,
            "round {round}: the size estimate"
        );
        tars.push(tar);
        catalogs.push(catalog);
        trees.push(snapshot(&root));
        for (upload, tree) in trees.iter().enumerate() {
            assert_eq!(
                &from_state(&catalogs[..=upload], &tars[..=upload]),
                tree,
                "round {round}, upload {upload}"
            );
        }
        assert_eq!(
            &gnu_tar_extract(&tars, tmp.path()),
            trees.last().unwrap(),
            "round {round}"
        );
    }
}

/// The byte order with `/` first is the walk's: component by component.
#[test]
fn tar_order_is_the_order_of_components() {
    let mut paths: Vec<PathBuf> = ["a", "a/b", "a.c", "a/b/c", "a-", "a/b-", "ab", "a/c", "b"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let mut by_components = paths.clone();
    by_components.sort();
    paths.sort_by(|a, b| tar_order(a, b));
    assert_eq!(paths, by_components);
}

/// An unchanged tree's increment holds no file: only its directories, each listing its
/// entries as unchanged.
#[test]
fn an_unchanged_tree_gives_an_increment_of_directories_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("sub/f"), vec![7u8; 100_000]).unwrap();
    let (_, full) = archive(&root, None);
    let (_, changes) = diff(&root, &[], Composed::new(&[&full]).unwrap(), false).unwrap();
    assert!(changes.stored.is_empty() && changes.deleted.is_empty() && changes.bytes == 0);
    let (tar, _) = archive(&root, Some(changes));
    assert!(tar.len() < 4096, "{} bytes", tar.len());
    let mut listed = Vec::new();
    for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        listed.push((entry.header().entry_type().as_byte(), data));
    }
    assert_eq!(
        listed,
        vec![(b'D', b"Dsub\0\0".to_vec()), (b'D', b"Nf\0\0".to_vec())]
    );
}

/// A chain of 300 increments over a full of 2,000 files, each increment changing one file and
/// deleting another: the state has every file's newest version, and the deleted ones gone.
#[test]
fn a_long_chain_composes_each_path_from_its_newest_layer() {
    fn laid(paths: &[(String, EntryKind)], deleted: Option<String>) -> Vec<u8> {
        let mut encoder = Encoder::new().unwrap();
        let mut offset = 0;
        for (path, kind) in paths {
            let entry = crate::catalog::Entry {
                path: PathBuf::from(path),
                kind: *kind,
                size: 10,
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                link: None,
                header_offset: offset,
                data_offset: offset + 512,
                stamp: None,
                sha256: None,
            };
            offset = entry.end_offset();
            encoder.push(&entry).unwrap();
        }
        if let Some(path) = deleted {
            encoder.delete(Path::new(&path));
        }
        encoder.finish().unwrap()
    }
    let file = |n: usize| (format!("t/f{n:04}"), EntryKind::File);
    let top = ("t".to_owned(), EntryKind::Directory);
    let mut full = vec![top.clone()];
    full.extend((0..2000).map(file));
    let mut catalogs = vec![laid(&full, None)];
    for layer in 1..=300 {
        let gone = format!("t/f{:04}", layer + 1000);
        catalogs.push(laid(&[top.clone(), file(layer)], Some(gone)));
    }
    let layers: Vec<&[u8]> = catalogs.iter().map(Vec::as_slice).collect();
    let state: Vec<(PathBuf, usize)> = Composed::new(&layers)
        .unwrap()
        .map(|held| {
            let held = held.unwrap();
            (held.entry.path, held.layer)
        })
        .collect();
    let mut expected = vec![(PathBuf::from("t"), 300)];
    for n in 0..2000 {
        match n {
            1..=300 => expected.push((PathBuf::from(format!("t/f{n:04}")), n)),
            1001..=1300 => {}
            _ => expected.push((PathBuf::from(format!("t/f{n:04}")), 0)),
        }
    }
    assert_eq!(state, expected);
}

/// With `verify_content`, a file whose bytes changed while all the metadata the catalog keeps
/// stayed the same (bit rot, or a tool that puts the mtime back on a file system whose ctime
/// cannot be trusted) is stored again, and so is a file the chain holds no digest of; a file
/// whose bytes match is not. Without `verify_content`, none is.
#[test]
fn verify_content_finds_bytes_changed_under_the_same_metadata() {
    use sha2::{Digest, Sha256};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    fs::create_dir_all(&root).unwrap();
    for (name, byte) in [("changed", 1u8), ("undigested", 2), ("same", 3)] {
        fs::write(root.join(name), vec![byte; 70_000]).unwrap();
    }
    let candidate = PathCandidate::new(root.clone(), SourceKind::Directory).verifying_content(true);
    let mut catalog = Encoder::new().unwrap();
    candidate
        .write_cataloged(&mut Vec::new(), &mut catalog)
        .unwrap();
    let full = catalog.finish().unwrap();
    let kept: Vec<_> = crate::catalog::Decoder::new(&full)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let same = kept.iter().find(|e| e.path.ends_with("same")).unwrap();
    assert_eq!(same.sha256, Some(Sha256::digest(vec![3u8; 70_000]).into()));

    // New bytes of the same length, under the same mtime; the catalog then made to hold the
    // metadata the files have now (a ctime cannot be put back by hand), digests as they were.
    let changed = root.join("changed");
    let mtime = filetime::FileTime::from_last_modification_time(&fs::metadata(&changed).unwrap());
    fs::write(&changed, vec![9u8; 70_000]).unwrap();
    filetime::set_file_mtime(&changed, mtime).unwrap();
    let mut forged = Encoder::new().unwrap();
    for mut entry in kept {
        let meta = fs::symlink_metadata(tmp.path().join(&entry.path)).unwrap();
        entry.mtime = meta.mtime();
        entry.stamp = Some(crate::catalog::Stamp {
            mtime_nsec: meta.mtime_nsec() as u32,
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec() as u32,
            inode: meta.ino(),
        });
        if entry.path.ends_with("undigested") {
            entry.sha256 = None;
        }
        forged.push(&entry).unwrap();
    }
    let forged = forged.finish().unwrap();

    let (_, changes) = diff(&root, &[], Composed::new(&[&forged]).unwrap(), true).unwrap();
    let stored: BTreeMap<_, _> = changes.stored.iter().map(|p| (p.clone(), ())).collect();
    assert_eq!(
        stored.into_keys().collect::<Vec<_>>(),
        [
            PathBuf::from("tree/changed"),
            PathBuf::from("tree/undigested")
        ]
    );
    assert_eq!((changes.content_only, changes.bytes), (2, 140_000));
    let (_, changes) = diff(&root, &[], Composed::new(&[&forged]).unwrap(), false).unwrap();
    assert!(changes.stored.is_empty(), "{:?}", changes.stored);
    assert_eq!(changes.content_only, 0);
}
