//! The walk of a build directory: which files a manifest has, in a fixed order (each folder's
//! entries sorted by name, a folder's files where the folder sorts), and which links may be
//! followed (to files inside the build only). Names are sorted as they are read, so the order
//! costs one comparison of two names, not of two parsed paths.

use std::ffi::OsString;
use std::fs::FileType;
use std::io;
use std::path::{Path, PathBuf};

use crate::key::Key;
use crate::layout;

use super::build::{BuildOptions, ManifestError};

/// A file found in the build directory, before hashing.
pub(super) struct Found {
    pub key: Key,
    /// Where its bytes are read from (the link target for a symlink).
    pub source: PathBuf,
}

/// Every file under `dist`, in walk order, each also given to `on_found` as it is found.
pub(super) fn walk(dist: &Path, opts: &BuildOptions, mut on_found: impl FnMut(&Found)) -> Result<Vec<Found>, ManifestError> {
    let meta = match std::fs::metadata(dist) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ManifestError::Missing(dist.into())),
        Err(source) => return Err(ManifestError::Walk { path: dist.into(), source }),
    };
    if !meta.is_dir() {
        return Err(ManifestError::NotADirectory(dist.into()));
    }
    let root = dist.canonicalize().map_err(|source| ManifestError::Walk { path: dist.into(), source })?;
    let mut walker = Walker { root, exclude: exclude_set(&opts.exclude), found: Vec::new(), on_found: &mut on_found };
    walker.folder(dist, "")?;
    if walker.found.is_empty() {
        return Err(ManifestError::Empty(dist.into()));
    }
    Ok(walker.found)
}

fn exclude_set(globs: &[String]) -> globset::GlobSet {
    let mut b = globset::GlobSetBuilder::new();
    for g in globs {
        // Invalid exclude globs are rejected by the CLI before we get here; skip defensively.
        if let Ok(g) = globset::Glob::new(g) {
            b.add(g);
        }
    }
    b.build().unwrap_or_else(|_| globset::GlobSet::empty())
}

struct Walker<'a> {
    /// The build directory, canonical: where links may lead.
    root: PathBuf,
    exclude: globset::GlobSet,
    found: Vec<Found>,
    on_found: &'a mut dyn FnMut(&Found),
}

impl Walker<'_> {
    /// The entries of `dir` (whose path in the build is `rel`), sorted by name; folders are
    /// walked where they sort.
    fn folder(&mut self, dir: &Path, rel: &str) -> Result<(), ManifestError> {
        let unreadable = |source| ManifestError::Walk { path: dir.into(), source };
        let mut entries: Vec<(OsString, FileType)> = std::fs::read_dir(dir)
            .map_err(unreadable)?
            .map(|e| e.and_then(|e| Ok((e.file_name(), e.file_type()?))))
            .collect::<Result<_, _>>()
            .map_err(unreadable)?;
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (name, ft) in entries {
            let path = dir.join(&name);
            let name = name.to_str().ok_or_else(|| ManifestError::NonUtf8(path.clone()))?;
            // At any depth (checked on the way down): `admin/.deskew` would make a folder of the
            // store look like a store of its own (which gc leaves alone), and could carry
            // records into it.
            if name == layout::DESKEW_DIR {
                return Err(ManifestError::Reserved(path));
            }
            let rel = if rel.is_empty() { name.to_owned() } else { format!("{rel}/{name}") };
            if ft.is_dir() {
                self.folder(&path, &rel)?;
            } else if !self.exclude.is_match(&rel) {
                self.file(path, rel, ft)?;
            }
        }
        Ok(())
    }

    /// A file, or a link to a file inside the build.
    fn file(&mut self, path: PathBuf, rel: String, ft: FileType) -> Result<(), ManifestError> {
        let key = Key::new(rel).map_err(|source| ManifestError::BadName { path: path.clone(), source })?;
        let source = if ft.is_symlink() {
            let target = std::fs::canonicalize(&path).map_err(|_| ManifestError::LinkBroken(path.clone()))?;
            if !target.starts_with(&self.root) {
                return Err(ManifestError::LinkOutside { link: path, target });
            }
            let tmeta = std::fs::metadata(&target).map_err(|source| ManifestError::Read { path: path.clone(), source })?;
            if tmeta.is_dir() {
                return Err(ManifestError::LinkToDirectory(path));
            }
            if !tmeta.is_file() {
                return Err(ManifestError::NotAFile(path));
            }
            target
        } else if ft.is_file() {
            path
        } else {
            return Err(ManifestError::NotAFile(path));
        };
        let f = Found { key, source };
        (self.on_found)(&f);
        self.found.push(f);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, rel).unwrap();
    }

    fn keys(found: &[Found]) -> Vec<&str> {
        found.iter().map(|f| f.key.as_str()).collect()
    }

    /// Each folder's entries by name (bytes: `-` sorts before `.`), a folder's files where the
    /// folder sorts, excluded files left out but their folders still walked; `on_found` sees
    /// the same files in the same order.
    #[test]
    fn files_come_in_name_order_folder_by_folder() {
        let dir = tempfile::tempdir().unwrap();
        for rel in ["b.js", "a.js", "a/x.js", "a-b/y.js", "a/z/deep.map", "a/z/deep.js", "A.txt"] {
            write(dir.path(), rel);
        }
        let opts = BuildOptions { exclude: vec!["**/*.map".into()], ..BuildOptions::default() };
        let mut seen = Vec::new();
        let found = walk(dir.path(), &opts, |f| seen.push(f.key.to_string())).unwrap();
        assert_eq!(keys(&found), ["A.txt", "a/x.js", "a/z/deep.js", "a-b/y.js", "a.js", "b.js"]);
        assert_eq!(seen, keys(&found));
        assert_eq!(found[1].source, dir.path().join("a/x.js"));
    }

    #[test]
    fn names_that_cannot_be_keys_are_errors_that_name_the_file() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "index.html");
        let bad = dir.path().join("sub").join(std::ffi::OsStr::from_bytes(b"caf\xe9.js"));
        std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
        std::fs::write(&bad, "x").unwrap();
        match walk(dir.path(), &BuildOptions::default(), |_| {}) {
            Err(ManifestError::NonUtf8(p)) => assert_eq!(p, bad),
            other => panic!("{:?}", other.map(|f| f.len())),
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "ok/x.js");
        write(dir.path(), "ok/deeper/.deskew");
        match walk(dir.path(), &BuildOptions::default(), |_| {}) {
            Err(ManifestError::Reserved(p)) => assert_eq!(p, dir.path().join("ok/deeper/.deskew")),
            other => panic!("{:?}", other.map(|f| f.len())),
        }
    }
}
