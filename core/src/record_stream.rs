//! Reading a large release record as its bytes arrive, so its text is not held whole (a record
//! of 50,000 files is 12 MB of text, read while the build is hashed). Backends that stream
//! (S3, a volume) yield it a few hundred KiB at a time; the memory store yields it in one
//! piece. A record that does not parse, and any record when no thread can be spawned, is read
//! whole instead.
//!
//! The parse is synchronous (serde), the store async: the parse runs on a thread of its own,
//! reading the chunks the store yields through a channel of a few chunks, with the catalog's
//! interner moved to that thread and back. Plain threads and tokio's runtime-agnostic channels,
//! so it works under any executor, though not deterministically under a simulated one: keep
//! the records such a test reads under the streaming threshold.

use std::io::{BufReader, Read};

use bytes::{Buf, Bytes};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::catalog::CatalogError;
use crate::intern::Interner;
use crate::key::Key;
use crate::release::{RecordError, ReleaseRecord};
use crate::store::{Op, Store, StoreError};

/// Chunks in flight between the store and the parse (a few hundred KiB with S3's).
const IN_FLIGHT: usize = 4;

/// Reads and parses the record at `key`, sharing strings through `interner`, which is given
/// back. A record that does not parse is read again whole, to tell a corrupt record from one
/// of a newer format (rare: only a broken or too-new record costs the second read).
pub(crate) async fn read(store: &dyn Store, key: &Key, interner: Interner) -> (Interner, Result<ReleaseRecord, CatalogError>) {
    let chunks = match store.get_chunks(key).await {
        Ok(c) => c,
        Err(e) => return (interner, Err(e.into())),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
    let (give_tx, give_rx) = oneshot::channel::<Interner>();
    let (done_tx, done_rx) = oneshot::channel();
    let parse_key = key.clone();
    let spawned = std::thread::Builder::new().name("deskew-record-parse".into()).spawn(move || {
        let Ok(mut interner) = give_rx.blocking_recv() else { return };
        let reader = BufReader::with_capacity(64 << 10, ChunkReader { rx, current: Bytes::new() });
        let parsed = interner.scope(|| ReleaseRecord::parse_reader(&parse_key, reader));
        let _ = done_tx.send((interner, parsed));
    });
    if spawned.is_err() {
        // No thread to spare: read it whole instead (the interner was not handed over yet).
        drop(chunks);
        return read_whole(store, key, interner).await;
    }
    let _ = give_tx.send(interner);
    // The parse stopping early (a syntax error) drops the receiver and ends the pump; the pump
    // failing drops the sender, so the parse meets the end of its input.
    let pump = async move {
        let mut chunks = chunks;
        while let Some(chunk) = chunks.next().await {
            if tx.send(chunk?).await.is_err() {
                break;
            }
        }
        Ok::<(), StoreError>(())
    };
    let (pumped, done) = futures::join!(pump, done_rx);
    let Ok((interner, parsed)) = done else {
        // The parse thread died (a bug): the record was not read; say so and fail closed.
        let why = "the thread parsing it ended without a result";
        return (Interner::default(), Err(CatalogError::Read(StoreError::backend(Op::Get, store.url(), key.as_str(), why))));
    };
    let result = match (pumped, parsed) {
        (Err(e), _) => Err(CatalogError::Read(e)),
        (Ok(()), Err(RecordError::Parse { .. })) => return read_whole(store, key, interner).await,
        (Ok(()), parsed) => parsed.map_err(CatalogError::from),
    };
    (interner, result)
}

/// Reads and parses the record at `key` in one piece.
async fn read_whole(store: &dyn Store, key: &Key, mut interner: Interner) -> (Interner, Result<ReleaseRecord, CatalogError>) {
    let result = match store.get(key).await {
        Ok(bytes) => interner.scope(|| ReleaseRecord::parse(key, &bytes)).map_err(CatalogError::from),
        Err(e) => Err(e.into()),
    };
    (interner, result)
}

/// The chunks a pump sends, as a blocking reader (on the parse's own thread).
struct ChunkReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
