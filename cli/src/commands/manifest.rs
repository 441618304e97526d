//! `deskew manifest`: the content-addressed manifest of a build.

use anyhow::Result;
use deskew_core::FileClass;

use crate::Status;
use crate::args::ManifestArgs;
use crate::printer::{Printer, bytes};

pub fn run(a: ManifestArgs, printer: &Printer) -> Result<Status> {
    let manifest = super::build_manifest(&a.dist, &a.classify, a.release)?;
    if manifest.of_class(FileClass::Entry).next().is_none() {
        printer.warn(format_args!("no entry file (`*.html` or --entry) in `{}`: pods will have nothing to serve from their image", a.dist.display()));
    }
    if a.json {
        printer.json(&manifest)?;
    }
    if a.files {
        files(&manifest, printer);
    }
    summary(&manifest, printer);
    Ok(Status::Ok)
}

/// Every file with how it will be served, on stderr.
fn files(m: &deskew_core::Manifest, printer: &Printer) {
    let width = m.files.iter().map(|f| f.path.as_str().len()).max().unwrap_or(4).clamp(4, 60);
    printer.line(format_args!("{:<width$} {:<9} {:<38} {:<28} {:>10}", "path", "class", "cache-control", "content type", "size"));
    for f in &m.files {
        printer.line(format_args!("{:<width$} {:<9} {:<38} {:<28} {:>10}", f.path.as_str(), f.class.as_str(), f.cache_control, f.content_type, bytes(f.size)));
    }
}

/// The per-class table and totals, on stderr.
pub fn summary(m: &deskew_core::Manifest, printer: &Printer) {
    printer.line(format_args!("{:<10} {:>6} {:>12}", "class", "files", "bytes"));
    for class in [FileClass::Entry, FileClass::Immutable, FileClass::Mutable] {
        let (n, b) = m.of_class(class).fold((0u64, 0u64), |(n, b), f| (n + 1, b + f.size));
        printer.line(format_args!("{:<10} {:>6} {:>12}", class.as_str(), n, bytes(b)));
    }
    printer.line(format_args!("{:<10} {:>6} {:>12}", "total", m.total.files, bytes(m.total.bytes)));
    printer.detail(format_args!("release {}, digest {}", m.release, m.digest));
}
