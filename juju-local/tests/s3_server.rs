//! The embedded S3 server through a real S3 client (object_store's
//! AmazonS3, SigV4, path style): objects round-trip with ranges, listing by
//! prefix and delimiter, multipart upload and copy; a wrong secret key is
//! refused. And the model's own server behind `deploy s3-integrator`,
//! stopped and started again as an outage would.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;

use common::Model;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::json;

/// A `juju-local s3-server` in the foreground, killed on drop.
struct Server {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    endpoint: String,
    _tmp: tempfile::TempDir,
}

impl Server {
    fn start(access: &str, secret: &str, bucket: &str) -> Server {
        let tmp = tempfile::Builder::new()
            .prefix("juju-local-s3-test-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_juju-local"))
            .args(["s3-server", "--dir"])
            .arg(tmp.path().join("data"))
            .args(["--address", "127.0.0.1:0", "--bucket", bucket])
            .env("JUJU_LOCAL_S3_ACCESS_KEY", access)
            .env("JUJU_LOCAL_S3_SECRET_KEY", secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start juju-local s3-server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let endpoint = line
            .trim()
            .strip_prefix("S3 server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child,
            _stdout: stdout,
            endpoint,
            _tmp: tmp,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(endpoint: &str, bucket: &str, access: &str, secret: &str) -> Arc<dyn ObjectStore> {
    // The S3 client's rustls has no provider of its own in this workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let retry = object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    };
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_bucket_name(bucket)
            .with_access_key_id(access)
            .with_secret_access_key(secret)
            .with_region("us-east-1")
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_retry(retry)
            .build()
            .unwrap(),
    )
}

async fn text(store: &Arc<dyn ObjectStore>, key: &str) -> String {
    let bytes = store
        .get(&Key::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn objects_round_trip_through_an_s3_client() {
    let server = Server::start("AKTEST", "secret-test-key", "test");
    let store = client(&server.endpoint, "test", "AKTEST", "secret-test-key");
    for (k, v) in [
        ("a/b/one.txt", "hello"),
        ("a/two.txt", "two"),
        ("c/three.txt", "three"),
    ] {
        store
            .put(&Key::from(k), PutPayload::from(v.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    assert_eq!(text(&store, "a/b/one.txt").await, "hello");
    let head = store.head(&Key::from("a/b/one.txt")).await.unwrap();
    assert_eq!(head.size, 5);
    let range = store
        .get_range(&Key::from("a/b/one.txt"), 1..4)
        .await
        .unwrap();
    assert_eq!(&range[..], b"ell");

    let mut listed: Vec<String> = store
        .list(Some(&Key::from("a")))
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ["a/b/one.txt", "a/two.txt"]);
    let tree = store
        .list_with_delimiter(Some(&Key::from("a")))
        .await
        .unwrap();
    let objects: Vec<String> = tree
        .objects
        .iter()
        .map(|m| m.location.to_string())
        .collect();
    let prefixes: Vec<String> = tree.common_prefixes.iter().map(|p| p.to_string()).collect();
    assert_eq!(objects, ["a/two.txt"]);
    assert_eq!(prefixes, ["a/b"]);

    // Multipart: a 5 MiB part and a small last one.
    let part1 = vec![b'x'; 5 * 1024 * 1024];
    let part2 = b"tail".to_vec();
    let mut upload = store.put_multipart(&Key::from("big.bin")).await.unwrap();
    upload
        .put_part(PutPayload::from(part1.clone()))
        .await
        .unwrap();
    upload
        .put_part(PutPayload::from(part2.clone()))
        .await
        .unwrap();
    upload.complete().await.unwrap();
    let head = store.head(&Key::from("big.bin")).await.unwrap();
    assert_eq!(head.size, (part1.len() + part2.len()) as u64);
    let n = part1.len() as u64;
    let across = store
        .get_range(&Key::from("big.bin"), n - 2..n + 4)
        .await
        .unwrap();
    assert_eq!(&across[..], b"xxtail");

    store
        .copy(&Key::from("a/two.txt"), &Key::from("copied.txt"))
        .await
        .unwrap();
    assert_eq!(text(&store, "copied.txt").await, "two");
    store.delete(&Key::from("copied.txt")).await.unwrap();
    let gone = store.get(&Key::from("copied.txt")).await;
    assert!(
        matches!(gone, Err(object_store::Error::NotFound { .. })),
        "{gone:?}"
    );

    // A wrong secret key signs requests the server refuses.
    let bad = client(&server.endpoint, "test", "AKTEST", "not-the-secret");
    let put = bad
        .put(&Key::from("intruder.txt"), PutPayload::from_static(b"no"))
        .await;
    assert!(put.is_err(), "a badly signed put was accepted");
    assert!(bad.get(&Key::from("a/two.txt")).await.is_err());
    let absent = store.head(&Key::from("intruder.txt")).await;
    assert!(matches!(absent, Err(object_store::Error::NotFound { .. })));
}

/// Small objects fetched one after another on one kept-alive connection
/// answer in milliseconds: the server sets TCP_NODELAY, so the end of a
/// response never waits for the client's delayed ACK (about 40 ms, on every
/// GET). The quickest of 20 GETs is what is checked: a busy machine slows
/// some of them, but only the delayed ACK holds every one of them back.
#[tokio::test]
async fn gets_on_a_reused_connection_do_not_wait_for_delayed_acks() {
    let server = Server::start("AKTEST", "secret-test-key", "test");
    let store = client(&server.endpoint, "test", "AKTEST", "secret-test-key");
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let key = Key::from("segment");
    store
        .put(&key, PutPayload::from(body.clone()))
        .await
        .unwrap();
    let get = || async { store.get(&key).await.unwrap().bytes().await.unwrap() };
    assert_eq!(get().await.len(), body.len());
    let mut quickest = std::time::Duration::MAX;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        assert_eq!(get().await.len(), body.len());
        quickest = quickest.min(started.elapsed());
    }
    assert!(
        quickest < std::time::Duration::from_millis(30),
        "the quickest of 20 GETs on a reused connection took {quickest:?}"
    );
}

fn alive(pid: i64) -> bool {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmd).contains("s3-server")
}

#[tokio::test]
async fn deploy_without_endpoint_runs_the_models_server() {
    let m = Model::new();
    m.cli_ok("deploy", &["s3-integrator"]);
    let st = m.status();
    let unit = &st["applications"]["s3-integrator"]["units"]["s3-integrator/0"];
    assert_eq!(unit["workload-status"]["current"], json!("active"));
    let config: serde_json::Value =
        serde_yaml::from_str(&m.cli_ok("config", &["s3-integrator"]).stdout).unwrap();
    let endpoint = config["endpoint"].as_str().unwrap().to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert_eq!(config["bucket"], json!("juju-local"));

    let charm = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/builtin-requirer");
    m.cli_ok("deploy", &[charm.to_str().unwrap(), "req"]);
    m.integrate("req", "s3-integrator");
    let rid = m.relation_id("req/0", "s3-parameters");
    let bag = m.sh_json(
        "req/0",
        &format!("relation-get -r {rid} --app --format=json - s3-integrator"),
    );
    assert_eq!(bag["endpoint"], json!(endpoint));
    assert_eq!(bag["bucket"], json!("juju-local"));
    let access = bag["access-key"].as_str().unwrap();
    let secret = bag["secret-key"].as_str().unwrap();

    let store = client(&endpoint, "juju-local", access, secret);
    store
        .put(&Key::from("demo/x"), PutPayload::from_static(b"backup"))
        .await
        .unwrap();
    assert_eq!(text(&store, "demo/x").await, "backup");

    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(m.dir().join("model.json")).unwrap())
            .unwrap();
    let pid = model["s3_server"]["pid"].as_i64().unwrap();
    assert!(alive(pid));
    m.cli_ok("destroy-model", &["--force"]);
    assert!(!alive(pid), "destroy-model stops the model's s3 server");
}

#[tokio::test]
async fn the_models_server_stops_even_while_the_model_is_held_and_comes_back_on_its_port() {
    let m = Model::new();
    m.cli_ok("deploy", &["s3-integrator"]);
    let recorded = |m: &Model| -> serde_json::Value {
        let text = std::fs::read_to_string(m.dir().join("model.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["s3_server"].clone()
    };
    let before = recorded(&m);
    let endpoint = before["endpoint"].as_str().unwrap().to_string();
    let (access, secret) = (
        before["access_key"].as_str().unwrap().to_string(),
        before["secret_key"].as_str().unwrap().to_string(),
    );
    let store = client(&endpoint, "juju-local", &access, &secret);
    store
        .put(&Key::from("kept/x"), PutPayload::from_static(b"kept"))
        .await
        .unwrap();

    // Stopped while another command (a running action, say) holds the model.
    let lock = std::fs::File::open(m.dir().join("lock")).unwrap();
    // SAFETY: flock on a file descriptor we own; released when `lock` drops.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let out = m.cli_ok("s3-server", &["stop"]);
    assert_eq!(
        out.stdout.trim(),
        format!("stopped the model's S3 server at {endpoint}")
    );
    assert!(!alive(before["pid"].as_i64().unwrap()));
    let down = store
        .put(&Key::from("lost/y"), PutPayload::from_static(b"no"))
        .await;
    assert!(down.is_err(), "a put reached a stopped server");
    let out = m.cli_ok("s3-server", &["stop"]);
    assert_eq!(
        out.stdout.trim(),
        format!("the model's S3 server at {endpoint} is not running")
    );
    drop(lock);

    // Back on the same port, over the same objects, with the same keys.
    let out = m.cli_ok("s3-server", &["start"]);
    assert_eq!(
        out.stdout.trim(),
        format!("started the model's S3 server at {endpoint}")
    );
    let after = recorded(&m);
    assert_eq!(after["endpoint"], before["endpoint"]);
    assert_ne!(after["pid"], before["pid"]);
    assert!(alive(after["pid"].as_i64().unwrap()));
    assert_eq!(text(&store, "kept/x").await, "kept");
    store
        .put(&Key::from("new/z"), PutPayload::from_static(b"z"))
        .await
        .unwrap();
    let out = m.cli_ok("s3-server", &["start"]);
    assert_eq!(
        out.stdout.trim(),
        format!("the model's S3 server at {endpoint} is already running")
    );
    let out = m.cli("s3-server", &["restart"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("\"stop\" or \"start\""),
        "{}",
        out.stderr
    );

    m.cli_ok("destroy-model", &["--force"]);
    assert!(!alive(after["pid"].as_i64().unwrap()));
}
