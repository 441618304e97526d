//! sha256 helpers shared by the manifest, the stores and the engines: one streaming
//! implementation, so every place that hashes a body hashes it the same way. Also MD5, only to
//! compare with the MD5s S3 listings state in ETags (a match spares reading an object back).

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The MD5 of `bytes`: only to compare with the ETags S3 listings state (uploads are checked by
/// sha256).
pub fn md5(bytes: &[u8]) -> [u8; 16] {
    md5::Md5::digest(bytes).into()
}

/// The sha256 (hex) and the MD5 of everything `r` yields, in one pass.
pub fn sha256_md5(r: impl Read) -> io::Result<(String, [u8; 16])> {
    let mut md5 = md5::Md5::new();
    let sha256 = copy_hashing(r, &mut md5)?;
    Ok((sha256, md5.finalize().into()))
}

/// A sha256 computed piece by piece.
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Hasher {
        Hasher(Sha256::new())
    }
    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The lower-case hex digest.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Copies everything `r` yields into `w`, returning its sha256; with `io::sink()` it only hashes.
pub fn copy_hashing(mut r: impl Read, mut w: impl Write) -> io::Result<String> {
    Ok(copy_hashing_sized(&mut r, &mut w)?.0)
}

/// Like [`copy_hashing`], also returning the number of bytes.
pub fn copy_hashing_sized(r: impl Read, w: impl Write) -> io::Result<(String, u64)> {
    copy_hashing_with(r, w, &mut vec![0u8; 64 * 1024])
}

/// sha256 and size of everything `r` yields.
pub fn hash_reader(r: impl Read) -> io::Result<(String, u64)> {
    copy_hashing_sized(r, io::sink())
}

/// Like [`hash_reader`], reading through `buf` (a caller hashing many files reuses one).
pub fn hash_reader_with(r: impl Read, buf: &mut [u8]) -> io::Result<(String, u64)> {
    copy_hashing_with(r, io::sink(), buf)
}

/// The one copy loop: `r` into `w` through `buf`, hashing on the way.
fn copy_hashing_with(mut r: impl Read, mut w: impl Write, buf: &mut [u8]) -> io::Result<(String, u64)> {
    let mut h = Hasher::new();
    let mut size = 0u64;
    loop {
        let n = match r.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        w.write_all(&buf[..n])?;
        size += n as u64;
    }
    Ok((h.finish(), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let (sha, n) = copy_hashing_sized(&data[..], &mut out).unwrap();
        assert_eq!(sha, sha256_hex(&data));
        assert_eq!(n, data.len() as u64);
        assert_eq!(out, data);
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
