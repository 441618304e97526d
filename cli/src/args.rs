//! Command-line arguments. Doc comments here are the `--help` text.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use deskew_core::ReleaseId;
use deskew_core::time::Timestamp;

const AFTER_HELP: &str = "\
Exit codes (the same for every command):
  0    success
  1    the check ran and failed (verify: missing or corrupt files; probe: SLO missed)
  2    usage or configuration error (bad flag, not a store, invalid input)
  3    the deploy command the probe wrapped failed
  4    store or network I/O failed (unreachable, refused, busy)
  129  interrupted by SIGHUP, 130 by SIGINT, 143 by SIGTERM (after cleaning up)

Store URLs: a directory (`/srv/assets`, `file:///srv/assets`) or an S3 bucket (`s3://bucket/prefix`).
Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more. NO_COLOR disables colour.";

/// Zero-downtime rolling deployments for single-page apps: publish every asset of a build to one
/// shared store before the deploy, keep the assets of recent releases, delete old ones safely.
#[derive(Debug, Parser)]
#[command(name = "deskew", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print only errors (no progress, no summaries).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Read option values from this TOML file (default: `deskew.toml` in the current directory,
    /// or DESKEW_CONFIG). A flag beats DESKEW_<OPTION>, which beats the file.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute the content-addressed manifest of a build directory.
    Manifest(ManifestArgs),
    /// Upload a build's assets to the store before the deploy, then record the release.
    Publish(PublishArgs),
    /// List the releases in a store, newest first.
    Releases(ReleasesArgs),
    /// Delete the files no kept release references.
    Gc(GcArgs),
    /// Check that every file of the kept (or given) releases is stored intact.
    Verify(VerifyArgs),
    /// Make a directory or bucket prefix a deskew store (publish does this itself in an empty
    /// place; use init to adopt a place that already holds files).
    Init(InitArgs),
    /// The deployment downtime test: load the page and everything it needs, continuously,
    /// for a duration or around a deploy command; exit 1 if the SLO is missed.
    #[command(
        after_help = "Example:\n  deskew probe https://web.example/ --concurrency 8 --report probe.json -- kubectl rollout status deploy/web\n\nExit codes: 0 SLO met, 1 SLO missed (failed loads), 2 usage, 3 the deploy command failed, 4 the page or the store unreachable, 129/130/143 interrupted (reports written, the deploy command's process group stopped)."
    )]
    Probe(Box<ProbeCommand>),
    /// See the outage deskew prevents, and the fix, in under a minute with nothing but this
    /// binary: a sample app rolled from v1 to v2 on three in-process pods, probed without and
    /// with a deskew store; exit 0 when the run with deskew had zero failed loads.
    Demo(DemoArgs),
    /// Print a shell completion script (`deskew completions bash > /etc/bash_completion.d/deskew`).
    Completions(CompletionsArgs),
    /// Print the manual page, in roff (`deskew man > deskew.1 && man ./deskew.1`).
    Man,
    /// Work with probe reports: `deskew report merge` joins the reports of a run's shards.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Print the effective configuration: each option's value and where it comes from (a
    /// DESKEW_* variable, deskew.toml, or the default); secrets masked.
    Config(ConfigArgs),
}

/// `deskew report …`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge the reports of a run's shards into one, judged by the SLO like a single probe (exit
    /// 0 met, 1 missed, 2 the reports cannot be merged).
    Merge(MergeArgs),
}

/// `deskew report merge` options.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' JSON reports (`--report` of each `deskew probe --shard I/N`).
    #[arg(required = true, value_name = "REPORT")]
    pub reports: Vec<PathBuf>,
    /// Required percentage of successful loads, over all shards.
    #[arg(long, value_name = "PERCENT", default_value_t = 100.0, value_parser = parse_percent)]
    pub slo: f64,
    /// Merge reports of different run ids (by default refused: they are not one run's shards).
    #[arg(long)]
    pub allow_mixed_runs: bool,
    /// Merge even when some shards of the run have no report (by default refused: a missing
    /// shard may be the one that saw the failures).
    #[arg(long)]
    pub allow_missing_shards: bool,
    /// Where the merged report goes.
    #[command(flatten)]
    pub out: ReportArgs,
}

