//! `deskew probe`: the deployment downtime test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deskew_probe::browser::BrowserOptions;
use deskew_probe::browser::page::PageOptions;
use deskew_probe::deploy::shell_quote;
use deskew_probe::{AllowOrigins, LoaderOptions, Mode, ProbeOptions, Report, Traffic, Until};

use crate::Status;
use crate::args::{ProbeArgs, ProbeCommand, ProbeControl, ProbeMode, StoreArgs};
use crate::printer::Printer;
use crate::signals::Signals;
use crate::stores::{self, Access, Create};

mod control;
pub(crate) use control::StatusOut;
pub(crate) use detach::worker_argv;
mod detach;
pub(crate) mod progress;
mod shard;
mod state;
mod storage;
pub(crate) mod summary;

/// `deskew probe …`: a run in the foreground, the start of a detached one, the detached
/// process itself, or a control command for it.
pub async fn dispatch(c: ProbeCommand, printer: &Printer, signals: &Signals) -> Result<Status> {
    match c.control {
        Some(ProbeControl::Stop(a)) => control::stop(a, printer, signals).await,
        Some(ProbeControl::Status(a)) => control::status(a, printer),
        None if c.run.detach => detach::start(&c.run, printer).await,
        None => run(c.run, printer, signals).await,
    }
}

/// The page URL (clap requires it when no control command is given).
fn page(a: &ProbeArgs) -> &url::Url {
    &a.url.as_ref().expect("clap requires the page URL").url
}

async fn run(a: ProbeArgs, printer: &Printer, signals: &Signals) -> Result<Status> {
    if a.url.as_ref().is_some_and(|u| u.assumed_http) {
        printer.detail(format_args!("note: no scheme given, probing {}", page(&a)));
    }
    let worker = match a.worker {
        true => Some(detach::Worker::start(a.state.as_deref().expect("clap requires --state"), a.max_duration)?),
        false => None,
    };
    if a.state.is_some() && !a.worker {
        bail!("--state is for --detach (and `deskew probe stop|status --state DIR`)");
    }
    let plan = shard::plan(&a)?;
    let until = match (&worker, shard::until(&a, &plan)) {
        (Some(w), _) => w.until(),
        (None, Some(u)) => u,
        (None, None) => until(&a)?,
    };
    let traffic = match a.rate {
        Some(rate) => Traffic::Open { rate, max_in_flight: 1000 },
        None => Traffic::Closed { concurrency: a.concurrency.into() },
    };
    let store = match &a.store {
        Some(url) => {
            let args = StoreArgs { store: url.clone(), s3: a.s3.clone() };
            Some(Arc::from(stores::open(&args, Create::No, Access::Read).await?))
        }
        None => None,
    };
    let storage = match &a.storage_state {
        Some(path) => Some(storage::load(path)?),
        None => None,
    };
    let loader = loader_options(&a, storage.as_ref());
    let mode = mode(&a, &loader, storage.as_ref())?;
    let watch = progress::Watch::start(printer);
    let on_sample = match &worker {
        Some(w) => w.on_sample(watch.on_sample()),
        None => watch.on_sample(),
    };
    let opts = ProbeOptions { mode, traffic, until, loader, store, cancel: signals.cancel.clone(), on_sample: Some(on_sample) };
    shard::wait_for_start(&a, printer, &signals.cancel).await;
    let result = deskew_probe::run(page(&a), opts).await;
    watch.finish();
    // A ProbeError names the URL and the cause: one line.
    let result = match (result, worker.as_ref()) {
        (Err(e), Some(_)) => return Err(worker.expect("matched").failed(e.into())),
        (result, _) => result?,
    };
    let mut report = Report::new(&result, a.slo);
    report.run = plan.run;
    if let Some(w) = worker {
        w.finish(&report)?;
    }
    write_reports(&report, &a.out)?;
    summary::print(&report, printer);
    if a.out.json {
        printer.json(&report)?;
    }
    verdict(&report, printer, signals)
}

/// Writes the JSON, JUnit and HTML reports to the paths given.
pub(crate) fn write_reports(report: &Report, out: &crate::args::ReportArgs) -> Result<()> {
    for (path, body) in [(&out.report, report.to_json()), (&out.junit, report.to_junit()), (&out.html, report.to_html())] {
        if let Some(path) = path {
            std::fs::write(path, body).with_context(|| format!("failed to write `{}`", path.display()))?;
        }
    }
    Ok(())
}

