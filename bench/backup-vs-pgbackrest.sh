#!/bin/bash
# The charm's backup engine against pgBackRest, on the same data, the same S3
# server and the same machine, in one run: full, incremental and differential
# backups of a pgbench database on one unit of the packed charm under
# juju-local, wall seconds, CPU seconds and stored bytes of each, alternating
# the two tools; and, for the full backup, `pg_basebackup -Ft` with lz4 to
# local disk as the reference for "as fast as the server can stream".
#
#   bench/backup-vs-pgbackrest.sh          SCALE=100 RUNS=3 LOAD_SECONDS=15 by default
#   SCALE=5 RUNS=1 bench/backup-vs-pgbackrest.sh      a quick check
#   TXNS=10000 bench/backup-vs-pgbackrest.sh          the load as transactions per client
#
# The load before each incremental and each differential is
# `pgbench -c 2 -j 2 -T LOAD_SECONDS`: a fixed time, so the amount of change
# is what a busy database does in that time (the report gives the
# transactions each load committed); with TXNS set, `-t TXNS` instead. The
# targets (ratios of medians, ours over pgBackRest's): full backup at most
# 0.8 of the wall time and 1.0 of the stored bytes; incremental at most 0.2
# of the stored bytes and 1.0 of the wall time; differential at most 1.0 of
# the stored bytes.
#
# Writes docs/benchmarks/backup-vs-pgbackrest.json (every measure, raw) and
# the generated section of docs/benchmarks.md (OUTPUT_DIR=DIR writes both
# under DIR instead); REPORT_ONLY=1 only rewrites that section from the JSON;
# KEEP_LOGS=1 keeps the work directory under /tmp (logs, certificates,
# configs), which otherwise goes, logs excepted after a failure. Not part of
# `cargo test`.
#
# Prerequisites (checked below):
#   - root (nginx on a loopback port, pgBackRest reading the unit's data
#     directory, files handed to the postgres user);
#   - PostgreSQL 15 server and client programs (psql, pgbench) and the
#     `postgres` OS user, as for the end-to-end tests;
#   - pgBackRest and nginx:  apt-get update && apt-get install -y pgbackrest nginx
#   - openssl, curl, python3, cargo.
#
# The setup, in order: pack the charm and build juju-local; a model in a new
# directory under /tmp (reachable by the postgres user); one unit of the
# charm (profile=testing) and the built-in s3-integrator, which starts
# juju-local's S3 server (s3s-fs) on loopback; nginx in front of it with TLS
# (a CA and server certificate made here, its own config, pid and logs in the
# work directory, a free loopback port), because pgBackRest speaks only HTTPS
# to S3; both tools pointed at that HTTPS endpoint with the CA, path-style
# URIs, bucket juju-local, the charm under path `charm`, pgBackRest under
# repo1-path /pgbackrest. Then `pgbench -i -s SCALE`, a pgBackRest stanza on
# the unit's data directory, and archive_command extended so that both tools
# get every WAL segment (see the doc). Each run: a full backup with each
# tool and with pg_basebackup, `pgbench -c 2 -j 2 -T LOAD_SECONDS`, an
# incremental with each tool, the same pgbench load again, a differential
# with each tool; the tool that goes first alternates from run to run.
# pg_basebackup (`-Ft -Z lz4 -X fetch -c fast --no-sync`, client-side lz4)
# runs as root over the unit's socket, for which the script adds a `local
# replication` line for operator to the unit's pg_hba.conf; its tar files go
# to the work directory and are removed once measured. Everything started
# here is stopped on exit, failure included. The setup is shared with
# bench/restore-vs-pgbackrest.sh, in bench/lib/pgbackrest-bench.sh.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench_name=backup-vs-pgbackrest
scale=${SCALE:-100}
runs=${RUNS:-3}
output=${OUTPUT_DIR:-$root/docs}
# shellcheck source=lib/pgbackrest-bench.sh
. "$root/bench/lib/pgbackrest-bench.sh"

