//! Resource references in an HTML document.

use scraper::{Html, Selector};

use super::Kind;

/// A reference found in a document, not yet resolved against its base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// As written in the document.
    pub href: String,
    /// How to scan it once fetched.
    pub kind: Kind,
}

/// The `<base href>` of the document, if any, and every resource it references: scripts
/// (classic and module), stylesheets, modulepreload/preload/icon/manifest links, images (with
/// `srcset`), `<source>` and video posters.
pub fn references(doc: &str) -> (Option<String>, Vec<Reference>) {
    let html = Html::parse_document(doc);
    let sel = |s: &str| Selector::parse(s).expect("valid selector");
    let base = html.select(&sel("base[href]")).next().and_then(|e| e.value().attr("href")).map(str::to_string);
    let mut out = Vec::new();
    for e in html.select(&sel("script[src]")) {
        out.push(Reference { href: e.value().attr("src").unwrap_or_default().to_string(), kind: Kind::Script });
    }
    for e in html.select(&sel("link[href]")) {
        let rel = e.value().attr("rel").unwrap_or_default().to_ascii_lowercase();
        let rels: Vec<&str> = rel.split_ascii_whitespace().collect();
        let href = e.value().attr("href").unwrap_or_default().to_string();
        let kind = if rels.contains(&"stylesheet") {
            Kind::Style
        } else if rels.contains(&"modulepreload") {
            Kind::Script
        } else if rels.contains(&"preload") {
            match e.value().attr("as").unwrap_or_default() {
                "script" => Kind::Script,
                "style" => Kind::Style,
                _ => Kind::Other,
            }
        } else if rels.iter().any(|r| matches!(*r, "icon" | "manifest" | "apple-touch-icon")) {
            Kind::Other
        } else {
            continue;
        };
        out.push(Reference { href, kind });
    }
    for e in html.select(&sel("img, source")) {
        if let Some(src) = e.value().attr("src") {
            out.push(Reference { href: src.to_string(), kind: Kind::Other });
        }
        if let Some(srcset) = e.value().attr("srcset") {
            for candidate in srcset.split(',') {
                if let Some(url) = candidate.split_ascii_whitespace().next() {
                    out.push(Reference { href: url.to_string(), kind: Kind::Other });
                }
            }
        }
    }
    for e in html.select(&sel("video[poster]")) {
        out.push(Reference { href: e.value().attr("poster").unwrap_or_default().to_string(), kind: Kind::Other });
    }
    out.retain(|r| {
        let h = r.href.trim();
        !h.is_empty() && !h.starts_with("data:") && !h.starts_with("blob:") && !h.starts_with("javascript:")
    });
    (base, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_a_vite_page_needs() {
        let doc = r#"<!doctype html><html><head>
            <link rel="icon" href="/favicon.ico">
            <script type="module" crossorigin src="/assets/index-B_9uaMiz.js"></script>
            <link rel="modulepreload" href="/assets/format-jTUCmgKS.js">
            <link rel="stylesheet" crossorigin href="/assets/index-CRJoDtjx.css">
            <link rel="preconnect" href="https://fonts.example">
            <link rel="preload" as="font" href="/assets/f.woff2">
            </head><body><img src="/a.png" srcset="/a-1x.png 1x, /a-2x.png 2x">
            <picture><source srcset="/p.avif"></picture><video poster="/poster.webp"></video>
            <img src="data:image/png;base64,AAAA"></body></html>"#;
        let (base, refs) = references(doc);
        assert_eq!(base, None);
        let hrefs: Vec<(&str, Kind)> = refs.iter().map(|r| (r.href.as_str(), r.kind)).collect();
        assert_eq!(
            hrefs,
            [
                ("/assets/index-B_9uaMiz.js", Kind::Script),
                ("/favicon.ico", Kind::Other),
                ("/assets/format-jTUCmgKS.js", Kind::Script),
                ("/assets/index-CRJoDtjx.css", Kind::Style),
                ("/assets/f.woff2", Kind::Other),
                ("/a.png", Kind::Other),
                ("/a-1x.png", Kind::Other),
                ("/a-2x.png", Kind::Other),
                ("/p.avif", Kind::Other),
                ("/poster.webp", Kind::Other),
            ]
        );
    }
}
