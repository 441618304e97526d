//! Building a manifest from a build directory: the walk (which files, which links may be
//! followed), and hashing on every core.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::classify::{self, Classifier};
use crate::id::ReleaseId;
use crate::key::{Key, KeyError};
use crate::layout;

use super::{Manifest, ManifestFile};
use crate::digest::hash_reader;

/// Why a build directory cannot be turned into a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The directory does not exist.
    #[error("build directory `{0}` does not exist")]
    Missing(PathBuf),
    /// The path is not a directory.
    #[error("`{0}` is not a directory")]
    NotADirectory(PathBuf),
    /// The directory holds no file.
    #[error("build directory `{0}` holds no file")]
    Empty(PathBuf),
    /// Walking the directory failed.
    #[error("failed to read directory `{path}`")]
    Walk {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file name is not UTF-8.
    #[error("file name `{0}` is not valid UTF-8")]
    NonUtf8(PathBuf),
    /// A file name cannot be a store key.
    #[error("file `{path}` cannot be published")]
    BadName {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// A path is reserved for deskew's own records.
    #[error("`{0}` is reserved for deskew's records (a `.deskew` folder, at any depth); remove it from the build")]
    Reserved(PathBuf),
    /// A symbolic link leads out of the build directory.
    #[error("symbolic link `{link}` points outside the build directory, to `{target}`")]
    LinkOutside {
        /// The link.
        link: PathBuf,
        /// Where it leads.
        target: PathBuf,
    },
    /// A symbolic link leads nowhere.
    #[error("symbolic link `{0}` is broken")]
    LinkBroken(PathBuf),
    /// A symbolic link leads to a directory.
    #[error("symbolic link `{0}` points to a directory; deskew follows links to files only")]
    LinkToDirectory(PathBuf),
    /// Something that is neither file nor directory (socket, fifo, device).
    #[error("`{0}` is not a regular file")]
    NotAFile(PathBuf),
    /// A file cannot be read.
    #[error("failed to read `{path}`")]
    Read {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Options for [`Manifest::from_dir`].
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Decides each file's class.
    pub classifier: Classifier,
    /// Per-glob `Cache-Control` and `Content-Type` overrides.
    pub headers: crate::headers::HeaderRules,
    /// Paths matching these globs are left out.
    pub exclude: Vec<String>,
    /// The release id; `None` derives one from the content ([`ReleaseId::from_digest`]).
    pub release: Option<ReleaseId>,
}

/// A file found in the build directory, before hashing.
struct Found {
    key: Key,
    /// Where its bytes are read from (the link target for a symlink).
    source: PathBuf,
}

impl Manifest {
    /// Walks `dist` and builds its manifest. Hashing runs on every core.
    pub fn from_dir(dist: &Path, opts: &BuildOptions) -> Result<Manifest, ManifestError> {
        let found = walk(dist, opts)?;
        let classifier = opts.classifier.clone().with_build_paths(found.iter().map(|f| f.key.as_str()));
        let opts = &BuildOptions { classifier, ..opts.clone() };
        let files = hash_all(found, opts)?;
        Ok(Manifest::from_files(files, opts.release.clone()))
    }

}

fn walk(dist: &Path, opts: &BuildOptions) -> Result<Vec<Found>, ManifestError> {
    let meta = match std::fs::metadata(dist) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ManifestError::Missing(dist.into())),
        Err(source) => return Err(ManifestError::Walk { path: dist.into(), source }),
    };
    if !meta.is_dir() {
        return Err(ManifestError::NotADirectory(dist.into()));
    }
    let root = dist.canonicalize().map_err(|source| ManifestError::Walk { path: dist.into(), source })?;
    let exclude = {
        let mut b = globset::GlobSetBuilder::new();
        for g in &opts.exclude {
            // Invalid exclude globs are rejected by the CLI before we get here; skip defensively.
            if let Ok(g) = globset::Glob::new(g) {
                b.add(g);
            }
        }
        b.build().unwrap_or_else(|_| globset::GlobSet::empty())
    };

    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dist).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| dist.into());
            ManifestError::Walk { path, source: e.into() }
        })?;
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        let rel = path.strip_prefix(dist).expect("walkdir yields paths under its root");
        let rel_str = rel.to_str().ok_or_else(|| ManifestError::NonUtf8(path.into()))?;
        let rel_str = rel_str.replace(std::path::MAIN_SEPARATOR, "/");
        // At any depth: `admin/.deskew` would make a folder of the store look like a store of
        // its own (which gc leaves alone), and could carry records into it.
        if rel_str.split('/').any(|c| c == layout::DESKEW_DIR) {
            return Err(ManifestError::Reserved(path.into()));
        }
        let ft = entry.file_type();
        if ft.is_dir() {
            continue;
        }
        if exclude.is_match(&rel_str) {
            continue;
        }
        let key = Key::new(rel_str).map_err(|source| ManifestError::BadName { path: path.into(), source })?;
        let source = if ft.is_symlink() {
            let target = std::fs::canonicalize(path).map_err(|_| ManifestError::LinkBroken(path.into()))?;
            if !target.starts_with(&root) {
                return Err(ManifestError::LinkOutside { link: path.into(), target });
            }
            let tmeta = std::fs::metadata(&target).map_err(|source| ManifestError::Read { path: path.into(), source })?;
            if tmeta.is_dir() {
                return Err(ManifestError::LinkToDirectory(path.into()));
            }
            if !tmeta.is_file() {
                return Err(ManifestError::NotAFile(path.into()));
            }
            target
        } else if ft.is_file() {
            path.to_path_buf()
        } else {
            return Err(ManifestError::NotAFile(path.into()));
        };
        found.push(Found { key, source });
    }
    if found.is_empty() {
        return Err(ManifestError::Empty(dist.into()));
    }
    Ok(found)
}