report_json="$output/benchmarks/backup-vs-pgbackrest.json"
report_md="$output/benchmarks.md"

# The generated section of the doc, from the JSON (REPORT_ONLY=1 does only
# this, from the JSON already there); text outside its markers is kept.
render_report() {
    python3 - "$report_json" "$report_md" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1]))
md = sys.argv[2]
m, summary, rows = doc["meta"], doc["summary"], doc["runs"]
KINDS = [k for k in ("full", "incremental", "differential") if k in summary]
measures = [("wall_s", "wall seconds"), ("cpu_s", "CPU seconds (user+sys)"),
            ("object_bytes", "stored bytes: objects under the backup's prefix"),
            ("tool_stored_bytes", "stored bytes: the tool's own figure (data files)")]

def fmt(key, v):
    if key.endswith("bytes"):
        return f"{v / 1e6:.2f} MB" if abs(v) >= 1e5 else f"{v / 1e3:.1f} kB"
    return f"{v:.2f} s"

def cell(key, s):
    return f"{fmt(key, s['median'])} ({fmt(key, s['min'])}–{fmt(key, s['max'])})"

out = []
out.append(f"Run on {m['date'][:10]}: `{m['command']}` (at commit {m['versions']['charm_commit']}).\n")
out.append(f"Machine: {m['machine']['nproc']} cores, {m['machine']['memory']} of memory, "
           f"/tmp on {m['machine']['tmp_filesystem']} ({m['machine']['disk'] or 'disk unknown'}), "
           f"Linux {m['machine']['kernel']}; load average at the end "
           f"{m['machine']['load_average_at_end']}. "
           f"PostgreSQL {m['versions']['postgresql']}, pgBackRest {m['versions']['pgbackrest']}, "
           f"nginx {m['versions']['nginx']}.\n")
out.append(f"Data: `pgbench -i -s {m['scale']}`, a {m['database_bytes'] / 1e9:.2f} GB database; "
           f"before the incremental backup of each run and again before its differential: `{m['pgbench_load']}`"
           + (f" ({lt['median']:.0f} transactions, median; {lt['min']}–{lt['max']})"
              if (lt := m.get("load_transactions")) else "") + ". "
           f"{m['runs']} run(s), ours first in odd runs and pgBackRest first in even ones; "
           f"medians, min–max in brackets, and the ratio of the medians.\n")
out.append("| backup | measure | ours | pgBackRest | ours / pgBackRest |")
out.append("|---|---|---|---|---|")
for kind in KINDS:
    for key, label in measures:
        s = summary[kind][key]
        out.append(f"| {kind} | {label} | {cell(key, s['ours'])} | {cell(key, s['pgbackrest'])} "
                   f"| {s['ratio_ours_over_pgbackrest']:.3f} |")
out.append("")
if "pg_basebackup" in summary["full"]["wall_s"]:
    w, b = summary["full"]["wall_s"], summary["full"]["object_bytes"]
    out.append(f"The reference for streaming speed, `pg_basebackup -Ft -Z lz4` to local disk: "
               f"{cell('wall_s', w['pg_basebackup'])} and {fmt('bytes', b['pg_basebackup']['median'])} "
               f"(lz4, not zstd); ours / pg_basebackup: {w['ratio_ours_over_pg_basebackup']:.3f} "
               f"in wall time.\n")
targets = []
for t in doc.get("targets", []):
    if t["target"] is None:
        continue
    word = "met" if t["met"] else "missed"
    targets.append(f"{t['label']}: at most {t['target']:g}× pgBackRest's, **{word}** ({t['ratio']:.3f})")
if targets:
    out.append("Targets (ratio of medians): " + "; ".join(targets) + ".\n")
