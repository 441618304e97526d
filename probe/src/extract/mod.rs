//! Finding what a page needs: resource URLs in HTML, CSS and JavaScript modules.
//!
//! HTML goes through a real parser (html5ever via `scraper`). CSS and JavaScript are scanned,
//! not parsed: CSS for `url()` and `@import`, JavaScript for static `import … from "…"`,
//! `export … from "…"`, side-effect `import "…"` and dynamic `import("…")` with a string literal.
//! Only relative (`./`, `../`), root-relative (`/`) and absolute `http(s)` specifiers with a file
//! extension are taken, so bare package names and strings that merely contain `import(` in
//! prose are not fetched.

pub mod css;
pub mod html;
pub mod js;

/// What kind of resource a URL is, which decides how its body is scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A script or module: scanned for imports.
    Script,
    /// A stylesheet: scanned for `url()` and `@import`.
    Style,
    /// Anything else: fetched, not scanned.
    Other,
}

/// Guesses the kind from a URL path when the referrer does not say.
pub fn kind_of_path(path: &str) -> Kind {
    let p = path.split(['?', '#']).next().unwrap_or(path).to_ascii_lowercase();
    if p.ends_with(".js") || p.ends_with(".mjs") || p.ends_with(".cjs") {
        Kind::Script
    } else if p.ends_with(".css") {
        Kind::Style
    } else {
        Kind::Other
    }
}

/// Whether a module specifier names a file deskew should follow.
pub(crate) fn followable(spec: &str) -> bool {
    let s = spec.trim();
    let path_like = s.starts_with("./") || s.starts_with("../") || s.starts_with('/') || s.starts_with("http://") || s.starts_with("https://");
    let last = s.split(['?', '#']).next().unwrap_or(s).rsplit('/').next().unwrap_or("");
    path_like && !s.starts_with("//") && last.contains('.') && !s.contains(char::is_whitespace) && !s.contains("${")
}
