//! Which files of a build are entries, immutable hashed assets, or mutable files.
//!
//! Misclassifying a mutable file as immutable would pin a stale copy in browsers for a year, so
//! hash detection is deliberately conservative: a name counts as hashed only when it carries a
//! token that looks like a bundler's content hash, never an ordinary word.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::manifest::FileClass;

/// Cache-Control for content-hashed assets: cache forever, never revalidate.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache-Control for entry files: always revalidate, so a deploy is seen at once.
pub const CACHE_ENTRY: &str = "no-cache";
/// Cache-Control for other files, whose content may change in place.
pub const CACHE_MUTABLE: &str = "public, max-age=300, must-revalidate";

/// An invalid `--entry`/`--immutable` glob.
#[derive(Debug, thiserror::Error)]
#[error("invalid glob `{glob}`")]
pub struct GlobError {
    glob: String,
    #[source]
    source: globset::Error,
}

/// Decides the [`FileClass`] of each path of a build.
#[derive(Debug, Clone)]
pub struct Classifier {
    entry: GlobSet,
    mutable: GlobSet,
    immutable: GlobSet,
    /// Paths whose token reads like a word but whose folder shows it is a hash.
    among_hashes: Arc<HashSet<String>>,
}

impl Classifier {
    /// The default entry globs: every HTML file.
    pub const DEFAULT_ENTRY: &'static [&'static str] = &["*.html"];

    /// Builds a classifier. Globs match the whole `/`-separated path, and `*` may cross `/`, so
    /// `*.html` matches `index.html` and `admin/index.html`.
    pub fn new(entry: &[String], immutable: &[String]) -> Result<Classifier, GlobError> {
        Classifier::with_mutable(entry, &[], immutable)
    }

    /// As [`Classifier::new`], with globs of files that are mutable whatever their names look
    /// like (a name whose number is not a content hash). Entry globs win, then mutable ones.
    pub fn with_mutable(entry: &[String], mutable: &[String], immutable: &[String]) -> Result<Classifier, GlobError> {
        let entry = if entry.is_empty() { Self::DEFAULT_ENTRY.iter().map(|s| s.to_string()).collect() } else { entry.to_vec() };
        Ok(Classifier { entry: build(&entry)?, mutable: build(mutable)?, immutable: build(immutable)?, among_hashes: Arc::default() })
    }

    /// Tells the classifier every path of the build, so a hash that happens to read like a word
    /// (`css3246-pgauiJmn.css`: no digit, one capital, as about 1% of Vite's hashes are) is
    /// still taken for a hash in a folder where nearly every such token is one. See
    /// [`hashed_among_siblings`].
    pub fn with_build_paths<'a>(mut self, paths: impl IntoIterator<Item = &'a str>) -> Classifier {
        self.among_hashes = Arc::new(hashed_among_siblings(paths));
        self
    }

    /// The class of `path`.
    pub fn classify(&self, path: &str) -> FileClass {
        if self.entry.is_match(path) {
            FileClass::Entry
        } else if self.mutable.is_match(path) {
            FileClass::Mutable
        } else if self.immutable.is_match(path) || has_content_hash(file_name(path)) || self.among_hashes.contains(path) {
            FileClass::Immutable
        } else {
            FileClass::Mutable
        }
    }
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier::new(&[], &[]).expect("default globs are valid")
    }
}

/// The Cache-Control header a file of class `class` is served with.
pub fn cache_control(class: FileClass) -> &'static str {
    match class {
        FileClass::Entry => CACHE_ENTRY,
        FileClass::Immutable => CACHE_IMMUTABLE,
        FileClass::Mutable => CACHE_MUTABLE,
    }
}

