//! Hook-tool conformance: config, leadership, status, logging, state,
//! storage, network, ports and the flag-parsing rules every tool shares.
//!
//! Each test deploys the fixture charm (tests/fixtures/tool-charm) into its
//! own model and drives the hook tools through `juju-local exec`, asserting
//! the outputs, exit codes and messages of Juju's hook-tool protocol
//! (shared/reference/juju-protocol.md).

mod common;

use common::{assert_fails_with, Model};
use serde_json::{json, Value};

fn yaml_to_json(text: &str) -> Value {
    let v: serde_yaml::Value =
        serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}): {text}"));
    serde_json::to_value(v).unwrap()
}

// ---------------------------------------------------------------- config-get

#[test]
fn config_get_prints_options_with_defaults() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let defaults = json!({"name": "hello", "port": 5432, "enabled": true, "ratio": 0.5});

    assert_eq!(m.sh_json("alpha/0", "config-get --format=json"), defaults);

    // --all adds the options without a value as nulls.
    let mut all = defaults.clone();
    all["nickname"] = Value::Null;
    assert_eq!(m.sh_json("alpha/0", "config-get --format=json --all"), all);

    // A missing key prints null and exits 0.
    let out = m.exec_out("alpha/0", &[], "config-get --format=json no-such-option");
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "null\n");

    // One key, as JSON.
    assert_eq!(m.sh("alpha/0", "config-get --format=json port"), "5432\n");
    assert_eq!(
        m.sh("alpha/0", "config-get --format=json name"),
        "\"hello\"\n"
    );
}

#[test]
fn config_get_smart_format() {
    let m = Model::new();
    m.deploy("alpha", 1);
    // Strings raw, booleans as True/False, other scalars and maps as YAML.
    assert_eq!(m.sh("alpha/0", "config-get name"), "hello\n");
    assert_eq!(m.sh("alpha/0", "config-get enabled"), "True\n");
    assert_eq!(m.sh("alpha/0", "config-get port"), "5432\n");
    let whole = m.sh("alpha/0", "config-get");
    assert_eq!(
        yaml_to_json(&whole),
        json!({"name": "hello", "port": 5432, "enabled": true, "ratio": 0.5})
    );
}

#[test]
fn config_get_follows_config_changes() {
    let m = Model::new();
    m.deploy_with("alpha", 1, &["--config", "nickname=bob"]);
    assert_eq!(
        m.sh_json("alpha/0", "config-get --format=json"),
        json!({"name": "hello", "port": 5432, "enabled": true, "ratio": 0.5, "nickname": "bob"})
    );
    m.cli_ok("config", &["alpha", "port=6000", "enabled=false"]);
    let cfg = m.sh_json("alpha/0", "config-get --format=json");
    assert_eq!(cfg["port"], json!(6000));
    assert_eq!(cfg["enabled"], json!(false));
    assert_eq!(m.sh("alpha/0", "config-get enabled"), "False\n");
    assert!(
        m.dispatch_log("alpha/0")
            .iter()
            .filter(|h| *h == "hooks/config-changed")
            .count()
            >= 2,
        "a config change queues config-changed: {:?}",
        m.dispatch_log("alpha/0")
    );
}

// ----------------------------------------------------------------- is-leader

#[test]
fn is_leader_true_for_the_leader_only() {
    let m = Model::new();
    m.deploy("alpha", 2);
    let leader = m.leader("alpha");
    let other = m.non_leader("alpha");
    assert_eq!(m.sh(&leader, "is-leader --format=json"), "true\n");
    assert_eq!(m.sh(&other, "is-leader --format=json"), "false\n");
    assert_eq!(m.sh(&leader, "is-leader"), "True\n");
    assert_eq!(m.sh(&other, "is-leader"), "False\n");
}

#[test]
fn leadership_moves_when_the_leader_goes() {
    let m = Model::new();
    m.deploy("alpha", 2);
    let leader = m.leader("alpha");
    let other = m.non_leader("alpha");
    assert!(
        m.dispatch_log(&leader)
            .contains(&"hooks/leader-elected".to_string()),
        "{:?}",
        m.dispatch_log(&leader)
    );
    assert!(
        !m.dispatch_log(&other)
            .contains(&"hooks/leader-elected".to_string()),
        "only the leader runs leader-elected: {:?}",
        m.dispatch_log(&other)
    );
    m.cli_ok("remove-unit", &[&leader]);
    assert_eq!(m.leader("alpha"), other);
    assert_eq!(m.sh(&other, "is-leader --format=json"), "true\n");
    assert!(
        m.dispatch_log(&other)
            .contains(&"hooks/leader-elected".to_string()),
        "the new leader runs leader-elected: {:?}",
        m.dispatch_log(&other)
    );
}

