#!/usr/bin/env python3
"""Per-thread CPU accounting of one command (issue 16, item 5): runs COMMAND, samples
/proc/<pid>/task/*/stat every --interval seconds while it runs, and prints, per thread
name, how many threads had that name and the CPU seconds (user + system) they used, as
last seen before the process exited. Shows whether the work spreads over the runtime's
worker threads (`tokio-runtime-w`) or sits on one.

    threads.py [--interval 0.05] [--json FILE] -- COMMAND...
"""

import argparse
import json
import os
import subprocess
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def sample(pid, seen):
    base = f"/proc/{pid}/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return False
    for tid in tids:
        try:
            with open(f"{base}/{tid}/stat") as handle:
                text = handle.read()
        except OSError:
            continue
        # comm is in parentheses and may hold spaces; fields after it are fixed.
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
        seen[tid] = (name, cpu)
    return True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--json")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")
    started = time.monotonic()
    process = subprocess.Popen(command)
    seen = {}
    while process.poll() is None:
        sample(process.pid, seen)
        time.sleep(args.interval)
    seconds = time.monotonic() - started
    by_name = {}
    for name, cpu in seen.values():
        count, total, per = by_name.get(name, (0, 0.0, []))
        by_name[name] = (count + 1, total + cpu, per + [cpu])
    rows = sorted(by_name.items(), key=lambda item: -item[1][1])
    total = sum(cpu for _, cpu in seen.values())
    print(f"exit {process.returncode}, {seconds:.1f} s wall, {total:.2f} s CPU in {len(seen)} threads", file=sys.stderr)
    for name, (count, cpu, per) in rows:
        busy = sorted(per, reverse=True)
        print(f"  {name:<20} {count:>3} threads {cpu:>8.2f} s CPU  (per thread: {', '.join(f'{c:.2f}' for c in busy[:8])}{' ...' if len(busy) > 8 else ''})", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"exit_code": process.returncode, "seconds": seconds, "cpu_seconds": total,
                       "threads": [{"name": n, "count": c, "cpu_seconds": t, "per_thread": p} for n, (c, t, p) in rows]}, handle, indent=1)
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
