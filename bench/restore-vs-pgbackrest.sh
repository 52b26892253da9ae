#!/bin/bash
# The charm's restore action against pgBackRest's restore, on the same data,
# the same S3 server and the same machine, in one run: a full backup and a
# chain of CHAIN incrementals on it, taken by each tool from one unit of the
# packed charm under juju-local; then the full, the first incremental and
# the last one (the whole chain) each restored by each tool, alternating,
# several times.
#
#   bench/restore-vs-pgbackrest.sh          SCALE=100 RUNS=3 LOAD_SECONDS=15 CHAIN=5 by default
#   SCALE=5 RUNS=1 bench/restore-vs-pgbackrest.sh      a quick check
#   TXNS=10000 bench/restore-vs-pgbackrest.sh          the load as transactions per client
#
# The targets (ratios of medians, ours over pgBackRest's, the whole restore
# against pgBackRest's restore until its server takes writes): at most 0.8
# for the full and for the first incremental (full + 1); at most 1.0 for
# the chain (full + CHAIN). The chain costs its backups, not its restores:
# at SCALE=100 taking the full and the CHAIN=5 incrementals (five loads of
# 15 s, each followed by an incremental with each tool) took about 3
# minutes on the 2-core machine, and a run restoring all three with both
# tools under one; the whole script at the defaults, about 6 minutes after
# the build. So every run restores the chain; CHAIN (at least 2) makes it
# shorter, and quicker to take, when needed.
#
# Writes docs/benchmarks/restore-vs-pgbackrest.json (every measure, raw) and
# the generated section of docs/benchmarks.md (OUTPUT_DIR=DIR writes both
# under DIR instead); REPORT_ONLY=1 only rewrites that section from the JSON;
# KEEP_LOGS=1 keeps the work directory under /tmp. Not part of `cargo test`.
# Prerequisites as for bench/backup-vs-pgbackrest.sh (root, PostgreSQL 15,
# pgBackRest, nginx, openssl, curl, python3, cargo), checked below.
#
# The setup is that script's (bench/lib/pgbackrest-bench.sh): one unit
# (profile=testing), juju-local's S3 server behind nginx with TLS, both
# tools on it, `pgbench -i -s SCALE`, a pgBackRest stanza and an
# archive_command that archives every segment for both. Then, untimed: a
# full backup by each tool, back to back with no write between them; then
# CHAIN times `pgbench -c 2 -j 2 -T LOAD_SECONDS` and an incremental by each
# tool, back to back after the same load (each incremental on the one
# before it, for both tools). At each point the database's fingerprint
# (rows and balance of pgbench_accounts, rows of pgbench_history) is taken:
# every restore must give back the one of its backup exactly, or the script
# stops. The unit keeps archiving every segment for both tools to the end
# (our restores bring back the backup's postgresql.auto.conf, which says
# so), so both archives hold the same WAL and PostgreSQL reads as far ahead
# in each while it recovers.
#
# Each run restores the full, the first incremental, then the last one
# (the chain), with each tool; ours goes first in odd runs, pgBackRest in
# even ones; `sync` before each timed restore, so none pays for the
# previous one's writeback.
#   ours: `juju-local run postgresql/0 restore backup-id=<id> --format json`
#     on the running unit, timed whole; a watcher (50 ms polls of the unit's
#     storage and postmaster.pid) splits it into its steps.
#   pgBackRest: `pgbackrest restore --set=<label> --type=immediate
#     --target-action=promote --recovery-option=recovery_target_timeline=current`
#     (the backup's own timeline, as ours; pgBackRest 2.45 refuses
#     --target-timeline with --type=immediate) as postgres into an empty
#     scratch directory, timed; then a throwaway server on it
#     (127.0.0.1 on a free port, its own socket directory and hba, archiving
#     off), timed from `pg_ctl start` until `SELECT txid_current()` succeeds.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench_name=restore-vs-pgbackrest
scale=${SCALE:-100}
runs=${RUNS:-3}
chain=${CHAIN:-5}
output=${OUTPUT_DIR:-$root/docs}
# nginx opens a connection to the S3 server per request (see the library).
upstream_keepalive=0
# shellcheck source=lib/pgbackrest-bench.sh
. "$root/bench/lib/pgbackrest-bench.sh"

report_json="$output/benchmarks/restore-vs-pgbackrest.json"
report_md="$output/benchmarks.md"