// ------------------------------------------------------ status-set / status-get

#[test]
fn status_set_and_status_get() {
    let m = Model::new();
    m.deploy("alpha", 1);
    m.sh("alpha/0", "status-set maintenance -- 'doing things'");
    let st = m.status();
    let ws = &st["applications"]["alpha"]["units"]["alpha/0"]["workload-status"];
    assert_eq!(ws["current"], "maintenance", "{st}");
    assert_eq!(ws["message"], "doing things", "{st}");

    assert_eq!(
        m.sh_json("alpha/0", "status-get --include-data --format=json"),
        json!({"message": "doing things", "status": "maintenance", "status-data": {}})
    );
    assert_eq!(m.sh("alpha/0", "status-get"), "maintenance\n");

    // Without a message, the message is empty.
    m.sh("alpha/0", "status-set active");
    assert_eq!(
        m.sh_json("alpha/0", "status-get --include-data --format=json"),
        json!({"message": "", "status": "active", "status-data": {}})
    );

    // Every allowed status is accepted.
    for s in ["maintenance", "blocked", "waiting", "active"] {
        m.sh("alpha/0", &format!("status-set {s}"));
        assert_eq!(m.sh("alpha/0", "status-get"), format!("{s}\n"));
    }
}

#[test]
fn status_set_rejects_an_invalid_status() {
    let m = Model::new();
    m.deploy("alpha", 1);
    m.sh("alpha/0", "status-set active -- fine");
    let out = m.exec_out("alpha/0", &[], "status-set bogus -- nope");
    assert_fails_with(
        &out,
        2,
        r#"ERROR invalid status "bogus", expected one of [maintenance blocked waiting active]"#,
    );
    assert_eq!(m.sh("alpha/0", "status-get"), "active\n");
}

#[test]
fn status_set_takes_effect_even_when_the_hook_fails() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let (code, _, _) = m.exec("alpha/0", &[], "status-set blocked -- kept; exit 1");
    assert_eq!(code, 1);
    let st = m.status();
    let ws = &st["applications"]["alpha"]["units"]["alpha/0"]["workload-status"];
    assert_eq!(ws["current"], "blocked", "{st}");
    assert_eq!(ws["message"], "kept", "{st}");
}

#[test]
fn application_status_is_for_the_leader_only() {
    let m = Model::new();
    m.deploy("alpha", 2);
    let leader = m.leader("alpha");
    let other = m.non_leader("alpha");

    m.sh(
        &leader,
        "status-set --application=True blocked -- app-message",
    );
    let st = m.status();
    let app = &st["applications"]["alpha"]["application-status"];
    assert_eq!(app["current"], "blocked", "{st}");
    assert_eq!(app["message"], "app-message", "{st}");
    let got = m.sh_json(
        &leader,
        "status-get --include-data --format=json --application=true",
    );
    assert_eq!(got["application-status"]["status"], "blocked", "{got}");
    assert_eq!(got["application-status"]["message"], "app-message", "{got}");

    // A non-leader cannot set the application status: exit 1, unchanged.
    let out = m.exec_out(&other, &[], "status-set --application=True active -- nope");
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    assert!(out.stderr.starts_with("ERROR "), "stderr: {}", out.stderr);
    let st = m.status();
    assert_eq!(
        st["applications"]["alpha"]["application-status"]["current"], "blocked",
        "{st}"
    );

    // --application=False is the unit status, allowed for anyone.
    m.sh(
        &other,
        "status-set --application=False waiting -- unit-message",
    );
    let st = m.status();
    let ws = &st["applications"]["alpha"]["units"][other.as_str()]["workload-status"];
    assert_eq!(ws["current"], "waiting", "{st}");
    assert_eq!(ws["message"], "unit-message", "{st}");
}

// ------------------------------------------------------------------ juju-log

fn debug_log(m: &Model) -> String {
    m.cli_ok("debug-log", &["--replay"]).stdout
}

