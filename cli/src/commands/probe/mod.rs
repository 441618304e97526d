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
use crate::args::{ProbeArgs, ProbeMode, StoreArgs};
use crate::printer::Printer;
use crate::signals::Signals;
use crate::stores::{self, Access, Create};

mod progress;
mod storage;
mod summary;

pub async fn run(a: ProbeArgs, printer: &Printer, signals: &Signals) -> Result<Status> {
    if a.url.assumed_http {
        printer.detail(format_args!("note: no scheme given, probing {}", a.url.url));
    }
    let until = until(&a)?;
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
    let opts = ProbeOptions { mode, traffic, until, loader, store, cancel: signals.cancel.clone(), on_sample: Some(watch.on_sample()) };
    let result = deskew_probe::run(&a.url.url, opts).await;
    watch.finish();
    // A ProbeError names the URL and the cause: one line.
    let result = result?;
    let report = Report::new(&result, a.slo);
    for (path, body) in [(&a.report, report.to_json()), (&a.junit, report.to_junit()), (&a.html, report.to_html())] {
        if let Some(path) = path {
            std::fs::write(path, body).with_context(|| format!("failed to write `{}`", path.display()))?;
        }
    }
    summary::print(&report, printer);
    if a.json {
        printer.json(&report)?;
    }
    verdict(&report, printer, signals)
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
    let host = a.url.url.host_str().unwrap_or_default();
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
            let mut cookies: Vec<serde_json::Value> = a.cookies.iter().filter_map(|c| c.split_once('=')).map(|(n, v)| serde_json::json!({ "name": n, "value": v, "url": a.url.url.as_str() })).collect();
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
fn verdict(report: &Report, printer: &Printer, signals: &Signals) -> Result<Status> {
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
