//! The filesystem store: a directory, typically a shared volume (NFS, EFS, a ReadWriteMany
//! PersistentVolume) that every pod mounts and serves.
//!
//! Puts write a temporary file in the target's own directory, fsync it, then rename it into
//! place (or hard-link it, for create-only puts: `link(2)` fails if the name exists, atomically,
//! also on NFS). Readers never see a partial file. Filesystem calls run on tokio's blocking pool.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Body, Capabilities, ObjectMeta, Op, PutMode, PutOptions, Store, StoreError};
use crate::key::Key;

/// A store in a local directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
    url: String,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Marks deskew's temporary files; a crashed put leaves one behind, which GC removes after the
/// grace period like any other unreferenced file.
pub const TMP_MARKER: &str = ".deskew-tmp-";

impl FsStore {
    /// Opens the store at `root`. With `create`, a missing directory is created (publish);
    /// without, it must exist (every other command: a typo must not look like an empty store).
    pub fn open(root: &Path, create: bool) -> Result<FsStore, StoreError> {
        let url = format!("file://{}", std::path::absolute(root).unwrap_or_else(|_| root.into()).display());
        let err = |e: io::Error| StoreError::Unusable { store: url.clone(), why: format!("cannot be opened: {e}") };
        if create {
            fs::create_dir_all(root).map_err(err)?;
        }
        let unusable = |why: &str| StoreError::Unusable { store: url.clone(), why: why.into() };
        let meta = fs::metadata(root).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound { unusable("does not exist") } else { err(e) }
        })?;
        if !meta.is_dir() {
            return Err(unusable("is not a directory"));
        }
        Ok(FsStore { root: root.to_path_buf(), url })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &Key) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(key.as_str().split('/'));
        p
    }

    fn err(&self, op: Op, key: &Key, source: io::Error) -> StoreError {
        if source.kind() == io::ErrorKind::NotFound && op == Op::Get {
            return StoreError::NotFound { store: self.url.clone(), key: key.to_string() };
        }
        StoreError::Backend { op, store: self.url.clone(), key: key.to_string(), source: source.into() }
    }

    fn put_blocking(&self, key: &Key, body: &Body, opts: &PutOptions) -> Result<(), StoreError> {
        let dest = self.path(key);
        let dir = dest.parent().expect("keys have a file name").to_path_buf();
        // A concurrent GC may remove a directory it just emptied between our create_dir_all and
        // the temp file's creation; retry then.
        let mut attempt = 0;
        let (tmp, actual) = loop {
            attempt += 1;
            fs::create_dir_all(&dir).map_err(|e| self.err(Op::Put, key, e))?;
            let tmp = dir.join(format!(
                ".{}{TMP_MARKER}{}-{}",
                key.file_name(),
                std::process::id(),
                TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match write_tmp(&tmp, body) {
                Ok(sha) => break (tmp, sha),
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 3 => continue,
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(self.err(Op::Put, key, e));
                }
            }
        };
        if let Some(expected) = &opts.sha256 {
            if *expected != actual {
                let _ = fs::remove_file(&tmp);
                return Err(StoreError::Checksum { store: self.url.clone(), key: key.to_string(), expected: expected.clone(), actual });
            }
        }
        let placed = match opts.mode {
            PutMode::Overwrite => fs::rename(&tmp, &dest),
            PutMode::Create => {
                let r = fs::hard_link(&tmp, &dest);
                let _ = fs::remove_file(&tmp);
                r
            }
        };
        match placed {
            Ok(()) => {
                // Make the rename durable; not every filesystem supports fsync on a directory.
                if let Ok(d) = File::open(&dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists { store: self.url.clone(), key: key.to_string() })
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(self.err(Op::Put, key, e))
            }
        }
    }

    fn list_blocking(&self, prefix: Option<&Key>) -> Result<Vec<ObjectMeta>, StoreError> {
        let start = prefix.map_or_else(|| self.root.clone(), |p| self.path(p));
        let prefix_str = prefix.map(|p| p.to_string()).unwrap_or_default();
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(&start).follow_links(false) {
            let entry = match entry {
                Ok(e) => e,
                // A prefix that does not exist holds nothing; an entry that vanished while we
                // walked (a temp file renamed into place, a directory a delete emptied) is gone,
                // not an error.
                Err(e) if e.io_error().is_some_and(|io| io.kind() == io::ErrorKind::NotFound) => {
                    if e.depth() == 0 {
                        return Ok(out);
                    }
                    continue;
                }
                Err(e) => {
                    return Err(StoreError::Backend { op: Op::List, store: self.url.clone(), key: prefix_str, source: e.into() });
                }
            };
            if entry.file_type().is_dir() {
                continue;
            }
            let rel = entry.path().strip_prefix(&self.root).expect("walk stays under root");
            let name = rel.to_str().ok_or_else(|| StoreError::InvalidName {
                store: self.url.clone(),
                name: rel.to_string_lossy().into_owned(),
            })?;
            let key = Key::new(name.replace(std::path::MAIN_SEPARATOR, "/"))
                .map_err(|_| StoreError::InvalidName { store: self.url.clone(), name: name.into() })?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.io_error().is_some_and(|io| io.kind() == io::ErrorKind::NotFound) => continue,
                Err(e) => {
                    return Err(StoreError::Backend { op: Op::List, store: self.url.clone(), key: key.to_string(), source: e.into() });
                }
            };
            out.push(ObjectMeta { key, size: meta.len(), modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH) });
        }
        Ok(out)
    }

    fn delete_blocking(&self, key: &Key) -> Result<(), StoreError> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.err(Op::Delete, key, e)),
        }
        // Tidy up directories the delete emptied, up to (not including) the root.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

fn write_tmp(tmp: &Path, body: &Body) -> io::Result<String> {
    let mut out = fs::OpenOptions::new().write(true).create_new(true).open(tmp)?;
    let sha = match body {
        Body::Bytes(b) => {
            out.write_all(b)?;
            crate::manifest::sha256_hex(b)
        }
        Body::File(src) => {
            let mut hashing = HashingReader { inner: File::open(src)?, hasher: <sha2::Sha256 as sha2::Digest>::new() };
            io::copy(&mut hashing, &mut out)?;
            hex::encode(sha2::Digest::finalize(hashing.hasher))
        }
    };
    out.sync_all()?;
    Ok(sha)
}

struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("filesystem task panicked")
}

#[async_trait]
impl Store for FsStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { create_only: true }
    }

    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
        let (this, key, opts) = (self.clone(), key.clone(), opts.clone());
        blocking(move || this.put_blocking(&key, &body, &opts)).await
    }

    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        let (this, key) = (self.clone(), key.clone());
        blocking(move || fs::read(this.path(&key)).map(Bytes::from).map_err(|e| this.err(Op::Get, &key, e))).await
    }

    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<ObjectMeta>, StoreError> {
        let (this, prefix) = (self.clone(), prefix.cloned());
        blocking(move || this.list_blocking(prefix.as_ref())).await
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let (this, key) = (self.clone(), key.clone());
        blocking(move || this.delete_blocking(&key)).await
    }
}
