//! Splitting a paged listing at keys the caller expects ([`Store::list_hinted`]), so that a
//! backend can fetch the parts at once instead of one page after another.
//!
//! The parts cover the key space exactly once: the first holds every key up to the first bound,
//! each next one the keys after a bound up to the next, the last everything after the last
//! bound. A part's listing keeps only the keys [`Part::holds`], so no key is listed twice. A
//! listed key at or before a part's start ([`Part::is_before`]) means the server did not start
//! where it was asked (S3's `start-after` ignored): every part would then list the store from
//! its first key, pages quadratic in the parts, so the part gives up at once and the backend
//! lists the plain way.
//!
//! Parts rest on the server ordering keys byte by byte. One that orders them otherwise skips
//! keys at a part's edge (SeaweedFS lists folder by folder: `v1/index.html` comes before
//! `v1.json` there, and a part starting after `v1.json` never sees it; one starting after the
//! last key in `v1/` meets `v1.json` first, which reads as a start ignored). [`list_in_parts`]
//! says when a hinted key went unseen or a part gave up: then the backend lists the plain way,
//! exact on any server.
//!
//! [`Store::list_hinted`]: super::Store::list_hinted

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, TryStreamExt};

use super::{Listing, ObjectMeta, StoreError};
use crate::Key;

/// One part of the key space: the keys after `after` (from the first, for `None`) up to and
/// including `upto` (to the last, for `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The part starts after this key.
    pub after: Option<Key>,
    /// The part ends with this key.
    pub upto: Option<Key>,
}

impl Part {
    /// Whether `name` (a key relative to the store's root, valid or not) is in this part.
    pub fn holds(&self, name: &str) -> bool {
        self.after.as_ref().is_none_or(|a| name > a.as_str()) && self.upto.as_ref().is_none_or(|u| name <= u.as_str())
    }

    /// Whether `name` comes at or before this part's start: a listing asked to start after it
    /// should not have shown it.
    pub fn is_before(&self, name: &str) -> bool {
        self.after.as_ref().is_some_and(|a| name <= a.as_str())
    }

    /// Whether a listing that has reached `name` has gone past this part, so its next page
    /// would hold nothing of it.
    pub fn is_past(&self, name: &str) -> bool {
        self.upto.as_ref().is_some_and(|u| name > u.as_str())
    }
}

/// Where a part's listing stands after a page ([`sift`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sifted {
    /// The next page may hold more of the part.
    More,
    /// The listing has gone past the part's end: no next page.
    Past,
    /// The page showed a key at or before the part's start: the server did not start where it
    /// was asked, and the part gives up.
    Unstarted,
}

/// Sifts one page of a part's listing, in the server's order: `keep` gets every item whose
/// `name` the part holds.
pub fn sift<T>(part: &Part, page: impl IntoIterator<Item = T>, name: impl Fn(&T) -> &str, mut keep: impl FnMut(T)) -> Sifted {
    let mut past = false;
    for item in page {
        let n = name(&item);
        if part.is_before(n) {
            return Sifted::Unstarted;
        }
        past |= part.is_past(n);
        if part.holds(n) {
            keep(item);
        }
    }
    if past { Sifted::Past } else { Sifted::More }
}

/// The parts to list `prefix` in, split at every `stride`-th of the `hints` under it (sorted,
/// each counted once). Fewer than `stride` hints give one part: the whole listing.
pub fn parts(prefix: Option<&Key>, hints: &[Key], stride: usize) -> Vec<Part> {
    let mut under: Vec<&Key> = hints.iter().filter(|k| prefix.is_none_or(|p| k.is_under(p))).collect();
    under.sort_unstable();
    under.dedup();
    let bounds = under.into_iter().skip(stride.max(1) - 1).step_by(stride.max(1));
    let mut out = Vec::new();
    let mut after: Option<Key> = None;
    for b in bounds {
        out.push(Part { after: after.take(), upto: Some(b.clone()) });
        after = Some(b.clone());
    }
    out.push(Part { after, upto: None });
    out
}