# The generated section of the doc, from the JSON (REPORT_ONLY=1 does only
# this); text outside its markers is kept.
render_report() {
    python3 - "$report_json" "$report_md" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1]))
md = sys.argv[2]
m, summary, rows = doc["meta"], doc["summary"], doc["runs"]
# Older results have no chain.
KINDS = [k for k in ("full", "incremental", "chain") if k in summary]
chain = m.get("chain")
NAMES = {"full": "full", "incremental": "full + 1 incremental",
         "chain": f"full + {chain} incrementals"}

def s(v):
    return f"{v:.2f} s"

def cell(st):
    return f"{s(st['median'])} ({s(st['min'])}–{s(st['max'])})"

loads = [r["load_average_1m_before"] for r in rows]
out = []
out.append(f"Run on {m['date'][:10]}: `{m['command']}` (at commit {m['versions']['charm_commit']}).\n")
out.append(f"Machine: {m['machine']['nproc']} cores, {m['machine']['memory']} of memory, "
           f"/tmp on {m['machine']['tmp_filesystem']} ({m['machine']['disk'] or 'disk unknown'}), "
           f"Linux {m['machine']['kernel']}; load average at the start "
           f"{m['machine']['load_average_at_start']}, at the end {m['machine']['load_average_at_end']}, "
           f"1-minute load before each restore {min(loads):.2f}–{max(loads):.2f}. "
           f"PostgreSQL {m['versions']['postgresql']}, pgBackRest {m['versions']['pgbackrest']}, "
           f"nginx {m['versions']['nginx']}.\n")
if chain:
    lt = m["load_transactions"]
    data = (f"a full backup by each tool, then {chain} times `{m['pgbench_load']}` "
            f"({lt['median']:.0f} transactions, median; {lt['min']}–{lt['max']}) and an incremental "
            f"by each, each on the one before. Restored: the full, the first incremental and the "
            f"last ({NAMES['chain']}). ")
else:
    data = f"between the full and the incremental backups: `{m['pgbench_load']}`. "
out.append(f"Data: `pgbench -i -s {m['scale']}`, a {m['database_bytes'] / 1e9:.2f} GB database; "
           + data + "Each restore gave "
           f"back the fingerprint taken when its backup was made (pgbench_accounts: "
           f"{m['fingerprints']['full']['accounts']} rows at every point). "
           f"{m['runs']} run(s), ours first in odd runs and pgBackRest first in even ones; "
           f"medians, min–max in brackets, and the ratio of the medians.\n")
measures = [
    ("files", "files in place",
     "start → the files fetched, checked (SHA-256, pg_verifybackup)", "`pgbackrest restore`"),
    ("writable", "files + recovery until writable",
     "start → promoted, accepting writes", "restore + server start until `txid_current()` works"),
    ("whole", "the whole restore",
     "the action, until its result", "as above"),
    ("cpu", "CPU seconds (user+sys) of the command",
     "the action (charm, pg_verifybackup, hook tools)", "`pgbackrest restore`"),
]
out.append("| backup restored | measure | ours | pgBackRest | ours / pgBackRest |")
out.append("|---|---|---|---|---|")
for kind in KINDS:
    for key, label, _, _ in measures:
        st = summary[kind][key]
        out.append(f"| {NAMES[kind]} | {label} | {cell(st['ours'])} | {cell(st['pgbackrest'])} "
                   f"| {st['ratio_ours_over_pgbackrest']:.3f} |")
out.append("")
verdicts = []
for t in doc.get("targets", []):
    if t["target"] is None:
        continue
    word = "met" if t["met"] else "missed"
    verdicts.append(f"{t['label']}: at most {t['target']:g}×, **{word}** ({t['ratio']:.3f})")
out.append("Targets, the whole restore against pgBackRest's files + recovery until writable, "
           "ratio of medians: " + "; ".join(verdicts) + ".\n")
if all("reads" in summary[k] for k in KINDS):
    out.append("What each restore reads from the repository (compressed bytes; ours: a base "
               "and, for a file kept as page deltas, each of its deltas):\n")
    out.append("| backup restored | ours | of which page deltas | files rebuilt from page deltas "
               "(most deltas on one file) | pgBackRest |")
    out.append("|---|---|---|---|---|")
    for kind in KINDS:
        r = summary[kind]["reads"]
        out.append(f"| {NAMES[kind]} | {r['ours_bytes'] / 1e6:.2f} MB in {r['ours_objects']} objects "
                   f"| {r['ours_delta_bytes'] / 1e6:.2f} MB "
                   f"| {r['ours_files_with_deltas']} ({r['ours_most_deltas']}) "
                   f"| {r['pgbackrest_bytes'] / 1e6:.2f} MB |")
    out.append("")