#[test]
fn juju_log_appears_in_debug_log() {
    let m = Model::new();
    m.deploy("alpha", 1);
    m.sh("alpha/0", "juju-log --log-level WARNING -- marker-one-7f3a");
    m.sh("alpha/0", "juju-log -- marker-two-7f3a");
    let log = debug_log(&m);
    let line = log
        .lines()
        .find(|l| l.contains("marker-one-7f3a"))
        .unwrap_or_else(|| panic!("juju-log message missing from debug-log:\n{log}"));
    assert!(line.starts_with("unit-alpha-0: "), "{line}");
    assert!(line.contains(" WARNING "), "{line}");
    assert!(line.contains("juju-log"), "{line}");
    assert!(line.ends_with(" marker-one-7f3a"), "{line}");
    let line = log
        .lines()
        .find(|l| l.contains("marker-two-7f3a"))
        .unwrap_or_else(|| panic!("juju-log message missing from debug-log:\n{log}"));
    assert!(line.contains(" INFO "), "juju-log defaults to INFO: {line}");
}

#[test]
fn juju_log_is_prefixed_with_the_relation_in_relation_hooks() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let rel = m.relation_id("alpha/0", "peers");
    let out = m.exec_out(
        "alpha/0",
        &["--relation", &rel],
        "juju-log --log-level INFO -- marker-rel-91c2",
    );
    out.ok("juju-log in a relation context");
    let log = debug_log(&m);
    let line = log
        .lines()
        .find(|l| l.contains("marker-rel-91c2"))
        .unwrap_or_else(|| panic!("juju-log message missing from debug-log:\n{log}"));
    assert!(
        line.ends_with(&format!(" {rel}: marker-rel-91c2")),
        "expected the `{rel}: ` prefix: {line}"
    );
}

// --------------------------------------------------- application-version-set

#[test]
fn application_version_set_is_immediate() {
    let m = Model::new();
    m.deploy("alpha", 1);
    // Immediate: it sticks even though the hook then fails.
    let (code, _, err) = m.exec("alpha/0", &[], "application-version-set -- 1.2.3; exit 1");
    assert_eq!(code, 1, "{err}");
    let st = m.status();
    assert_eq!(st["applications"]["alpha"]["version"], "1.2.3", "{st}");
}

// --------------------------------------------------------- state-get/set/delete

#[test]
fn state_persists_across_hooks() {
    let m = Model::new();
    m.deploy("alpha", 1);
    m.sh(
        "alpha/0",
        "printf 'colour: blue\\nsize: \"10\"\\n' | state-set --file -",
    );
    m.sh("alpha/0", "state-set shape=round");
    assert_eq!(
        m.sh_json("alpha/0", "state-get --format=json"),
        json!({"colour": "blue", "size": "10", "shape": "round"})
    );
    assert_eq!(m.sh("alpha/0", "state-get colour"), "blue\n");
    assert_eq!(m.sh("alpha/0", "state-get --format=json size"), "\"10\"\n");

    m.sh("alpha/0", "state-delete colour");
    assert_eq!(
        m.sh_json("alpha/0", "state-get --format=json"),
        json!({"size": "10", "shape": "round"})
    );
}

#[test]
fn state_is_per_unit() {
    let m = Model::new();
    m.deploy("alpha", 2);
    m.sh("alpha/0", "state-set mine=zero");
    m.sh("alpha/1", "state-set mine=one");
    assert_eq!(
        m.sh_json("alpha/0", "state-get --format=json"),
        json!({"mine": "zero"})
    );
    assert_eq!(
        m.sh_json("alpha/1", "state-get --format=json"),
        json!({"mine": "one"})
    );
}

#[test]
fn state_writes_are_dropped_after_a_failed_hook() {
    let m = Model::new();
    m.deploy("alpha", 1);
    m.sh("alpha/0", "state-set keep=yes");
    // The hook reads its own pending writes...
    let (code, out, err) = m.exec(
        "alpha/0",
        &[],
        "state-set lost=yes && state-delete keep && state-get --format=json; exit 3",
    );
    assert_eq!(code, 3, "exec exits with the command's code: {err}");
    let pending: Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(pending, json!({"lost": "yes"}));
    // ...which are dropped because it exited non-zero.
    assert_eq!(
        m.sh_json("alpha/0", "state-get --format=json"),
        json!({"keep": "yes"})
    );
}

