//! The [`Store`] implementation on aws-sdk-s3.

use std::path::Path;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::Bytes;
use deskew_core::Key;
use deskew_core::store::split::{self, Part};
use deskew_core::store::{Body, Capabilities, Chunks, Listing, ListingProblem, ObjectMeta, Op, PutMode, PutOptions, Store, StoreError, WriteGuard};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::config::{self, S3Options};
use crate::errors::{self, S3Error};

/// An S3 bucket (and key prefix) as a deskew store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    /// `""` or `"app/"`.
    prefix: String,
    /// The url, bucket and endpoint (for errors that are the store's).
    place: errors::Place,
    /// Whether create-only writes really work: probed on first need, if probing is allowed.
    create_only: std::sync::Arc<tokio::sync::OnceCell<bool>>,
    probe: bool,
    multipart_threshold: u64,
    part_size: u64,
    list_page: u16,
}

/// How many parts of a hinted listing are fetched at once.
const LIST_PARTS_AT_ONCE: usize = 4;

impl S3Store {
    /// Connects to `s3://bucket/prefix`: builds the client and loads the credentials. Nothing is
    /// sent yet: a missing bucket, refused credentials or an endpoint that does not answer are
    /// said of the store by whichever call meets them first ([`errors::for_call`]). Whether
    /// create-only writes really work is found out when first needed, and only when
    /// `opts.probe_conditional_writes` (a probe writes); without it they count as unsupported.
    pub async fn connect(bucket: &str, prefix: &str, opts: &S3Options) -> Result<S3Store, StoreError> {
        let url = if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") };
        let built = config::build(&url, opts).await?;
        config::check_credentials(&url, &built).await?;
        let store = S3Store {
            client: built.client,
            prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") },
            place: errors::Place { url, bucket: bucket.into(), endpoint: built.endpoint },
            create_only: Default::default(),
            probe: opts.probe_conditional_writes,
            multipart_threshold: opts.multipart_threshold.max(5 * 1024 * 1024),
            part_size: opts.part_size.max(5 * 1024 * 1024),
            list_page: opts.list_page.clamp(1, 1000),
        };
        Ok(store)
    }

    /// Whether the server honours `If-None-Match: *` (probed once, on first need).
    async fn create_only(&self) -> Result<bool, StoreError> {
        if !self.probe {
            return Ok(false);
        }
        self.create_only.get_or_try_init(|| self.probe_create_only()).await.copied()
    }

