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

/// Whether the server answered 404.
pub fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status_and_code(err).0 == Some(404)
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
