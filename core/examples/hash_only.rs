//! The benchmarks' bound for a manifest: a program that only reads and hashes every file of a
//! directory (unsorted, no checks, no classes, no output but a count), on every core while the
//! walk goes on, through deskew's own hashing function and its 256 KiB buffer per thread. What
//! it takes is what reading and hashing the bytes costs here (the kernel's copy out of the page
//! cache included); `deskew manifest` is measured against it, beside `openssl speed`'s
//! hashing-only limit.
//!
//!     cargo run --release -p deskew-core --example hash_only -- DIR

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use deskew_core::digest::hash_reader_with;

/// Files found so far, the next to hash, and whether the walk is over.
#[derive(Default)]
struct Queue {
    files: Mutex<(Vec<PathBuf>, usize)>,
    walked: AtomicBool,
}

impl Queue {
    fn next(&self) -> Option<PathBuf> {
        loop {
            let walked = self.walked.load(Ordering::Acquire);
            let mut q = self.files.lock().expect("queue");
            if q.1 < q.0.len() {
                q.1 += 1;
                return Some(q.0[q.1 - 1].clone());
            }
            drop(q);
            if walked {
                return None;
            }
            std::thread::yield_now();
        }
    }
}

fn walk(dir: &Path, queue: &Queue) {
    for entry in std::fs::read_dir(dir).expect("read the directory") {
        let entry = entry.expect("read an entry");
        // The entry's type as the directory states it: no stat per file.
        if entry.file_type().expect("an entry's type").is_dir() {
            walk(&entry.path(), queue);
        } else {
            queue.files.lock().expect("queue").0.push(entry.path());
        }
    }
}

fn hash_files(queue: &Queue) -> usize {
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0;
    while let Some(path) = queue.next() {
        let file = std::fs::File::open(&path).expect("open a file");
        std::hint::black_box(hash_reader_with(file, &mut buf).expect("read a file"));
        n += 1;
    }
    n
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: hash_only DIR");
        std::process::exit(2);
    };
    let queue = Queue::default();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hashed: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads).map(|_| s.spawn(|| hash_files(&queue))).collect();
        walk(Path::new(&dir), &queue);
        queue.walked.store(true, Ordering::Release);
        workers.into_iter().map(|w| w.join().expect("a hashing thread")).sum()
    });
    println!("{hashed} files hashed");
}
