//! Building a manifest from a build directory: hashing on every core what the walk
//! ([`super::walk`]) finds, while it goes on.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use super::walk::{Found, walk};
use super::{Manifest, ManifestFile};
use crate::classify::{self, Classifier};
use crate::digest::hash_reader_with;
use crate::id::ReleaseId;
use crate::key::{Key, KeyError};

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

impl Manifest {
    /// Walks `dist` and builds its manifest. Files are hashed on every core while the walk goes
    /// on; classes are decided once every path is known (a file's class may depend on its
    /// siblings).
    pub fn from_dir(dist: &Path, opts: &BuildOptions) -> Result<Manifest, ManifestError> {
        let (found, hashes) = walk_and_hash(dist, opts)?;
        let classifier = opts.classifier.clone().with_build_paths(found.iter().map(|f| f.key.as_str()));
        let opts = &BuildOptions { classifier, ..opts.clone() };
        let files = found.into_iter().zip(hashes).map(|(f, (sha256, size))| describe(f.key, sha256, size, opts)).collect();
        Ok(Manifest::from_files(files, opts.release.clone()))
    }
}

/// Files the walk has found and not yet handed to a hashing thread.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    sources: Vec<PathBuf>,
    taken: usize,
    /// Threads asleep in [`Queue::take`]: a push wakes one only when there is one (std's
    /// `notify_one` is a system call even with no one to wake: one per file, 5,000 at 5,000).
    waiting: usize,
    /// The walk has ended (or failed: then the threads stop too).
    done: bool,
}

impl Queue {
    /// Queues a file for hashing; ignored once the queue is closed (after a read error, no hash
    /// will be used).
    fn push(&self, source: PathBuf) {
        let mut s = self.state.lock().expect("queue lock");
        if !s.done {
            s.sources.push(source);
            let wake = s.waiting > 0;
            drop(s);
            if wake {
                self.ready.notify_one();
            }
        }
    }

    fn close(&self) {
        self.state.lock().expect("queue lock").done = true;
        self.ready.notify_all();
    }

    /// Closes it and drops what is left: the walk or a read failed, so no hash will be used.
    /// Files before the failing one were all taken already (files are taken in walk order), so
    /// the first read error in walk order is still met.
    fn abandon(&self) {
        let mut s = self.state.lock().expect("queue lock");
        s.taken = s.sources.len();
        s.done = true;
        drop(s);
        self.ready.notify_all();
    }

    /// The next file to hash and its index in the walk's order; `None` once the walk is over
    /// and every file has been taken.
    fn take(&self) -> Option<(usize, PathBuf)> {
        let mut s = self.state.lock().expect("queue lock");
        loop {
            if s.taken < s.sources.len() {
                s.taken += 1;
                return Some((s.taken - 1, s.sources[s.taken - 1].clone()));
            }
            if s.done {
                return None;
            }
            s.waiting += 1;
            s = self.ready.wait(s).expect("queue lock");
            s.waiting -= 1;
        }
    }
}

/// A file's sha256 and size.
type Hash = (String, u64);

/// What one hashing thread gives: hashes by walk index, or the first file it could not read.
type Hashed = Result<Vec<(usize, Hash)>, (usize, ManifestError)>;

/// The walk, on this thread, with every other core hashing what it has found so far (the walk
/// of 50,000 files takes a tenth of the time the hashing does, and no longer comes before it).
/// A walk error wins over a read error, and of read errors the first in walk order.
fn walk_and_hash(dist: &Path, opts: &BuildOptions) -> Result<(Vec<Found>, Vec<Hash>), ManifestError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(1);
    let queue = Queue::default();
    let (walked, hashed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(|| hash_queued(&queue))).collect();
        let walked = walk(dist, opts, |f| queue.push(f.source.clone()));
        if walked.is_err() {
            queue.abandon();
        } else {
            queue.close();
        }
        let hashed: Vec<_> = handles.into_iter().map(|h| h.join().expect("hashing thread panicked")).collect();
        (walked, hashed)
    });
    let found = walked?;
    let mut all = Vec::with_capacity(found.len());
    let mut first_error: Option<(usize, ManifestError)> = None;
    for r in hashed {
        match r {
            Ok(done) => all.extend(done),
            Err((i, e)) if first_error.as_ref().is_none_or(|(j, _)| i < *j) => first_error = Some((i, e)),
            Err(_) => {}
        }
    }
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok((found, all.into_iter().map(|(_, h)| h).collect()))
}

/// One hashing thread: files from `queue` until it is empty and closed, or one cannot be read.
fn hash_queued(queue: &Queue) -> Hashed {
    let mut buf = vec![0u8; 256 * 1024];
    let mut out = Vec::new();
    while let Some((i, source)) = queue.take() {
        let hashed = File::open(&source).and_then(|file| hash_reader_with(file, &mut buf));
        match hashed {
            Ok(h) => out.push((i, h)),
            Err(e) => {
                queue.abandon(); // the other threads stop after the file they are hashing
                return Err((i, ManifestError::Read { path: source, source: e }));
            }
        }
    }
    Ok(out)
}

/// A file's entry, its class decided by `opts.classifier`.
fn describe(key: Key, sha256: String, size: u64, opts: &BuildOptions) -> ManifestFile {
    let path = key.as_str();
    let class = opts.classifier.classify(path);
    ManifestFile {
        content_type: opts.headers.content_type(path).map_or_else(|| crate::mime::content_type(path), str::to_string).into(),
        cache_control: opts.headers.cache_control(path).unwrap_or(classify::cache_control(class)).into(),
        class,
        path: key,
        sha256: sha256.into(),
        size,
    }
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
        assert_eq!(*a.files[0].sha256, sha256_hex(b"console.log(1)"));
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

    /// Hashing runs while the walk goes on, on several threads: every entry must still get its
    /// own file's hash and size, in the walk's order.
    #[test]
    fn hashes_land_on_their_own_files_in_walk_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        for i in 0..1500u32 {
            let rel = format!("d{}/e{}/f{i:04}.txt", i % 7, i % 3);
            let body = i.to_string().repeat((i % 97) as usize + 1);
            write(dir.path(), &rel, body.as_bytes());
            expected.push((rel, sha256_hex(body.as_bytes()), body.len() as u64));
        }
        expected.sort();
        let m = Manifest::from_dir(dir.path(), &BuildOptions::default()).unwrap();
        let got: Vec<_> = m.files.iter().map(|f| (f.path.to_string(), f.sha256.to_string(), f.size)).collect();
        assert_eq!(got, expected);
    }

    /// A file that cannot be read is named; of several, the first in walk order, whichever
    /// thread met it first.
    #[test]
    fn a_read_error_names_the_first_unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::default();
        for name in ["a", "b", "c"] {
            write(dir.path(), name, name.as_bytes());
        }
        for name in ["a", "gone-1", "b", "gone-2", "c"] {
            queue.push(dir.path().join(name));
        }
        queue.close();
        let err = hash_queued(&queue).unwrap_err();
        assert_eq!(err.0, 1);
        // The rest is dropped, not hashed by the other threads, and the walk adds no more.
        queue.push(dir.path().join("c"));
        assert!(queue.take().is_none(), "files were left to hash after a read error");
        assert!(matches!(&err.1, ManifestError::Read { path, .. } if path.ends_with("gone-1")), "{}", err.1);
    }
}