/// `deskew config` options.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Only this command's options (e.g. `publish`).
    pub command: Option<String>,
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `deskew completions` options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `deskew demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the sample builds and the store here (default: a temporary directory, removed).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Write one HTML report holding both runs here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Load pages in a real Chromium (browser mode) instead of deskew's HTTP loader.
    #[arg(long)]
    pub browser: bool,
    /// Print both runs' reports as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `deskew probe URL …`, or `deskew probe stop|status` for a probe started with `--detach`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ProbeCommand {
    /// Controls a probe started with `--detach`.
    #[command(subcommand)]
    pub control: Option<ProbeControl>,
    /// A probe run.
    #[command(flatten)]
    pub run: ProbeArgs,
}

/// What can be asked of a detached probe.
#[derive(Debug, Subcommand)]
pub enum ProbeControl {
    /// Finish a probe started with `--detach` (after the settle time), write its reports, print
    /// the summary and exit with its verdict exactly as a wrapped run would (0 SLO met, 1 missed,
    /// 2 the probe itself failed, died or is not there).
    Stop(ProbeStopArgs),
    /// How a probe started with `--detach` is doing: alive or not, loads and failures so far.
    Status(ProbeStatusArgs),
}

/// `deskew probe stop` options.
#[derive(Debug, Args)]
pub struct ProbeStopArgs {
    /// The state directory given to `--detach`.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// Traffic after the stop request, before the probe finishes (the rollout's tail).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub settle: Duration,
    /// Where the report goes.
    #[command(flatten)]
    pub out: ReportArgs,
}

/// The probe's report files (a run's, or a detached probe's at `probe stop`).
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write a JUnit XML file here (one test case per failure group).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print the JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `deskew probe status` options.
#[derive(Debug, Args)]
pub struct ProbeStatusArgs {
    /// The state directory given to `--detach`.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// Print the status as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `deskew probe` options.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The page to load (http or https; `host:port` means `http://host:port`).
    #[arg(value_parser = parse_page_url, required = true)]
    pub url: Option<PageUrl>,
    /// Start the probe in the background and return once loads are flowing; finish it with
    /// `deskew probe stop --state DIR` (for pipelines whose deploy is its own step).
    #[arg(long, requires = "state")]
    pub detach: bool,
    /// With --detach: the directory the background probe keeps its pid, status, log and
    /// report in (shared by the start, deploy and stop steps).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// With --detach: a probe never stopped ends by itself after this long, and its report
    /// says it timed out.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration, default_value = "1h")]
    pub max_duration: Duration,
    /// Sharding: this probe is shard I of N (0-based), e.g. `--shard 2/4`; its report carries
    /// the shard and the run id, and `deskew report merge` joins the shards' reports.
    #[arg(long, value_name = "I/N", value_parser = parse_shard, help_heading = "Sharding")]
    pub shard: Option<(u32, u32)>,
    /// Sharding: the number of shards, this one's index taken from JOB_COMPLETION_INDEX (a
    /// Kubernetes Indexed Job).
    #[arg(long, value_name = "N", conflicts_with = "shard", value_parser = clap::value_parser!(u32).range(1..=10000), help_heading = "Sharding")]
    pub shards: Option<u32>,
    /// Sharding: the id every shard of the run shares (default: derived from --start-at and the URL).
    #[arg(long, value_name = "ID", help_heading = "Sharding")]
    pub run_id: Option<String>,
    /// Start the traffic at this instant (RFC 3339), so every shard begins together.
    #[arg(long, value_name = "TIME", value_parser = parse_time, help_heading = "Sharding")]
    pub start_at: Option<Timestamp>,
    /// Sharding: the shard that runs the deploy command; the others probe for the same window.
    #[arg(long, value_name = "I", default_value_t = 0, help_heading = "Sharding")]
    pub deploy_shard: u32,
    /// Sharding: a shard that does not deploy probes until this file exists (then --settle).
    #[arg(long, value_name = "PATH", help_heading = "Sharding")]
    pub until_file: Option<PathBuf>,
    /// Sharding: a shard that does not deploy probes until this URL answers 2xx (then --settle).
    #[arg(long, value_name = "URL", value_parser = parse_page_url, help_heading = "Sharding")]
    pub until_url: Option<PageUrl>,
    /// The background process of --detach (internal).
    #[arg(long, hide = true, requires = "state")]
    pub worker: bool,
    /// `http`: deskew fetches the page and what it references; `browser`: a real Chromium
    /// loads it over the DevTools protocol.
    #[arg(long, value_enum, default_value = "http")]
    pub mode: ProbeMode,
    /// Browser mode: the Chromium executable (default: chromium on PATH).
    #[arg(long, value_name = "PATH")]
    pub browser: Option<PathBuf>,
    /// Browser mode: after loading, navigate inside the app to this path (`/reports` via the
    /// history API, `#/reports` for hash routers) and wait for idle again; repeatable.
    #[arg(long = "visit", value_name = "PATH")]
    pub visits: Vec<String>,
    /// Browser mode: milliseconds without requests in flight that count as network idle.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub idle: u64,
    /// Loads in flight at once (closed model).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Loads started per second whatever their latency (open model); replaces --concurrency.
    #[arg(long, value_name = "LOADS_PER_S", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Probe for this long (without a deploy command).
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,
    /// Traffic before the deploy command starts.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// Traffic after the deploy command exits.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub settle: Duration,
    /// Required percentage of successful loads.
    #[arg(long, value_name = "PERCENT", default_value_t = 100.0, value_parser = parse_percent)]
    pub slo: f64,
    /// Timeout of each request.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Also fetch resources from this origin (e.g. a CDN, `https://cdn.example.com`), or from
    /// every origin with `'*'`; repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN", value_parser = parse_origin)]
    pub allow_origins: Vec<String>,
    /// Send this header with every request (`-H 'X-Canary: 1'`); repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// HTTP basic credentials for the page's origin, `USER:PASS` (never printed).
    #[arg(long, value_name = "USER:PASS", value_parser = parse_basic_auth)]
    pub basic_auth: Option<BasicAuth>,
    /// Send this cookie (`name=value`) to the page's origin; repeatable.
    #[arg(long = "cookie", value_name = "NAME=VALUE", value_parser = parse_cookie)]
    pub cookies: Vec<String>,
    /// Accept any TLS certificate (self-signed staging, an ingress addressed by IP).
    #[arg(long)]
    pub insecure: bool,
    /// Resolve HOST:PORT to ADDR instead of through DNS, keeping the URL's host (to aim at one
    /// ingress or zone, as curl's --resolve); repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR", value_parser = parse_resolve)]
    pub resolve: Vec<(String, u16, std::net::IpAddr)>,
    /// Browser mode: cookies and localStorage to start every page with, from Playwright's
    /// `storageState` JSON (for apps behind a login).
    #[arg(long, value_name = "FILE")]
    pub storage_state: Option<PathBuf>,
    /// The store the site's assets come from: match pages to releases and fetch every asset of
    /// the page's release, lazy chunks included. Only read.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// S3 options for --store.
    #[command(flatten)]
    pub s3: S3Args,
    /// Where the report goes.
    #[command(flatten)]
    pub out: ReportArgs,
    /// The deploy command, after `--`; traffic runs around it.
    #[arg(last = true, value_name = "DEPLOY COMMAND")]
    pub command: Vec<String>,
}

