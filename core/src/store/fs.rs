//! The filesystem store: a directory, typically a shared volume (NFS, EFS, a ReadWriteMany
//! PersistentVolume) that every pod mounts and serves.
//!
//! Every operation walks from a descriptor of the root, one path segment at a time, with
//! `O_NOFOLLOW`: a symbolic link anywhere below the root is refused, never followed, so nothing
//! outside the root is ever read, written or deleted, whatever a link points to. Only regular
//! files are read or deleted; a device or a FIFO is refused too. (The root itself may be a link:
//! the operator named it.)
//!
//! Puts write a temporary file `.deskew-tmp-<token>` in the target's own directory (a random
//! token: no name length limit is approached, and two containers with the same PID on one volume
//! never collide), hash what they write, fsync, then rename it into place, or hard-link it for
//! create-only puts: `link(2)` fails if the name exists, atomically, also on NFS. Readers never
//! see a partial file. Filesystem calls run on tokio's blocking pool.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{Body, Capabilities, Chunks, Listing, ListingProblem, ObjectMeta, Op, PutMode, PutOptions, Store, StoreError, WriteGuard};
use crate::host::{Host, SystemHost};
use crate::key::Key;
use crate::layout::TMP_PREFIX;

/// A store in a local directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
    root_fd: Arc<OwnedFd>,
    url: String,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Why walking to a key's directory failed.
enum WalkError {
    /// A segment does not exist.
    Missing,
    /// A segment is a link or not a directory: what it is.
    NotDir(String),
    /// Anything else.
    Io(io::Error),
}

fn describe(ft: FileType) -> &'static str {
    match ft {
        FileType::Symlink => "is a symbolic link",
        FileType::Directory => "is a directory",
        FileType::RegularFile => "is a regular file",
        FileType::Fifo => "is a FIFO",
        FileType::Socket => "is a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "is a device",
        _ => "is not a regular file",
    }
}

fn mtime(st: &rustix::fs::Stat) -> SystemTime {
    let secs = st.st_mtime.max(0) as u64;
    UNIX_EPOCH + Duration::new(secs, st.st_mtime_nsec as u32)
}

impl FsStore {
    /// Opens the store at `root`. With `create`, a missing directory is created (publish);
    /// without, it must exist (every other command: a typo must not look like an empty store).
    pub fn open(root: &Path, create: bool) -> Result<FsStore, StoreError> {
        let url = format!("file://{}", std::path::absolute(root).unwrap_or_else(|_| root.into()).display());
        let err = |e: io::Error| StoreError::Unusable { store: url.clone(), why: format!("cannot be opened: {e}") };
        if create {
            std::fs::create_dir_all(root).map_err(err)?;
        }
        let unusable = |why: &str| StoreError::Unusable { store: url.clone(), why: why.into() };
        let meta = std::fs::metadata(root).map_err(|e| if e.kind() == io::ErrorKind::NotFound { unusable("does not exist") } else { err(e) })?;
        if !meta.is_dir() {
            return Err(unusable("is not a directory"));
        }
        let fd = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| err(e.into()))?;
        Ok(FsStore { root: root.to_path_buf(), root_fd: Arc::new(fd), url })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn backend(&self, op: Op, key: &str, source: io::Error) -> StoreError {
        StoreError::backend(op, &self.url, key, source)
    }

    fn not_regular(&self, key: &str, why: impl Into<String>) -> StoreError {
        StoreError::NotRegular { store: self.url.clone(), key: key.into(), why: why.into() }
    }

    fn walk_error(&self, op: Op, key: &str, e: WalkError) -> StoreError {
        match e {
            WalkError::Missing => StoreError::NotFound { store: self.url.clone(), key: key.to_string() },
            WalkError::NotDir(why) => self.not_regular(key, why),
            WalkError::Io(e) => self.backend(op, key, e),
        }
    }

