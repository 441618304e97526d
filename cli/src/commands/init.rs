//! `deskew init`: make a place a deskew store on purpose.

use anyhow::{Context, Result};
use deskew_core::host::SystemHost;
use deskew_core::marker;

use crate::Status;
use crate::args::InitArgs;
use crate::printer::Printer;
use crate::stores::{self, Access, Create};

fn human(d: std::time::Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

pub async fn run(a: InitArgs, printer: &Printer) -> Result<Status> {
    let store = stores::open(&a.store, Create::Yes, Access::Write).await?;
    let existing = marker::read(store.as_ref()).await?;
    let skew = a.max_clock_skew.unwrap_or(marker::DEFAULT_MAX_CLOCK_SKEW);
    let m = marker::init(store.as_ref(), &SystemHost, skew).await.with_context(|| format!("failed to make {} a deskew store", store.url()))?;
    let Some(old) = existing else {
        printer.status("Created", format_args!("deskew store {} (clock-skew allowance {})", store.url(), human(m.max_clock_skew())));
        return Ok(Status::Ok);
    };
    match a.max_clock_skew.filter(|&s| s != old.max_clock_skew()) {
        Some(new) => {
            marker::set_max_clock_skew(store.as_ref(), &old, new).await.with_context(|| format!("failed to update the store marker of {}", store.url()))?;
            printer.status("Updated", format_args!("{}: clock-skew allowance {} (was {})", store.url(), human(new), human(old.max_clock_skew())));
        }
        None => printer.status(
            "Unchanged",
            format_args!("{} is already a deskew store (created {}, clock-skew allowance {})", store.url(), m.created, human(m.max_clock_skew())),
        ),
    }
    Ok(Status::Ok)
}