/// How the probe loads pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeMode {
    /// deskew's own HTTP client and resource discovery.
    Http,
    /// A real Chromium over the DevTools protocol.
    Browser,
}

/// How to reach an S3-compatible store.
#[derive(Debug, Args, Clone, Default)]
pub struct S3Args {
    /// S3: a custom endpoint (MinIO, Garage, R2, SeaweedFS); AWS_ENDPOINT_URL works too.
    #[arg(long, value_name = "URL", help_heading = "S3", value_parser = parse_endpoint)]
    pub endpoint_url: Option<String>,
    /// S3: the region (default: AWS_REGION, the profile, else us-east-1).
    #[arg(long, value_name = "REGION", help_heading = "S3")]
    pub region: Option<String>,
    /// S3: path-style addressing (the default with a custom endpoint).
    #[arg(long, conflicts_with = "virtual_hosted", help_heading = "S3")]
    pub path_style: bool,
    /// S3: virtual-hosted addressing (the default on AWS).
    #[arg(long, help_heading = "S3")]
    pub virtual_hosted: bool,
    /// S3: attempts per request before giving up (throttling, 5xx, timeouts, dropped connections).
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=20), help_heading = "S3")]
    pub max_attempts: u32,
    /// S3: PEM file of extra CA certificates to trust (default: AWS_CA_BUNDLE).
    #[arg(long, value_name = "FILE", help_heading = "S3")]
    pub ca_bundle: Option<PathBuf>,
}