    /// The store error for a failed call of `op` on `key`.
    fn error<E>(&self, op: Op, key: &str, e: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StoreError
    where
        E: std::error::Error + Send + Sync + 'static + aws_sdk_s3::error::ProvideErrorMetadata,
    {
        errors::for_call(&self.place, op, key, e)
    }

    fn full(&self, key: &Key) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// The objects under `prefix` in `part`, page after page until the part's end; `None` when
    /// the server lists a key at or before the part's start (it ignored `start-after`).
    async fn list_part(&self, prefix: Option<&Key>, part: &Part) -> Result<Option<Listing>, StoreError> {
        let full_prefix = match prefix {
            Some(p) => format!("{}{}/", self.prefix, p),
            None => self.prefix.clone(),
        };
        let mut request = self.client.list_objects_v2().bucket(&self.place.bucket).prefix(&full_prefix).max_keys(i32::from(self.list_page));
        if let Some(after) = &part.after {
            request = request.start_after(self.full(after));
        }
        let mut out = Listing::default();
        let mut pages = request.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(Op::List, &full_prefix, e))?;
            let named = page.contents().iter().filter_map(|o| o.key().map(|k| (k.strip_prefix(&self.prefix).unwrap_or(k), o)));
            match split::sift(part, named, |item| item.0, |(rel, o)| listed(&mut out, rel, o)) {
                split::Sifted::More => {}
                split::Sifted::Past => break,
                split::Sifted::Unstarted => {
                    tracing::debug!(store = %self.place.url, after = ?part.after, "a key listed before where the part starts: listing the plain way");
                    return Ok(None);
                }
            }
        }
        Ok(Some(out))
    }

    /// A GET of `key`, its body not yet read.
    async fn get_object(&self, key: &Key) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StoreError> {
        match self.client.get_object().bucket(&self.place.bucket).key(self.full(key)).send().await {
            Ok(o) => Ok(o),
            Err(e) if errors::is_not_found(&e) => Err(StoreError::NotFound { store: self.place.url.clone(), key: key.to_string() }),
            Err(e) => Err(self.error(Op::Get, key.as_str(), e)),
        }
    }

    /// Whether the server refuses a create-only write (`If-None-Match: *`) of an object that
    /// exists. The probe object has one temporary name per store ([`layout::CAS_PROBE`]) and is
    /// left in place, so the usual probe is one write, refused. Where it is missing it is
    /// written, then written again, which must be refused. Where both writes land, the header was
    /// ignored or the object vanished in between (a gc, a hand): a write and a rewrite of a name
    /// of this process's own decide. Every `false` leaves no probe object behind. Being temporary,
    /// the object does not make an empty place look like a non-empty one, and gc leaves it alone.
    ///
    /// [`layout::CAS_PROBE`]: deskew_core::layout::CAS_PROBE
    async fn probe_create_only(&self) -> Result<bool, StoreError> {
        let shared = Key::new(deskew_core::layout::CAS_PROBE).expect("valid probe key");
        let verdict = match self.create_twice(&shared).await? {
            Some(known) => known,
            None => {
                let nonce = format!("{}-{}", std::process::id(), SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
                let own = Key::new(format!(".deskew/{}cas-{nonce}", deskew_core::layout::TMP_PREFIX)).expect("valid probe key");
                let verdict = self.create_twice(&own).await;
                let _ = self.client.delete_object().bucket(&self.place.bucket).key(self.full(&own)).send().await;
                verdict?.unwrap_or(false)
            }
        };
        if !verdict {
            let _ = self.client.delete_object().bucket(&self.place.bucket).key(self.full(&shared)).send().await;
        }
        Ok(verdict)
    }

    /// Writes `key` create-only until the server answers: `Some(true)` once a write is refused
    /// as a failed condition, `Some(false)` if the header is rejected, `None` if two writes
    /// both landed.
    async fn create_twice(&self, key: &Key) -> Result<Option<bool>, StoreError> {
        let full = self.full(key);
        for _ in 0..2 {
            let put = self.client.put_object().bucket(&self.place.bucket).key(&full).if_none_match("*").body(ByteStream::from_static(b"probe")).send().await;
            match put {
                Ok(_) => continue,
                Err(e) => {
                    let (status, code) = errors::status_and_code(&e);
                    return match probe_answer(status, code.as_deref()) {
                        Some(honoured) => Ok(Some(honoured)),
                        None => Err(self.error(Op::Put, key.as_str(), e)),
                    };
                }
            }
        }
        Ok(None)
    }

    /// The whole file if it is no larger than the multipart threshold (decided by what is read,
    /// not by a size read earlier: a file that shrank or grew is judged by its bytes).
    async fn read_small(&self, key: &Key, path: &Path) -> Result<Option<Bytes>, StoreError> {
        let io = |e: std::io::Error| StoreError::backend(Op::Put, &self.place.url, key.as_str(), e);
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut buf = Vec::new();
        file.take(self.multipart_threshold + 1).read_to_end(&mut buf).await.map_err(io)?;
        Ok((buf.len() as u64 <= self.multipart_threshold).then(|| Bytes::from(buf)))
    }

    async fn put_multipart(&self, key: &Key, path: &Path, opts: &PutOptions) -> Result<(), StoreError> {
        let full = self.full(key);
        let io = |e: std::io::Error| StoreError::backend(Op::Put, &self.place.url, key.as_str(), e);
        let mut create = self.client.create_multipart_upload().bucket(&self.place.bucket).key(&full);
        if let Some(ct) = &opts.content_type {
            create = create.content_type(ct);
        }
        if let Some(cc) = &opts.cache_control {
            create = create.cache_control(cc);
        }
        if let Some(sha) = &opts.sha256 {
            create = create.metadata("sha256", sha);
        }
        let upload = create.send().await.map_err(|e| self.error(Op::Put, key.as_str(), e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let result: Result<(), StoreError> = async {
            let mut file = tokio::fs::File::open(path).await.map_err(io)?;
            let mut hasher = Sha256::new();
            let mut parts = Vec::new();
            let mut number = 1;
            loop {
                let mut buf = Vec::with_capacity(self.part_size as usize);
                let n = (&mut file).take(self.part_size).read_to_end(&mut buf).await.map_err(io)?;
                if n == 0 && number > 1 {
                    break;
                }
                hasher.update(&buf);
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.place.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(buf))
                    .send()
                    .await
                    .map_err(|e| self.error(Op::Put, key.as_str(), e))?;
                parts.push(CompletedPart::builder().part_number(number).set_e_tag(part.e_tag().map(str::to_string)).build());
                number += 1;
                if (n as u64) < self.part_size {
                    break;
                }
            }
            let actual = hex::encode(hasher.finalize());
            if let Some(expected) = &opts.sha256 {
                if *expected != actual {
                    return Err(StoreError::Checksum { store: self.place.url.clone(), key: key.to_string(), expected: expected.clone(), actual });
                }
            }
            let mut complete = self
                .client
                .complete_multipart_upload()
                .bucket(&self.place.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
            if opts.mode == PutMode::Create && self.create_only().await? {
                complete = complete.if_none_match("*");
            }
            WriteGuard::check(opts.guard.as_ref(), &self.place.url, key.as_str())?;
            complete.send().await.map_err(|e| self.put_error(key, opts, e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self.client.abort_multipart_upload().bucket(&self.place.bucket).key(&full).upload_id(&upload_id).send().await;
        }
        result
    }

    fn put_error<E>(&self, key: &Key, opts: &PutOptions, e: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StoreError
    where
        E: std::error::Error + Send + Sync + 'static + aws_sdk_s3::error::ProvideErrorMetadata,
    {
        if opts.mode == PutMode::Create && matches!(errors::status_and_code(&e).0, Some(412 | 409)) {
            return StoreError::AlreadyExists { store: self.place.url.clone(), key: key.to_string() };
        }
        self.error(Op::Put, key.as_str(), e)
    }
}

/// A request under a lease guard must land within the lease margin or not at all: its whole
/// operation, retries included, is bounded well below [`deskew_core::lease::OP_MARGIN`].
fn guarded() -> aws_sdk_s3::config::Builder {
    let limit = deskew_core::lease::OP_MARGIN / 2;
    aws_sdk_s3::config::Builder::default()
        .timeout_config(aws_config::timeout::TimeoutConfig::builder().operation_timeout(limit).operation_attempt_timeout(limit).build())
}

/// Signs a request with a body whose sha256 (lower-case hex) is already known: SigV4's payload
/// hash is that sha256, so the SDK need not hash the body again, and a server that checks
/// `x-amz-content-sha256` (AWS S3 does) checks the bytes it received against deskew's digest.
#[derive(Debug)]
struct SignedPayload(String);

impl aws_sdk_s3::config::Intercept for SignedPayload {
    fn name(&self) -> &'static str {
        "deskew::SignedPayload"
    }

    fn modify_before_signing(
        &self,
        _: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        cfg.interceptor_state().store_put(aws_runtime::auth::PayloadSigningOverride::Precomputed(self.0.clone()));
        Ok(())
    }
}

#[async_trait]
impl Store for S3Store {
    fn url(&self) -> &str {
        &self.place.url
    }

    async fn capabilities(&self) -> Result<Capabilities, StoreError> {
        Ok(Capabilities { create_only: self.create_only().await? })
    }

    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
        let bytes = match body {
            Body::Bytes(b) => b,
            Body::File(path) => match self.read_small(key, &path).await? {
                Some(b) => b,
                // Larger than the multipart threshold: streamed in parts, hashed on the way.
                None => return self.put_multipart(key, &path, opts).await,
            },
        };
        if let Some(expected) = &opts.sha256 {
            let actual = deskew_core::digest::sha256_hex(&bytes);
            if *expected != actual {
                return Err(StoreError::Checksum { store: self.place.url.clone(), key: key.to_string(), expected: expected.clone(), actual });
            }
        }
        let create_only = opts.mode == PutMode::Create && self.create_only().await?;
        if opts.mode == PutMode::Create && !create_only {
            // Best effort on servers without conditional writes: not atomic, documented.
            match self.client.head_object().bucket(&self.place.bucket).key(self.full(key)).send().await {
                Ok(_) => return Err(StoreError::AlreadyExists { store: self.place.url.clone(), key: key.to_string() }),
                Err(e) if errors::is_not_found(&e) => {}
                Err(e) => return Err(self.error(Op::Put, key.as_str(), e)),
            }
        }
        // The body's sha256 is known here when the caller gave one (it was just checked), so the
        // request is signed with it instead of the SDK hashing the body a second time.
        let signed_with = opts.sha256.clone();
        let mut req = self.client.put_object().bucket(&self.place.bucket).key(self.full(key)).body(ByteStream::from(bytes));
        if let Some(ct) = &opts.content_type {
            req = req.content_type(ct);
        }
        if let Some(cc) = &opts.cache_control {
            req = req.cache_control(cc);
        }
        if let Some(sha) = &opts.sha256 {
            req = req.metadata("sha256", sha);
        }
        if create_only {
            req = req.if_none_match("*");
        }
        WriteGuard::check(opts.guard.as_ref(), &self.place.url, key.as_str())?;
        let mut req = req.customize();
        if let Some(sha) = signed_with {
            req = req.interceptor(SignedPayload(sha));
        }
        if opts.guard.is_some() {
            req = req.config_override(guarded());
        }
        req.send().await.map_err(|e| self.put_error(key, opts, e))?;
        Ok(())
    }

    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        let out = self.get_object(key).await?;
        // Into one buffer as the body arrives, each chunk freed once copied: collecting first
        // and then joining held a large record (12 MB at 50,000 files) twice.
        let expected = out.content_length().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
        let mut data = Vec::with_capacity(expected.min(64 << 20));
        let mut body = out.body;
        while let Some(chunk) = body.next().await {
            data.extend_from_slice(&chunk.map_err(|e| S3Error::other(e).into_store(&self.place.url, Op::Get, key.as_str()))?);
        }
        data.shrink_to_fit(); // a no-op unless the server's length was wrong
        Ok(Bytes::from(data))
    }

    async fn get_chunks(&self, key: &Key) -> Result<Chunks, StoreError> {
        let body = self.get_object(key).await?.body;
        let (url, key) = (self.place.url.clone(), key.to_string());
        let chunks = futures::stream::unfold(body, |mut body| async move { body.next().await.map(|chunk| (chunk, body)) });
        Ok(Box::pin(chunks.map(move |chunk| chunk.map_err(|e| S3Error::other(e).into_store(&url, Op::Get, &key)))))
    }

    fn max_delete_batch(&self) -> usize {
        1000
    }

    /// Empty, or holding only deskew's temporary objects (the conditional-write probe's, left in
    /// place, or one of a process killed before it cleaned up).
    async fn is_empty(&self) -> Result<bool, StoreError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.place.bucket)
            .prefix(&self.prefix)
            .max_keys(100)
            .send()
            .await
            .map_err(|e| self.error(Op::List, &self.prefix, e))?;
        let temporary = |name: &str| {
            let rel = name.strip_prefix(&self.prefix).unwrap_or(name);
            Key::new(rel).is_ok_and(|k| deskew_core::layout::is_temp(&k) && k.is_under(&deskew_core::layout::deskew_dir()))
        };
        Ok(out.is_truncated() != Some(true) && out.contents().iter().all(|o| o.key().is_some_and(temporary)))
    }

    async fn list(&self, prefix: Option<&Key>) -> Result<Listing, StoreError> {
        // A part from the first key never meets a key before its start: always `Some`.
        Ok(self.list_part(prefix, &Part { after: None, upto: None }).await?.unwrap_or_default())
    }

    /// The parts fetched 4 at a time: 50 pages one after another are the longest step of a
    /// publish that changes nothing at 50,000 files (with the store 20 ms away: 3.1 → 2.3 s).
    /// More at once gained nothing there and cost 15% with the server on the same two cores.
    async fn list_hinted(&self, prefix: Option<&Key>, hints: &[Key]) -> Result<Listing, StoreError> {
        let stride = usize::from(self.list_page) * 3 / 4;
        let parts = split::list_in_parts(prefix, hints, stride, LIST_PARTS_AT_ONCE, |p| async move { self.list_part(prefix, &p).await }).await?;
        match parts {
            Some(listing) => Ok(listing),
            None => self.list(prefix).await,
        }
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.place.bucket)
            .key(self.full(key))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| if errors::is_not_found(&e) { Ok(()) } else { Err(self.error(Op::Delete, key.as_str(), e)) })
    }

    async fn delete_many(&self, keys: &[Key], guard: Option<&WriteGuard>) -> Vec<Result<(), StoreError>> {
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            if WriteGuard::check(guard, &self.place.url, chunk[0].as_str()).is_err() {
                results.extend(chunk.iter().map(|k| Err(StoreError::GuardFailed { store: self.place.url.clone(), key: k.to_string() })));
                continue;
            }
            let ids: Vec<ObjectIdentifier> = chunk.iter().map(|k| ObjectIdentifier::builder().key(self.full(k)).build().expect("key is set")).collect();
            let delete = Delete::builder().set_objects(Some(ids)).quiet(true).build().expect("objects are set");
            let request = self.client.delete_objects().bucket(&self.place.bucket).delete(delete);
            let sent = if guard.is_some() { request.customize().config_override(guarded()).send().await } else { request.send().await };
            match sent {
                Ok(out) => {
                    // Quiet mode reports only the keys that failed; check each one.
                    let failed: std::collections::HashMap<String, String> = out
                        .errors()
                        .iter()
                        .filter_map(|e| e.key().map(|k| (k.to_string(), format!("{} {}", e.code().unwrap_or("error"), e.message().unwrap_or("")))))
                        .collect();
                    for k in chunk {
                        results.push(match failed.get(&self.full(k)) {
                            None => Ok(()),
                            Some(why) => Err(S3Error::reported(why.trim()).into_store(&self.place.url, Op::Delete, k.as_str())),
                        });
                    }
                }
                Err(e) => {
                    let why = errors::describe(&e);
                    for k in chunk {
                        results.push(Err(S3Error::reported(why.clone()).into_store(&self.place.url, Op::Delete, k.as_str())));
                    }
                }
            }
        }
        results
    }
}