out.append("Where our restore spends its time (medians, seconds; the steps come from the watcher):\n")
steps = doc["steps"]
out.append("| backup restored | " + " | ".join(label for _, label in steps) + " | whole |")
out.append("|---|" + "---|" * (len(steps) + 1))
for kind in KINDS:
    ph = summary[kind]["ours_steps"]
    out.append(f"| {NAMES[kind]} | " + " | ".join(f"{ph[key]['median']:.2f}" for key, _ in steps)
               + f" | {summary[kind]['whole']['ours']['median']:.2f} |")
out.append("")
trash = [f"{summary[k]['ours_trash_after_result_s']['median']:.2f} s ({NAMES[k]})" for k in KINDS]
trash = ", ".join(trash[:-1]) + " and " + trash[-1] if len(trash) > 1 else trash[0]
out.append("After the result, in the background: the replaced data directory deleted "
           f"{trash} later (medians); the next timed step waited for it.\n")
out.append("pgBackRest's two steps (medians, seconds):\n")
out.append("| backup restored | `pgbackrest restore` | server start → writable | total |")
out.append("|---|---|---|---|")
for kind in KINDS:
    p = summary[kind]["pgbackrest_steps"]
    out.append(f"| {NAMES[kind]} | {p['restore_s']['median']:.2f} | {p['server_s']['median']:.2f} "
               f"| {summary[kind]['writable']['pgbackrest']['median']:.2f} |")
out.append("")
out.append("Each run (seconds: ours files in place / until writable / whole; "
           "pgBackRest restore / until writable):\n")
out.append("| run | backup restored | ours | pgBackRest |")
out.append("|---|---|---|---|")
for run, kind in sorted({(r["run"], r["kind"]) for r in rows}, key=lambda x: (x[0], KINDS.index(x[1]))):
    o = next(x for x in rows if (x["run"], x["kind"], x["tool"]) == (run, kind, "ours"))
    p = next(x for x in rows if (x["run"], x["kind"], x["tool"]) == (run, kind, "pgbackrest"))
    out.append(f"| {run} | {NAMES[kind]} | {o['files_s']:.2f} / {o['writable_s']:.2f} / {o['wall_s']:.2f} "
               f"| {p['restore_s']:.2f} / {p['writable_s']:.2f} |")
section = "\n".join(out) + "\n"

begin = "<!-- restore-vs-pgbackrest: begin (generated by the script) -->"
end = "<!-- restore-vs-pgbackrest: end -->"
heading = "## Restores: the charm's restore action against pgBackRest\n\n"
if os.path.exists(md):
    text = open(md).read()
else:
    text = "# Benchmarks\n\n" + heading + f"{begin}\n{end}\n"
if begin not in text:
    text += "\n" + heading + f"{begin}\n{end}\n"
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
with open(md, "w") as f:
    f.write(head + begin + "\n" + section + end + tail)
print(section)
PY
}

if [ -n "${REPORT_ONLY:-}" ]; then
    [ -f "$report_json" ] || die "no $report_json to render"
    render_report
    exit 0
fi

# --- the setup (bench/lib/pgbackrest-bench.sh) ------------------------------
bench_prerequisites
case $scale$runs$chain in *[!0-9]*) die "SCALE, RUNS and CHAIN must be whole numbers" ;; esac
bench_load_settings
[ "$runs" -ge 1 ] || die "RUNS must be at least 1"
[ "$chain" -ge 2 ] || die "CHAIN must be at least 2 (the first incremental is restored on its own already)"
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
pg_bin=/usr/lib/postgresql/15/bin
[ -x "$pg_bin/pg_ctl" ] || die "no $pg_bin/pg_ctl: install PostgreSQL 15 (apt-get install -y postgresql-15)"
# On exit: the throwaway server pgBackRest's restores run on stopped; the
# unit's server logs and the model's debug-log kept with the logs.
scratch_pgdata() { printf '%s\n' "$work/pgbackrest-restore/data"; }
bench_on_exit() {
    if [ -n "${work:-}" ] && [ -f "$(scratch_pgdata)/postmaster.pid" ]; then
        runuser -u postgres -- "$pg_bin/pg_ctl" stop -D "$(scratch_pgdata)" -m immediate >/dev/null 2>&1 || true
    fi
    if [ -n "${storage:-}" ] && [ -d "$storage/logs" ]; then
        cp -r "$storage/logs" "$work/logs/unit-server-logs" 2>/dev/null || true
        "$jl" debug-log --replay >"$work/logs/debug-log.txt" 2>&1 || true
    fi
}
bench_workdir
bench_build
bench_deploy
bench_tls_front
bench_charm_on_https
bench_load_data "$scale"
bench_pgbackrest

