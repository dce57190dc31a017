//! The Python tool's rules for turning configured paths into backup candidates.

use crate::shown;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use glacier_backup_archiver::SourceKind;

use crate::candidate::{Candidate, PathCandidate};
use crate::config::PathRule;

/// A candidate together with the rule option that governs re-uploads.
#[derive(Debug, Clone)]
pub struct Planned {
    /// What to back up.
    pub candidate: Arc<dyn Candidate>,
    /// Upload again when it changed since its last upload.
    pub upload_if_changed: bool,
    /// A directory uploaded incrementally, and when its chains end.
    pub chain: Option<crate::config::ChainPolicy>,
}

/// Candidates for every rule, sorted by path, each path once. Problems that only mean "nothing
/// to back up here" (missing paths, sockets) are logged as warnings. Paths in `skip` (the tool's
/// own files) are never candidates, nor part of a directory's archive.
pub fn resolve(rules: &[PathRule], skip: &[PathBuf]) -> Vec<Planned> {
    let skip: Arc<[PathBuf]> = skip.into();
    let mut found: Vec<Found> = Vec::new();
    for rule in rules {
        resolve_rule(rule, &mut |path, kind| {
            if skip.iter().any(|s| s == path) {
                tracing::debug!(
                    "{}: skipped, one of glacier-backup's own files",
                    shown(path)
                );
            } else {
                let chain = rule.chain.filter(|_| kind == SourceKind::Directory);
                found.push((path.to_path_buf(), kind, rule.upload_if_changed, chain));
            }
        });
    }
    found.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    let mut merged: Vec<Found> = Vec::with_capacity(found.len());
    for next in found {
        match merged.last_mut() {
            // Named by two rules: either one asking for re-uploads (or increments) is enough.
            Some(previous) if previous.0 == next.0 => {
                previous.2 |= next.2;
                previous.3 = previous.3.or(next.3);
            }
            _ => merged.push(next),
        }
    }
    merged
        .into_iter()
        .map(|(path, kind, upload_if_changed, chain)| {
            let verify_content = chain.is_some_and(|chain| chain.verify_content);
            let candidate = PathCandidate::new(path, kind)
                .skipping(skip.clone())
                .verifying_content(verify_content);
            Planned {
                candidate: Arc::new(candidate),
                upload_if_changed,
                chain,
            }
        })
        .collect()
}

/// A candidate found by a rule: its path, kind, `upload_if_changed` and chain policy.
type Found = (
    PathBuf,
    SourceKind,
    bool,
    Option<crate::config::ChainPolicy>,
);

fn classify(path: &Path) -> Result<Option<SourceKind>, std::io::Error> {
    // Following symlinks, as the Python tool does: a link to a directory is a directory.
    let meta = fs::metadata(path)?;
    Ok(if meta.is_file() {
        Some(SourceKind::File)
    } else if meta.is_dir() {
        Some(SourceKind::Directory)
    } else {
        None
    })
}

