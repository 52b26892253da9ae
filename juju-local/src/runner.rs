//! Running one process in a hook context, as the unit agent does: the exact
//! Juju environment, the unit's agent socket served on this thread while the
//! child runs, and the child's exit status, wall time and peak RSS (wait4).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::client::{Request, Response};
use crate::context::HookContext;
use crate::model::ModelDir;

/// What to run: dispatch (hooks, actions) or a command (exec).
pub enum Program {
    Dispatch,
    Command(Vec<String>),
}

/// Where the child's stdout and stderr go.
#[derive(PartialEq)]
pub enum Output {
    /// Captured to files, returned in the result.
    Capture,
    /// The child writes to juju-local's own stdout and stderr.
    Inherit,
}

pub struct RunResult {
    pub ctx: HookContext,
    /// The exit code, or 128 + signal number.
    pub code: i32,
    pub wall: Duration,
    /// Peak resident set size of the child, in KiB.
    pub max_rss_kib: i64,
    pub stdout: String,
    pub stderr: String,
}

fn socket_path(unit_dir: &Path) -> PathBuf {
    let p = unit_dir.join("agent.sock");
    if p.as_os_str().len() < 100 {
        return p;
    }
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    std::env::temp_dir().join(format!("juju-local-agent-{n:08x}.sock"))
}

/// The environment Juju gives a hook, action or exec in `ctx`.
pub fn environment(md: &ModelDir, ctx: &HookContext, socket: &Path) -> Vec<(String, String)> {
    let unit_dir = md.unit_dir(&ctx.unit);
    let charm_dir = unit_dir.join("charm");
    let model = &ctx.work;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    let h = &ctx.hook;
    if let Some(a) = &ctx.action {
        set("JUJU_DISPATCH_PATH", format!("actions/{}", a.name));
        set("JUJU_HOOK_NAME", String::new());
        set("JUJU_ACTION_NAME", a.name.clone());
        set("JUJU_ACTION_UUID", a.id.to_string());
        set("JUJU_ACTION_TAG", format!("action-{}", a.id));
    } else if !h.name.is_empty() {
        set("JUJU_DISPATCH_PATH", format!("hooks/{}", h.name));
        set("JUJU_HOOK_NAME", h.name.clone());
    }
    set("JUJU_UNIT_NAME", ctx.unit.clone());
    set("JUJU_MODEL_NAME", model.name.clone());
    set("JUJU_MODEL_UUID", model.uuid.clone());
    set("JUJU_VERSION", "3.6.0".into());
    set("JUJU_CHARM_DIR", charm_dir.display().to_string());
    set("CHARM_DIR", charm_dir.display().to_string());
    set("JUJU_CONTEXT_ID", ctx.id.clone());
    set("JUJU_AGENT_SOCKET_ADDRESS", socket.display().to_string());
    set("JUJU_AGENT_SOCKET_NETWORK", "unix".into());
    let machine = model.units.get(&ctx.unit).map(|u| u.machine).unwrap_or(0);
    set("JUJU_MACHINE_ID", machine.to_string());
    set("JUJU_PRINCIPAL_UNIT", String::new());
    set("JUJU_AVAILABILITY_ZONE", "juju-local".into());
    if let Some(rel) = h.relation.and_then(|id| model.relations.get(&id)) {
        let app = ctx.app();
        let endpoint = rel
            .end_of(app)
            .map(|e| e.endpoint.clone())
            .unwrap_or_default();
        set("JUJU_RELATION", endpoint);
        set("JUJU_RELATION_ID", rel.key_for(app));
        set("JUJU_REMOTE_APP", h.remote_app.clone().unwrap_or_default());
        set(
            "JUJU_REMOTE_UNIT",
            h.remote_unit.clone().unwrap_or_default(),
        );
        if let Some(d) = &h.departing {
            set("JUJU_DEPARTING_UNIT", d.clone());
        }
    }
    if let Some(sid) = &h.storage {
        let name = sid.split('/').next().unwrap_or_default();
        let loc = model
            .units
            .get(&ctx.unit)
            .and_then(|u| u.storage.get(name))
            .map(|s| s.location.clone())
            .unwrap_or_default();
        let kind = ctx
            .meta
            .storage
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.kind.clone());
        set("JUJU_STORAGE_ID", sid.clone());
        set("JUJU_STORAGE_LOCATION", loc);
        set(
            "JUJU_STORAGE_KIND",
            kind.unwrap_or_else(|| "filesystem".into()),
        );
    }
    if let Some(sid) = &h.secret {
        set("JUJU_SECRET_ID", model.secret_uri(sid));
        set(
            "JUJU_SECRET_LABEL",
            h.secret_label.clone().unwrap_or_default(),
        );
        if let Some(r) = h.secret_revision {
            set("JUJU_SECRET_REVISION", r.to_string());
        }
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    set("PATH", format!("{}:{path}", md.bin_dir().display()));
    for k in [
        "HOME",
        "LANG",
        "TZ",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    ] {
        if let Ok(v) = std::env::var(k) {
            set(k, v);
        }
    }
    env
}