now() { printf '%s\n' "$EPOCHREALTIME"; }

# What a restore must give back: rows and balance of pgbench_accounts, rows
# of pgbench_history, as "accounts balance history".
fingerprint() { # psql options...
    psql -X -q -At -v ON_ERROR_STOP=1 "$@" -F ' ' -c \
        "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT sum(abalance) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history)"
}

# --- the backups, untimed ---------------------------------------------------
# One line per backup point: name (full, incr1 ... incrCHAIN), our id,
# pgBackRest's label, the fingerprint, then what a restore of it reads:
# JSON with our objects and bytes (a base and its page deltas per file) and
# pgBackRest's repository size of the backup.
backups="$work/backups.tsv"
: >"$backups"
loads="$work/loads.tsv"
: >"$loads"
ours_backup() { # name kind
    local log="$work/logs/backup-ours-$1.json" id
    settle
    sleep 1.1 # backup ids are whole seconds
    "$jl" run postgresql/0 create-backup "type=$2" --format json >"$log" 2>"$work/logs/backup-ours-$1.err" \
        || die "create-backup type=$2 failed: $(cat "$log" "$work/logs/backup-ours-$1.err")"
    [ "$(json "d['postgresql/0']['status']" <"$log")" = completed ] || die "create-backup type=$2: $(cat "$log")"
    id=$(json "d['postgresql/0']['results']['backup-id']" <"$log")
    printf '%s\n' "$id"
}
pgbr_backup() { # name full|incr
    local log="$work/logs/backup-pgbackrest-$1"
    settle
    pgbr "--type=$2" backup >"$log.out" 2>"$log.err" \
        || die "pgbackrest --type=$2 backup failed: $(tail -n 5 "$log.out" "$log.err")"
    pgbr info --output=json >"$log.info.json"
    python3 - "$log.info.json" "$2" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))[0]["backup"][-1]
assert b["type"] == sys.argv[2], b
print(b["label"])
PY
}
take_backups() { # name kind pgbackrest-type
    local id label before after reads
    before=$(fingerprint)
    id=$(ours_backup "$1" "$2")
    label=$(pgbr_backup "$1" "$3")
    after=$(fingerprint)
    [ "$before" = "$after" ] || die "the data changed between the two $1 backups: $before, then $after"
    reads=$(python3 - "$charm_repo/backups/$id/record.json" "$work/logs/backup-pgbackrest-$1.info.json" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
files = [f for f in record["files"] if f["kind"] == "file"]
layered = [f for f in files if f.get("layers")]
backup = json.load(open(sys.argv[2]))[0]["backup"][-1]
print(json.dumps({
    "ours_objects": sum(1 + len(f.get("layers", [])) for f in files),
    "ours_bytes": sum(f.get("stored", 0) + sum(l["stored"] for l in f.get("layers", [])) for f in files),
    "ours_files_with_deltas": len(layered),
    "ours_most_deltas": max((len(f["layers"]) for f in layered), default=0),
    "ours_delta_bytes": sum(l["stored"] for f in layered for l in f["layers"]),
    "pgbackrest_bytes": backup["info"]["repository"]["size"],
    "pgbackrest_delta_bytes": backup["info"]["repository"]["delta"],
}))
PY
) || die "cannot read what backup $id or $label holds"
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$id" "$label" "$after" "$reads" >>"$backups"
    say "  $1: ours $id, pgBackRest $label; fingerprint $after"
}
say "the backups (untimed): a full by each tool, then $chain times $pgbench_load and an incremental by each"
take_backups full full full
for i in $(seq "$chain"); do
    n=$(bench_run_load "$work/logs/pgbench-load-$i.log")
    printf '%s\t%s\n' "$i" "$n" >>"$loads"
    say "  $n transactions"
    take_backups "incr$i" incremental incr