/// How files are classified.
#[derive(Debug, Args, Clone)]
pub struct ClassifyArgs {
    /// Glob of entry files, served by each pod from its own image (default `*.html`); repeatable.
    #[arg(long = "entry", value_name = "GLOB")]
    pub entry: Vec<String>,
    /// Glob of files to treat as immutable even without a content hash in their name; repeatable.
    #[arg(long = "immutable", value_name = "GLOB")]
    pub immutable: Vec<String>,
    /// Glob of files to treat as mutable even if their name looks content-hashed; repeatable.
    #[arg(long = "mutable", value_name = "GLOB")]
    pub mutable: Vec<String>,
    /// Glob of files to leave out of the release; repeatable.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// `GLOB=VALUE`: the Cache-Control of matching files, instead of their class's (first match
    /// wins); repeatable. Example: `--cache-control 'assets/*.wasm=public, max-age=600'`.
    #[arg(long = "cache-control", value_name = "GLOB=VALUE")]
    pub cache_control: Vec<String>,
    /// `GLOB=VALUE`: the Content-Type of matching files, instead of their extension's (first
    /// match wins); repeatable.
    #[arg(long = "content-type", value_name = "GLOB=VALUE")]
    pub content_type: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The build output directory (e.g. `dist`).
    pub dist: PathBuf,
    /// Release id to write into the manifest (default: the first 12 hex digits of its digest).
    #[arg(long, value_name = "ID")]
    pub release: Option<ReleaseId>,
    #[command(flatten)]
    pub classify: ClassifyArgs,
    /// Also list every file: path, class, cache-control, content type, size (on stderr).
    #[arg(long)]
    pub files: bool,
    /// Print the manifest as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The store to work on.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// The store: a directory, file:///path or s3://bucket/prefix.
    #[arg(long, env = "DESKEW_STORE", value_name = "URL")]
    pub store: String,
    /// S3 options.
    #[command(flatten)]
    pub s3: S3Args,
}

/// Retention options besides `--keep`, shared by every command that applies a policy.
#[derive(Debug, Args, Clone, Default)]
pub struct RetentionArgs {
    /// Also keep releases retired (superseded) less than this long ago, e.g. `1h`, `7days`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub keep_for: Option<Duration>,
    /// Always keep this release (e.g. the one running after a rollback); repeatable. At publish
    /// it may name the release being published.
    #[arg(long = "pin", value_name = "ID")]
    pub pins: Vec<ReleaseId>,
    /// Keep a pending release this long after its publish was last seen alive (a live publish is
    /// always kept), and unreferenced files this long after they were written.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub grace: Duration,
}

/// `--keep N`, at least 1.
pub fn parse_keep(s: &str) -> Result<NonZeroUsize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1: the newest release is the one serving traffic".into()),
        Ok(n) => Ok(NonZeroUsize::new(n).expect("not zero")),
        Err(_) => Err(format!("`{s}` is not a number of releases")),
    }
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The build output directory (e.g. `dist`).
    pub dist: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Release id (default: UTC time plus the first 12 hex digits of the build's digest).
    #[arg(long, value_name = "ID")]
    pub release: Option<ReleaseId>,
    #[command(flatten)]
    pub classify: ClassifyArgs,
    /// After publishing, gc with this policy: keep the new release and the N newest complete
    /// releases before it (the one serving traffic until the rollout is among them).
    #[arg(long, value_name = "N", value_parser = parse_keep)]
    pub keep: Option<NonZeroUsize>,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// With --keep/--keep-for: refuse the gc after publishing if it would delete more objects.
    #[arg(long, value_name = "N")]
    pub max_delete: Option<usize>,
    /// Refuse, before writing anything, to replace a mutable file that a kept release serves.
    #[arg(long)]
    pub strict: bool,
    /// Show what would be uploaded; write nothing (works on a store that does not exist yet).
    #[arg(long)]
    pub dry_run: bool,
    /// The release exists but `verify` found files missing or corrupt: read every stored file
    /// of it, upload again what is missing or differs, and check it again.
    #[arg(long)]
    pub repair: bool,
    /// Uploads in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub concurrency: u16,
    /// How long to wait while a gc or another publish holds the store's lease before giving up
    /// (exit 4).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub lock_timeout: Duration,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReleasesArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Show what a gc keeping the newest N complete releases would keep.
    #[arg(long, value_name = "N", value_parser = parse_keep)]
    pub keep: Option<NonZeroUsize>,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Judge retention as if the clock said this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<Timestamp>,
    /// Print the list as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Keep the newest N complete releases (at least 1: the newest is the one serving traffic).
    #[arg(long, value_name = "N", required = true, value_parser = parse_keep)]
    pub keep: NonZeroUsize,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Refuse (exit 2, nothing deleted) if more objects would be deleted.
    #[arg(long, value_name = "N")]
    pub max_delete: Option<usize>,
    /// Print the plan; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: plan as if the clock said this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time, requires = "dry_run")]
    pub at: Option<Timestamp>,
    /// How long to wait while another gc or a publish holds the store's lease before giving up
    /// (exit 4).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub lock_timeout: Duration,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// How far apart the clocks of the hosts working on this store may be (leases and publish
    /// heartbeats count as lapsed only this long after their expiry); at most 1h. A new store
    /// gets 15s unless given; given for an existing store, it changes the store's setting (do it
    /// while no publish or gc runs).
    #[arg(long, value_name = "DURATION", value_parser = parse_skew)]
    pub max_clock_skew: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Check only this release; repeatable (default: every complete release a gc with the given
    /// policy would keep; every complete release without one).
    #[arg(long = "release", value_name = "ID")]
    pub releases: Vec<ReleaseId>,
    /// Check only the releases a gc keeping the newest N complete releases would keep.
    #[arg(long, value_name = "N", value_parser = parse_keep)]
    pub keep: Option<NonZeroUsize>,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Objects read at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub concurrency: u16,
    /// Pass on a store with no releases (without it, an empty store fails: a mistyped prefix
    /// must not look verified).
    #[arg(long)]
    pub allow_empty: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 10_000.0 => Ok(r),
        _ => Err(format!("`{s}` is not a rate: give loads per second, more than 0 and at most 10000")),
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a percentage from 0 to 100")),
    }
}

