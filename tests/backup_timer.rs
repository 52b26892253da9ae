//! The backup timer as a process: it has Juju run a tick through
//! `juju-exec` at each period while armed, one timer per unit, and exits
//! once disarmed. `juju-exec` is a script here that writes down its argv.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use postgresql_charm::backup::catalog::BackupKind;
use postgresql_charm::backup::schedule::{Schedule, Schedules};
use postgresql_charm::charm::timer;

#[test]
fn the_timer_ticks_through_juju_exec_while_armed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    std::fs::create_dir(&storage).unwrap();
    let calls = dir.path().join("calls");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let exec = bin.join("juju-exec");
    std::fs::write(
        &exec,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let every_minute = Schedule::parse(BackupKind::Full, "* * * * *").unwrap();
    timer::arm(&storage, &Schedules::new(vec![every_minute])).unwrap();

    let binary = env!("CARGO_BIN_EXE_postgresql-charm");
    let mut running = Command::new(binary)
        .args([timer::SUBCOMMAND, "pg/3"])
        .arg(&storage)
        .arg("1")
        .env("PATH", &path)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2600));
    assert!(running.try_wait().unwrap().is_none(), "the timer exited");
    // The lock is held: a second timer for the unit returns at once.
    timer::run("pg/3", &storage, Duration::from_secs(1)).unwrap();
    timer::disarm(&storage).unwrap();
    let exited = running.wait().unwrap();
    assert!(exited.success(), "{exited}");

    let calls = std::fs::read_to_string(&calls).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    assert!((2..=4).contains(&lines.len()), "{calls}");
    for line in lines {
        assert_eq!(line, format!("-u pg/3 {binary} {}", timer::TICK));
    }
}
