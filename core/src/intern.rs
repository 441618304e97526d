//! Sharing equal strings among the records one command reads.
//!
//! Kept releases share most of their files: at 50,000 files every record held its own copy of
//! the paths, digests, content types and cache policies the others hold too (about 6 MB per
//! record). Inside [`Interner::scope`], keys and those strings parsed on this thread are looked
//! up in the interner first and share one allocation.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

/// Seeded per process (no flooding by crafted records) and several times faster than SipHash.
type Set = HashSet<Arc<str>, foldhash::fast::RandomState>;

thread_local! {
    static ACTIVE: RefCell<Option<Set>> = const { RefCell::new(None) };
}

/// The strings seen so far; keep one for all the records a command reads.
#[derive(Debug, Default)]
pub struct Interner(Set);

impl Interner {
    /// Runs `f` (a parse) with this interner active on this thread.
    pub fn scope<T>(&mut self, f: impl FnOnce() -> T) -> T {
        struct Restore<'a>(&'a mut Set);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                *self.0 = ACTIVE.with(|a| a.borrow_mut().take()).unwrap_or_default();
            }
        }
        let outer = ACTIVE.with(|a| a.borrow_mut().replace(std::mem::take(&mut self.0)));
        assert!(outer.is_none(), "interner scopes do not nest");
        let _restore = Restore(&mut self.0);
        f()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// `s` as a shared string: the interner's copy inside [`Interner::scope`] (allocated only the
/// first time), a new one outside.
pub(crate) fn intern(s: &str) -> Arc<str> {
    ACTIVE.with(|a| match a.borrow_mut().as_mut() {
        Some(set) => match set.get(s) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = s.into();
                set.insert(shared.clone());
                shared
            }
        },
        None => s.into(),
    })
}

/// Deserializes a string as [`intern`] shares it (for `#[serde(deserialize_with)]`), without
/// allocating one first.
pub(crate) fn shared<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    d.deserialize_str(Shared)
}

struct Shared;

impl serde::de::Visitor<'_> for Shared {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Arc<str>, E> {
        Ok(intern(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_allocation_only_inside_a_scope() {
        let outside = (intern("a/b.js"), intern("a/b.js"));
        assert!(!Arc::ptr_eq(&outside.0, &outside.1));
        let mut i = Interner::default();
        let first = i.scope(|| intern("a/b.js"));
        let (again, other) = i.scope(|| (intern("a/b.js"), intern("a/c.js")));
        assert!(Arc::ptr_eq(&first, &again), "a second scope of the same interner shares the first's strings");
        assert_eq!((&*other, i.len()), ("a/c.js", 2));
        assert!(!Arc::ptr_eq(&intern("a/b.js"), &first), "the scope ended");
    }

    #[test]
    #[should_panic(expected = "do not nest")]
    fn nested_scopes_are_refused() {
        let (mut outer, mut inner) = (Interner::default(), Interner::default());
        outer.scope(|| inner.scope(|| ()));
    }

    #[test]
    fn a_panicking_parse_leaves_the_interner_and_the_thread_clean() {
        let mut i = Interner::default();
        i.scope(|| intern("kept"));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| i.scope(|| panic!("bad input"))));
        assert!(r.is_err());
        assert_eq!(i.len(), 1);
        assert!(ACTIVE.with(|a| a.borrow().is_none()));
    }
}