fn until(a: &ProbeArgs) -> Result<Until> {
    Ok(match (&a.duration, a.command.is_empty()) {
        (Some(_), false) => bail!("give either --duration or a deploy command after `--`, not both"),
        (None, true) => bail!("give --duration, or a deploy command after `--` to probe around"),
        (Some(d), true) => Until::Duration(*d),
        (None, false) => Until::Command { argv: a.command.clone(), warmup: a.warmup, settle: a.settle },
    })
}

fn loader_options(a: &ProbeArgs, storage: Option<&storage::StorageState>) -> LoaderOptions {
    let allow_origins = if a.allow_origins.iter().any(|o| o == "*") {
        AllowOrigins::Any
    } else if a.allow_origins.is_empty() {
        AllowOrigins::None
    } else {
        AllowOrigins::Listed(a.allow_origins.clone())
    };
    let host = page(a).host_str().unwrap_or_default();
    let mut cookies = a.cookies.clone();
    if let Some(s) = storage {
        cookies.extend(s.cookie_pairs_for(host));
    }
    LoaderOptions {
        timeout: a.timeout,
        allow_origins,
        headers: a.headers.clone(),
        basic_auth: a.basic_auth.as_ref().map(|b| (b.user.clone(), b.password.clone())),
        cookies,
        insecure: a.insecure,
        resolve: a.resolve.iter().map(|(h, port, ip)| (h.clone(), SocketAddr::new(*ip, *port))).collect(),
        ..LoaderOptions::default()
    }
}

fn mode(a: &ProbeArgs, loader: &LoaderOptions, storage: Option<&storage::StorageState>) -> Result<Mode> {
    match a.mode {
        ProbeMode::Http => {
            if !a.visits.is_empty() || a.browser.is_some() || a.storage_state.is_some() {
                bail!("--visit, --browser and --storage-state need --mode browser");
            }
            Ok(Mode::Http)
        }
        ProbeMode::Browser => {
            let mut extra_args = Vec::new();
            if a.insecure {
                extra_args.push("--ignore-certificate-errors".to_string());
            }
            if !a.resolve.is_empty() {
                let rules: Vec<String> = a.resolve.iter().map(|(h, port, ip)| format!("MAP {h}:{port} {}", SocketAddr::new(*ip, *port))).collect();
                extra_args.push(format!("--host-resolver-rules={}", rules.join(",")));
            }
            let mut headers = a.headers.clone();
            if let Some((user, pass)) = &loader.basic_auth {
                headers.push(("Authorization".into(), format!("Basic {}", deskew_probe::tls::base64(format!("{user}:{pass}").as_bytes()))));
            }
            let mut cookies: Vec<serde_json::Value> = a
                .cookies
                .iter()
                .filter_map(|c| c.split_once('='))
                .map(|(n, v)| serde_json::json!({ "name": n, "value": v, "url": page(a).as_str() }))
                .collect();
            let mut local_storage = Vec::new();
            if let Some(s) = storage {
                cookies.extend(s.cookies.iter().cloned());
                local_storage = s.local_storage();
            }
            Ok(Mode::Browser {
                browser: BrowserOptions { executable: a.browser.clone(), extra_args },
                page: PageOptions {
                    idle: Duration::from_millis(a.idle),
                    timeout: a.timeout.max(Duration::from_secs(5)),
                    visits: a.visits.clone(),
                    headers,
                    cookies,
                    local_storage,
                },
            })
        }
    }
}

/// The exit status: interrupted (128 + signal), the deploy command failed (3), the SLO missed
/// (1) or met (0).
pub(crate) fn verdict(report: &Report, printer: &Printer, signals: &Signals) -> Result<Status> {
    if report.interrupted {
        printer.warn("interrupted: the report covers the loads made until then, and the deploy command was stopped");
        return Ok(Status::Interrupted(signals.received().unwrap_or(2)));
    }
    if let Some(c) = report.command.as_ref().filter(|c| !c.success) {
        printer.error(&anyhow::anyhow!(
            "the deploy command `{}` failed ({}); the probe's verdict does not count",
            shell_quote(&c.argv),
            c.exit_code.map_or_else(|| "killed by a signal".to_string(), |code| format!("exit code {code}"))
        ));
        return Ok(Status::DeployFailed);
    }
    if report.loads.total == 0 {
        bail!("no load completed in {}", humantime::format_duration(Duration::from_millis(report.duration_ms)));
    }
    Ok(if report.slo.met { Status::Ok } else { Status::CheckFailed })
}