#[test]
fn state_size_limits() {
    let m = Model::new();
    m.deploy("alpha", 1);
    // A 256-byte key and a 64 KiB value are within the limits.
    let key = "k".repeat(256);
    m.sh(
        "alpha/0",
        &format!("printf '{key}: ' > /tmp/$$.yaml; head -c 65536 /dev/zero | tr '\\0' a >> /tmp/$$.yaml; state-set --file - < /tmp/$$.yaml; rc=$?; rm -f /tmp/$$.yaml; exit $rc"),
    );
    let state = m.sh_json("alpha/0", "state-get --format=json");
    assert_eq!(state[key.as_str()].as_str().map(str::len), Some(65536));

    // One byte more, of either, is refused: the write never lands.
    let long_key = "k".repeat(257);
    let out = m.exec_out("alpha/0", &[], &format!("state-set {long_key}=v"));
    assert_ne!(out.code, 0, "a 257-byte key was accepted");
    let out = m.exec_out(
        "alpha/0",
        &[],
        "printf 'big: ' > /tmp/$$.yaml; head -c 65537 /dev/zero | tr '\\0' a >> /tmp/$$.yaml; state-set --file - < /tmp/$$.yaml; rc=$?; rm -f /tmp/$$.yaml; exit $rc",
    );
    assert_ne!(out.code, 0, "a 65537-byte value was accepted");
    let state = m.sh_json("alpha/0", "state-get --format=json");
    let keys: Vec<&String> = state.as_object().unwrap().keys().collect();
    assert_eq!(keys, vec![&key], "only the first write was kept");
}

// ---------------------------------------------------------------- storage-get

#[test]
fn storage_get_gives_a_directory_per_unit() {
    let m = Model::new();
    m.deploy("alpha", 2);
    let mut locations = Vec::new();
    for unit in ["alpha/0", "alpha/1"] {
        let loc = m.sh_json(
            unit,
            r#"storage-get --format=json -s "$(storage-list data | head -n 1)" location"#,
        );
        let loc = loc
            .as_str()
            .unwrap_or_else(|| panic!("location is a JSON string: {loc}"))
            .to_string();
        assert!(
            std::path::Path::new(&loc).is_dir(),
            "{unit}'s storage location {loc} is a directory"
        );
        // The same answer in the smart format, and the hook can write there.
        assert_eq!(
            m.sh(
                unit,
                r#"s=$(storage-list data | head -n 1); l=$(storage-get -s "$s" location); touch "$l/probe" && echo "$l""#
            ),
            format!("{loc}\n")
        );
        locations.push(loc);
    }
    assert_ne!(locations[0], locations[1], "each unit has its own storage");
}

// --------------------------------------------------------------- network-get

fn loopback_octets(addr: &str) -> Vec<u8> {
    let octets: Vec<u8> = addr
        .split('.')
        .map(|o| {
            o.parse()
                .unwrap_or_else(|_| panic!("not an IPv4 address: {addr}"))
        })
        .collect();
    assert_eq!(octets.len(), 4, "not an IPv4 address: {addr}");
    assert_eq!(octets[0], 127, "a loopback address: {addr}");
    octets
}

#[test]
fn network_get_gives_each_unit_its_own_address() {
    let m = Model::new();
    m.deploy("alpha", 2);
    let mut addrs = Vec::new();
    for unit in ["alpha/0", "alpha/1"] {
        let net = m.sh_json(unit, "network-get --format=json peers");
        let bind = net["bind-addresses"][0]["addresses"][0]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("bind-addresses[0].addresses[0].value: {net}"))
            .to_string();
        let ingress = net["ingress-addresses"][0]
            .as_str()
            .unwrap_or_else(|| panic!("ingress-addresses[0]: {net}"))
            .to_string();
        assert!(net["egress-subnets"].is_array(), "egress-subnets: {net}");
        assert_eq!(bind, ingress, "{net}");
        loopback_octets(&bind);
        // Every endpoint binding answers with the unit's address.
        let db = m.sh_json(unit, "network-get --format=json db");
        assert_eq!(db["ingress-addresses"][0], json!(ingress), "{db}");
        addrs.push(bind);
    }
    assert_ne!(addrs[0], addrs[1], "units have distinct addresses");
    let out = m.exec_out("alpha/0", &[], "network-get --format=json no-such-binding");
    assert_ne!(out.code, 0, "an unknown binding: {}", out.stdout);
    let st = m.status();
    assert_eq!(
        st["applications"]["alpha"]["units"]["alpha/0"]["public-address"],
        json!(addrs[0]),
        "{st}"
    );
}

// ---------------------------------------------------------- open/close-port

