//! The GC lease: `.deskew/gc.lease`, taken with a create-only write before a GC deletes
//! anything, renewed before each delete batch, removed when it is done.
//!
//! Publish waits while a live lease exists before its final check that every file is stored;
//! see ARCHITECTURE.md ("Concurrent publish and GC") for why this, plus records written before
//! any dedupe decision and re-read before every delete batch, keeps a complete release from ever
//! referencing a deleted file. Lease times are wall-clock times, never the overridable policy
//! clock.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::layout;
use crate::store::{Body, PutMode, PutOptions, Store, StoreError};
use crate::time::Timestamp;

/// How long a lease lives unless renewed.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// What the lease file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseBody {
    /// Who holds it (host and pid), for messages.
    pub holder: String,
    /// Distinguishes this holder's lease from a later one by the same holder.
    pub nonce: String,
    /// When it was taken.
    pub acquired: Timestamp,
    /// When it lapses unless renewed.
    pub expires: Timestamp,
}

/// Why the lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds it.
    #[error("another gc is running on {store} (lease held by {holder} until {expires}); if it died, the lease lapses then")]
    Held {
        /// The store.
        store: String,
        /// The holder.
        holder: String,
        /// When it lapses.
        expires: Timestamp,
    },
    /// The lease file is not a lease.
    #[error("the gc lease `{key}` in {store} is unreadable; delete it if no gc is running")]
    Corrupt {
        /// The store.
        store: String,
        /// The key.
        key: String,
    },
    /// Our lease lapsed or was taken over while we worked.
    #[error("lost the gc lease on {store}; stopped before deleting more")]
    Lost {
        /// The store.
        store: String,
    },
    /// The store cannot do create-only writes, so a lease cannot be taken safely.
    #[error("{store} does not honour create-only writes, so gc cannot take its lease safely")]
    Unsupported {
        /// The store.
        store: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A lease we hold.
#[derive(Debug)]
pub struct Lease {
    body: LeaseBody,
}

fn holder() -> String {
    let host = std::env::var("HOSTNAME").ok().or_else(|| std::fs::read_to_string("/etc/hostname").ok());
    format!("{}:{}", host.as_deref().map(str::trim).unwrap_or("unknown-host"), std::process::id())
}

fn nonce() -> String {
    let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    crate::manifest::sha256_hex(format!("{}-{}-{:?}", holder(), t.as_nanos(), std::thread::current().id()).as_bytes())[..16]
        .to_string()
}

async fn read(store: &dyn Store) -> Result<Option<LeaseBody>, LeaseError> {
    let key = layout::lease_key();
    match store.get(&key).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| LeaseError::Corrupt { store: store.url().into(), key: key.to_string() }),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn encode(body: &LeaseBody) -> Body {
    Body::Bytes(Bytes::from(serde_json::to_vec_pretty(body).expect("lease serialises")))
}

impl Lease {
    /// Takes the lease, breaking one that has lapsed.
    pub async fn acquire(store: &dyn Store, ttl: Duration) -> Result<Lease, LeaseError> {
        if !store.capabilities().create_only {
            return Err(LeaseError::Unsupported { store: store.url().into() });
        }
        let key = layout::lease_key();
        for _ in 0..2 {
            let now = Timestamp::now();
            let body = LeaseBody { holder: holder(), nonce: nonce(), acquired: now, expires: Timestamp(now.0 + ttl) };
            let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
            match store.put(&key, encode(&body), &opts).await {
                Ok(()) => return Ok(Lease { body }),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match read(store).await? {
                None => continue, // released between our put and our read
                Some(held) if held.expires < Timestamp::now() => {
                    tracing::warn!(holder = %held.holder, expires = %held.expires, "breaking a lapsed gc lease");
                    store.delete(&key).await?;
                }
                Some(held) => {
                    return Err(LeaseError::Held { store: store.url().into(), holder: held.holder, expires: held.expires });
                }
            }
        }
        let held = read(store).await?;
        Err(LeaseError::Held {
            store: store.url().into(),
            holder: held.as_ref().map_or_else(|| "unknown".into(), |h| h.holder.clone()),
            expires: held.map_or_else(Timestamp::now, |h| h.expires),
        })
    }

    /// Extends the lease by `ttl` from now, after checking it is still ours.
    pub async fn renew(&mut self, store: &dyn Store, ttl: Duration) -> Result<(), LeaseError> {
        match read(store).await? {
            Some(held) if held.nonce == self.body.nonce && held.expires > Timestamp::now() => {}
            _ => return Err(LeaseError::Lost { store: store.url().into() }),
        }
        self.body.expires = Timestamp(SystemTime::now() + ttl);
        store.put(&layout::lease_key(), encode(&self.body), &PutOptions::default()).await?;
        Ok(())
    }

    /// Gives the lease back, if it is still ours.
    pub async fn release(self, store: &dyn Store) -> Result<(), LeaseError> {
        if let Some(held) = read(store).await? {
            if held.nonce == self.body.nonce {
                store.delete(&layout::lease_key()).await?;
            }
        }
        Ok(())
    }
}

/// Waits until no live lease is held, for at most `max_wait`.
pub async fn wait_until_free(store: &dyn Store, max_wait: Duration) -> Result<(), LeaseError> {
    let start = std::time::Instant::now();
    loop {
        match read(store).await? {
            None => return Ok(()),
            Some(held) if held.expires < Timestamp::now() => return Ok(()),
            Some(held) => {
                if start.elapsed() >= max_wait {
                    return Err(LeaseError::Held { store: store.url().into(), holder: held.holder, expires: held.expires });
                }
                tracing::info!(holder = %held.holder, "waiting for a running gc to finish");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
