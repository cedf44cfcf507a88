#!/usr/bin/env python3
"""Run one benchmark step and record what it cost, as one JSON file.

    measure.py --name NAME --out DIR [--metrics URL] [--proxy URL] -- COMMAND ARGS...

Records: wall seconds, exit code, peak RSS (from /usr/bin/time -v: the largest
process of the step), the command's stdout (parsed when it is JSON, e.g.
`trailvault --json` reports and `trailbench` results), the tail of stderr, the
S3 server's Prometheus request counters before/after (SeaweedFS
`SeaweedFS_s3_request_total` deltas by type; HEAD is counted as GET there), and,
with --proxy, the counting proxy's exact per-operation counts for the step.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def seaweed_counts(metrics_url):
    counts = {}
    if not metrics_url:
        return counts
    try:
        text = fetch(metrics_url)
    except OSError:
        return counts
    for line in text.splitlines():
        if not line.startswith("SeaweedFS_s3_request_total{"):
            continue
        match = re.search(r'type="([^"]*)"', line)
        if not match:
            continue
        counts[match.group(1)] = counts.get(match.group(1), 0) + float(line.rsplit(" ", 1)[1])
    return counts


def descendants(root_pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        for child in children.get(pid, []):
            found.append(child)
            stack.append(child)
    return found


class PeakWatcher(threading.Thread):
    """Peak RSS (VmHWM) of the step's processes whose executable is named `name`, so a
    wrapper such as `perf record` does not hide the measured tool's own peak."""

    def __init__(self, root_pid, name):
        super().__init__(daemon=True)
        self.root_pid, self.name, self.peak_kb = root_pid, name, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for pid in descendants(self.root_pid):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        argv0 = handle.read().split(b"\0", 1)[0].decode(errors="replace")
                    if os.path.basename(argv0) != self.name:
                        continue
                    with open(f"/proc/{pid}/status") as handle:
                        for line in handle:
                            if line.startswith("VmHWM:"):
                                self.peak_kb = max(self.peak_kb, int(line.split()[1]))
                except OSError:
                    continue
            self.stop.wait(0.2)


def process_cpu_seconds(pid):
    """User + system CPU seconds of `pid` so far (None without a pid)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields after the command name start at field 3 (state): utime is 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--metrics")
    parser.add_argument("--proxy", help="base URL of `trailbench proxy`")
    parser.add_argument("--server-pid", type=int, help="the S3 server's pid, for its CPU time")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    os.makedirs(args.out, exist_ok=True)
    stdout_path = os.path.join(args.out, f"{args.name}.stdout")
    stderr_path = os.path.join(args.out, f"{args.name}.stderr")
    time_path = os.path.join(args.out, f"{args.name}.time")

    server_cpu_before = process_cpu_seconds(args.server_pid)
    before = seaweed_counts(args.metrics)
    if args.proxy:
        fetch(args.proxy + "/__trailbench/reset")
    started = time.monotonic()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(["/usr/bin/time", "-v", "-o", time_path, *command], stdout=out, stderr=err)
        watcher = PeakWatcher(process.pid, "trailvault")
        watcher.start()
        exit_code = process.wait()
        watcher.stop.set()
    seconds = time.monotonic() - started
    proxy_counts = json.loads(fetch(args.proxy + "/__trailbench/counts")) if args.proxy else None
    after = seaweed_counts(args.metrics)
    server_cpu_after = process_cpu_seconds(args.server_pid)

    rss_kb = None
    client_cpu = 0.0
    with open(time_path) as handle:
        for line in handle:
            if "Maximum resident set size" in line:
                rss_kb = int(line.rsplit(":", 1)[1])
            if "User time (seconds)" in line or "System time (seconds)" in line:
                client_cpu += float(line.rsplit(":", 1)[1])
    with open(stdout_path, "rb") as handle:
        stdout = handle.read().decode(errors="replace")
    try:
        parsed = json.loads(stdout)
    except ValueError:
        parsed = None
    with open(stderr_path, "rb") as handle:
        stderr_tail = handle.read().decode(errors="replace")[-3000:]
    record = {
        "name": args.name,
        "argv": command,
        "seconds": seconds,
        "exit_code": exit_code,
        "max_rss_kb": rss_kb,
        # CPU seconds (user + system) of the measured command and its children,
        # and of the S3 server over the same interval: with both on the same
        # cores, together they show whether the machine was the limit.
        "client_cpu_seconds": client_cpu,
        "server_cpu_seconds": None if server_cpu_before is None or server_cpu_after is None else server_cpu_after - server_cpu_before,
        # Sampled every 0.2 s from /proc (VmHWM) for processes named `trailvault`.
        "trailvault_peak_rss_kb": watcher.peak_kb or None,
        "stdout_json": parsed,
        "stdout_tail": None if parsed is not None else stdout[-3000:],
        "stderr_tail": stderr_tail,
        "seaweed_requests": {k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(set(after) | set(before)) if after.get(k, 0) != before.get(k, 0)},
        "proxy_requests": proxy_counts,
    }
    with open(os.path.join(args.out, f"{args.name}.json"), "w") as handle:
        json.dump(record, handle, indent=1)
    print(f"bench: {args.name}: {seconds:.1f}s exit {exit_code}" + (f", peak RSS {rss_kb / 1024:.0f} MB" if rss_kb else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