/// A page URL and whether `http://` was added to it.
#[derive(Clone, Debug)]
pub struct PageUrl {
    /// The URL.
    pub url: url::Url,
    /// Whether the user gave no scheme and `http://` was assumed.
    pub assumed_http: bool,
}

fn parse_page_url(s: &str) -> Result<PageUrl, String> {
    let (text, assumed_http) = if s.contains("://") { (s.to_string(), false) } else { (format!("http://{s}"), true) };
    let url = url::Url::parse(&text).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{s}` is not an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host"));
    }
    Ok(PageUrl { url, assumed_http })
}

fn parse_origin(s: &str) -> Result<String, String> {
    if s == "*" {
        return Ok(s.into());
    }
    let url = url::Url::parse(s).map_err(|_| format!("`{s}` is not an origin: give scheme and host, e.g. https://cdn.example.com, or '*'"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || url.path() != "/" || url.query().is_some() {
        return Err(format!("`{s}` is not an origin: give only scheme, host and port, e.g. https://cdn.example.com"));
    }
    Ok(url.origin().ascii_serialization())
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once(':').ok_or_else(|| format!("`{s}` is not a header: write `Name: value`"))?;
    let (name, value) = (name.trim(), value.trim());
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b)) {
        return Err(format!("`{name}` is not a header name"));
    }
    if value.bytes().any(|b| b.is_ascii_control()) {
        return Err(format!("the value of header `{name}` holds a control character"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Basic credentials; their `Debug` hides the password.
#[derive(Clone)]
pub struct BasicAuth {
    /// The user.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicAuth({}:***)", self.user)
    }
}

fn parse_basic_auth(s: &str) -> Result<BasicAuth, String> {
    match s.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok(BasicAuth { user: user.into(), password: password.into() }),
        _ => Err("give the credentials as USER:PASS".into()),
    }
}

fn parse_cookie(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((name, _)) if !name.trim().is_empty() && !s.contains(';') => Ok(s.trim().to_string()),
        _ => Err(format!("`{s}` is not a cookie: write name=value (one per --cookie)")),
    }
}

fn parse_resolve(s: &str) -> Result<(String, u16, std::net::IpAddr), String> {
    let bad = || format!("`{s}` is not HOST:PORT:ADDR (e.g. web.example:443:10.0.0.7, or [::1] for IPv6)");
    let (host, rest) = s.split_once(':').ok_or_else(bad)?;
    let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let addr: std::net::IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port, addr))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("`{s}` must be longer than zero"));
    }
    Ok(d)
}

fn parse_endpoint(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|_| format!("`{s}` is not an endpoint URL: give scheme and host, e.g. http://127.0.0.1:9000"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{s}` is not an http or https endpoint URL"));
    }
    Ok(s.to_string())
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| format!("`{s}` is not an RFC 3339 time like 2026-11-29T18:00:00Z: {e}"))
}

fn parse_skew(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > deskew_core::marker::MAX_CLOCK_SKEW_LIMIT {
        return Err(format!("`{s}` is more than the 1h a clock-skew allowance may be"));
    }
    Ok(d)
}

fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let err = || format!("`{s}` is not a shard like 0/4 (index/count, the index from 0)");
    let (i, n) = s.split_once('/').ok_or_else(err)?;
    let (i, n): (u32, u32) = (i.trim().parse().map_err(|_| err())?, n.trim().parse().map_err(|_| err())?);
    if n == 0 || i >= n {
        return Err(err());
    }
    Ok((i, n))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 90s, 10m, 1h or 7days: {e}"))
}