fn build(globs: &[String]) -> Result<GlobSet, GlobError> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = Glob::new(g).map_err(|source| GlobError { glob: g.clone(), source })?;
        b.add(glob);
    }
    b.build().map_err(|source| GlobError { glob: globs.join(", "), source })
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether a file name carries a bundler content hash (never a token of digits only: that is a
/// date, a version or a counter far more often than a hash, and a hash taken for a counter only
/// costs caching, while a counter taken for a hash would be cached for a year):
/// - a dot segment of 8+ hex digits with at least one digit and one letter (`main.3f2a1c9b.js`, webpack,
///   Parcel, Angular `main.a1b2c3d4e5f6a7b8.js`, CRA `2.3f2a1c9b.chunk.js`);
/// - a segment ending in `-` plus 8+ hex digits (`chunk-3f2a1c9b0d.js`);
/// - a segment ending in `-` plus exactly 8 base64url characters that are not an ordinary
///   lower-case word (`index-BcD3fG7h.js` and `index-BMkd-AAZ.js` from Vite/Rollup,
///   `chunk-ABCD1234.js` from esbuild).
pub fn has_content_hash(name: &str) -> bool {
    let mut segments: Vec<&str> = name.split('.').collect();
    if segments.len() < 2 {
        return false;
    }
    segments.pop(); // the extension
    segments.iter().any(|seg| is_hex_hash(seg) || seg.rsplit_once('-').is_some_and(|(head, tail)| !head.is_empty() && is_hex_hash(tail)) || rollup_hash(seg))
}

/// Of `paths`, those whose name carries a `-` token of 8 characters that reads like a word
/// (mixed case, no digit: `pgauiJmn`, `symyEzr-`) in a folder where at least 20 files carry
/// hashes and such word-like tokens are at most 5% of them: a bundler's output folder, where
/// about 1% of random hashes look like words. All-lower-case tokens (`settings`) and digits
/// (`20261129`) are never promoted. Should a promoted name be a hand-named file whose content
/// changes, publish refuses it (an immutable name never gets new content) and `--mutable` says so.
pub fn hashed_among_siblings<'a>(paths: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
    let mut folders: HashMap<&str, (usize, Vec<&str>)> = HashMap::new();
    for path in paths {
        let folder = path.rsplit_once('/').map_or("", |(f, _)| f);
        let name = file_name(path);
        if has_content_hash(name) {
            folders.entry(folder).or_default().0 += 1;
        } else if wordlike_token(name) {
            folders.entry(folder).or_default().1.push(path);
        }
    }
    folders
        .into_values()
        .filter(|(hashed, words)| *hashed >= 20 && words.len() * 20 <= hashed + words.len())
        .flat_map(|(_, words)| words.into_iter().map(str::to_string))
        .collect()
}

/// A segment ending in `-` plus 8 base64url characters with a capital, no digit, and at least
/// one lower-case letter: a word in camel case, or a hash without digits.
fn wordlike_token(name: &str) -> bool {
    let mut segments: Vec<&str> = name.split('.').collect();
    if segments.len() < 2 {
        return false;
    }
    segments.pop();
    segments.iter().any(|seg| {
        let b = seg.as_bytes();
        if b.len() < 10 || b[b.len() - 9] != b'-' {
            return false;
        }
        let token = &b[b.len() - 8..];
        token.iter().all(|c| c.is_ascii_alphabetic() || *c == b'-' || *c == b'_')
            && token.iter().any(u8::is_ascii_uppercase)
            && token.iter().any(u8::is_ascii_lowercase)
    })
}

fn is_hex_hash(s: &str) -> bool {
    s.len() >= 8 && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b.is_ascii_digit()) && s.bytes().any(|b| b.is_ascii_alphabetic())
}

