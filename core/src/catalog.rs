//! Reading every release record of a store.
//!
//! A catalog keeps the records it could read and the problems it met apart, so each caller
//! decides: GC and verify fail closed on any problem, publish warns and carries on (a record it
//! cannot read only costs it dedupe).

use futures::StreamExt;

use crate::intern::Interner;
use crate::key::Key;
use crate::layout;
use crate::release::{RecordError, ReleaseId, ReleaseRecord};
use crate::store::{ObjectMeta, Store, StoreError};

/// A record that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The record is corrupt, inconsistent or too new.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The record could not be read.
    #[error(transparent)]
    Read(#[from] StoreError),
    /// A file in the records folder whose name is not `<release-id>.json`.
    #[error("release record `{0}` has a name that is not a release id")]
    BadName(Key),
}

/// Record text read at once, in units of 64 KiB: 16 MiB. A record of 50,000 files is about
/// 12 MB, so one is read at a time (while the build is hashed, which takes longer); records of
/// 5,000 files, ten at a time. (Records over [`STREAM_OVER`] are streamed instead; the budget
/// then bounds only the smaller ones.)
const READ_BUDGET_UNITS: u32 = 256;

/// Records larger than this are parsed as they arrive, one at a time ([`record_stream`]):
/// backends that stream never hold their text whole. Smaller ones are read whole, several at once.
const STREAM_OVER: u64 = 4 << 20;

/// What reading a record of `size` bytes takes from a budget of `budget` units.
fn budget_units(size: u64, budget: u32) -> u32 {
    u32::try_from(size.div_ceil(64 << 10)).unwrap_or(u32::MAX).clamp(1, budget)
}

/// The records of a store, newest first, and what could not be read.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Readable records, newest first (by completion, or creation for releases that never
    /// completed; then id).
    pub records: Vec<ReleaseRecord>,
    /// Records that could not be used.
    pub problems: Vec<CatalogError>,
    /// Records that were listed but gone when read. Without the lease that is a gc finishing
    /// a release; under it (no other gc can run) something other than deskew deleted them.
    pub vanished: Vec<Key>,
}

impl Catalog {
    /// Reads every record. Fails only if the records folder cannot be listed.
    pub async fn load(store: &dyn Store) -> Result<Catalog, StoreError> {
        Catalog::load_within(store, READ_BUDGET_UNITS, STREAM_OVER).await
    }

    /// [`load`](Catalog::load), holding at most `budget` units of 64 KiB of record text at once
    /// and streaming records over `stream_over` bytes.
    async fn load_within(store: &dyn Store, budget: u32, stream_over: u64) -> Result<Catalog, StoreError> {
        let listing = store.list(Some(&layout::releases_dir())).await?.objects;
        Ok(Catalog::read_within(store, &listing, budget, stream_over).await)
    }

    /// Reads the records `listing` shows: the entries under the records folder of a listing
    /// made by the caller (gc lists the whole store once, and takes the records from it).
    pub async fn read_listed(store: &dyn Store, listing: &[ObjectMeta]) -> Catalog {
        Catalog::read_within(store, listing, READ_BUDGET_UNITS, STREAM_OVER).await
    }

