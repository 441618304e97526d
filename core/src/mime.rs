//! Content types of the files of a web build.
//!
//! `mime_guess` supplies the broad table; the types that matter most for an SPA are pinned here
//! because generic tables get them wrong or dated (`application/javascript` instead of
//! `text/javascript` per RFC 9239, `.woff2`, `.webmanifest`, `.wasm` for streaming compilation).

/// The `Content-Type` to serve `path` with, charset included for text.
pub fn content_type(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    let pinned = match ext.as_str() {
        "js" | "mjs" | "cjs" => Some("text/javascript; charset=utf-8"),
        "css" => Some("text/css; charset=utf-8"),
        "html" | "htm" => Some("text/html; charset=utf-8"),
        "json" | "map" => Some("application/json"),
        "webmanifest" => Some("application/manifest+json"),
        "wasm" => Some("application/wasm"),
        "woff2" => Some("font/woff2"),
        "woff" => Some("font/woff"),
        "ttf" => Some("font/ttf"),
        "otf" => Some("font/otf"),
        "svg" => Some("image/svg+xml"),
        "webp" => Some("image/webp"),
        "avif" => Some("image/avif"),
        "ico" => Some("image/x-icon"),
        "txt" => Some("text/plain; charset=utf-8"),
        "xml" => Some("application/xml"),
        _ => None,
    };
    if let Some(t) = pinned {
        return t.to_string();
    }
    match mime_guess::from_ext(&ext).first() {
        Some(m) if m.type_() == mime_guess::mime::TEXT => format!("{m}; charset=utf-8"),
        Some(m) => m.to_string(),
        None => "application/octet-stream".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn pinned_types() {
        assert_eq!(content_type("assets/main.3f2a1c9b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("a.MJS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("f.woff2"), "font/woff2");
        assert_eq!(content_type("x.wasm"), "application/wasm");
        assert_eq!(content_type("main.js.map"), "application/json");
        assert_eq!(content_type("site.webmanifest"), "application/manifest+json");
        assert_eq!(content_type("logo.svg"), "image/svg+xml");
        assert_eq!(content_type("i.avif"), "image/avif");
    }

    #[test]
    fn falls_back_to_table_then_octet_stream() {
        assert_eq!(content_type("photo.png"), "image/png");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
        assert_eq!(content_type("data.unknownext"), "application/octet-stream");
    }
}