out.append("Each run (wall seconds; stored bytes under the prefix):\n")
out.append("| run | backup | ours | pgBackRest | pg_basebackup |")
out.append("|---|---|---|---|---|")
for run, kind in sorted({(r["run"], r["kind"]) for r in rows}, key=lambda x: (x[0], KINDS.index(x[1]))):
    o = next(x for x in rows if (x["run"], x["kind"], x["tool"]) == (run, kind, "ours"))
    p = next(x for x in rows if (x["run"], x["kind"], x["tool"]) == (run, kind, "pgbackrest"))
    b = next((x for x in rows if (x["run"], x["kind"], x["tool"]) == (run, kind, "pg_basebackup")), None)
    bb = f"{b['wall_s']:.2f} s, {fmt('bytes', b['object_bytes'])}" if b else ""
    out.append(f"| {run} | {kind} | {o['wall_s']:.2f} s, {fmt('bytes', o['object_bytes'])} "
               f"| {p['wall_s']:.2f} s, {fmt('bytes', p['object_bytes'])} | {bb} |")
section = "\n".join(out) + "\n"

begin = "<!-- backup-vs-pgbackrest: begin (generated by the script) -->"
end = "<!-- backup-vs-pgbackrest: end -->"
heading = "## Backups: the charm's engine against pgBackRest\n\n"
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
case $scale$runs in *[!0-9]*) die "SCALE and RUNS must be whole numbers" ;; esac
bench_load_settings
[ "$runs" -ge 1 ] || die "RUNS must be at least 1"
bench_workdir
bench_build
bench_deploy
bench_tls_front
bench_charm_on_https
bench_load_data "$scale"
bench_pgbackrest

results="$work/results.tsv"
: >"$results"
ours() { # run kind
    local run=$1 kind=$2 log="$work/logs/ours-$1-$2" t id rec
    settle
    sleep 1.1 # backup ids are whole seconds
    t=$(timed "$log.json" "$log.err" "$jl" run postgresql/0 create-backup "type=$kind" --format json) \
        || die "create-backup type=$kind failed: $(cat "$log.json" "$log.err")"
    [ "$(json "d['postgresql/0']['status']" <"$log.json")" = completed ] \
        || die "create-backup type=$kind: $(cat "$log.json")"
    id=$(json "d['postgresql/0']['results']['backup-id']" <"$log.json")
    rec="$charm_repo/backups/$id/record.json"
    [ -f "$rec" ] || die "no record at $rec"
    printf '%s\tours\t%s\t%s\t%s\t%s\t%s\n' "$run" "$kind" "$(echo "$t" | tr ' ' '\t')" \
        "$(object_bytes "$charm_repo/backups/$id")" \
        "$(json "d['stored-bytes'], d['database-bytes'], sep='\t'" <"$rec")" "$id" >>"$results"
    say "  ours $kind: $(echo "$t" | cut -d' ' -f1) s"
}

long_kind() { case $1 in incr) echo incremental ;; diff) echo differential ;; *) echo full ;; esac; }

theirs() { # run kind (full, incr or diff)
    local run=$1 kind=$2 log="$work/logs/pgbackrest-$1-$2" t label delta size
    settle
    t=$(timed "$log.out" "$log.err" pgbr "--type=$kind" backup) \
        || die "pgbackrest --type=$kind backup failed: $(tail -n 5 "$log.out" "$log.err")"
    pgbr info --output=json >"$log.info.json"
    read -r label delta size < <(python3 - "$log.info.json" "$kind" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))[0]["backup"][-1]
assert b["type"] == sys.argv[2], b
print(b["label"], b["info"]["repository"]["delta"], b["info"]["size"])
PY
)
    [ -n "$label" ] || die "pgbackrest info does not show the $kind backup"
    printf '%s\tpgbackrest\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$(long_kind "$kind")" \
        "$(echo "$t" | tr ' ' '\t')" "$(object_bytes "$s3_dir/juju-local/pgbackrest/backup/bench/$label")" \
        "$delta" "$size" "$label" >>"$results"
    say "  pgBackRest $kind: $(echo "$t" | cut -d' ' -f1) s"
}

