//! What the end-to-end tests share: the packed charm and juju-local, from
//! the dev build the tests were compiled with (packed once, whatever the
//! number of test binaries), and a juju-local model in a temporary
//! directory that tears itself down.

#![allow(dead_code)]

pub mod flaky;
pub mod pg;
pub mod scratch;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Paths of the packed charm and of juju-local, built on first use.
pub struct Build {
    pub charm: PathBuf,
    pub juju_local: PathBuf,
}

/// Packs the charm once per run; a file lock keeps parallel test binaries
/// from building at the same time.
pub fn build() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| {
        std::fs::create_dir_all(target_dir()).unwrap();
        let lock = File::create(target_dir().join("e2e-build.lock")).unwrap();
        // SAFETY: flock on a file descriptor we own; released when `lock` drops.
        assert_eq!(
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
            0
        );

        // The dev build the tests were compiled with (fresh by now), packed.
        must(
            Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--locked", "--workspace", "--bins"])
                .current_dir(root()),
            "build the charm and juju-local",
        );
        let charm = target_dir().join("e2e/postgresql.charm");
        must(
            Command::new(root().join("charm/pack.sh"))
                .arg(&charm)
                .env("CHARM_BINARY", target_dir().join("debug/postgresql-charm")),
            "pack the charm",
        );
        Build {
            charm,
            juju_local: target_dir().join("debug/juju-local"),
        }
    })
}

