//! Module specifiers in JavaScript: static and dynamic imports with string literals.

/// Specifiers of `import … from "x"`, `export … from "x"`, `import "x"` and `import("x")` that
/// name files (see [`super::followable`]).
pub fn references(js: &str) -> Vec<String> {
    let b = js.as_bytes();
    let mut out = Vec::new();
    let mut push = |s: &str| {
        if super::followable(s) && !out.iter().any(|o: &String| o == s) {
            out.push(s.to_string());
        }
    };
    // `from "x"` (static import/export) and `import "x"` / `import("x")`.
    for (kw, allow_paren) in [("from", false), ("import", true)] {
        let mut i = 0;
        while let Some(pos) = js[i..].find(kw) {
            let at = i + pos;
            i = at + kw.len();
            let before_ok = at == 0 || !is_ident(b[at - 1]);
            let after = &js[i..];
            let mut rest = after.trim_start();
            if !before_ok || (rest.len() == after.len() && !rest.starts_with(['"', '\'', '(', '`'])) {
                continue;
            }
            if allow_paren {
                if let Some(r) = rest.strip_prefix('(') {
                    rest = r.trim_start();
                }
            }
            if let Some(lit) = string_literal(rest) {
                push(lit);
            }
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'.'
}

fn string_literal(s: &str) -> Option<&str> {
    let q = s.chars().next().filter(|c| matches!(c, '"' | '\'' | '`'))?;
    let end = s[1..].find(q)?;
    let lit = &s[1..1 + end];
    (!lit.contains('\n') && !lit.contains('\\')).then_some(lit)
}

#[cfg(test)]
mod tests {
    use super::references;

    #[test]
    fn static_and_dynamic_imports() {
        let js = r#"import{t as o,p as r}from"./format-jTUCmgKS.js";import "./side.js";
            export { x } from '../shared/x.mjs';
            const routes={"/":()=>import("./home-D2iJbBTJ.js"),"/about":()=>import( './about-B0thXP3Q.js' )};
            import React from "react"; const s = "the word import(\"nothing\") in prose";
            obj.import("./not-a-module.js"); const u = import(`./tpl-${x}.js`);"#;
        assert_eq!(references(js), ["./format-jTUCmgKS.js", "../shared/x.mjs", "./side.js", "./home-D2iJbBTJ.js", "./about-B0thXP3Q.js"]);
    }
}
