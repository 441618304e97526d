//! Integration tests of the `deskew` binary: real files in temp dirs, the real executable,
//! exit codes, stdout JSON validated against the committed schemas, and snapshots of what
//! humans read on stderr.

mod browser;
mod config;
mod demo;
mod detach;
mod errors;
mod examples;
mod gc;
mod lab;
mod manifest;
mod misuse;
mod pipeline;
mod probe;
mod publish;
mod s3;
mod safety;
mod schemas;
mod shards;
mod soak;
mod support;
mod verify;
