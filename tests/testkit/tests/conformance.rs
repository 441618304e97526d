//! The store conformance suite, once per backend.

mod fs {
    use deskew_core::store::fs::FsStore;
    use deskew_testkit::conformance::TestStore;

    async fn make() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(&dir.path().join("store"), true).unwrap();
        TestStore { store: Box::new(store), guard: Box::new(dir) }
    }

    deskew_testkit::conformance_suite!(make, 100);
}
