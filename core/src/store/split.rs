//! Splitting a paged listing at keys the caller expects ([`Store::list_hinted`]), so that a
//! backend can fetch the parts at once instead of one page after another.
//!
//! The parts cover the key space exactly once: the first holds every key up to the first bound,
//! each next one the keys after a bound up to the next, the last everything after the last
//! bound. A part's listing keeps only the keys [`Part::holds`], so a server that ignores where a
//! listing should start (S3's `start-after`) costs pages, never a key listed twice.
//!
//! Parts rest on the server ordering keys byte by byte. One that orders them otherwise skips
//! keys at a part's edge (SeaweedFS lists folder by folder: `v1/index.html` comes before
//! `v1.json` there, and a part starting after `v1.json` never sees it). [`list_in_parts`] says
//! when a hinted key went unseen: then the backend lists the plain way, exact on any server.
//!
//! [`Store::list_hinted`]: super::Store::list_hinted

use std::future::Future;

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

    /// Whether a listing that has reached `name` has gone past this part, so its next page
    /// would hold nothing of it.
    pub fn is_past(&self, name: &str) -> bool {
        self.upto.as_ref().is_some_and(|u| name > u.as_str())
    }
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
/// end. `None` where the plain listing must decide: there is one part only, or a hinted key went
/// unmet. The one way every backend that splits lists, so they all fall back alike.
pub async fn list_in_parts<F, Fut>(prefix: Option<&Key>, hints: &[Key], stride: usize, at_once: usize, list_part: F) -> Result<Option<Listing>, StoreError>
where
    F: FnMut(Part) -> Fut,
    Fut: Future<Output = Result<Listing, StoreError>>,
{
    let parts = parts(prefix, hints, stride);
    if parts.len() == 1 {
        return Ok(None);
    }
    let listings: Vec<Listing> = futures::stream::iter(parts).map(list_part).buffer_unordered(at_once.max(1)).try_collect().await?;
    let mut out = Listing::default();
    for l in listings {
        out.objects.extend(l.objects);
        out.problems.extend(l.problems);
    }
    Ok(unmet(prefix, hints, &out.objects).is_empty().then_some(out))
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
}
