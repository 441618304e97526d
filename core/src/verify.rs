//! Checking that releases are whole: every file each one references is in the store with the
//! sha256 its record holds. Each stored object is read and hashed once, however many releases
//! share it.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use serde::Serialize;

use crate::digest::sha256_hex;
use crate::key::Key;
use crate::manifest::FileClass;
use crate::release::{ReleaseId, ReleaseRecord, ReleaseState};
use crate::store::{Store, StoreError};

/// What is wrong with a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Problem {
    /// Not in the store.
    Missing,
    /// In the store with other content.
    Corrupt {
        /// sha256 of what is stored.
        actual: String,
    },
    /// A mutable file holding the content of a release whose publish did not finish (it failed
    /// or was killed among its last writes): the store serves a mix of two releases. Publishing
    /// that release again completes it.
    Unfinished {
        /// The pending release whose content it holds.
        serving: ReleaseId,
    },
    /// In the store but not readable as a file (a symbolic link, a device), or the read failed.
    Unreadable {
        /// Why.
        why: String,
    },
}

/// A file of a release that is not as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Finding {
    /// The release.
    pub release: ReleaseId,
    /// The file's path in the build.
    pub path: Key,
    /// Where it is stored.
    pub key: Key,
    /// What is wrong.
    pub problem: Problem,
}

/// The result of a verify.
#[derive(Clone, Debug, Default, Serialize, schemars::JsonSchema)]
pub struct VerifyReport {
    /// Releases checked.
    pub releases: Vec<ReleaseId>,
    /// Distinct objects read.
    pub objects: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Missing or corrupt files.
    pub findings: Vec<Finding>,
    /// Mutable files that a newer complete release replaced in place (expected, not a failure;
    /// content of a release that never completed is a finding).
    pub superseded: Vec<Finding>,
    /// Entries of the store that are not usable objects (reported, not checked).
    pub warnings: Vec<String>,
}

/// Checks `releases`; `all` (newest first) tells which newer complete release replaced a
/// mutable file.
pub async fn verify(store: &dyn Store, releases: &[&ReleaseRecord], all: &[ReleaseRecord], concurrency: usize) -> Result<VerifyReport, StoreError> {
    let listing = store.list(None).await?;
    // A referenced key the listing could not use (a link, a device) is read too, to say why.
    let listed: HashSet<Key> =
        listing.objects.into_iter().map(|o| o.key).chain(listing.problems.iter().filter_map(|p| Key::new(p.name.clone()).ok())).collect();
    let keys: HashSet<Key> = releases.iter().flat_map(|r| r.stored_files().map(|(k, _)| k).collect::<Vec<_>>()).collect();
    let to_read: Vec<Key> = keys.into_iter().filter(|k| listed.contains(k)).collect();
    type Hashed = (Key, Result<(String, u64), StoreError>);
    let hashes: Vec<Hashed> = futures::stream::iter(to_read)
        .map(|key| async move {
            let r = store.get(&key).await.map(|b| (sha256_hex(&b), b.len() as u64));
            (key, r)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut actual: HashMap<Key, Result<String, String>> = HashMap::new();
    let mut report = VerifyReport { releases: releases.iter().map(|r| r.release.clone()).collect(), ..Default::default() };
    report.warnings = listing.problems.iter().map(|p| format!("the store holds {p}; it was not checked")).collect();
    for (key, r) in hashes {
        match r {
            Ok((sha, size)) => {
                report.objects += 1;
                report.bytes += size;
                actual.insert(key, Ok(sha));
            }
            Err(e) if e.is_not_found() => {}
            Err(e @ (StoreError::NotRegular { .. } | StoreError::Backend { op: crate::store::Op::Get, .. })) => {
                actual.insert(key, Err(crate::error_chain(&e)));
            }
            Err(e) => return Err(e),
        }
    }
    for r in releases {
        for (key, f) in r.stored_files() {
            let problem = match actual.get(&key) {
                None => Problem::Missing,
                Some(Ok(sha)) if *sha == *f.sha256 => continue,
                Some(Ok(sha)) => Problem::Corrupt { actual: sha.clone() },
                Some(Err(why)) => Problem::Unreadable { why: why.clone() },
            };
            let problem = match problem {
                Problem::Corrupt { actual } if f.class == FileClass::Mutable => match unfinished_with(all, &f.path, &actual) {
                    Some(serving) => Problem::Unfinished { serving },
                    None => Problem::Corrupt { actual },
                },
                other => other,
            };
            let finding = Finding { release: r.release.clone(), path: f.path.clone(), key: key.clone(), problem };
            let replaced_by_newer = f.class == FileClass::Mutable
                && matches!(&finding.problem, Problem::Corrupt { actual } if all.iter()
                    .take_while(|o| o.release != r.release)
                    .filter(|o| o.state == ReleaseState::Complete)
                    .any(|o| o.manifest.file(&f.path).is_some_and(|n| *n.sha256 == **actual)));
            if replaced_by_newer {
                report.superseded.push(finding);
            } else {
                report.findings.push(finding);
            }
        }
    }
    report.findings.sort_by(|a, b| (&a.release, &a.path).cmp(&(&b.release, &b.path)));
    Ok(report)
}

/// The pending release that recorded content `sha256` for mutable file `path`, if any.
fn unfinished_with(all: &[ReleaseRecord], path: &Key, sha256: &str) -> Option<ReleaseId> {
    all.iter()
        .filter(|o| o.state == ReleaseState::Pending)
        .find(|o| o.manifest.file(path).is_some_and(|n| n.class == FileClass::Mutable && &*n.sha256 == sha256))
        .map(|o| o.release.clone())
}