/// What a failed create-only write of the probe says: `Some(true)` the server refused it as a
/// failed condition, `Some(false)` it rejects the header; `None` an error to report. The probe
/// may be a command's first call (nothing checks the bucket up front), so a 400 that says the
/// request was signed for another region is the store's problem, not a rejected header.
fn probe_answer(status: Option<u16>, code: Option<&str>) -> Option<bool> {
    match (status, code) {
        (Some(412 | 409), _) => Some(true),
        (Some(400), Some("AuthorizationHeaderMalformed")) => None,
        (Some(400 | 501), _) => Some(false),
        _ => None,
    }
}

/// The MD5 an ETag states: 32 hex digits, quoted or not (a multipart upload's has a `-N`).
fn etag_md5(etag: &str) -> Option<[u8; 16]> {
    let hex = etag.trim_matches('"');
    let mut out = [0u8; 16];
    (hex.len() == 32 && hex::decode_to_slice(hex, &mut out).is_ok()).then_some(out)
}

/// Adds a listed object to `out`: an object, a problem, or nothing for a console's folder marker.
fn listed(out: &mut Listing, rel: &str, obj: &aws_sdk_s3::types::Object) {
    // Zero-byte "folder" markers made by consoles are not objects of ours.
    if rel.ends_with('/') && obj.size().unwrap_or(0) == 0 {
        return;
    }
    let key = match Key::new(rel) {
        Ok(k) => k,
        Err(e) => {
            out.problems.push(ListingProblem { name: rel.into(), why: format!("is not a valid path: {e}") });
            return;
        }
    };
    let modified = obj.last_modified().and_then(|t| SystemTime::try_from(*t).ok()).unwrap_or(SystemTime::UNIX_EPOCH);
    let md5 = obj.e_tag().and_then(etag_md5);
    out.objects.push(ObjectMeta { key, size: obj.size().unwrap_or(0).max(0) as u64, modified, md5 });
}