done
db_bytes=$(sql -c "SELECT pg_database_size('postgres')")

# --- the restores -----------------------------------------------------------
# The watcher of our restore: polls the unit's storage every 50 ms and
# writes, as JSON, when each step began (Unix seconds): the restored
# directory created (fetching starts), made 0700 or pg_verifybackup seen
# (the fetch is done, with every file synced; verification starts),
# pg_verifybackup gone, the live server stopping, the directory swapped in,
# the restored server ready (with hot_standby off during the restore, ready
# means promoted).
cat >"$work/watch.py" <<'PY'
import json, os, signal, sys, time
storage, out = sys.argv[1], sys.argv[2]
incoming = os.path.join(storage, "data.restoring")
pidfile = os.path.join(storage, "data", "postmaster.pid")
ev, verify_pid, stop = {}, None, False

def mark(key):
    ev.setdefault(key, time.time())

def pid_status():
    try:
        lines = open(pidfile).read().splitlines()
    except OSError:
        return None
    return lines[7].strip() if len(lines) > 7 else ""

def find_verify():
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if open(f"/proc/{p}/comm").read().strip() == "pg_verifybackup":
                    return p
            except OSError:
                pass
    return None

def finish(*_):
    global stop
    stop = True

signal.signal(signal.SIGTERM, finish)
while not stop:
    try:
        st = os.stat(incoming)
    except FileNotFoundError:
        st = None
    if st is not None:
        mark("fetch")
        if st.st_mode & 0o777 == 0o700:
            mark("verify")
        if verify_pid is None and "verify_end" not in ev:
            verify_pid = find_verify()
            if verify_pid:
                mark("verify")
        if verify_pid and not os.path.exists(f"/proc/{verify_pid}"):
            mark("verify_end")
            verify_pid = None
        if "verify" in ev and pid_status() in ("stopping", None):
            mark("verify_end")  # if pg_verifybackup ended between two polls
            mark("stopping")
    elif "fetch" in ev:
        if verify_pid:
            mark("verify_end")
            verify_pid = None
        mark("swapped")
        if pid_status() == "ready":
            mark("ready")
            break
    time.sleep(0.05)
while not stop:
    time.sleep(0.05)
json.dump(ev, open(out, "w"))
PY

# Seconds from T (the action's result) until the unit's trash is empty: the
# data directory a restore replaced is deleted in the background after the
# result, and the next timed step waits for that, so that it does not share
# the disk with the deletion.
wait_trash() {
    local t=$1
    while [ -n "$(ls -A "$storage/trash" 2>/dev/null)" ]; do
        awk -v a="$(now)" -v b="$t" 'BEGIN { exit !(a - b < 600) }' \
            || die "the unit's trash was not emptied within 10 minutes"
        sleep 0.05
    done
    awk -v a="$(now)" -v b="$t" 'BEGIN { printf "%.3f", a - b }'
}

results="$work/results.jsonl"
: >"$results"
backup_field() { awk -F'\t' -v k="$1" -v c="$2" '$1 == k { print $c }' "$backups"; }
# The backup point each case restores: the full, the first incremental, the
# last incremental.
backup_key() { # kind
    case $1 in full) echo full ;; incremental) echo incr1 ;; chain) echo "incr$chain" ;; esac
}