fn resolve_rule(rule: &PathRule, add: &mut dyn FnMut(&Path, SourceKind)) {
    let path = &rule.path;
    let kind = match classify(path) {
        Ok(Some(kind)) => kind,
        Ok(None) => {
            tracing::warn!(
                "skipping {}: not a file or directory (sockets, fifos and devices are not backed up)",
                shown(path)
            );
            return;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!("skipping {}: does not exist", shown(path));
            return;
        }
        Err(e) => {
            tracing::warn!("skipping {}: {e}", shown(path));
            return;
        }
    };
    if kind == SourceKind::File || rule.upload_single_dir {
        add(path, kind);
        return;
    }
    if !rule.upload_dirs && !rule.upload_files {
        tracing::debug!(
            "{}: directory with none of upload_single_dir, upload_dirs, upload_files set: nothing to do",
            shown(path)
        );
        return;
    }
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!("skipping {}: cannot list it: {e}", shown(path));
            return;
        }
    };
    let exclude = rule.exclude.as_deref().map(str::as_bytes);
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!("{}: cannot list an entry: {e}", shown(path));
                continue;
            }
        };
        let name = entry.file_name();
        if exclude.is_some_and(|prefix| name.as_bytes().starts_with(prefix)) {
            continue;
        }
        let child = path.join(&name);
        match classify(&child) {
            Ok(Some(SourceKind::Directory)) if rule.upload_dirs => {
                add(&child, SourceKind::Directory)
            }
            Ok(Some(SourceKind::File)) if rule.upload_files => add(&child, SourceKind::File),
            Ok(Some(_)) => {}
            Ok(None) => tracing::warn!(
                "skipping {}: sockets, fifos and devices are not backed up",
                shown(&child)
            ),
            Err(e) => tracing::warn!("skipping {}: {e}", shown(&child)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Python tool's own test tree: files file1..file3 and dirs dir1..dir3.
    fn python_tool_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for i in 1..=3 {
            fs::write(dir.path().join(format!("file{i}")), format!("content {i}")).unwrap();
            fs::create_dir(dir.path().join(format!("dir{i}"))).unwrap();
            fs::write(dir.path().join(format!("dir{i}/inner")), "x").unwrap();
        }
        dir
    }

    fn rule(path: &Path) -> PathRule {
        PathRule {
            upload_single_dir: false,
            ..PathRule::single(path.to_path_buf())
        }
    }

    fn names(planned: &[Planned]) -> Vec<String> {
        planned
            .iter()
            .map(|p| {
                p.candidate
                    .source_path()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn python_tool_scenarios() {
        let tree = python_tool_tree();
        let root = tree.path();
        let single = PathRule::single(root.to_path_buf());
        assert_eq!(resolve(std::slice::from_ref(&single), &[]).len(), 1);
        let files = PathRule {
            upload_files: true,
            ..rule(root)
        };
        assert_eq!(names(&resolve(&[files], &[])), ["file1", "file2", "file3"]);
        let dirs = PathRule {
            upload_dirs: true,
            ..rule(root)
        };
        assert_eq!(names(&resolve(&[dirs], &[])), ["dir1", "dir2", "dir3"]);
        let both = PathRule {
            upload_dirs: true,
            upload_files: true,
            ..rule(root)
        };
        assert_eq!(resolve(std::slice::from_ref(&both), &[]).len(), 6);
        let overridden = PathRule {
            upload_single_dir: true,
            ..both.clone()
        };
        let planned = resolve(&[overridden], &[]);
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].candidate.kind(), SourceKind::Directory);
        let excluded = PathRule {
            exclude: Some("dir1".into()),
            ..both
        };
        assert_eq!(
            names(&resolve(&[excluded], &[])),
            ["dir2", "dir3", "file1", "file2", "file3"]
        );
        assert!(
            resolve(&[rule(root)], &[]).is_empty(),
            "no option set: no candidates"
        );
    }

    #[test]
    fn files_are_candidates_whatever_the_options_and_missing_paths_are_skipped() {
        let tree = python_tool_tree();
        let file = tree.path().join("file1");
        let planned = resolve(&[rule(&file), rule(Path::new("/does/not/exist"))], &[]);
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].candidate.kind(), SourceKind::File);
    }

    #[test]
    fn symlinks_are_classified_by_target_and_duplicates_merge() {
        let tree = python_tool_tree();
        let root = tree.path();
        std::os::unix::fs::symlink(root.join("dir1"), root.join("zlink")).unwrap();
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("dangling")).unwrap();
        let dirs = PathRule {
            upload_dirs: true,
            ..rule(root)
        };
        let again = PathRule {
            upload_if_changed: true,
            ..PathRule::single(root.join("dir2"))
        };
        let planned = resolve(&[dirs, again], &[]);
        assert_eq!(names(&planned), ["dir1", "dir2", "dir3", "zlink"]);
        assert!(planned[1].upload_if_changed && !planned[0].upload_if_changed);
        assert_eq!(planned[3].candidate.source_path(), root.join("zlink"));
    }
}