    async fn read_within(store: &dyn Store, listing: &[ObjectMeta], budget: u32, stream_over: u64) -> Catalog {
        let dir = layout::releases_dir();
        let mut problems = Vec::new();
        let mut keys = Vec::new();
        for obj in listing.iter().filter(|o| o.key.is_under(&dir)).cloned() {
            if layout::is_temp(&obj.key) {
                continue; // a directory store's write in progress, or one that died
            }
            let Some(id) = layout::record_id(&obj.key) else { continue };
            if ReleaseId::new(id).is_err() {
                problems.push(CatalogError::BadName(obj.key.clone()));
                continue;
            }
            keys.push((obj.key, obj.size));
        }
        let (large, small): (Vec<_>, Vec<_>) = keys.into_iter().partition(|(_, size)| *size > stream_over);
        // Small ones: up to 16 at a time and no more text than the budget at once, parsed one by
        // one as they come; then the large ones, streamed one at a time. All sharing the paths the records have in common (kept releases share most of
        // their files); each text is dropped, and its budget freed, once parsed.
        let budget = budget.max(1);
        let permits = tokio::sync::Semaphore::new(budget as usize);
        let permits = &permits;
        let mut fetched = futures::stream::iter(small)
            .map(|(key, size)| async move {
                let permit = permits.acquire_many(budget_units(size, budget)).await.expect("the budget is never closed");
                (store.get(&key).await, key, permit)
            })
            .buffer_unordered(16);
        let mut interner = Interner::default();
        let mut records = Vec::new();
        let mut vanished = Vec::new();
        let mut sort = |key: Key, r: Result<ReleaseRecord, CatalogError>| match r {
            Ok(rec) => records.push(rec),
            // Deleted between the listing and the read: gone, not broken.
            Err(CatalogError::Read(e)) if e.is_not_found() => vanished.push(key),
            Err(e) => problems.push(e),
        };
        while let Some((got, key, permit)) = fetched.next().await {
            let r = match got {
                Ok(bytes) => interner.scope(|| ReleaseRecord::parse(&key, &bytes)).map_err(CatalogError::from),
                Err(e) => Err(e.into()),
            };
            drop(permit);
            sort(key, r);
        }
        for (key, _) in large {
            let (back, r) = crate::record_stream::read(store, &key, interner).await;
            interner = back;
            sort(key, r);
        }
        records.sort_by(crate::retention::newest_first);
        vanished.sort();
        Catalog { records, problems, vanished }
    }

    /// The records, or the first problem if there is any (fail closed).
    pub fn into_clean(mut self) -> Result<Vec<ReleaseRecord>, CatalogError> {
        if self.problems.is_empty() { Ok(self.records) } else { Err(self.problems.swap_remove(0)) }
    }

