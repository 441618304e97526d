//! Turning SDK errors into [`StoreError`]s that say what failed, where, and why, without ever
//! printing credentials (the SDK's error text carries none).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use deskew_core::store::{Op, StoreError};

/// The cause of a failed S3 call, as text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct S3Cause(pub String);

/// HTTP status and S3 error code of a failed call, if the server answered.
pub fn status_and_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> (Option<u16>, Option<String>) {
    match err {
        SdkError::ServiceError(s) => (Some(s.raw().status().as_u16()), s.err().code().map(str::to_string)),
        SdkError::ResponseError(r) => (Some(r.raw().status().as_u16()), None),
        _ => (None, None),
    }
}

/// A generic backend error for `op` on `key`.
pub fn backend<E>(store: &str, op: Op, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static + ProvideErrorMetadata,
{
    StoreError::Backend { op, store: store.into(), key: key.into(), source: Box::new(S3Cause(describe(&err))) }
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