fn rollup_hash(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.len() < 10 || b[b.len() - 9] != b'-' {
        return false;
    }
    let token = &b[b.len() - 8..];
    if !token.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_') {
        return false;
    }
    // An ordinary word (`settings`, `Settings`) has no digit and at most one capital letter;
    // a random 8-character base64url token almost always has a digit or several capitals.
    let digit = token.iter().any(u8::is_ascii_digit);
    let capitals = token.iter().filter(|c| c.is_ascii_uppercase()).count();
    let digits_only = token.iter().all(u8::is_ascii_digit);
    (digit || capitals >= 2) && !digits_only
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_bundler_hashes() {
        for hashed in [
            "main.3f2a1c9b.js",
            "main.a1b2c3d4e5f6a7b8.js",
            "2.3f2a1c9b.chunk.js",
            "index-BcD3fG7h.js",
            "index-BMkd-AAZ.js",
            "index-B_9uaMiz.js",
            "format-jTUCmgKS.js",
            "chunk-ABCD1234.js",
            "chunk-ABCDEFGH.js",
            "polyfills-3f2a1c9b0d1e.js",
            "fixture-Q1uWclxH.woff2",
            "main.3f2a1c9b.js.map",
        ] {
            assert!(has_content_hash(hashed), "{hashed} should be detected as hashed");
        }
    }

    #[test]
    fn leaves_ordinary_names_alone() {
        for plain in [
            "favicon.ico",
            "logo.svg",
            "robots.txt",
            "app-settings.js",
            "my-component-settings.js",
            "vendor-react-dom.js",
            "deadbeef.js",
            "my-Settings.js",
            "index.html",
            "README",
            "site.webmanifest",
            "data-20261129.json",
            "report-00000001.pdf",
            "sitemap-12345678.xml",
            "backup.20261129.tar",
            "1764400000123.png",
            "export.1764400000.csv",
        ] {
            assert!(!has_content_hash(plain), "{plain} should not be detected as hashed");
        }
    }

    /// About 1% of Vite's hashes read like words; in a folder of hashes they are hashes too,
    /// while the same name among hand-named files, and lower-case words anywhere, are not.
    #[test]
    fn word_like_hashes_among_hashes_are_hashes() {
        let mut build: Vec<String> = (0..40).map(|i| format!("assets/chunk{i}-B0thXP{i:02}.js")).collect();
        build
            .extend(["assets/css3246-pgauiJmn.css", "assets/font3663-symyEzr-.woff2", "assets/app-settings.js", "assets/data-20261129.json"].map(String::from));
        build.extend(["src/hooks-useState.js", "src/index-B0thXP3Q.js"].map(String::from));
        let c = Classifier::default().with_build_paths(build.iter().map(String::as_str));
        assert_eq!(c.classify("assets/css3246-pgauiJmn.css"), FileClass::Immutable);
        assert_eq!(c.classify("assets/font3663-symyEzr-.woff2"), FileClass::Immutable);
        assert_eq!(c.classify("assets/app-settings.js"), FileClass::Mutable, "a lower-case word stays a word");
        assert_eq!(c.classify("assets/data-20261129.json"), FileClass::Mutable, "digits stay a date");
        assert_eq!(c.classify("src/hooks-useState.js"), FileClass::Mutable, "a word among few hashes stays a word");
        assert_eq!(Classifier::default().classify("assets/css3246-pgauiJmn.css"), FileClass::Mutable, "alone, it reads like a word");
        // A folder where word-like tokens are more than 5% of the hashed ones: they are words.
        let mut words: Vec<String> = (0..20).map(|i| format!("lib/chunk{i}-B0thXP{i:02}.js")).collect();
        words.extend((0..3).map(|i| format!("lib/hooks{i}-useState.js")));
        let c = Classifier::default().with_build_paths(words.iter().map(String::as_str));
        assert_eq!(c.classify("lib/hooks0-useState.js"), FileClass::Mutable);
    }

    #[test]
    fn classifies_with_globs() {
        let c = Classifier::new(&[], &["static/**".to_string()]).unwrap();
        assert_eq!(c.classify("index.html"), FileClass::Entry);
        assert_eq!(c.classify("admin/index.html"), FileClass::Entry);
        assert_eq!(c.classify("assets/index-BcD3fG7h.js"), FileClass::Immutable);
        assert_eq!(c.classify("static/logo.png"), FileClass::Immutable);
        assert_eq!(c.classify("favicon.ico"), FileClass::Mutable);
        let c = Classifier::new(&["app.html".to_string()], &[]).unwrap();
        assert_eq!(c.classify("index.html"), FileClass::Mutable);
        let c = Classifier::with_mutable(&[], &["data/**".to_string()], &["data/fixed/**".to_string()]).unwrap();
        assert_eq!(c.classify("data/feed-3f2a1c9b.json"), FileClass::Mutable, "a mutable glob beats a hash-like name");
        assert_eq!(c.classify("data/fixed/a.json"), FileClass::Mutable, "and an immutable glob");
        assert_eq!(c.classify("index.html"), FileClass::Entry);
    }

    #[test]
    fn bad_glob_names_itself() {
        let err = Classifier::new(&["a[".to_string()], &[]).unwrap_err();
        assert!(err.to_string().contains("`a[`"), "{err}");
    }
}