    /// Opens the directories of `segments` one by one from the root, never through a link.
    /// Returns the descriptors of the root and every directory opened, in order.
    fn open_dirs(&self, segments: &[&str], create: bool) -> Result<Vec<OwnedFd>, WalkError> {
        let root = rustix::fs::openat(self.root_fd.as_fd(), ".", DIR_FLAGS, Mode::empty()).map_err(|e| WalkError::Io(e.into()))?;
        let mut fds = vec![root];
        for (i, seg) in segments.iter().enumerate() {
            let parent = fds.last().expect("root is first");
            let opened = match rustix::fs::openat(parent, *seg, DIR_FLAGS, Mode::empty()) {
                Err(Errno::NOENT) if create => match rustix::fs::mkdirat(parent, *seg, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => rustix::fs::openat(parent, *seg, DIR_FLAGS, Mode::empty()),
                    Err(e) => Err(e),
                },
                other => other,
            };
            match opened {
                Ok(fd) => fds.push(fd),
                Err(Errno::NOENT) => return Err(WalkError::Missing),
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    let what = rustix::fs::statat(parent, *seg, AtFlags::SYMLINK_NOFOLLOW)
                        .map(|st| describe(FileType::from_raw_mode(st.st_mode)))
                        .unwrap_or("is not a directory");
                    return Err(WalkError::NotDir(format!("lies under `{}`, which {what}", segments[..=i].join("/"))));
                }
                Err(e) => return Err(WalkError::Io(e.into())),
            }
        }
        Ok(fds)
    }

    fn put_blocking(&self, key: &Key, body: &Body, opts: &PutOptions) -> Result<(), StoreError> {
        let segments: Vec<&str> = key.as_str().split('/').collect();
        let (leaf, dirs) = segments.split_last().expect("keys have a segment");
        // A concurrent gc may remove a directory it just emptied between our walk and the temp
        // file's creation; walk again then.
        let mut attempt = 0;
        let (parent, tmp, actual) = loop {
            attempt += 1;
            let mut fds = self.open_dirs(dirs, true).map_err(|e| self.walk_error(Op::Put, key.as_str(), e))?;
            let parent = fds.pop().expect("root is first");
            let tmp = format!("{TMP_PREFIX}{}", SystemHost.unique());
            match write_tmp(&parent, &tmp, body) {
                Ok(sha) => break (parent, tmp, sha),
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 5 => continue,
                Err(e) => {
                    let _ = rustix::fs::unlinkat(&parent, tmp.as_str(), AtFlags::empty());
                    return Err(self.backend(Op::Put, key.as_str(), e));
                }
            }
        };
        let remove_tmp = || {
            let _ = rustix::fs::unlinkat(&parent, tmp.as_str(), AtFlags::empty());
        };
        if let Some(expected) = &opts.sha256 {
            if *expected != actual {
                remove_tmp();
                return Err(StoreError::Checksum { store: self.url.clone(), key: key.to_string(), expected: expected.clone(), actual });
            }
        }
        // Never replace a link, a directory or a device with a file: refuse instead.
        match rustix::fs::statat(&parent, *leaf, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile => {
                remove_tmp();
                return Err(self.not_regular(key.as_str(), describe(FileType::from_raw_mode(st.st_mode))));
            }
            _ => {}
        }
        if let Err(e) = WriteGuard::check(opts.guard.as_ref(), &self.url, key.as_str()) {
            remove_tmp();
            return Err(e);
        }
        let placed = match opts.mode {
            PutMode::Overwrite => rustix::fs::renameat(&parent, tmp.as_str(), &parent, *leaf),
            PutMode::Create => {
                let r = rustix::fs::linkat(&parent, tmp.as_str(), &parent, *leaf, AtFlags::empty());
                remove_tmp();
                r
            }
        };
        match placed {
            Ok(()) => {
                // Make the rename durable; not every filesystem supports fsync on a directory.
                let _ = rustix::fs::fsync(&parent);
                Ok(())
            }
            Err(Errno::EXIST) => Err(StoreError::AlreadyExists { store: self.url.clone(), key: key.to_string() }),
            Err(e) => {
                remove_tmp();
                Err(self.backend(Op::Put, key.as_str(), e.into()))
            }
        }
    }

    fn get_blocking(&self, key: &Key) -> Result<Bytes, StoreError> {
        let (mut file, size) = self.open_regular(key)?;
        let mut buf = Vec::with_capacity(size);
        file.read_to_end(&mut buf).map_err(|e| self.backend(Op::Get, key.as_str(), e))?;
        Ok(Bytes::from(buf))
    }

    /// The regular file at `key`, opened without following a link anywhere on the way, and its
    /// size when opened.
    fn open_regular(&self, key: &Key) -> Result<(File, usize), StoreError> {
        let segments: Vec<&str> = key.as_str().split('/').collect();
        let (leaf, dirs) = segments.split_last().expect("keys have a segment");
        let fds = self.open_dirs(dirs, false).map_err(|e| self.walk_error(Op::Get, key.as_str(), e))?;
        let parent = fds.last().expect("root is first");
        // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below anyway.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::openat(parent, *leaf, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(StoreError::NotFound { store: self.url.clone(), key: key.to_string() }),
            Err(Errno::LOOP) => return Err(self.not_regular(key.as_str(), "is a symbolic link")),
            Err(e) => return Err(self.backend(Op::Get, key.as_str(), e.into())),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.backend(Op::Get, key.as_str(), e.into()))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft != FileType::RegularFile {
            return Err(self.not_regular(key.as_str(), describe(ft)));
        }
        Ok((File::from(fd), st.st_size.max(0) as usize))
    }

    /// The next chunk of an open file (empty at its end).
    fn read_chunk(&self, key: &str, file: &mut File) -> Result<Bytes, StoreError> {
        let mut buf = vec![0; CHUNK];
        loop {
            match file.read(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(Bytes::from(buf));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.backend(Op::Get, key, e)),
            }
        }
    }

    fn list_blocking(&self, prefix: Option<&Key>) -> Result<Listing, StoreError> {
        let list_key = prefix.map(|p| p.to_string()).unwrap_or_default();
        let segments: Vec<&str> = prefix.map(|p| p.as_str().split('/').collect()).unwrap_or_default();
        let start = match self.open_dirs(&segments, false) {
            Ok(mut fds) => fds.pop().expect("root is first"),
            Err(WalkError::Missing) => return Ok(Listing::default()),
            Err(e) => return Err(self.walk_error(Op::List, &list_key, e)),
        };
        let mut out = Listing::default();
        let mut stack: Vec<(OwnedFd, String)> = vec![(start, prefix.map(|p| format!("{p}/")).unwrap_or_default())];
        while let Some((dir_fd, rel)) = stack.pop() {
            let mut dir = match Dir::read_from(&dir_fd) {
                Ok(d) => d,
                Err(Errno::NOENT) => continue, // removed while we walked
                Err(e) => return Err(self.backend(Op::List, &list_key, e.into())),
            };
            while let Some(entry) = dir.read() {
                let entry = entry.map_err(|e| self.backend(Op::List, &list_key, e.into()))?;
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let shown = format!("{rel}{}", OsStr::from_bytes(name).to_string_lossy());
                let Ok(name) = std::str::from_utf8(name) else {
                    out.problems.push(ListingProblem { name: shown, why: "is not a valid path: its name is not UTF-8".into() });
                    continue;
                };
                let st = match rustix::fs::statat(&dir_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(Errno::NOENT) => continue, // a temp file renamed, a file deleted: gone
                    Err(e) => return Err(self.backend(Op::List, &list_key, e.into())),
                };
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => match rustix::fs::openat(&dir_fd, name, DIR_FLAGS, Mode::empty()) {
                        Ok(fd) => stack.push((fd, format!("{shown}/"))),
                        Err(Errno::NOENT) => {}
                        Err(Errno::LOOP | Errno::NOTDIR) => out.problems.push(ListingProblem { name: shown, why: "is a symbolic link".into() }),
                        Err(e) => return Err(self.backend(Op::List, &list_key, e.into())),
                    },
                    FileType::RegularFile => match Key::new(shown.clone()) {
                        Ok(key) => out.objects.push(ObjectMeta { key, size: st.st_size.max(0) as u64, modified: mtime(&st), md5: None }),
                        Err(e) => out.problems.push(ListingProblem { name: shown, why: format!("is not a valid path: {e}") }),
                    },
                    ft => out.problems.push(ListingProblem { name: shown, why: describe(ft).into() }),
                }
            }
        }
        Ok(out)
    }

    fn delete_blocking(&self, key: &Key, guard: Option<&WriteGuard>) -> Result<(), StoreError> {
        let segments: Vec<&str> = key.as_str().split('/').collect();
        let (leaf, dirs) = segments.split_last().expect("keys have a segment");
        let fds = match self.open_dirs(dirs, false) {
            Ok(fds) => fds,
            Err(WalkError::Missing) => return Ok(()),
            Err(e) => return Err(self.walk_error(Op::Delete, key.as_str(), e)),
        };
        let parent = fds.last().expect("root is first");
        match rustix::fs::statat(parent, *leaf, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
            Ok(st) => return Err(self.not_regular(key.as_str(), describe(FileType::from_raw_mode(st.st_mode)))),
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(self.backend(Op::Delete, key.as_str(), e.into())),
        }
        WriteGuard::check(guard, &self.url, key.as_str())?;
        match rustix::fs::unlinkat(parent, *leaf, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(self.backend(Op::Delete, key.as_str(), e.into())),
        }
        // Tidy up directories the delete emptied, up to (not including) the root.
        for (i, seg) in dirs.iter().enumerate().rev() {
            if rustix::fs::unlinkat(&fds[i], *seg, AtFlags::REMOVEDIR).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Whether the root holds nothing, or nothing but a `.deskew` folder holding only
    /// temporary files (another publish creating the store this instant, its marker not yet
    /// renamed into place).
    fn is_empty_blocking(&self) -> Result<bool, StoreError> {
        let names = |fd: &OwnedFd| -> Result<Vec<Vec<u8>>, StoreError> {
            let mut dir = Dir::read_from(fd).map_err(|e| self.backend(Op::List, "", e.into()))?;
            let mut out = Vec::new();
            while let Some(entry) = dir.read() {
                let name = entry.map_err(|e| self.backend(Op::List, "", e.into()))?.file_name().to_bytes().to_vec();
                if name != b"." && name != b".." {
                    out.push(name);
                }
            }
            Ok(out)
        };
        let root = names(&self.root_fd)?;
        if root.is_empty() {
            return Ok(true);
        }
        if root != [b".deskew".to_vec()] {
            return Ok(false);
        }
        let Ok(deskew) = rustix::fs::openat(self.root_fd.as_fd(), ".deskew", DIR_FLAGS, Mode::empty()) else { return Ok(false) };
        Ok(names(&deskew)?.iter().all(|n| n.starts_with(TMP_PREFIX.as_bytes())))
    }
}

fn write_tmp(dir: &OwnedFd, name: &str, body: &Body) -> io::Result<String> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut out = File::from(rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o644))?);
    let sha = match body {
        Body::Bytes(b) => {
            out.write_all(b)?;
            crate::digest::sha256_hex(b)
        }
        Body::File(src) => crate::digest::copy_hashing(File::open(src)?, &mut out)?,
    };
    out.sync_all()?;
    Ok(sha)
}

