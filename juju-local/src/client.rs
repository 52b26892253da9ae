//! The hook-tool client: what the juju-local binary does when started under
//! a tool's name (as jujud does behind its symlinks). It forwards
//! `{context_id, dir, command, args, stdin}` as one JSON line to the unit
//! agent's socket, prints the answer and exits with its code. Kept minimal:
//! it runs on every tool call of every hook.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

/// Every tool juju-local's agent answers.
pub const TOOLS: &[&str] = &[
    "action-get",
    "action-set",
    "action-fail",
    "action-log",
    "config-get",
    "is-leader",
    "relation-ids",
    "relation-list",
    "relation-get",
    "relation-set",
    "status-set",
    "status-get",
    "juju-log",
    "application-version-set",
    "state-get",
    "state-set",
    "state-delete",
    "storage-get",
    "storage-list",
    "network-get",
    "open-port",
    "close-port",
    "opened-ports",
    "leader-get",
    "leader-set",
    "secret-add",
    "secret-get",
    "secret-set",
    "secret-grant",
    "secret-revoke",
    "secret-remove",
    "secret-ids",
    "secret-info-get",
];

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub context_id: String,
    pub dir: String,
    pub command: String,
    pub args: Vec<String>,
    #[serde(default)]
    pub stdin: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub code: i32,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
}

/// The tool name argv[0] names, if any.
pub fn tool_name(argv0: &str) -> Option<&'static str> {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    TOOLS.iter().copied().find(|t| *t == base)
}

fn wants_stdin(args: &[String]) -> bool {
    args.iter().enumerate().any(|(i, a)| {
        a == "--file=-" || (a == "--file" && args.get(i + 1).is_some_and(|n| n == "-"))
    })
}

/// Runs as the tool `command`; returns the exit code.
pub fn run(command: &str, args: Vec<String>) -> i32 {
    match call(command, args) {
        Ok(resp) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(resp.stdout.as_bytes());
            let _ = out.flush();
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(resp.stderr.as_bytes());
            resp.code
        }
        Err(e) => {
            eprintln!("ERROR {e}");
            1
        }
    }
}

fn call(command: &str, args: Vec<String>) -> Result<Response, String> {
    let socket = std::env::var("JUJU_AGENT_SOCKET_ADDRESS")
        .map_err(|_| "JUJU_AGENT_SOCKET_ADDRESS not set".to_string())?;
    let context_id =
        std::env::var("JUJU_CONTEXT_ID").map_err(|_| "JUJU_CONTEXT_ID not set".to_string())?;
    let mut stdin = String::new();
    if wants_stdin(&args) {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        stdin = String::from_utf8_lossy(&buf).into_owned();
    }
    let dir = std::env::current_dir()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let req = Request {
        context_id,
        dir,
        command: command.to_string(),
        args,
        stdin,
    };
    let mut line = serde_json::to_string(&req).map_err(|e| e.to_string())?;
    line.push('\n');
    let mut stream = UnixStream::connect(&socket)
        .map_err(|e| format!("cannot connect to the unit agent at {socket}: {e}"))?;
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("cannot talk to the unit agent: {e}"))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| format!("cannot read the unit agent's answer: {e}"))?;
    serde_json::from_str(&answer).map_err(|e| format!("bad answer from the unit agent: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(tool_name("/m/bin/relation-get"), Some("relation-get"));
        assert_eq!(tool_name("juju-local"), None);
    }

    #[test]
    fn stdin_only_for_file_dash() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(wants_stdin(&s(&["-r", "db:1", "--file", "-"])));
        assert!(wants_stdin(&s(&["--file=-"])));
        assert!(!wants_stdin(&s(&["k=v"])));
    }
}
