//! `s3-server` (the embedded S3 server in the foreground) and the model's
//! own S3 server: when `deploy s3-integrator` has no `endpoint`, juju-local
//! starts one in the background over `<model>/s3`, with generated
//! credentials and a `juju-local` bucket, records it in the model, and
//! configures the stand-in with it; `destroy-model` stops it.
//! `s3-server stop` and `s3-server start` take it down and bring it back on
//! the same port, directory and credentials, as an outage would.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::parse;
use crate::flags::{Kind, Spec};
use crate::model::{Model, ModelDir, S3Server};

/// Environment variables that carry the credentials (kept off the command line).
pub const ACCESS_ENV: &str = "JUJU_LOCAL_S3_ACCESS_KEY";
pub const SECRET_ENV: &str = "JUJU_LOCAL_S3_SECRET_KEY";
/// The bucket the model's server starts with.
pub const MODEL_BUCKET: &str = "juju-local";

/// `juju-local s3-server [--dir D] [--address A] [--access-key K --secret-key S] [--bucket B ...]`,
/// or `juju-local s3-server stop|start` for the model's own server.
pub fn s3_server(model_dir: &Path, args: &[String]) -> Result<i32> {
    match args {
        [what] if what == "stop" => return stop_model_server(model_dir),
        [what] if what == "start" => return start_model_server(model_dir),
        _ => {}
    }
    let spec = Spec::new()
        .flag(&["dir"], Kind::Value)
        .flag(&["address"], Kind::Value)
        .flag(&["access-key"], Kind::Value)
        .flag(&["secret-key"], Kind::Value)
        .flag(&["bucket"], Kind::Multi);
    let p = parse(&spec, args)?;
    if let Some(extra) = p.args.first() {
        bail!(
            "unexpected argument {extra:?} (the model's server takes \"stop\" or \"start\" alone)"
        );
    }
    let from_env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let access = p
        .value("access-key")
        .map(str::to_string)
        .or(from_env(ACCESS_ENV));
    let secret = p
        .value("secret-key")
        .map(str::to_string)
        .or(from_env(SECRET_ENV));
    let credentials = match (access, secret) {
        (Some(a), Some(s)) => Some((a, s)),
        (None, None) => None,
        _ => bail!("--access-key and --secret-key go together"),
    };
    let dir = match p.value("dir") {
        Some(d) => PathBuf::from(d),
        None => {
            let d = std::env::temp_dir().join(format!("juju-local-s3-{}", std::process::id()));
            eprintln!("serving {}", d.display());
            d
        }
    };
    let address = p.value("address").unwrap_or("127.0.0.1:0");
    let address = address
        .parse()
        .with_context(|| format!("invalid address {address:?}"))?;
    crate::s3server::serve(crate::s3server::Options {
        dir,
        address,
        credentials,
        buckets: p.all("bucket"),
    })?;
    Ok(0)
}

fn random(alphabet: &[u8], n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

fn alive(pid: i32) -> bool {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmd).contains("s3-server")
}

/// The model's S3 server, started now unless it already runs (a stopped
/// one comes back on its port, directory and credentials).
pub fn model_server(md: &ModelDir, model: &mut Model) -> Result<S3Server> {
    if let Some(s) = &model.s3_server {
        if !alive(s.pid) {
            let address = s.endpoint.trim_start_matches("http://").to_string();
            let (pid, _) = spawn(
                md,
                Path::new(&s.dir),
                &address,
                &s.access_key,
                &s.secret_key,
            )?;
            model.s3_server.as_mut().expect("just read").pid = pid;
        }
        return Ok(model.s3_server.clone().expect("just read"));
    }
    let upper = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mixed = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let access = random(upper, 20);
    let secret = random(mixed, 40);
    let dir = md.root.join("s3");
    let (pid, endpoint) = spawn(md, &dir, "127.0.0.1:0", &access, &secret)?;
    let server = S3Server {
        pid,
        endpoint,
        dir: dir.display().to_string(),
        bucket: MODEL_BUCKET.to_string(),
        access_key: access,
        secret_key: secret,
    };
    model.s3_server = Some(server.clone());
    Ok(server)
}

