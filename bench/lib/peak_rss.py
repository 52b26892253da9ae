"""Runs a command and prints the peak memory of its process tree while it
runs, sampled from /proc every 20 ms: the largest sum of the resident sets
of the command and all its descendants, and the largest resident set of any
one of them, both in KiB, then the wall seconds, tab-separated. The
command's own output goes to the files given; its exit status is this
script's.

    python3 bench/lib/peak_rss.py OUT ERR COMMAND [ARG...]
"""

import os
import subprocess
import sys
import time


def tree(root):
    """The pids of root and every descendant, from /proc's parent links."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The command name may hold spaces: the fields after the last ')'.
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    out, err, command = sys.argv[1], sys.argv[2], sys.argv[3:]
    started = time.monotonic()
    with open(out, "w") as o, open(err, "w") as e:
        child = subprocess.Popen(command, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        peak_sum = peak_one = 0
        while child.poll() is None:
            sizes = [rss_kib(p) for p in tree(child.pid)]
            peak_sum = max(peak_sum, sum(sizes))
            peak_one = max(peak_one, max(sizes, default=0))
            time.sleep(0.02)
    wall = time.monotonic() - started
    print(f"{peak_sum}\t{peak_one}\t{wall:.3f}")
    sys.exit(child.returncode)


main()