ours() { # run kind
    local run=$1 kind=$2 log="$work/logs/ours-$1-$2" id expected t watcher t0 t1 got load trash_s
    id=$(backup_field "$(backup_key "$kind")" 2)
    expected=$(backup_field "$(backup_key "$kind")" 4)
    sync
    python3 "$work/watch.py" "$storage" "$log.steps.json" &
    watcher=$!
    sleep 0.2
    load=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(now)
    t=$(timed "$log.json" "$log.err" "$jl" run postgresql/0 restore "backup-id=$id" --format json) \
        || { kill "$watcher" 2>/dev/null; die "restore backup-id=$id failed: $(cat "$log.json" "$log.err")"; }
    t1=$(now)
    kill -TERM "$watcher"
    wait "$watcher" || die "the watcher of restore $id failed"
    trash_s=$(wait_trash "$t1")
    [ "$(json "d['postgresql/0']['status']" <"$log.json")" = completed ] \
        || die "restore backup-id=$id: $(cat "$log.json")"
    [ "$(json "d['postgresql/0']['results']['restore-status']" <"$log.json")" = restored ] \
        || die "restore backup-id=$id: $(cat "$log.json")"
    [ "$(json "d['postgresql/0']['results']['backup-id']" <"$log.json")" = "$id" ] \
        || die "restore backup-id=$id restored another backup: $(cat "$log.json")"
    got=$(fingerprint)
    [ "$got" = "$expected" ] \
        || die "our restore of $kind backup $id gave $got (accounts balance history), expected $expected"
    python3 - "$log.json" "$log.steps.json" "$run" "$kind" "$id" "$t" "$t0" "$t1" "$got" "$load" "$trash_s" >>"$results" <<'PY'
import json, sys
task_file, steps_file, run, kind, ident, t, t0, t1, got, load, trash_s = sys.argv[1:]
task = json.load(open(task_file))["postgresql/0"]
ev = json.load(open(steps_file))
t0, t1 = float(t0), float(t1)
need = ["fetch", "verify", "verify_end", "swapped", "ready"]
missing = [k for k in need if k not in ev]
if missing:
    sys.exit(f"the watcher missed {missing} of our restore of {ident}: {ev}")
wall, user, sys_ = map(float, t.split())
at = {k: v - t0 for k, v in ev.items()}
steps = {
    "before_s": at["fetch"],
    "fetch_s": at["verify"] - at["fetch"],
    "verify_s": at["verify_end"] - at["verify"],
    "swap_s": at["swapped"] - at["verify_end"],
    "recovery_s": at["ready"] - at["swapped"],
    "after_s": (t1 - t0) - at["ready"],
}
accounts, balance, history = got.split()
print(json.dumps({
    "run": int(run), "tool": "ours", "kind": kind, "id": ident, "load_average_1m_before": float(load),
    "wall_s": wall, "cpu_user_s": user, "cpu_sys_s": sys_,
    "files_s": at["verify_end"], "writable_s": at["ready"], "steps": steps,
    "trash_after_result_s": float(trash_s),
    "events_since_start_s": at,
    "fingerprint": {"accounts": int(accounts), "abalance_sum": int(balance), "history": int(history)},
    "results": task["results"], "action_log": task.get("log", []),
}))
PY
    say "  ours $kind: $(echo "$t" | cut -d' ' -f1) s (files in place $(tail -n 1 "$results" | json "round(d['files_s'], 2)") s, writable $(tail -n 1 "$results" | json "round(d['writable_s'], 2)") s)"
}

theirs() { # run kind
    local run=$1 kind=$2 log="$work/logs/pgbackrest-$1-$2" label expected t pgdata sock sport t0 t1 got
    local server_log="$work/pgbackrest-restore/server.log" load
    label=$(backup_field "$(backup_key "$kind")" 3)
    expected=$(backup_field "$(backup_key "$kind")" 4)
    pgdata=$(scratch_pgdata)
    sock="$work/pgbackrest-restore/run"
    rm -rf "$work/pgbackrest-restore"
    install -d -o postgres -g postgres -m 0700 "$work/pgbackrest-restore" "$pgdata" "$sock"
    install -o postgres -g postgres -m 0600 /dev/null "$server_log"
    printf 'local all all trust\n' >"$work/pgbackrest-restore/pg_hba.conf"
    chown postgres:postgres "$work/pgbackrest-restore/pg_hba.conf"
    sync
    load=$(cut -d' ' -f1 /proc/loadavg)
    t=$(timed "$log.out" "$log.err" runuser -u postgres -- pgbackrest --config="$pgbr_conf" --stanza=bench \
        --pg1-path="$pgdata" "--set=$label" --type=immediate --target-action=promote \
        --recovery-option=recovery_target_timeline=current restore) \
        || die "pgbackrest restore --set=$label failed: $(tail -n 5 "$log.out" "$log.err")"
    # The same end point as ours: recovered to the backup's end, promoted,
    # taking writes. Archiving off: this server must not write into either
    # repository.
    sport=$(free_port)
    t0=$(now)
    runuser -u postgres -- "$pg_bin/pg_ctl" start -D "$pgdata" -l "$server_log" -o \
        "-c listen_addresses=127.0.0.1 -c port=$sport -c unix_socket_directories=$sock -c archive_mode=off -c logging_collector=off -c hba_file=$work/pgbackrest-restore/pg_hba.conf" \
        >/dev/null || die "the server on pgBackRest's restore did not start: $(tail -n 5 "$server_log")"
    until psql -X -q -At -h "$sock" -p "$sport" -U operator -d postgres \
        -c "SELECT txid_current()" >/dev/null 2>&1; do
        [ -f "$pgdata/postmaster.pid" ] || die "the server on pgBackRest's restore stopped: $(tail -n 5 "$server_log")"
        awk -v a="$(now)" -v b="$t0" 'BEGIN { exit !(a - b < 600) }' \
            || die "the server on pgBackRest's restore did not take writes within 10 minutes"
        sleep 0.05
    done
    t1=$(now)
    got=$(fingerprint -h "$sock" -p "$sport" -U operator -d postgres)
    runuser -u postgres -- "$pg_bin/pg_ctl" stop -D "$pgdata" -m fast >/dev/null
    cp "$server_log" "$log.server.log"
    [ "$got" = "$expected" ] \
        || die "pgBackRest's restore of $kind backup $label gave $got (accounts balance history), expected $expected"
    rm -rf "$work/pgbackrest-restore"
    python3 - "$log.out" "$run" "$kind" "$label" "$t" "$t0" "$t1" "$got" "$load" >>"$results" <<'PY'
import json, sys
out, run, kind, label, t, t0, t1, got, load = sys.argv[1:]
wall, user, sys_ = map(float, t.split())
server = float(t1) - float(t0)
accounts, balance, history = got.split()
print(json.dumps({
    "run": int(run), "tool": "pgbackrest", "kind": kind, "id": label, "load_average_1m_before": float(load),
    "restore_s": wall, "wall_s": wall, "cpu_user_s": user, "cpu_sys_s": sys_,
    "server_s": server, "writable_s": wall + server,
    "fingerprint": {"accounts": int(accounts), "abalance_sum": int(balance), "history": int(history)},
    "log": [l for l in open(out).read().splitlines()
            if (" INFO: " in l and "command begin" not in l) or " WARN: " in l],
}))
PY
    say "  pgBackRest $kind: restore $(echo "$t" | cut -d' ' -f1) s, server until writable $(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.2f", a - b }') s"
}