/// Starts `juju-local s3-server` in the background over `dir`, its output
/// appended to `<model>/s3-server.log`; its pid and endpoint URL.
fn spawn(
    md: &ModelDir,
    dir: &Path,
    address: &str,
    access: &str,
    secret: &str,
) -> Result<(i32, String)> {
    let log = md.root.join("s3-server.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let from = out.metadata().map(|m| m.len()).unwrap_or(0);
    let err = out.try_clone().context("cannot share the server log")?;
    let exe = std::env::current_exe().context("cannot find the juju-local binary")?;
    let mut child = Command::new(exe)
        .arg("s3-server")
        .arg("--dir")
        .arg(dir)
        .args(["--address", address, "--bucket", MODEL_BUCKET])
        .env(ACCESS_ENV, access)
        .env(SECRET_ENV, secret)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .context("cannot start the s3 server")?;
    let endpoint = wait_listening(&log, from, &mut child)?;
    Ok((child.id() as i32, endpoint))
}

/// `s3-server stop`: stops the model's server without waiting for the
/// model's lock (model.json is replaced atomically), so that it works while
/// an action or hook runs, as an outage does.
fn stop_model_server(model_dir: &Path) -> Result<i32> {
    let path = model_dir.join("model.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "model {} does not exist (deploy something first)",
            model_dir.display()
        )
    })?;
    let model: Model =
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    let Some(s) = &model.s3_server else {
        bail!("the model has no S3 server: deploy s3-integrator without an endpoint first");
    };
    if !alive(s.pid) {
        println!("the model's S3 server at {} is not running", s.endpoint);
        return Ok(0);
    }
    stop(&model);
    println!("stopped the model's S3 server at {}", s.endpoint);
    Ok(0)
}

/// `s3-server start`: brings the model's server back on the same port,
/// directory and credentials (after the command holding the model ends).
fn start_model_server(model_dir: &Path) -> Result<i32> {
    let md = ModelDir::open(model_dir, false)?;
    let mut model = md.load()?;
    let Some(before) = model.s3_server.clone() else {
        bail!("the model has no S3 server: deploy s3-integrator without an endpoint first");
    };
    if alive(before.pid) {
        println!(
            "the model's S3 server at {} is already running",
            before.endpoint
        );
        return Ok(0);
    }
    let s = model_server(&md, &mut model)?;
    md.save(&model)?;
    println!("started the model's S3 server at {}", s.endpoint);
    Ok(0)
}

/// Waits for the server's `listening on` line, written in the log after
/// byte `from`; its endpoint URL.
fn wait_listening(log: &Path, from: u64, child: &mut std::process::Child) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(log) {
            use std::io::{Seek as _, SeekFrom};
            let _ = f.seek(SeekFrom::Start(from));
            let _ = f.read_to_string(&mut text);
        }
        if let Some(url) = text
            .lines()
            .find_map(|l| l.strip_prefix("S3 server listening on "))
        {
            return Ok(url.trim().to_string());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("the s3 server exited ({status}): {}", text.trim());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the s3 server did not start in time: {}", text.trim());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Config and credentials for an s3-integrator with no endpoint: the model's
/// server. Returns the config to add; seeds the credentials in `peer_bag`.
pub fn configure_for(
    md: &ModelDir,
    model: &mut Model,
    peer_bag: &mut crate::model::Bag,
) -> Result<Vec<(String, Value)>> {
    let s = model_server(md, model)?;
    peer_bag.insert("access-key".into(), s.access_key.clone());
    peer_bag.insert("secret-key".into(), s.secret_key.clone());
    Ok(vec![
        ("endpoint".into(), Value::from(s.endpoint)),
        ("bucket".into(), Value::from(s.bucket)),
        ("region".into(), Value::from("us-east-1")),
        ("s3-uri-style".into(), Value::from("path")),
    ])
}

/// Stops the model's server (SIGTERM, then SIGKILL after 5 s).
pub fn stop(model: &Model) {
    let Some(s) = &model.s3_server else { return };
    if !alive(s.pid) {
        return;
    }
    // SAFETY: signalling a pid has no memory-safety preconditions.
    unsafe { libc::kill(s.pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(s.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(s.pid) {
        // SAFETY: as above.
        unsafe { libc::kill(s.pid, libc::SIGKILL) };
    }
}