fn hash_all(found: Vec<Found>, opts: &BuildOptions) -> Result<Vec<ManifestFile>, ManifestError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(found.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Vec<(usize, ManifestFile)>, ManifestError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(f) = found.get(i) else { break };
                        out.push((i, hash_one(f, opts)?));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("hashing thread panicked")).collect()
    });
    let mut files = Vec::with_capacity(found.len());
    for r in results {
        files.extend(r?);
    }
    files.sort_by_key(|(i, _)| *i);
    Ok(files.into_iter().map(|(_, f)| f).collect())
}

fn hash_one(f: &Found, opts: &BuildOptions) -> Result<ManifestFile, ManifestError> {
    let read_err = |source| ManifestError::Read { path: f.source.clone(), source };
    let file = File::open(&f.source).map_err(read_err)?;
    let (sha256, size) = hash_reader(file).map_err(read_err)?;
    let path = f.key.as_str();
    let class = opts.classifier.classify(path);
    Ok(ManifestFile {
        content_type: opts.headers.content_type(path).map_or_else(|| crate::mime::content_type(path), str::to_string),
        cache_control: opts.headers.cache_control(path).unwrap_or(classify::cache_control(class)).to_string(),
        class,
        path: f.key.clone(),
        sha256,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_hex;
    use crate::manifest::{FileClass, Totals};

    fn write(root: &Path, rel: &str, body: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    #[test]
    fn manifest_is_sorted_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "index.html", b"<html></html>");
        write(dir.path(), "assets/main-BcD3fG7h.js", b"console.log(1)");
        write(dir.path(), "favicon.ico", b"ico");
        let a = Manifest::from_dir(dir.path(), &BuildOptions::default()).unwrap();
        let b = Manifest::from_dir(dir.path(), &BuildOptions::default()).unwrap();
        assert_eq!(a.to_json(), b.to_json());
        let paths: Vec<_> = a.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["assets/main-BcD3fG7h.js", "favicon.ico", "index.html"]);
        assert_eq!(a.total, Totals { files: 3, bytes: 13 + 14 + 3 });
        assert_eq!(a.file(&Key::new("index.html").unwrap()).unwrap().class, FileClass::Entry);
        assert_eq!(a.files[0].sha256, sha256_hex(b"console.log(1)"));
        assert_eq!(a.release.as_str(), &a.digest[..12]);
    }

    #[test]
    fn empty_and_missing_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Manifest::from_dir(dir.path(), &BuildOptions::default()), Err(ManifestError::Empty(_))));
        let missing = dir.path().join("nope");
        assert!(matches!(Manifest::from_dir(&missing, &BuildOptions::default()), Err(ManifestError::Missing(_))));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_inside_are_followed_outside_rejected() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret", b"secret");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "index.html", b"x");
        std::os::unix::fs::symlink(dir.path().join("index.html"), dir.path().join("alias.html")).unwrap();
        let m = Manifest::from_dir(dir.path(), &BuildOptions::default()).unwrap();
        assert_eq!(m.files.len(), 2);
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("leak.txt")).unwrap();
        let err = Manifest::from_dir(dir.path(), &BuildOptions::default()).unwrap_err();
        assert!(matches!(err, ManifestError::LinkOutside { .. }), "{err}");
    }

    #[test]
    fn reserved_names_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".deskew/releases/x.json", b"{}");
        let nested = tempfile::tempdir().unwrap();
        write(nested.path(), "index.html", b"x");
        write(nested.path(), "admin/.deskew/releases/i1.json", b"{}");
        assert!(matches!(Manifest::from_dir(nested.path(), &BuildOptions::default()), Err(ManifestError::Reserved(_))), "nested too");
        assert!(matches!(Manifest::from_dir(dir.path(), &BuildOptions::default()), Err(ManifestError::Reserved(_))));
    }
}