for run in $(seq "$runs"); do
    say "run $run of $runs"
    for kind in full incremental chain; do
        if [ $((run % 2)) = 1 ]; then
            ours "$run" "$kind"; theirs "$run" "$kind"
        else
            theirs "$run" "$kind"; ours "$run" "$kind"
        fi
    done
done

# --- results ----------------------------------------------------------------
mkdir -p "$(dirname "$report_json")"
bench_meta "SCALE=$scale RUNS=$runs $load_setting CHAIN=$chain bench/restore-vs-pgbackrest.sh"
export BENCH_SCALE=$scale BENCH_RUNS=$runs BENCH_LOAD="$pgbench_load" BENCH_CHAIN=$chain \
    BENCH_LOADAVG_START=$loadavg_start BENCH_DB_BYTES=$db_bytes
python3 - "$results" "$backups" "$loads" "$report_json" <<'PY'
import json, os, statistics, sys
results, backups, loads, report = sys.argv[1:]
e = os.environ
chain = int(e["BENCH_CHAIN"])

def stat(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}

# Each backup point; the kinds restored are the full, the first
# incremental and the last (the chain).
points = {}
for line in open(backups):
    name, ident, label, fp, reads = line.rstrip("\n").split("\t")
    a, b, h = map(int, fp.split())
    points[name] = {"ours_id": ident, "pgbackrest_label": label,
                    "accounts": a, "abalance_sum": b, "history": h, "reads": json.loads(reads)}
point_of = {"full": "full", "incremental": "incr1", "chain": f"incr{chain}"}
prints = {kind: {k: v for k, v in points[name].items() if k != "reads"}
          for kind, name in point_of.items()}