# pg_basebackup -Ft with lz4 into the work directory, over the unit's socket.
streamed() { # run
    local run=$1 log="$work/logs/pg_basebackup-$1" dir="$work/pg_basebackup-$1" t
    settle
    t=$(timed "$log.out" "$log.err" pg_basebackup -h "$storage/run" -p 5432 -U operator \
        -D "$dir" -Ft -Z lz4 -X fetch -c fast --no-sync) \
        || die "pg_basebackup failed: $(tail -n 5 "$log.out" "$log.err")"
    [ -f "$dir/base.tar.lz4" ] || die "pg_basebackup wrote no base.tar.lz4 in $dir"
    printf '%s\tpg_basebackup\tfull\t%s\t%s\t%s\t%s\t%s\n' "$run" "$(echo "$t" | tr ' ' '\t')" \
        "$(object_bytes "$dir")" "$(object_bytes "$dir")" \
        "$(sql -c "SELECT sum(pg_database_size(oid)) FROM pg_database")" "-" >>"$results"
    rm -rf "$dir"
    say "  pg_basebackup: $(echo "$t" | cut -d' ' -f1) s"
}

# The load before an incremental (step 1) or a differential (step 2); the
# transactions it committed go to loads.tsv.
loads="$work/loads.tsv"
: >"$loads"
load() { # run step
    local n
    n=$(bench_run_load "$work/logs/pgbench-$1-$2.log")
    printf '%s\t%s\t%s\n' "$1" "$2" "$n" >>"$loads"
    say "  $n transactions"
}

# pg_basebackup needs a replication connection: operator over the socket,
# by the same peer map the charm gives operator for ordinary connections.
hba=$(sql -c "SHOW hba_file")
printf 'local   replication  operator                          peer map=charm\n' >>"$hba"
sql -c "SELECT pg_reload_conf()" >/dev/null

for run in $(seq "$runs"); do
    say "run $run of $runs"
    if [ $((run % 2)) = 1 ]; then
        ours "$run" full; theirs "$run" full; streamed "$run"
        load "$run" 1
        ours "$run" incremental; theirs "$run" incr
        load "$run" 2
        ours "$run" differential; theirs "$run" diff
    else
        streamed "$run"; theirs "$run" full; ours "$run" full
        load "$run" 1
        theirs "$run" incr; ours "$run" incremental
        load "$run" 2
        theirs "$run" diff; ours "$run" differential
    fi
done

# --- results ----------------------------------------------------------------
mkdir -p "$(dirname "$report_json")"
bench_meta "SCALE=$scale RUNS=$runs $load_setting bench/backup-vs-pgbackrest.sh"
export BENCH_SCALE=$scale BENCH_RUNS=$runs BENCH_LOAD="$pgbench_load"
python3 - "$results" "$report_json" "$work/logs" "$loads" <<'PY'
import json, os, statistics, sys
results, report, logs, loads = sys.argv[1:]
e = os.environ
meta = {
    "date": e["BENCH_DATE"], "command": e["BENCH_COMMAND"],
    "scale": int(e["BENCH_SCALE"]), "runs": int(e["BENCH_RUNS"]), "pgbench_load": e["BENCH_LOAD"],
    "database_bytes": int(e["BENCH_DB_BYTES"]),
    "machine": {"nproc": int(e["BENCH_NPROC"]), "memory": e["BENCH_MEMORY"],
                "tmp_filesystem": e["BENCH_TMPFS"], "disk": e["BENCH_DISK"],
                "kernel": e["BENCH_KERNEL"], "load_average_at_end": e["BENCH_LOADAVG"]},
    "versions": {"pgbackrest": e["BENCH_PGBACKREST"], "postgresql": e["BENCH_POSTGRESQL"],
                 "nginx": e["BENCH_NGINX"], "charm_commit": e["BENCH_COMMIT"]},
    "settings": {"zstd_level": int(e["BENCH_LEVEL"]), "pgbackrest_process_max": 2,
                 "charm_files_in_flight": 4,
                 "s3_endpoint": "nginx TLS on loopback in front of juju-local s3-server (s3s-fs)",
                 "pgbackrest_tls": "repo1-storage-ca-file (certificate verified)",
                 "archive_command": "<charm wal-push> && pgbackrest archive-push %p",
                 "pg_basebackup": "-Ft -Z lz4 (client) -X fetch -c fast --no-sync, to local disk"},
}
rows = []
for line in open(results):
    run, tool, kind, wall, user, sys_, prefix, own, dbb, ident = line.rstrip("\n").split("\t")
    row = {"run": int(run), "tool": tool, "kind": kind, "wall_s": float(wall),
           "cpu_user_s": float(user), "cpu_sys_s": float(sys_),
           "object_bytes": int(prefix), "tool_stored_bytes": int(own),
           "database_bytes": int(dbb), "id": ident if ident != "-" else None}
    if tool == "ours":
        task = json.load(open(os.path.join(logs, f"ours-{run}-{kind}.json")))["postgresql/0"]
        row["action_log"] = task.get("log", [])
    elif tool == "pgbackrest":
        short = {"incremental": "incr", "differential": "diff"}.get(kind, "full")
        text = open(os.path.join(logs, f"pgbackrest-{run}-{short}.out")).read()
        row["log"] = [l for l in text.splitlines()
                      if " INFO: " in l and "command begin" not in l or " WARN: " in l]
    rows.append(row)
