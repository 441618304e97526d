//! The benchmarks' bound for a first upload: a client that only PUTs the files of a directory
//! (no manifest, no hashing, no records, no checks), 32 in flight, over deskew's own S3 stack.
//! What it takes is what the server needs for the bytes; deskew's publish is measured against it.
//!
//!     cargo run --release --example put_only -- DIR BUCKET PREFIX ENDPOINT
//!
//! Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.

use std::path::{Path, PathBuf};

use deskew_core::Key;
use deskew_core::store::{Body, PutOptions, Store};
use deskew_s3::{S3Options, S3Store};
use futures::StreamExt;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the directory") {
        let path = entry.expect("read an entry").path();
        if path.is_dir() { files(&path, out) } else { out.push(path) }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, bucket, prefix, endpoint] = args.as_slice() else {
        eprintln!("usage: put_only DIR BUCKET PREFIX ENDPOINT");
        std::process::exit(2);
    };
    let opts = S3Options { endpoint_url: Some(endpoint.clone()), ..S3Options::default() };
    let store = S3Store::connect(bucket, prefix, &opts).await.expect("connect");
    let root = Path::new(dir);
    let mut all = Vec::new();
    files(root, &mut all);
    let puts = futures::stream::iter(all.iter().map(|path| {
        let store = &store;
        async move {
            let key = Key::new(path.strip_prefix(root).expect("under DIR").to_string_lossy().into_owned()).expect("a key");
            let bytes = tokio::fs::read(path).await.expect("read a file");
            store.put(&key, Body::Bytes(bytes.into()), &PutOptions::default()).await.expect("put");
        }
    }))
    .buffer_unordered(32);
    puts.collect::<Vec<()>>().await;
    println!("{}", all.len());
}