load_transactions = [int(line.split()[1]) for line in open(loads)]
meta = {
    "date": e["BENCH_DATE"], "command": e["BENCH_COMMAND"],
    "scale": int(e["BENCH_SCALE"]), "runs": int(e["BENCH_RUNS"]), "pgbench_load": e["BENCH_LOAD"],
    "chain": chain, "load_transactions": stat(load_transactions),
    "loads": [{"before": f"incr{i + 1}", "transactions": n} for i, n in enumerate(load_transactions)],
    "database_bytes": int(e["BENCH_DB_BYTES"]),
    "fingerprints": prints,
    "backups": points,
    "machine": {"nproc": int(e["BENCH_NPROC"]), "memory": e["BENCH_MEMORY"],
                "tmp_filesystem": e["BENCH_TMPFS"], "disk": e["BENCH_DISK"],
                "kernel": e["BENCH_KERNEL"], "load_average_at_start": e["BENCH_LOADAVG_START"],
                "load_average_at_end": e["BENCH_LOADAVG"]},
    "versions": {"pgbackrest": e["BENCH_PGBACKREST"], "postgresql": e["BENCH_POSTGRESQL"],
                 "nginx": e["BENCH_NGINX"], "charm_commit": e["BENCH_COMMIT"],
                 "uncommitted": e["BENCH_DIRTY"].splitlines()},
    "settings": {"zstd_level": int(e["BENCH_LEVEL"]), "pgbackrest_process_max": 2,
                 "charm_files_in_flight": 4,
                 "charm_fetch": "a current-thread runtime for the downloads; each file decompressed, "
                                "checked (SHA-256), written and synced on a blocking thread of its own",
                 "s3_endpoint": "nginx TLS on loopback in front of juju-local s3-server (s3s-fs)",
                 "pgbackrest_restore": "--type=immediate --target-action=promote --recovery-option=recovery_target_timeline=current, "
                                       "as postgres into an empty directory",
                 "pgbackrest_server": "127.0.0.1, free port, own socket dir and hba (trust), archive_mode=off, "
                                      "logging_collector=off; the rest of the restored postgresql.conf",
                 "nginx_upstream_keepalive": "off (a connection to the S3 server per request)",
                 "watcher_poll_s": 0.05},
}
rows = [json.loads(l) for l in open(results)]

def targets(summary):
    """The targets, for the report and the chart: the whole restore at most
    0.8× pgBackRest's for a full and a full + 1 incremental, at most 1.0× for
    the chain."""
    out = []
    for kind, label, limit in (("full", "restore of a full backup (wall)", 0.8),
                               ("incremental", "restore of full + incremental (wall)", 0.8),
                               ("chain", f"restore of full + {chain} incrementals (wall)", 1.0),
                               ("full", "restore of a full backup: fetching the files (wall)", None)):
        key = "files" if limit is None else "whole"
        s = summary[kind][key]
        ratio = s["ratio_ours_over_pgbackrest"]
        out.append({"label": label, "ours": s["ours"]["median"], "reference": s["pgbackrest"]["median"],
                    "reference_name": "pgBackRest", "unit": "s", "ratio": ratio, "target": limit,
                    "rule": "at_most", "met": None if limit is None else ratio <= limit})
    return out

steps = [("before_s", "before fetching"), ("fetch_s", "fetch (download, zstd, SHA-256, write, fsync)"),
         ("verify_s", "pg_verifybackup"), ("swap_s", "stop the live server, swap"),
         ("recovery_s", "start, recover, promote"), ("after_s", "after promotion")]
summary = {}
for kind in ("full", "incremental", "chain"):
    o = [r for r in rows if r["tool"] == "ours" and r["kind"] == kind]
    p = [r for r in rows if r["tool"] == "pgbackrest" and r["kind"] == kind]
    pairs = {
        "files": ([r["files_s"] for r in o], [r["restore_s"] for r in p]),
        "writable": ([r["writable_s"] for r in o], [r["writable_s"] for r in p]),
        "whole": ([r["wall_s"] for r in o], [r["writable_s"] for r in p]),
        "cpu": ([r["cpu_user_s"] + r["cpu_sys_s"] for r in o], [r["cpu_user_s"] + r["cpu_sys_s"] for r in p]),
    }
    summary[kind] = {}
    for key, (ours, theirs) in pairs.items():
        so, sp = stat(ours), stat(theirs)
        summary[kind][key] = {"ours": so, "pgbackrest": sp,
                              "ratio_ours_over_pgbackrest": so["median"] / sp["median"]}
    summary[kind]["ours_steps"] = {k: stat([r["steps"][k] for r in o]) for k, _ in steps}
    summary[kind]["ours_trash_after_result_s"] = stat([r["trash_after_result_s"] for r in o])
    summary[kind]["pgbackrest_steps"] = {k: stat([r[k] for r in p]) for k in ("restore_s", "server_s")}
    summary[kind]["reads"] = points[point_of[kind]]["reads"]
doc = {"meta": meta, "steps": steps, "summary": summary, "targets": targets(summary), "runs": rows}
with open(report, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
PY
render_report
say "wrote $report_json and $report_md"
