//! Building the aws-sdk-s3 client the way AWS users expect: the standard credential and region
//! chain (env, profile, instance role), `AWS_ENDPOINT_URL`, path-style addressing for custom
//! endpoints, and a custom CA bundle (`--ca-bundle` or `AWS_CA_BUNDLE`, which the Rust SDK does
//! not read by itself). TLS is rustls on ring, shared with nothing else.

use std::path::PathBuf;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use deskew_core::StoreError;

/// How to reach the bucket.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// Custom endpoint (MinIO, Garage, R2, SeaweedFS); else `AWS_ENDPOINT_URL` or AWS.
    pub endpoint_url: Option<String>,
    /// Region; else the standard chain; else `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing; `None` means on for a custom endpoint, off for AWS.
    pub path_style: Option<bool>,
    /// PEM file of extra trusted CAs; `None` reads `AWS_CA_BUNDLE`.
    pub ca_bundle: Option<PathBuf>,
    /// Attempts per request, first included.
    pub max_attempts: u32,
    /// First retry backoff.
    pub initial_backoff: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Bodies larger than this use multipart upload.
    pub multipart_threshold: u64,
    /// Multipart part size (at least 5 MiB).
    pub part_size: u64,
    /// Whether to find out if the server honours create-only writes (usually one request, at most
    /// six; needs write access; read-only commands skip it).
    pub probe_conditional_writes: bool,
    /// Fixed credentials instead of the standard chain (tests; the CLI never takes secrets on
    /// its command line).
    pub static_credentials: Option<(String, String)>,
    /// Keys asked for per listing page (`max-keys`; 1,000, the most S3 returns). A listing
    /// given hints ([`Store::list_hinted`]) is split every three quarters of a page of them.
    ///
    /// [`Store::list_hinted`]: deskew_core::store::Store::list_hinted
    pub list_page: u16,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint_url: None,
            region: None,
            path_style: None,
            ca_bundle: None,
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(5),
            multipart_threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            probe_conditional_writes: true,
            static_credentials: None,
            list_page: 1000,
        }
    }
}

pub(crate) struct Built {
    pub client: aws_sdk_s3::Client,
    pub endpoint: String,
    /// The credentials chain, to load once up front and name what failed.
    pub credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
}

/// Loads credentials once, so a failure names the credentials, not the store's reachability.
pub(crate) async fn check_credentials(url: &str, built: &Built) -> Result<(), StoreError> {
    use aws_credential_types::provider::ProvideCredentials;
    use aws_credential_types::provider::error::CredentialsError;
    let Some(provider) = &built.credentials else { return Ok(()) };
    let Err(e) = provider.provide_credentials().await else { return Ok(()) };
    let what = match &e {
        CredentialsError::CredentialsNotLoaded(_) => "no credential source had credentials",
        CredentialsError::ProviderTimedOut(_) => "a credential source timed out",
        CredentialsError::InvalidConfiguration(_) => "a credential source is misconfigured",
        CredentialsError::ProviderError(_) => "a credential source failed",
        _ => "loading credentials failed",
    };
    let profile = std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()).map_or_else(|| "the default profile".to_string(), |p| format!("profile `{p}`"));
    Err(StoreError::Unusable {
        store: url.into(),
        why: format!(
            "has no usable AWS credentials: {what}: {}. Sources tried, in order: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, {profile} in ~/.aws (static keys, SSO, credential_process, assume role), web identity (AWS_WEB_IDENTITY_TOKEN_FILE), container credentials (ECS, EKS Pod Identity), instance metadata",
            deskew_core::error_chain(&e)
        ),
    })
}

pub(crate) async fn build(url: &str, opts: &S3Options) -> Result<Built, StoreError> {
    let unusable = |why: String| StoreError::Unusable { store: url.into(), why };
    let ca_path = opts.ca_bundle.clone().or_else(|| std::env::var_os("AWS_CA_BUNDLE").filter(|v| !v.is_empty()).map(PathBuf::from));
    let mut trust = TrustStore::default();
    if let Some(path) = &ca_path {
        let pem = std::fs::read(path).map_err(|e| unusable(format!("cannot use CA bundle `{}`: {e}", path.display())))?;
        trust = trust.with_pem_certificate(pem.as_slice());
    }
    let tls_context = TlsContext::builder().with_trust_store(trust).build().map_err(|e| unusable(format!("cannot use CA bundle: {e}")))?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .tls_context(tls_context)
        .build_https();

    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(opts.max_attempts).with_initial_backoff(opts.initial_backoff))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(opts.connect_timeout)
                .read_timeout(Duration::from_secs(60))
                .operation_attempt_timeout(Duration::from_secs(600))
                .build(),
        );
    let custom_endpoint =
        opts.endpoint_url.is_some() || ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"].iter().any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    if let Some(region) = &opts.region {
        loader = loader.region(Region::new(region.clone()));
    } else if custom_endpoint {
        // MinIO, Garage, SeaweedFS and R2 need some region but never one from EC2 metadata:
        // do not let the default chain ask IMDS (and wait for it) off AWS.
        loader = loader.region(
            RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
                .or_else(ProfileFileRegionProvider::new())
                .or_else(Region::new("us-east-1")),
        );
    }
    if let Some(endpoint) = &opts.endpoint_url {
        loader = loader.endpoint_url(endpoint.clone());
    }
    if let Some((key, secret)) = &opts.static_credentials {
        loader = loader.credentials_provider(Credentials::new(key, secret, None, None, "deskew-static"));
    }
    let sdk = loader.load().await;
    let endpoint = sdk.endpoint_url().map(str::to_string);
    let mut b = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(opts.path_style.unwrap_or(endpoint.is_some()))
        // S3-compatible servers differ in which checksum headers they accept; send and check
        // only what the API requires. Content integrity is deskew's own sha256.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if sdk.region().is_none() {
        b = b.region(Region::new("us-east-1"));
    }
    let credentials = sdk.credentials_provider();
    Ok(Built { client: aws_sdk_s3::Client::from_conf(b.build()), endpoint: endpoint.unwrap_or_else(|| "AWS S3".into()), credentials })
}
