//! `url()` and `@import` references in a stylesheet.

/// Every `url(...)` and `@import "..."` target, skipping `data:` URLs and comments.
pub fn references(css: &str) -> Vec<String> {
    let css = strip_comments(css);
    let mut out = Vec::new();
    let lower = css.to_ascii_lowercase();
    let mut i = 0;
    while let Some(pos) = lower[i..].find("url(") {
        let start = i + pos + 4;
        let Some(end) = css[start..].find(')') else { break };
        let raw = css[start..start + end].trim().trim_matches(|c| c == '"' || c == '\'').trim();
        if !raw.is_empty() && !raw.starts_with("data:") && !raw.starts_with('#') {
            out.push(raw.to_string());
        }
        i = start + end;
    }
    let mut i = 0;
    while let Some(pos) = lower[i..].find("@import") {
        let rest = css[i + pos + 7..].trim_start();
        if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
            if let Some(end) = rest[1..].find(q) {
                out.push(rest[1..1 + end].to_string());
            }
        }
        i += pos + 7;
    }
    out
}

fn strip_comments(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find("*/") {
            Some(end) => rest = &rest[start + 2 + end + 2..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_urls_and_imports() {
        let css = r#"@import "theme.css"; @import url(print.css) print;
            /* url(commented.png) */
            @font-face{font-family:F;src:url(/assets/fixture-Q1uWclxH.woff2) format("woff2")}
            .a{background:url('img/a.png')} .b{background:URL("data:image/png;base64,xx")}"#;
        assert_eq!(super::references(css), ["print.css", "/assets/fixture-Q1uWclxH.woff2", "img/a.png", "theme.css"]);
    }
}