#[cfg(test)]
mod tests {
    use super::{etag_md5, probe_answer};

    /// The probe can be a command's first request: a wrong region, refused credentials or a
    /// missing bucket must be reported, never read as "this server ignores create-only writes"
    /// (which would make gc refuse the store for a reason that is not true).
    #[test]
    fn only_a_refused_header_makes_the_probe_say_no() {
        assert_eq!(probe_answer(Some(412), Some("PreconditionFailed")), Some(true));
        assert_eq!(probe_answer(Some(409), Some("ConditionalRequestConflict")), Some(true));
        assert_eq!(probe_answer(Some(501), Some("NotImplemented")), Some(false));
        assert_eq!(probe_answer(Some(400), Some("InvalidArgument")), Some(false));
        for (status, code) in
            [(400, "AuthorizationHeaderMalformed"), (403, "SignatureDoesNotMatch"), (404, "NoSuchBucket"), (301, "PermanentRedirect"), (500, "InternalError")]
        {
            assert_eq!(probe_answer(Some(status), Some(code)), None, "{status} {code}");
        }
        assert_eq!(probe_answer(None, None), None, "no answer");
    }

    #[test]
    fn only_an_etag_of_32_hex_digits_states_an_md5() {
        let md5 = [0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8, 0x42, 0x7e];
        assert_eq!(etag_md5("\"d41d8cd98f00b204e9800998ecf8427e\""), Some(md5));
        assert_eq!(etag_md5("d41d8cd98f00b204e9800998ecf8427e"), Some(md5));
        for not in ["\"d41d8cd98f00b204e9800998ecf8427e-2\"", "\"d41d8cd98f00b204e9800998ecf8427\"", "\"z41d8cd98f00b204e9800998ecf8427e\"", "W/\"0\"", ""] {
            assert_eq!(etag_md5(not), None, "{not}");
        }
    }
}
