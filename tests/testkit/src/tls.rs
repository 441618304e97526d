//! A throwaway certificate authority and a server certificate for 127.0.0.1, made with the
//! `openssl` command, for tests of HTTPS endpoints with a custom CA bundle.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Files of a test CA and a server certificate it signed.
pub struct TestCa {
    /// The CA certificate (PEM): what a client must trust.
    pub ca_pem: PathBuf,
    /// The server certificate (PEM).
    pub cert_pem: Vec<u8>,
    /// The server key (PEM, PKCS#8).
    pub key_pem: Vec<u8>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl command is needed for TLS tests");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Makes a CA and a certificate for `127.0.0.1` in `dir`.
pub fn make_test_ca(dir: &Path) -> TestCa {
    std::fs::create_dir_all(dir).unwrap();
    openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=deskew test CA"]);
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(
        dir,
        &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext"],
    );
    TestCa { ca_pem: dir.join("ca.pem"), cert_pem: std::fs::read(dir.join("server.pem")).unwrap(), key_pem: std::fs::read(dir.join("server.key")).unwrap() }
}
