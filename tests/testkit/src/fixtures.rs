//! Builds to publish: the committed Vite fixture (`tests/fixtures/dist/{v1,v2,v3}`, rebuilt by
//! `tests/fixtures/build-fixtures.sh`) and small synthetic builds made in temp dirs.

use std::path::{Path, PathBuf};

/// The committed Vite build of `version` (`v1`, `v2` or `v3`).
pub fn fixture_dist(version: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dist").join(version);
    assert!(p.join("index.html").is_file(), "fixture build {} is missing", p.display());
    p
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// Writes a small SPA build into `dir`: `index.html`, a hashed entry chunk naming `version`, one
/// hashed chunk per name in `chunks` (same name, same content across builds, like an unchanged
/// lazy route), and a mutable `robots.txt` with `robots` as its content.
pub fn synthetic_build(dir: &Path, version: &str, chunks: &[&str], robots: &str) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    let main_hash = &deskew_core::manifest::sha256_hex(version.as_bytes())[..8];
    let main = format!("assets/main.{main_hash}.js");
    let mut body = format!("// {version}\n");
    for c in chunks {
        let hash = &deskew_core::manifest::sha256_hex(c.as_bytes())[..8];
        let path = format!("assets/{c}.{hash}.js");
        std::fs::write(dir.join(&path), format!("export const name = {c:?};\n")).unwrap();
        body.push_str(&format!("import(\"./{c}.{hash}.js\");\n"));
    }
    std::fs::write(dir.join(&main), body).unwrap();
    std::fs::write(dir.join("index.html"), format!("<!doctype html><title>{version}</title><script type=module src=\"/{main}\"></script>\n")).unwrap();
    std::fs::write(dir.join("robots.txt"), robots).unwrap();
}