/// Runs `program` in `ctx`, serving tool requests until the child exits.
pub fn run(md: &ModelDir, ctx: HookContext, program: Program, output: Output) -> Result<RunResult> {
    let mut ctx = ctx;
    let unit_dir = md.unit_dir(&ctx.unit);
    let charm_dir = unit_dir.join("charm");
    let socket = socket_path(&unit_dir);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    let env = environment(md, &ctx, &socket);
    let mut cmd = match &program {
        Program::Dispatch => Command::new(charm_dir.join("dispatch")),
        Program::Command(argv) if argv.len() == 1 && argv[0].contains(' ') => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(&argv[0]);
            c
        }
        Program::Command(argv) => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    cmd.env_clear()
        .envs(env)
        .current_dir(&charm_dir)
        .stdin(Stdio::null());
    let out_path = unit_dir.join(".hook-stdout");
    let err_path = unit_dir.join(".hook-stderr");
    if output == Output::Capture {
        let f = |p: &Path| {
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))
        };
        cmd.stdout(f(&out_path)?).stderr(f(&err_path)?);
    }
    let start = Instant::now();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e)
                .with_context(|| format!("cannot start the hook in {}", charm_dir.display()));
        }
    };
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    let wake = socket.clone();
    std::thread::spawn(move || {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data that wait4 fills in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = loop {
            // SAFETY: waiting on our own child's pid.
            let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if rc == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            }
            break rc;
        };
        let wall = start.elapsed();
        let code = if rc == -1 {
            1
        } else if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            1
        };
        let _ = tx.send((code, wall, usage.ru_maxrss));
        for _ in 0..100 {
            if UnixStream::connect(&wake).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let (code, wall, rss) = serve(&listener, &rx, &mut ctx);
    drop(child);
    let _ = std::fs::remove_file(&socket);
    let (stdout, stderr) = if output == Output::Capture {
        (
            std::fs::read_to_string(&out_path).unwrap_or_default(),
            std::fs::read_to_string(&err_path).unwrap_or_default(),
        )
    } else {
        (String::new(), String::new())
    };
    Ok(RunResult {
        ctx,
        code,
        wall,
        max_rss_kib: rss,
        stdout,
        stderr,
    })
}

type Exit = (i32, Duration, i64);

/// The agent's side of the socket: one request line, one response line per connection.
fn serve(listener: &UnixListener, rx: &mpsc::Receiver<Exit>, ctx: &mut HookContext) -> Exit {
    for stream in listener.incoming() {
        if let Ok(exit) = rx.try_recv() {
            return exit;
        }
        let Ok(stream) = stream else { continue };
        let mut line = String::new();
        let mut reader = BufReader::new(&stream);
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            if let Ok(exit) = rx.try_recv() {
                return exit;
            }
            continue;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(req) => crate::tools::handle(ctx, &req),
            Err(e) => Response {
                code: 1,
                stdout: String::new(),
                stderr: format!("ERROR bad request: {e}\n"),
            },
        };
        if let Ok(mut text) = serde_json::to_string(&resp) {
            text.push('\n');
            let mut w = &stream;
            let _ = w.write_all(text.as_bytes());
        }
    }
    rx.recv().unwrap_or((1, Duration::ZERO, 0))
}
