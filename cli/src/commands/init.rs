//! `deskew init`: make a place a deskew store on purpose.

use anyhow::{Context, Result};
use deskew_core::host::SystemHost;
use deskew_core::marker;

use crate::Status;
use crate::args::InitArgs;
use crate::printer::Printer;
use crate::stores::{self, Access, Create};

pub async fn run(a: InitArgs, printer: &Printer) -> Result<Status> {
    let store = stores::open(&a.store, Create::Yes, Access::Write).await?;
    let existing = marker::read(store.as_ref()).await?;
    let m = marker::init(store.as_ref(), &SystemHost, a.max_clock_skew)
        .await
        .with_context(|| format!("failed to make {} a deskew store", store.url()))?;
    match existing {
        Some(_) => printer.status("Unchanged", format_args!("{} is already a deskew store (created {})", store.url(), m.created)),
        None => printer.status("Created", format_args!("deskew store {} (clock-skew allowance {:?})", store.url(), m.max_clock_skew())),
    }
    Ok(Status::Ok)
}
