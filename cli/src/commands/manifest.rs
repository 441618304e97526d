//! `deskew manifest`: the content-addressed manifest of a build.

use anyhow::Result;
use deskew_core::FileClass;

use crate::Status;
use crate::args::ManifestArgs;
use crate::printer::{Printer, bytes};

pub fn run(a: ManifestArgs, printer: &Printer) -> Result<Status> {
    let manifest = super::build_manifest(&a.dist, &a.classify, a.release)?;
    if manifest.of_class(FileClass::Entry).next().is_none() {
        printer.warn(format_args!(
            "no entry file (`*.html` or --entry) in `{}`: pods will have nothing to serve from their image",
            a.dist.display()
        ));
    }
    if a.json {
        printer.json(&manifest)?;
    }
    summary(&manifest, printer);
    Ok(Status::Ok)
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
