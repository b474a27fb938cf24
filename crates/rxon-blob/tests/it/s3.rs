//! BlobStore against a real S3-compatible server (moto on 127.0.0.1), and the same
//! round trips against the local-directory and in-memory stores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon_blob::{BlobConfig, BlobStore};
use rxon_core::{ErrorKind, FileMetadata, TaskPayload};
use rxon_testing::s3::MotoServer;
use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};

const MIB: usize = 1024 * 1024;
const BUCKET: &str = "rxon-test";

struct S3 {
    server: MotoServer,
    store: BlobStore,
    dir: tempfile::TempDir,
}

fn s3_config(server: &MotoServer, bucket: &str) -> BlobConfig {
    let mut config = BlobConfig::new(format!("s3://{bucket}"));
    config.endpoint = Some(server.endpoint());
    config.access_key_id = Some("testing".into());
    config.secret_access_key = Some("testing".into());
    config.part_size = 5 * MIB as u64;
    config.multipart_threshold = 5 * MIB as u64;
    config.request_timeout = Duration::from_secs(30);
    config
}

fn s3() -> S3 {
    let server = MotoServer::start().expect("moto server");
    server.create_bucket(BUCKET).expect("bucket");
    let store = BlobStore::from_config(&s3_config(&server, BUCKET)).unwrap();
    S3 {
        server,
        store,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// Deterministic, non-repeating-looking bytes.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn file_round_trip(store: &BlobStore, dir: &Path, len: usize) -> FileMetadata {
    let src = dir.join(format!("in-{len}.bin"));
    let bytes = data(len, 7);
    std::fs::write(&src, &bytes).unwrap();
    let meta = store.upload_file(&src, "inputs/").await.unwrap();
    assert_eq!(
        meta.uri,
        format!("s3://{}/inputs/in-{len}.bin", store.bucket())
    );
    assert_eq!(meta.size, len as u64);
    assert_eq!(store.head(&meta.uri).await.unwrap(), meta);

    let out = dir.join("out").join(format!("copy-{len}.bin"));
    assert_eq!(
        store.download_verified(&meta, &out).await.unwrap(),
        len as u64
    );
    assert!(std::fs::read(&out).unwrap() == bytes, "content differs");
    meta
}

async fn dir_round_trip(store: &BlobStore, dir: &Path) {
    let src = dir.join("tree");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("top.txt"), b"top").unwrap();
    std::fs::write(src.join("a/mid.bin"), data(3000, 1)).unwrap();
    std::fs::write(src.join("a/b/leaf.bin"), data(10, 2)).unwrap();
    std::fs::write(src.join("a/b/empty"), b"").unwrap();

    let meta = store.upload(&src, "trees/t1").await.unwrap();
    assert_eq!(meta.uri, format!("s3://{}/trees/t1/", store.bucket()));
    assert_eq!(meta.size, 3 + 3000 + 10);
    assert_eq!(meta.etag, None);
    let listed = store
        .list_dir(&store.resolve("trees/t1/").unwrap())
        .await
        .unwrap();
    let names: Vec<_> = listed.iter().map(|e| e.relative.as_str()).collect();
    assert_eq!(names, ["a/b/empty", "a/b/leaf.bin", "a/mid.bin", "top.txt"]);

    let dest = dir.join("restored");
    store.download_verified(&meta, &dest).await.unwrap();
    for rel in ["top.txt", "a/mid.bin", "a/b/leaf.bin", "a/b/empty"] {
        assert_eq!(
            std::fs::read(dest.join(rel)).unwrap(),
            std::fs::read(src.join(rel)).unwrap(),
            "{rel}"
        );
    }
    // Downloading again replaces the directory rather than merging into it.
    std::fs::write(dest.join("stale.txt"), b"old").unwrap();
    store.download(&meta.uri, &dest).await.unwrap();
    assert!(!dest.join("stale.txt").exists());
    assert_eq!(
        entries(dir)
            .iter()
            .filter(|n| n.contains("rxon-part"))
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_small_file_round_trip_keeps_size_and_etag() {
    let s = s3();
    let meta = file_round_trip(&s.store, s.dir.path(), 1000).await;
    let etag = meta.etag.expect("S3 gives an etag");
    assert!(!etag.contains('"'), "etag is stored bare: {etag}");
    assert!(
        !etag.contains('-'),
        "a small object is a single PUT: {etag}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_large_file_goes_up_in_parts() {
    let s = s3();
    let meta = file_round_trip(&s.store, s.dir.path(), 12 * MIB + 123).await;
    // S3's multipart etag is md5-of-part-md5s followed by the part count.
    let etag = meta.etag.expect("etag");
    assert!(etag.ends_with("-3"), "three 5 MiB parts: {etag}");
    assert!(
        s.server
            .pending_multipart_uploads(BUCKET)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_directory_round_trip() {
    let s = s3();
    dir_round_trip(&s.store, s.dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity_mismatch_is_an_error_and_leaves_no_file() {
    let s = s3();
    let src = s.dir.path().join("src.bin");
    std::fs::write(&src, data(4096, 3)).unwrap();
    let meta = s.store.upload_file(&src, "in/src.bin").await.unwrap();
    let out_dir = s.dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("dest.bin");

    let wrong_etag = FileMetadata {
        etag: Some("0123456789abcdef0123456789abcdef".into()),
        metadata: None,
        ..meta.clone()
    };
    let wrong_size = FileMetadata {
        size: meta.size + 1,
        ..meta.clone()
    };
    for bad in [wrong_etag, wrong_size] {
        let e = s.store.download_verified(&bad, &dest).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
        assert!(e.is_protocol());
        assert!(!dest.exists());
        assert!(entries(&out_dir).is_empty(), "{:?}", entries(&out_dir));
    }
    // A file already at the destination survives a failed download untouched.
    std::fs::write(&dest, b"keep me").unwrap();
    let bad = FileMetadata {
        size: 1,
        ..meta.clone()
    };
    assert!(s.store.download_verified(&bad, &dest).await.is_err());
    assert_eq!(std::fs::read(&dest).unwrap(), b"keep me");
    assert_eq!(entries(&out_dir), ["dest.bin"]);

    // The directory form checks the total.
    let tree = s.dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("x"), b"xyz").unwrap();
    let dir_meta = s.store.upload(&tree, "trees/x/").await.unwrap();
    let bad = FileMetadata {
        size: 4,
        ..dir_meta
    };
    let e = s
        .store
        .download_verified(&bad, &out_dir.join("tree"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity);
    assert_eq!(entries(&out_dir), ["dest.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_and_missing_object_are_not_found() {
    let s = s3();
    let e = s
        .store
        .download("s3://rxon-test/no/such/key", &s.dir.path().join("x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("s3://rxon-test/no/such/key"), "{e}");

    let other = BlobStore::from_config(&s3_config(&s.server, "no-such-bucket")).unwrap();
    let e = other.check_bucket().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("bucket does not exist"), "{e}");
    s.store.check_bucket().await.unwrap();
    assert!(entries(s.dir.path()).is_empty());

    // A reference to another bucket than the store's is refused before any request.
    let e = s
        .store
        .download("s3://other-bucket/k", &s.dir.path().join("x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

/// Yields `len` bytes, then reports that it got there and never yields again.
struct StallAfter {
    left: usize,
    reached: Option<tokio::sync::oneshot::Sender<()>>,
}

impl AsyncRead for StallAfter {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.left == 0 {
            if let Some(tx) = self.reached.take() {
                let _ = tx.send(());
            }
            return Poll::Pending;
        }
        let n = buf.remaining().min(self.left).min(64 * 1024);
        buf.put_slice(&vec![0x5a; n]);
        self.left -= n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_upload_aborts_its_multipart_upload() {
    let s = s3();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reader = StallAfter {
        left: 7 * MIB,
        reached: Some(tx),
    };
    let store = s.store.clone();
    let upload =
        tokio::spawn(async move { store.upload_reader(reader, "big/cancelled.bin").await });
    tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("the reader was drained up to its stall")
        .unwrap();
    assert_eq!(
        s.server.pending_multipart_uploads(BUCKET).unwrap(),
        ["big/cancelled.bin"],
        "the multipart upload is under way"
    );

    upload.abort();
    assert!(upload.await.unwrap_err().is_cancelled());
    // The abort runs on the runtime after the drop: wait for it, bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pending = s.server.pending_multipart_uploads(BUCKET).unwrap();
        if pending.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still pending: {pending:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = s.store.head("big/cancelled.bin").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_escape_are_refused_and_nothing_is_written_outside() {
    let s = s3();
    // An object whose key climbs out of its directory, stored behind the client's back.
    let (status, body) = s
        .server
        .request("PUT", "/rxon-test/tree/%2E%2E/%2E%2E/escape.txt", b"gotcha")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .server
        .request("PUT", "/rxon-test/tree/ok.txt", b"fine")
        .unwrap();
    assert_eq!(status, 200, "{body}");

    let work = s.dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let e = s
        .store
        .download("s3://rxon-test/tree/", &work.join("tree"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(
        e.to_string().contains(".."),
        "the error names the bad key: {e}"
    );
    assert!(entries(&work).is_empty(), "{:?}", entries(&work));
    assert_eq!(entries(s.dir.path()), ["work"]);

    // Parameter names and references from a task are checked before anything is written.
    for (name, uri) in [
        ("../evil", "s3://rxon-test/tree/ok.txt"),
        ("a/b", "s3://rxon-test/tree/ok.txt"),
        ("ok", "s3://rxon-test/tree/../../x"),
        ("ok", "/etc/passwd/.."),
    ] {
        let payload = TaskPayload {
            params_metadata: Some(BTreeMap::from([
                (
                    "fine".to_owned(),
                    FileMetadata {
                        uri: "s3://rxon-test/tree/ok.txt".into(),
                        size: 4,
                        etag: None,
                        metadata: None,
                    },
                ),
                (
                    name.to_owned(),
                    FileMetadata {
                        uri: uri.into(),
                        size: 4,
                        etag: None,
                        metadata: None,
                    },
                ),
            ])),
            ..TaskPayload::default()
        };
        let e = s.store.fetch_params(&payload, &work).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ParamValidation, "{name} {uri}: {e}");
        assert!(entries(&work).is_empty(), "{name}: {:?}", entries(&work));
    }
    assert_eq!(entries(s.dir.path()), ["work"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_helpers_turn_outputs_into_params() {
    let s = s3();
    let produced = s.dir.path().join("produced");
    std::fs::create_dir_all(produced.join("frames")).unwrap();
    std::fs::write(produced.join("report.json"), br#"{"ok":true}"#).unwrap();
    std::fs::write(produced.join("frames/0001.png"), data(6 * MIB, 9)).unwrap();

    let data_metadata = s
        .store
        .store_outputs(
            [
                ("report", produced.join("report.json")),
                ("frames", produced.join("frames")),
            ],
            "s3://rxon-test/results/job-1/",
        )
        .await
        .unwrap();
    assert_eq!(
        data_metadata["report"].uri,
        "s3://rxon-test/results/job-1/report"
    );
    assert_eq!(
        data_metadata["frames"].uri,
        "s3://rxon-test/results/job-1/frames/"
    );
    assert_eq!(data_metadata["frames"].size, 6 * MIB as u64);

    // The orchestrator hands those references to the next task.
    let payload = TaskPayload {
        params_metadata: Some(data_metadata),
        ..TaskPayload::default()
    };
    let work = s.dir.path().join("next-task");
    let local = s.store.fetch_params(&payload, &work).await.unwrap();
    assert_eq!(std::fs::read(&local["report"]).unwrap(), br#"{"ok":true}"#);
    assert_eq!(
        std::fs::read(local["frames"].join("0001.png")).unwrap(),
        data(6 * MIB, 9)
    );
    assert_eq!(entries(&work), ["frames", "report"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_hash_tells_stores_apart() {
    let s = s3();
    let ours = s
        .store
        .config_hash()
        .expect("endpoint, key and bucket give a hash");
    assert_eq!(
        Some(ours.to_owned()),
        rxon_blob::calculate_config_hash(Some(&s.server.endpoint()), Some("testing"), Some(BUCKET))
    );
    s.store.check_peer_hash(Some(ours)).unwrap();
    let elsewhere = BlobStore::from_config(&s3_config(&s.server, "another-bucket")).unwrap();
    let e = s
        .store
        .check_peer_hash(elsewhere.config_hash())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::S3ConfigMismatch);
}

/// The same round trips on a store without S3, with small parts so multipart is used.
async fn round_trips_on(url: String) {
    let mut config = BlobConfig::new(url);
    config.part_size = 64 * 1024;
    config.multipart_threshold = 100 * 1024;
    let store = BlobStore::from_config(&config).unwrap();
    let work = tempfile::tempdir().unwrap();
    file_round_trip(&store, work.path(), 10).await;
    file_round_trip(&store, work.path(), 300 * 1024).await;
    dir_round_trip(&store, work.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_store_round_trips() {
    let root = tempfile::tempdir().unwrap();
    round_trips_on(format!("file://{}", root.path().join("blobs").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_round_trips() {
    round_trips_on("memory://".into()).await;
}
