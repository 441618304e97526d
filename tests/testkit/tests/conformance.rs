//! The store conformance suite, once per backend.

mod fs {
    use deskew_core::store::fs::FsStore;
    use deskew_testkit::conformance::TestStore;

    async fn make() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(&dir.path().join("store"), true).unwrap();
        TestStore { store: Box::new(store), guard: Box::new(dir) }
    }

    deskew_testkit::conformance_suite!(make, 200);
}

mod memory {
    use deskew_core::store::memory::MemStore;
    use deskew_testkit::conformance::TestStore;

    async fn make() -> TestStore {
        TestStore { store: Box::new(MemStore::new("conformance")), guard: Box::new(()) }
    }

    deskew_testkit::conformance_suite!(make, 200);
}

mod s3 {
    use deskew_s3::{S3Options, S3Store};
    use deskew_testkit::conformance::TestStore;

    async fn make() -> TestStore {
        let (endpoint, bucket, key, secret) = deskew_testkit::s3_server();
        let opts = S3Options { endpoint_url: Some(endpoint), static_credentials: Some((key, secret)), ..S3Options::default() };
        let store = S3Store::connect(&bucket, &deskew_testkit::unique_prefix("conformance"), &opts).await.unwrap();
        TestStore { store: Box::new(store), guard: Box::new(()) }
    }

    deskew_testkit::conformance_suite!(make, 40, require = S3);
}