fn must(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot {what}: {e}"));
    assert!(
        out.status.success(),
        "cannot {what}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A juju-local model of its own, destroyed when dropped.
pub struct Model {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The name juju-local gives the model when it creates it.
    name: Option<String>,
}

impl Model {
    /// A new, empty model; its directory is where the `postgres` user can reach it.
    pub fn new() -> Self {
        let bin = build().juju_local.clone();
        let dir = tempfile::Builder::new()
            .prefix("e2e-model-")
            .tempdir_in("/tmp")
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Self {
            dir,
            bin,
            name: None,
        }
    }

    /// A new model that juju-local names `name` rather than `local`.
    pub fn named(name: &str) -> Self {
        let mut model = Self::new();
        model.name = Some(name.to_owned());
        model
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `juju-local <args>` against this model.
    pub fn juju(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            .env("JUJU_LOCAL_MODEL", self.dir.path().join("model"));
        if let Some(name) = &self.name {
            command.env("JUJU_LOCAL_MODEL_NAME", name);
        }
        command.output().expect("juju-local runs")
    }

    /// Runs `juju-local <args>`, which must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.juju(args);
        assert!(
            out.status.success(),
            "juju-local {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `status --format json`.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--format", "json"])).unwrap()
    }

    /// Runs an action with `--format json` and returns the task object.
    pub fn run_action(&self, target: &str, action: &str, params: &[&str]) -> Value {
        let mut args = vec!["run", target, action, "--format", "json"];
        args.extend_from_slice(params);
        let out = self.juju(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        let tasks: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "run {args:?} printed no JSON ({e}):\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        tasks
            .as_object()
            .and_then(|t| t.values().next())
            .cloned()
            .expect("one task")
    }

    /// The whole debug log.
    pub fn debug_log(&self) -> String {
        self.ok(&["debug-log", "--replay"])
    }

    /// The debug log's lines of `unit` that contain `text`.
    pub fn logged(&self, unit: &str, text: &str) -> Vec<String> {
        let tag = format!("unit-{}: ", unit.replace('/', "-"));
        self.debug_log()
            .lines()
            .filter(|l| l.starts_with(&tag) && l.contains(text))
            .map(str::to_owned)
            .collect()
    }

    /// The hooks and actions each unit ran, in order, from the debug log.
    pub fn ran(&self, unit: &str) -> Vec<String> {
        let tag = format!("unit-{}: ", unit.replace('/', "-"));
        self.debug_log()
            .lines()
            .filter(|l| l.starts_with(&tag))
            .filter_map(|l| {
                let rest = l.split_once(" ran \"")?.1;
                let (name, _) = rest.split_once('"')?;
                Some(name.to_owned())
            })
            .collect()
    }
}

/// One unit of the packed charm (profile=testing) and the built-in
/// s3-integrator (which starts the model's S3 server), related.
pub fn deploy_with_s3(model: &Model) {
    model.ok(&[
        "deploy",
        build().charm.to_str().unwrap(),
        "--config",
        "profile=testing",
    ]);
    model.ok(&["deploy", "s3-integrator"]);
    model.ok(&["integrate", "postgresql:s3-parameters", "s3-integrator"]);
}

/// What [`primary_with_pgbench`] gives: the operator password, and the
/// primary's address and a connection to it.
pub struct Primary {
    pub operator: String,
    pub host: std::net::IpAddr,
    pub db: postgresql_charm::postgres::sql::Db,
}

/// One unit with S3 (see [`deploy_with_s3`]), settled, with pgbench's
/// tables made by `pgbench <init>` and an empty table `marks`.
pub fn primary_with_pgbench(model: &Model, init: &[&str]) -> Primary {
    deploy_with_s3(model);
    settled(model, "postgresql", 1, std::time::Duration::from_secs(60));
    let operator = password(model, "postgresql");
    let host = address(model, "postgresql/0");
    let db = pg::connect(host, &operator);
    pg::finished(pg::pgbench(host, &operator, init), "pgbench -i");
    db.execute("CREATE TABLE marks (at text PRIMARY KEY)")
        .unwrap();
    Primary { operator, host, db }
}

/// A unit's address, as `status` shows it.
pub fn address(model: &Model, unit: &str) -> std::net::IpAddr {
    let status = model.status();
    let app = unit.split('/').next().unwrap();
    status["applications"][app]["units"][unit]["public-address"]
        .as_str()
        .unwrap_or_else(|| panic!("{unit} has no address: {status:#}"))
        .parse()
        .unwrap()
}

/// A unit's storage directory (its data, TLS files and repository settings).
pub fn storage(model: &Model, unit: &str) -> PathBuf {
    let dir = model
        .dir()
        .join("model/units")
        .join(unit.replace('/', "-"))
        .join("storage");
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .next()
        .expect("a storage")
        .path()
}

/// The directory the model's S3 server keeps its buckets in.
pub fn served(model: &Model) -> PathBuf {
    let state: Value =
        serde_json::from_slice(&std::fs::read(model.dir().join("model/model.json")).unwrap())
            .unwrap();
    PathBuf::from(state["s3_server"]["dir"].as_str().unwrap())
}

/// Waits until `units` units of `app` are active, nudging them with
/// update-status (hooks run only when something happens).
pub fn settled(model: &Model, app: &str, units: usize, limit: std::time::Duration) {
    let started = std::time::Instant::now();
    loop {
        let status = model.status();
        let all = status["applications"][app]["units"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let active = all
            .values()
            .filter(|u| u["workload-status"]["current"] == "active")
            .count();
        if all.len() == units && active == units {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{app} did not settle on {units} active units: {status:#}"
        );
        let _ = model.juju(&["run-hook", app, "update-status"]);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// The operator password, from `app`'s leader.
pub fn password(model: &Model, app: &str) -> String {
    let task = model.run_action(&format!("{app}/leader"), "get-password", &[]);
    task["results"]["password"]
        .as_str()
        .unwrap_or_else(|| panic!("get-password: {task:#}"))
        .to_owned()
}

/// Takes a backup of `kind` on `unit`; returns its id.
pub fn backup(model: &Model, unit: &str, kind: &str) -> String {
    // Backup ids are whole seconds.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let started = std::time::Instant::now();
    let task = model.run_action(unit, "create-backup", &[&format!("type={kind}")]);
    eprintln!("{kind} backup: {:?}", started.elapsed());
    assert_eq!(task["status"], "completed", "{kind} backup: {task:#}");
    task["results"]["backup-id"].as_str().unwrap().to_owned()
}

/// A seed for a test's random choices: the number in `var`, to replay a
/// failure, or the clock's nanoseconds (printed by the caller).
pub fn seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .map(|s| s.parse().unwrap_or_else(|_| panic!("{var} is a number")))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Waits until `check` holds, for at most 30 s.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "never: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        let _ = self.juju(&["destroy-model", "--force"]);
    }
}