/// What [`Store::get_chunks`] reads at a time.
const CHUNK: usize = 256 << 10;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("filesystem task panicked")
}

#[async_trait]
impl Store for FsStore {
    fn url(&self) -> &str {
        &self.url
    }

    async fn capabilities(&self) -> Result<Capabilities, StoreError> {
        Ok(Capabilities { create_only: true })
    }

    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
        let (this, key, opts) = (self.clone(), key.clone(), opts.clone());
        blocking(move || this.put_blocking(&key, &body, &opts)).await
    }

    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        let (this, key) = (self.clone(), key.clone());
        blocking(move || this.get_blocking(&key)).await
    }

    async fn get_chunks(&self, key: &Key) -> Result<Chunks, StoreError> {
        let (this, key) = (self.clone(), key.clone());
        let (opener, opened) = (self.clone(), key.clone());
        let (file, _) = blocking(move || opener.open_regular(&opened)).await?;
        let chunks = futures::stream::try_unfold(file, move |mut file| {
            let (this, key) = (this.clone(), key.clone());
            async move {
                let (file, chunk) = blocking(move || this.read_chunk(key.as_str(), &mut file).map(|c| (file, c))).await?;
                Ok((!chunk.is_empty()).then_some((chunk, file)))
            }
        });
        Ok(Box::pin(chunks))
    }

    async fn list(&self, prefix: Option<&Key>) -> Result<Listing, StoreError> {
        let (this, prefix) = (self.clone(), prefix.cloned());
        blocking(move || this.list_blocking(prefix.as_ref())).await
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let (this, key) = (self.clone(), key.clone());
        blocking(move || this.delete_blocking(&key, None)).await
    }

    async fn delete_many(&self, keys: &[Key], guard: Option<&WriteGuard>) -> Vec<Result<(), StoreError>> {
        let (this, keys, guard) = (self.clone(), keys.to_vec(), guard.cloned());
        blocking(move || keys.iter().map(|k| this.delete_blocking(k, guard.as_ref())).collect()).await
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        let this = self.clone();
        blocking(move || this.is_empty_blocking()).await
    }
}
