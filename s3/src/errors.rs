//! The S3 backend's own error, and its one conversion into [`StoreError`]: what failed, where,
//! and why in one readable line, with the SDK's error kept as the source (never its text alone,
//! and never credentials: the SDK's errors carry none).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use deskew_core::store::{Op, StoreError};

/// A failed S3 call: a one-line summary, the SDK's error behind it.
#[derive(Debug, thiserror::Error)]
#[error("{summary}")]
pub struct S3Error {
    summary: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl S3Error {
    /// From an SDK error.
    pub fn sdk<E>(err: SdkError<E, HttpResponse>) -> S3Error
    where
        E: std::error::Error + Send + Sync + 'static + ProvideErrorMetadata,
    {
        S3Error { summary: describe(&err), source: Some(Box::new(err)) }
    }

    /// A failure reported in a response body (a per-key error of a batch delete).
    pub fn reported(summary: impl Into<String>) -> S3Error {
        S3Error { summary: summary.into(), source: None }
    }

    /// Any other cause (reading a body, a local file).
    pub fn other(err: impl std::error::Error + Send + Sync + 'static) -> S3Error {
        S3Error { summary: deskew_core::error_chain(&err), source: Some(Box::new(err)) }
    }

    /// As the store error for `op` on `key`.
    pub fn into_store(self, store: &str, op: Op, key: &str) -> StoreError {
        StoreError::backend(op, store, key, self)
    }
}

/// HTTP status and S3 error code of a failed call, if the server answered.
pub fn status_and_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> (Option<u16>, Option<String>) {
    match err {
        SdkError::ServiceError(s) => (Some(s.raw().status().as_u16()), s.err().code().map(str::to_string)),
        SdkError::ResponseError(r) => (Some(r.raw().status().as_u16()), None),
        _ => (None, None),
    }
}

/// Whether the server answered 404 for the object (not for the bucket: that is
/// [`for_call`]'s "no bucket").
pub fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    matches!(status_and_code(err), (Some(404), code) if code.as_deref() != Some("NoSuchBucket"))
}

/// Where calls go, to say what is wrong with the store itself.
#[derive(Debug, Clone)]
pub struct Place {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// The bucket's name.
    pub bucket: String,
    /// The endpoint requests go to.
    pub endpoint: String,
}

/// The store error for a failed call. No request checks the bucket up front (it would be one
/// more round trip for every command), so whatever says the store itself cannot be used, on
/// whichever call meets it first, is said of the store: no answer, no bucket, credentials
/// refused, another region. Anything else is said of `op` on `key`.
pub fn for_call<E>(at: &Place, op: Op, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static + ProvideErrorMetadata,
{
    if is_unreachable(&err) {
        return StoreError::Unreachable { store: at.url.clone(), why: format!("at {}: {}", at.endpoint, describe(&err)) };
    }
    let bucket = &at.bucket;
    let (status, code) = status_and_code(&err);
    let why = match (status, code.as_deref()) {
        (Some(404), Some("NoSuchBucket")) => format!("does not exist: no bucket `{bucket}` at {}", at.endpoint),
        (Some(401 | 403), _) => {
            format!("refused access to bucket `{bucket}` (check the credentials and the bucket's policy): {op} `{key}`: {}", describe(&err))
        }
        (Some(301), _) | (_, Some("PermanentRedirect" | "AuthorizationHeaderMalformed")) => {
            format!("is in another region than the one configured (--region): {}", describe(&err))
        }
        _ => return backend(&at.url, op, key, err),
    };
    StoreError::Unusable { store: at.url.clone(), why }
}

/// The store error for `op` on `key` from an SDK error.
pub fn backend<E>(store: &str, op: Op, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static + ProvideErrorMetadata,
{
    S3Error::sdk(err).into_store(store, op, key)
}

/// One line describing an SDK error with its causes.
pub fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: std::error::Error + Send + Sync + 'static + ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("error");
            match se.err().message() {
                Some(msg) if !msg.is_empty() => format!("HTTP {status} {code}: {msg}"),
                _ => format!("HTTP {status} {code}"),
            }
        }
        other => deskew_core::error_chain(other),
    }
}

/// Whether the request never got an answer (connection refused, DNS, TLS, timeout).
pub fn is_unreachable<E>(err: &SdkError<E, HttpResponse>) -> bool {
    matches!(err, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_))
}