    /// The record of release `id`.
    pub fn get(&self, id: &ReleaseId) -> Option<&ReleaseRecord> {
        self.records.iter().find(|r| &r.release == id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::SystemTime;

    use async_trait::async_trait;
    use bytes::Bytes;

    use super::*;
    use crate::manifest::{FileClass, Manifest, ManifestFile};
    use crate::store::memory::MemStore;
    use crate::store::{Body, Capabilities, Listing, PutOptions, WriteGuard};
    use crate::time::Timestamp;

    /// A store that counts the record texts alive at once: from the start of a read (which
    /// takes a few scheduler turns) until the bytes it returned are dropped.
    #[derive(Debug)]
    struct Gauge {
        inner: MemStore,
        now: Arc<AtomicUsize>,
        most: AtomicUsize,
        /// Reads of whole records, and of records as they arrive.
        whole: AtomicUsize,
        streamed: AtomicUsize,
        /// A record whose reads fail (a streamed one halfway through).
        broken: Option<Key>,
        /// A record whose streamed read fails after its last byte (whole reads succeed).
        broken_tail: Option<Key>,
    }

    impl Gauge {
        fn new(inner: MemStore) -> Gauge {
            Gauge {
                inner,
                now: Arc::default(),
                most: AtomicUsize::new(0),
                whole: AtomicUsize::new(0),
                streamed: AtomicUsize::new(0),
                broken: None,
                broken_tail: None,
            }
        }

        fn reset_error(&self, key: &Key) -> StoreError {
            StoreError::backend(crate::store::Op::Get, self.url(), key.as_str(), "connection reset by peer")
        }
    }

    /// Bytes that count themselves out of the gauge when dropped.
    struct Counted(Bytes, Arc<AtomicUsize>);

    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl Store for Gauge {
        fn url(&self) -> &str {
            self.inner.url()
        }
        async fn capabilities(&self) -> Result<Capabilities, StoreError> {
            self.inner.capabilities().await
        }
        async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
            self.inner.put(key, body, opts).await
        }
        async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
            self.whole.fetch_add(1, Ordering::SeqCst);
            if self.broken.as_ref() == Some(key) {
                return Err(self.reset_error(key));
            }
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
            let counted = Counted(self.inner.get(key).await?, self.now.clone());
            Ok(Bytes::from_owner(counted))
        }
        /// In chunks of 100 bytes.
        async fn get_chunks(&self, key: &Key) -> Result<crate::store::Chunks, StoreError> {
            self.streamed.fetch_add(1, Ordering::SeqCst);
            let bytes = self.inner.get(key).await?;
            let mut chunks: Vec<Result<Bytes, StoreError>> = (0..bytes.len()).step_by(100).map(|i| Ok(bytes.slice(i..bytes.len().min(i + 100)))).collect();
            if self.broken.as_ref() == Some(key) {
                chunks.truncate(chunks.len() / 2);
                chunks.push(Err(self.reset_error(key)));
            }
            if self.broken_tail.as_ref() == Some(key) {
                chunks.push(Err(self.reset_error(key)));
            }
            Ok(Box::pin(futures::stream::iter(chunks)))
        }
        async fn list(&self, prefix: Option<&Key>) -> Result<Listing, StoreError> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &Key) -> Result<(), StoreError> {
            self.inner.delete(key).await
        }
        async fn delete_many(&self, keys: &[Key], guard: Option<&WriteGuard>) -> Vec<Result<(), StoreError>> {
            self.inner.delete_many(keys, guard).await
        }
    }

    fn file(path: &str, sha: &str) -> ManifestFile {
        ManifestFile {
            path: Key::new(path).unwrap(),
            sha256: sha.repeat(64).into(),
            size: 1,
            content_type: "text/javascript".into(),
            cache_control: "public, max-age=31536000, immutable".into(),
            class: if path == "index.html" { FileClass::Entry } else { FileClass::Immutable },
        }
    }

    /// Six records sharing `shared.js` and `index.html`'s path, each with one file of its own.
    async fn store_of_six() -> Gauge {
        let inner = MemStore::new("catalog");
        for i in 0..6 {
            let files = vec![file("index.html", &i.to_string()), file("shared.js", "a"), file(&format!("own{i}.js"), "b")];
            let m = Manifest::from_files(files, Some(ReleaseId::new(format!("r{i}")).unwrap()));
            let rec = ReleaseRecord::pending(m, Timestamp(SystemTime::UNIX_EPOCH));
            let body = Body::Bytes(Bytes::from(rec.to_json()));
            inner.put(&layout::record_key(&rec.release), body, &PutOptions::default()).await.unwrap();
        }
        Gauge::new(inner)
    }

    #[tokio::test]
    async fn records_share_what_they_have_in_common() {
        // Read whole, and as they arrive (each on a thread of its own, the interner moved along).
        for stream_over in [u64::MAX, 0] {
            let store = store_of_six().await;
            let c = Catalog::load_within(&store, READ_BUDGET_UNITS, stream_over).await.unwrap();
            assert_eq!((c.records.len(), c.problems.len()), (6, 0));
            let streamed = store.streamed.load(Ordering::SeqCst);
            assert_eq!(streamed, if stream_over == 0 { 6 } else { 0 });
            assert_eq!(store.whole.load(Ordering::SeqCst), 6 - streamed, "a streamed record is not also read whole");
            assert_shared(&c);
        }
    }

    fn assert_shared(c: &Catalog) {
        let shared: Vec<&ManifestFile> = c.records.iter().map(|r| r.manifest.file(&Key::new("shared.js").unwrap()).unwrap()).collect();
        let entries: Vec<&ManifestFile> = c.records.iter().map(|r| r.manifest.file(&Key::new("index.html").unwrap()).unwrap()).collect();
        for (a, b) in shared.iter().zip(&shared[1..]).chain(entries.iter().zip(&entries[1..])) {
            assert!(std::ptr::eq(a.path.as_str(), b.path.as_str()), "one allocation for `{}` in every record", a.path);
            assert!(Arc::ptr_eq(&a.content_type, &b.content_type) && Arc::ptr_eq(&a.cache_control, &b.cache_control));
        }
        for (a, b) in shared.iter().zip(&shared[1..]) {
            assert!(Arc::ptr_eq(&a.sha256, &b.sha256));
        }
        assert!(!Arc::ptr_eq(&entries[0].sha256, &entries[1].sha256), "different digests stay different");
        assert_ne!(entries[0].sha256, entries[1].sha256);
    }

    /// What each record's reading ended in, by key, as a short word.
    fn verdicts(c: &Catalog) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = c.records.iter().map(|r| (layout::record_key(&r.release).to_string(), "ok".to_string())).collect();
        for p in &c.problems {
            out.push(match p {
                CatalogError::Record(RecordError::Parse { key, .. }) => (key.to_string(), "corrupt".into()),
                CatalogError::Record(RecordError::Version { key, found }) => (key.to_string(), format!("version {found}")),
                CatalogError::Record(RecordError::Inconsistent { key, .. }) => (key.to_string(), "inconsistent".into()),
                CatalogError::Read(StoreError::Backend { key, .. }) => (key.clone(), "unreadable".into()),
                other => (String::new(), other.to_string()),
            });
        }
        out.extend(c.vanished.iter().map(|k| (k.to_string(), "vanished".into())));
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_record_read_as_it_arrives_is_judged_as_one_read_whole() {
        let inner = store_of_six().await.inner;
        let put = |name: &str, text: String| {
            let key = Key::new(format!("{}/{name}.json", layout::RELEASES_DIR)).unwrap();
            let store = &inner;
            async move { store.put(&key, Body::Bytes(Bytes::from(text)), &PutOptions::default()).await.unwrap() }
        };
        let good = String::from_utf8(inner.get(&layout::record_key(&ReleaseId::new("r0").unwrap())).await.unwrap().to_vec()).unwrap();
        put("cut", good.replace("\"r0\"", "\"cut\"")[..good.len() / 2].to_string()).await;
        put("future", r#"{"version": 7, "a field of the future": [1, 2, 3]}"#.to_string()).await;
        put("other", good.clone()).await; // names r0, stored as `other`
        put("reset", good.replace("\"r0\"", "\"reset\"")).await;
        let mut seen = Vec::new();
        for stream_over in [u64::MAX, 0] {
            let store = Gauge { broken: Some(Key::new(format!("{}/reset.json", layout::RELEASES_DIR)).unwrap()), ..Gauge::new(inner.clone()) };
            let c = Catalog::load_within(&store, READ_BUDGET_UNITS, stream_over).await.unwrap();
            seen.push(verdicts(&c));
        }
        let at = |name: &str| format!("{}/{name}.json", layout::RELEASES_DIR);
        let want = |name: &str, v: &str| (at(name), v.to_string());
        assert_eq!(seen[0][..4], [want("cut", "corrupt"), want("future", "version 7"), want("other", "inconsistent"), want("r0", "ok")]);
        assert_eq!(seen[0].iter().find(|(k, _)| *k == at("reset")).unwrap().1, "unreadable", "a read that fails halfway is not a corrupt record");
        assert_eq!(seen[1], seen[0], "streamed: the same verdicts as read whole");
    }

    #[tokio::test]
    async fn a_streamed_read_that_fails_after_its_last_byte_is_not_trusted() {
        let inner = store_of_six().await.inner;
        let tail = layout::record_key(&ReleaseId::new("r3").unwrap());
        let store = Gauge { broken_tail: Some(tail.clone()), ..Gauge::new(inner) };
        let c = Catalog::load_within(&store, READ_BUDGET_UNITS, 0).await.unwrap();
        let v = verdicts(&c);
        assert_eq!(v.iter().find(|(k, _)| *k == tail.as_str()).unwrap().1, "unreadable", "the parse succeeded, the read did not: {v:?}");
        assert_eq!(v.iter().filter(|(_, v)| v == "ok").count(), 5);
        assert_eq!(store.whole.load(Ordering::SeqCst), 0, "a failed read is reported, not retried whole");
    }

    #[tokio::test]
    async fn record_text_in_memory_stays_within_the_budget() {
        let store = store_of_six().await;
        Catalog::load_within(&store, 1, STREAM_OVER).await.unwrap();
        assert_eq!(store.most.load(Ordering::SeqCst), 1, "a budget of one unit holds one record's text at a time");
        let store = store_of_six().await;
        let c = Catalog::load(&store).await.unwrap();
        assert_eq!(c.records.len(), 6);
        assert!(store.most.load(Ordering::SeqCst) > 1, "small records are read several at a time");
        assert_eq!(
            (budget_units(0, 512), budget_units(16_000_000, 512), budget_units(u64::MAX, 512)),
            (1, 245, 512),
            "one larger than the budget is read alone"
        );
    }
}