# The transactions each load committed: step 1 before the incremental,
# step 2 before the differential.
load_rows = []
for line in open(loads):
    run, step, n = line.split()
    load_rows.append({"run": int(run), "before": "incremental" if step == "1" else "differential",
                      "transactions": int(n)})

def stat(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}

meta["load_transactions"] = stat([r["transactions"] for r in load_rows])
meta["loads"] = load_rows

summary = {}
for kind in ("full", "incremental", "differential"):
    summary[kind] = {}
    for key in ("wall_s", "cpu_s", "object_bytes", "tool_stored_bytes"):
        per = {}
        for tool in ("ours", "pgbackrest", "pg_basebackup"):
            vals = [r["cpu_user_s"] + r["cpu_sys_s"] if key == "cpu_s" else r[key]
                    for r in rows if r["tool"] == tool and r["kind"] == kind]
            if vals:
                per[tool] = stat(vals)
        per["ratio_ours_over_pgbackrest"] = per["ours"]["median"] / per["pgbackrest"]["median"]
        if "pg_basebackup" in per:
            per["ratio_ours_over_pg_basebackup"] = per["ours"]["median"] / per["pg_basebackup"]["median"]
        summary[kind][key] = per

def target(label, kind, key, unit, limit, reference="pgbackrest", name="pgBackRest"):
    s = summary[kind][key]
    ratio = s["ours"]["median"] / s[reference]["median"]
    return {"label": label, "ours": s["ours"]["median"], "reference": s[reference]["median"],
            "reference_name": name, "unit": unit, "ratio": ratio, "target": limit,
            "rule": "at_most", "met": None if limit is None else ratio <= limit}

targets = [
    target("full backup (wall)", "full", "wall_s", "s", 0.8),
    target("full backup (stored bytes)", "full", "object_bytes", "bytes", 1.0),
    target("incremental (stored bytes)", "incremental", "object_bytes", "bytes", 0.2),
    target("incremental (wall)", "incremental", "wall_s", "s", 1.0),
    target("differential (stored bytes)", "differential", "object_bytes", "bytes", 1.0),
    target("differential (wall)", "differential", "wall_s", "s", None),
    target("full backup vs pg_basebackup -Ft lz4 (wall)", "full", "wall_s", "s", None,
           "pg_basebackup", "pg_basebackup"),
]
doc = {"meta": meta, "summary": summary, "targets": targets, "runs": rows}
with open(report, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")

PY
render_report
say "wrote $report_json and $report_md"