/// The keys of `hints` under `prefix` that `listed` does not show: each is missing from the
/// store or was skipped at a part's edge, and only a plain listing tells which.
pub fn unmet<'h>(prefix: Option<&Key>, hints: &'h [Key], listed: &[ObjectMeta]) -> Vec<&'h Key> {
    let listed: std::collections::HashSet<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    hints.iter().filter(|k| prefix.is_none_or(|p| k.is_under(p)) && !listed.contains(k.as_str())).collect()
}

/// Lists `prefix` in the parts `hints` split it into (every `stride`-th), `at_once` parts at a
/// time, each by `list_part`, which lists page after page from the part's start until past its
/// end, or gives `None` on meeting a key [`Part::is_before`] its start. `None` where the plain
/// listing must decide: there is one part only, a part gave up, or a hinted key went unmet. The
/// one way every backend that splits lists, so they all fall back alike.
pub async fn list_in_parts<F, Fut>(prefix: Option<&Key>, hints: &[Key], stride: usize, at_once: usize, list_part: F) -> Result<Option<Listing>, StoreError>
where
    F: FnMut(Part) -> Fut,
    Fut: Future<Output = Result<Option<Listing>, StoreError>>,
{
    let parts = parts(prefix, hints, stride);
    if parts.len() == 1 {
        return Ok(None);
    }
    // Once a part gave up, the parts not yet started give up unlisted; those in flight finish.
    let gave_up = AtomicBool::new(false);
    let mut list_part = list_part;
    let start = |p: Part| {
        let listing = (!gave_up.load(Ordering::Relaxed)).then(|| list_part(p));
        async move {
            match listing {
                Some(l) => l.await,
                None => Ok(None),
            }
        }
    };
    let mut listings = futures::stream::iter(parts).map(start).buffer_unordered(at_once.max(1));
    let mut out = Listing::default();
    while let Some(listing) = listings.try_next().await? {
        match listing {
            Some(l) => {
                out.objects.extend(l.objects);
                out.problems.extend(l.problems);
            }
            None => gave_up.store(true, Ordering::Relaxed),
        }
    }
    drop(listings);
    Ok((!gave_up.into_inner() && unmet(prefix, hints, &out.objects).is_empty()).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<Key> {
        names.iter().map(|n| Key::new(*n).unwrap()).collect()
    }

    /// Which part each name falls in; every name must fall in exactly one.
    fn owner(parts: &[Part], name: &str) -> usize {
        let owners: Vec<usize> = (0..parts.len()).filter(|&i| parts[i].holds(name)).collect();
        assert_eq!(owners.len(), 1, "{name} is in parts {owners:?} of {parts:?}");
        owners[0]
    }

    #[test]
    fn few_hints_give_the_whole_listing() {
        assert_eq!(parts(None, &[], 3), vec![Part { after: None, upto: None }]);
        assert_eq!(parts(None, &keys(&["a", "b"]), 3).len(), 1);
    }

    #[test]
    fn every_name_falls_in_exactly_one_part() {
        let hints = keys(&["assets/f", "assets/b", "assets/d", "assets/b", ".deskew/releases/r1.json", "index.html", "assets/h"]);
        let ps = parts(None, &hints, 2);
        // Sorted and counted once: .deskew/releases/r1.json, assets/b, assets/d, assets/f, assets/h, index.html.
        assert_eq!(ps.iter().filter_map(|p| p.upto.as_ref().map(|k| k.as_str())).collect::<Vec<_>>(), ["assets/b", "assets/f", "index.html"]);
        for name in [
            "",
            ".deskew",
            ".deskew/store.json",
            "assets/b",
            "assets/b-",
            "assets/c",
            "assets/f",
            "assets/g",
            "index.html",
            "index.html0",
            "zzz",
            "not a key/../",
        ] {
            owner(&ps, name);
        }
        assert_eq!(owner(&ps, "assets/b"), 0);
        assert_eq!(owner(&ps, "assets/c"), 1);
        assert_eq!(owner(&ps, "zzz"), 3);
        assert!(ps[0].is_past("assets/c") && !ps[0].is_past("assets/b") && !ps[3].is_past("zzz"));
    }

    #[test]
    fn hints_outside_the_prefix_are_left_out() {
        let p = Key::new("assets").unwrap();
        let ps = parts(Some(&p), &keys(&["assets/a", "assets2/x", "index.html", "assets/c", "assets"]), 1);
        assert_eq!(ps.iter().filter_map(|p| p.upto.as_ref().map(|k| k.as_str())).collect::<Vec<_>>(), ["assets", "assets/a", "assets/c"]);
    }

    /// A store of `names` listed in pages of `page`, from where asked when `honours` (S3's
    /// `start-after`), else always from the first key; counts the pages it served.
    struct Paged {
        names: Vec<Key>,
        page: usize,
        honours: bool,
        served: std::sync::atomic::AtomicUsize,
    }

    impl Paged {
        fn meta(key: &Key) -> ObjectMeta {
            ObjectMeta { key: key.clone(), size: 1, modified: std::time::SystemTime::UNIX_EPOCH, md5: None }
        }

        /// A part's listing as a backend makes it: page after page, each sifted.
        async fn list_part(&self, part: Part) -> Result<Option<Listing>, StoreError> {
            let mut out = Listing::default();
            let start = if self.honours { part.after.as_ref().map_or(0, |a| self.names.partition_point(|k| k <= a)) } else { 0 };
            for page in self.names[start..].chunks(self.page) {
                self.served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match sift(&part, page.iter().map(Self::meta), |o| o.key.as_str(), |o| out.objects.push(o)) {
                    Sifted::More => {}
                    Sifted::Past => break,
                    Sifted::Unstarted => return Ok(None),
                }
            }
            Ok(Some(out))
        }
    }

    fn paged(honours: bool) -> Paged {
        let mut names: Vec<Key> = (0..100).map(|i| Key::new(format!("assets/f{i:03}.js")).unwrap()).collect();
        names.sort();
        Paged { names, page: 10, honours, served: Default::default() }
    }

    #[tokio::test]
    async fn parts_listed_from_their_start_make_the_whole_listing() {
        let store = paged(true);
        let hints: Vec<Key> = store.names.iter().step_by(3).cloned().collect();
        let listing = list_in_parts(None, &hints, 5, 3, |p| store.list_part(p)).await.unwrap().expect("split");
        let mut got: Vec<&str> = listing.objects.iter().map(|o| o.key.as_str()).collect();
        got.sort_unstable();
        assert_eq!(got, store.names.iter().map(|k| k.as_str()).collect::<Vec<_>>());
        // 7 parts of about 15 keys, in pages of 10: each part reads 2 or 3 pages, not the store.
        assert!(store.served.load(std::sync::atomic::Ordering::Relaxed) <= 7 * 3, "{} pages", store.served.load(std::sync::atomic::Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_server_that_ignores_where_to_start_gets_the_plain_listing() {
        let store = paged(false);
        let hints: Vec<Key> = store.names.iter().step_by(3).cloned().collect();
        assert!(list_in_parts(None, &hints, 5, 1, |p| store.list_part(p)).await.unwrap().is_none());
        // Given up at the first page of the first part that starts after a key: the first part
        // (2 pages) and one page of the second, not every part from the store's first key.
        assert_eq!(store.served.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[test]
    fn a_key_at_or_before_the_start_is_before() {
        let p = Part { after: Some(Key::new("assets/b").unwrap()), upto: None };
        assert!(p.is_before("assets/a") && p.is_before("assets/b") && !p.is_before("assets/b0") && !p.is_before("index.html"));
        assert!(!Part { after: None, upto: None }.is_before(""));
        let page = ["assets/c", "assets/a"].map(|n| Key::new(n).unwrap());
        let mut kept = Vec::new();
        assert_eq!(sift(&p, page.iter(), |k| k.as_str(), |k| kept.push(k.clone())), Sifted::Unstarted);
    }
}