#[test]
fn open_and_close_port() {
    let m = Model::new();
    m.deploy("alpha", 1);
    m.sh("alpha/0", "open-port 5432/tcp");
    assert_eq!(m.sh("alpha/0", "opened-ports"), "5432/tcp\n");

    // Dropped: the hook failed.
    let (code, _, _) = m.exec("alpha/0", &[], "open-port 6000/tcp; exit 1");
    assert_eq!(code, 1);
    let (code, _, _) = m.exec("alpha/0", &[], "close-port 5432/tcp; exit 1");
    assert_eq!(code, 1);
    assert_eq!(m.sh("alpha/0", "opened-ports"), "5432/tcp\n");

    // The hook sees its own pending changes.
    let (code, out, _) = m.exec(
        "alpha/0",
        &[],
        "open-port 7000/tcp && close-port 5432/tcp && opened-ports; exit 1",
    );
    assert_eq!(code, 1);
    assert_eq!(out, "7000/tcp\n");
    assert_eq!(m.sh("alpha/0", "opened-ports"), "5432/tcp\n");

    m.sh("alpha/0", "close-port 5432/tcp");
    assert_eq!(m.sh("alpha/0", "opened-ports"), "");
}

// --------------------------------------------------------------- flag parsing

#[test]
fn flags_may_follow_positionals_and_take_either_form() {
    let m = Model::new();
    m.deploy("alpha", 1);
    assert_eq!(
        m.sh("alpha/0", "config-get name --format=json"),
        "\"hello\"\n"
    );
    assert_eq!(
        m.sh("alpha/0", "config-get name --format json"),
        "\"hello\"\n"
    );
    assert_eq!(
        m.sh("alpha/0", "config-get --format json name"),
        "\"hello\"\n"
    );
    assert_eq!(
        m.sh_json("alpha/0", "relation-ids peers --format=json"),
        m.sh_json("alpha/0", "relation-ids --format=json peers")
    );
}

#[test]
fn boolean_flags_accept_explicit_values() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let with_all = m.sh_json("alpha/0", "config-get --format=json --all=true");
    assert_eq!(with_all["nickname"], Value::Null);
    assert!(with_all.as_object().unwrap().contains_key("nickname"));
    let without = m.sh_json("alpha/0", "config-get --format=json --all=false");
    assert!(
        !without.as_object().unwrap().contains_key("nickname"),
        "{without}"
    );
    m.sh(
        "alpha/0",
        "status-set --application=False maintenance -- unit",
    );
    assert_eq!(m.sh("alpha/0", "status-get"), "maintenance\n");
}

#[test]
fn double_dash_ends_flags() {
    let m = Model::new();
    m.deploy("alpha", 1);
    m.sh("alpha/0", "status-set maintenance -- --looks-like-a-flag");
    assert_eq!(
        m.sh_json("alpha/0", "status-get --include-data --format=json")["message"],
        "--looks-like-a-flag"
    );
    m.sh("alpha/0", "juju-log -- --also-not-a-flag-5d1e");
    let log = debug_log(&m);
    assert!(
        log.lines().any(|l| l.ends_with(" --also-not-a-flag-5d1e")),
        "{log}"
    );
}

#[test]
fn unknown_flags_exit_2() {
    let m = Model::new();
    m.deploy("alpha", 1);
    for (tool, line) in [
        (
            "is-leader --bogus",
            "ERROR option provided but not defined: --bogus",
        ),
        (
            "config-get --nope=1",
            "ERROR option provided but not defined: --nope",
        ),
        (
            "relation-ids peers --bogus",
            "ERROR option provided but not defined: --bogus",
        ),
    ] {
        let out = m.exec_out("alpha/0", &[], tool);
        assert_fails_with(&out, 2, line);
    }
}

// ------------------------------------------------------------- hook contexts

#[test]
fn exec_runs_in_the_units_hook_context() {
    let m = Model::new();
    m.deploy("alpha", 2);
    let out = m.sh(
        "alpha/1",
        r#"echo "$JUJU_UNIT_NAME|$JUJU_MODEL_NAME|$JUJU_VERSION|$(pwd -P)""#,
    );
    assert_eq!(
        out,
        format!(
            "alpha/1|local|3.6.0|{}\n",
            m.charm_dir("alpha/1").canonicalize().unwrap().display()
        )
    );
    // Deploy order, as Juju 3.6 runs it on a machine.
    let log = m.dispatch_log("alpha/0");
    let pos = |h: &str| {
        log.iter()
            .position(|x| x == h)
            .unwrap_or_else(|| panic!("{h} never ran: {log:?}"))
    };
    assert!(pos("hooks/data-storage-attached") < pos("hooks/install"));
    assert!(pos("hooks/install") < pos("hooks/peers-relation-created"));
    assert!(pos("hooks/config-changed") < pos("hooks/start"));
}
