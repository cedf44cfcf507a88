"""The memory step's table (scripts/bench --memory): peak RSS and wall time of the six
commands at the small and the large size, PASS/FAIL against issue 16's item 4, and the
store's bytes per object (item 6). Reads the step records bench/measure.py wrote."""

import json
import sys

STEPS = [
    ("collect", "`collect --no-verify`"),
    ("verify_full", "`verify --full`"),
    ("verify_noop", "`verify` (incremental, nothing new)"),
    ("rebuild_state", "`rebuild-state` (into an empty store)"),
    ("retention_full", "`retention --full` (dry run)"),
    ("retention", "`retention` (dry run, the store's versions)"),
]


def load(results, name):
    try:
        with open(f"{results}/{name}.json") as handle:
            return json.load(handle)
    except OSError:
        return None


def number(results, name):
    try:
        with open(f"{results}/{name}.txt") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def report_stats(results, name):
    """The `stats` of the JSON run report a step printed on stdout, or None."""
    try:
        with open(f"{results}/{name}.stdout") as handle:
            return json.load(handle).get("stats")
    except (OSError, ValueError, AttributeError):
        return None


def rebuild_lost(results, tag, objects):
    """How many of the archive's objects a rebuild did not record, or None when it
    recorded them all (or the figures are missing). SeaweedFS 4.48 loses keys from paged
    ListObjectVersions results: in `AWSLogs/<account>/`, `CloudTrail/` is walked before
    `CloudTrail-Digest/` (directory order, not byte order), and a page boundary inside
    them skips the rest of `CloudTrail-Digest/`. A rebuild that never saw the digests
    validates no chain, so its figures are not those of the real job."""
    stats = report_stats(results, f"mem_{tag}_rebuild_state")
    if not stats or not objects:
        return None
    recorded = stats.get("objects_copied") or 0
    return objects - recorded if recorded < objects else None


def rss_mb(record):
    """The kernel's peak RSS of the command (`time -v`). The memory steps run trailvault
    directly, never under perf, so measure.py's sampled VmHWM is only a fallback: it
    polls every 0.2 s and reads a process of a few milliseconds just after exec (3 MB)."""
    kb = record.get("max_rss_kb") or record.get("trailvault_peak_rss_kb") or 0
    return kb / 1024


def main(results):
    small_n = number(results, "mem_small_objects")
    large_n = number(results, "mem_large_objects")
    print(f"| command | {small_n} objects: peak RSS, wall | {large_n} objects: peak RSS, wall "
          "| large / small | target | result |")
    print("| --- | --- | --- | --- | --- | --- |")
    for step, label in STEPS:
        small = load(results, f"mem_small_{step}")
        large = load(results, f"mem_large_{step}")
        cells = []
        for record in (small, large):
            if record is None:
                cells.append("not run")
            else:
                cpu = record.get("client_cpu_seconds")
                cpu_text = "" if cpu is None else f", {cpu:.2f} s CPU"
                cells.append(f"{rss_mb(record):.0f} MB, {record.get('seconds', 0):.2f} s"
                             f"{cpu_text} (exit {record.get('exit_code')})")
        ratio = None
        if small and large and rss_mb(small):
            ratio = rss_mb(large) / rss_mb(small)
        ok = ratio is not None and ratio <= 1.25 and rss_mb(large) < 200
        ratios = "-" if ratio is None else f"RSS ×{ratio:.2f}"
        target = "RSS ≤ 1.25× and < 200 MB"
        if step == "verify_noop":
            target += ", time ≤ 1.25×"
            if small and large and small.get("seconds"):
                time_ratio = large["seconds"] / small["seconds"]
                ratios += f", time ×{time_ratio:.2f}"
                ok = ok and time_ratio <= 1.25
        result = "NOT MEASURED" if ratio is None else ("PASS" if ok else "FAIL")
        if step == "rebuild_state":
            lost = [(tag, n, rebuild_lost(results, tag, n))
                    for tag, n in (("small", small_n), ("large", large_n))]
            lost = [f"{missing} of {n} at {tag}" for tag, n, missing in lost if missing]
            if lost:
                result = ("NOT COMPARABLE: the server's version listing lost "
                          + ", ".join(lost) + " objects (SeaweedFS paging; see bench/README.md)")
        print(f"| {label} | {cells[0]} | {cells[1]} | {ratios} | {target} | {result} |")
    print()
    for tag, count in (("small", small_n), ("large", large_n)):
        size = number(results, f"mem_{tag}_store_bytes")
        if size and count:
            per = size / count
            print(f"- store after `collect` at {count} objects: {size} bytes, {per:.0f} B/object "
                  f"(target < 512): {'PASS' if per < 512 else 'FAIL'}")


if __name__ == "__main__":
    main(sys.argv[1])
