#!/usr/bin/env python3
"""Turn the step records of scripts/bench (.bench/results/*.json) into the results table,
check the issue's targets (PASS / FAIL / NOT MEASURED, never hidden), and write
bench/RESULTS.md with the machine description.

    report.py --results DIR --info info.json [--write bench/RESULTS.md]
    report.py --results DIR --best-rclone        # prints "T/C" of the fastest rclone run
"""

import argparse
import glob
import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone

MB = 1e6


def load(results, name):
    path = os.path.join(results, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def read_number(results, name):
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return float(handle.read().strip() or 0)


def stats(record):
    if not record or not isinstance(record.get("stdout_json"), dict):
        return {}
    return record["stdout_json"].get("stats", {}) or {}


def rclone_runs(results):
    runs = []
    for path in sorted(glob.glob(os.path.join(results, "copy_rclone_t*_c*.json"))):
        with open(path) as handle:
            record = json.load(handle)
        match = re.search(r"copy_rclone_t(\d+)_c(\d+)", record["name"])
        runs.append((int(match.group(1)), int(match.group(2)), record))
    return runs


def command_output(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine(repo_root):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    venv = os.path.join(repo_root, ".bench", "venv", "bin")
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": command_output(["nproc"]),
        "free -g": command_output(["free", "-g"]),
        "cpu": cpu,
        "kernel": platform.release(),
        "weed": command_output([os.path.join(venv, "weed"), "version"]).splitlines()[0:1],
        "awscli": command_output([os.path.join(venv, "python"), "-c", "import awscli; print(awscli.__version__)"]),
        "rclone": command_output(["rclone", "version"]).splitlines()[0:1],
        "rustc": command_output(["rustc", "--version"]),
        "trailvault commit": command_output(["git", "-C", repo_root, "rev-parse", "--short", "HEAD"])
        + (" (+ uncommitted changes)" if command_output(["git", "-C", repo_root, "status", "--porcelain", "--untracked-files=no"]) else ""),
    }


def fmt(value, digits=1):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


class Report:
    def __init__(self):
        self.sections = []
        self.targets = []

    def table(self, title, header, rows, notes=()):
        self.sections.append((title, header, rows, list(notes)))

    def target(self, name, status, figures):
        self.targets.append((name, status, figures))

    def markdown(self):
        out = []
        for title, header, rows, notes in self.sections:
            out.append(f"### {title}\n")
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join(" --- " for _ in header) + "|")
            for row in rows:
                out.append("| " + " | ".join(str(cell) for cell in row) + " |")
            for note in notes:
                out.append(f"\n{note}")
            out.append("")
        out.append("### Targets (issue 7)\n")
        out.append("| target | result | figures |")
        out.append("| --- | --- | --- |")
        for name, status, figures in self.targets:
            out.append(f"| {name} | **{status}** | {figures} |")
        out.append("")
        return "\n".join(out)

    def text(self):
        out = []
        for title, header, rows, notes in self.sections:
            out.append(f"== {title}")
            widths = [len(h) for h in header]
            for row in rows:
                widths = [max(w, len(str(c))) for w, c in zip(widths, row)]
            out.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
            for row in rows:
                out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
            for note in notes:
                out.append(f"  note: {note}")
            out.append("")
        out.append("== targets")
        for name, status, figures in self.targets:
            out.append(f"  {status:<13} {name}: {figures}")
        return "\n".join(out)


def own_rss_kb(record):
    """Peak RSS of the step; with --perf the step's peak (time -v) can be perf's, so
    trailvault's own VmHWM (sampled by measure.py) is preferred there."""
    if record and "perf" in (record.get("argv") or [""])[0] and record.get("trailvault_peak_rss_kb"):
        return record["trailvault_peak_rss_kb"]
    return (record or {}).get("max_rss_kb")


def verify_measured(record):
    return record is not None and record.get("exit_code") in (0, 3)


def verify_note(record):
    if record is None:
        return "not run"
    if record.get("exit_code") == 2 and "not implemented" in (record.get("stderr_tail") or ""):
        return "not implemented yet (exit 2)"
    return f"exit {record.get('exit_code')}: {(record.get('stderr_tail') or '').strip().splitlines()[-1:]}"


def build(results, info):
    report = Report()
    generated = load(results, "generate") or {}
    totals0 = (generated.get("stdout_json") or {}).get("totals", {})
    objects0 = totals0.get("log_files", 0) + totals0.get("digests", 0)
    bytes0 = totals0.get("log_bytes", 0) + totals0.get("digest_bytes", 0)
    inflated0 = totals0.get("log_inflated_bytes", 0) + totals0.get("digest_inflated_bytes", 0)
    bands = totals0.get("size_bands", [0, 0, 0])
    scale_gen = load(results, "generate_scale")
    added_accounts = 0
    if scale_gen:
        argv = scale_gen.get("argv", [])
        if "--accounts" in argv:
            added_accounts = int(argv[argv.index("--accounts") + 1])
    regions = len(info.get("regions", [])) if info else 0
    small_accounts = len(info.get("accounts", [])) - added_accounts if info else 0
    rows = [[
        "copy/validation set", fmt(objects0), fmt(totals0.get("log_files")), f"{fmt(totals0.get('digests'))} ({fmt(totals0.get('empty_digests'))})",
        f"{small_accounts} x {regions} = {small_accounts * regions}", fmt(bytes0 / MB), fmt(inflated0 / MB),
        "/".join(f"{100 * b / max(1, sum(bands)):.0f}%" for b in bands), f"{fmt(generated.get('seconds'))} s",
    ]]
    if scale_gen and isinstance(scale_gen.get("stdout_json"), dict):
        all_totals = scale_gen["stdout_json"].get("totals", {})
        all_bands = all_totals.get("size_bands", [0, 0, 0])
        rows.append([
            f"after the scaling step (+{added_accounts} accounts)", fmt(all_totals.get("log_files", 0) + all_totals.get("digests", 0)),
            fmt(all_totals.get("log_files")), f"{fmt(all_totals.get('digests'))} ({fmt(all_totals.get('empty_digests'))})",
            f"{len(info.get('accounts', []))} x {regions} = {len(info.get('chains', []))}",
            fmt((all_totals.get("log_bytes", 0) + all_totals.get("digest_bytes", 0)) / MB),
            fmt((all_totals.get("log_inflated_bytes", 0) + all_totals.get("digest_inflated_bytes", 0)) / MB),
            "/".join(f"{100 * b / max(1, sum(all_bands)):.0f}%" for b in all_bands), f"+{fmt(scale_gen.get('seconds'))} s",
        ])
    report.table(
        "Data set",
        ["set", "objects", "log files", "digests (empty)", "chains (accounts x regions)", "stored MB", "inflated MB", "size bands 1-10/10-50/50-500 KiB", "generated in"],
        rows,
        ["Per-account buckets, trail `management-events` (home us-east-1), hourly digests over 72 hours per chain (+1 hour in the 1 % step), fixed seed. "
         "The data set's days are today and the previous days, inside trailvault's lookback window."],
    )

    # ---- copy
    def cpu_cells(record, objects):
        """Client and server CPU milliseconds per object, and the cores both kept busy."""
        record = record or {}
        client, server = record.get("client_cpu_seconds"), record.get("server_cpu_seconds")
        if client is None or server is None or not objects or not record.get("seconds"):
            return ["n/a", "n/a", "n/a"]
        return [f"{1000 * client / objects:.2f}", f"{1000 * server / objects:.2f}", f"{(client + server) / record['seconds']:.2f}"]

    tv = load(results, "copy_trailvault")
    tv_stats = stats(tv)
    tv_objects = tv_stats.get("objects_copied")
    tv_rate = tv_objects / tv["seconds"] if tv and tv_objects else None
    tv_mb = tv_stats.get("bytes_copied", 0) / MB / tv["seconds"] if tv and tv_objects else None
    gp = load(results, "copy_getput")
    gp_json = (gp or {}).get("stdout_json") or {}
    gp_rate = gp_json.get("objects", 0) / gp["seconds"] if gp and gp_json.get("objects") else None
    gp_mb = gp_json.get("bytes", 0) / MB / gp["seconds"] if gp and gp_json.get("objects") else None
    rows = [[
        "trailvault collect --no-verify (SSE-KMS, SHA-256 checksums, HEAD verify, store)",
        fmt(tv_objects), fmt(tv["seconds"]) if tv else "n/a", fmt(tv_rate), fmt(tv_mb), f"{(tv or {}).get('max_rss_kb', 0) / 1024:.0f} MB", (tv or {}).get("exit_code"),
        *cpu_cells(tv, tv_objects),
    ]]
    best = None
    for transfers, checkers, record in rclone_runs(results):
        ok = record["exit_code"] == 0
        rate = objects0 / record["seconds"] if ok else None
        rows.append([
            f"rclone copy --transfers {transfers} --checkers {checkers} (SSE-KMS)", fmt(objects0) if ok else "failed",
            fmt(record["seconds"]), fmt(rate), fmt(bytes0 / MB / record["seconds"]) if ok else "n/a",
            f"{(record.get('max_rss_kb') or 0) / 1024:.0f} MB", record["exit_code"],
            *cpu_cells(record, objects0 if ok else None),
        ])
        if ok and (best is None or rate > best[0]):
            best = (rate, transfers, checkers, record)
    rows.append([
        "bare GET->PUT loop (same SDK, concurrency 32, no checksums/SSE/verify)", fmt(gp_json.get("objects")), fmt(gp["seconds"]) if gp else "n/a",
        fmt(gp_rate), fmt(gp_mb), f"{(gp or {}).get('max_rss_kb', 0) / 1024:.0f} MB", (gp or {}).get("exit_code"),
        *cpu_cells(gp, gp_json.get("objects")),
    ])
    best_rate = best[0] if best else None
    notes = []
    if tv_rate and best_rate:
        notes.append(f"trailvault / best rclone ({best[1]}/{best[2]}) = {tv_rate / best_rate:.2f}x; trailvault / GET->PUT = {tv_rate / gp_rate:.2f}" if gp_rate else "")
    if tv and tv.get("exit_code") not in (0, 3):
        notes.append(f"trailvault collect exit {tv.get('exit_code')}: {(tv.get('stderr_tail') or '')[-400:]}")
    notes.append("CPU columns: milliseconds of CPU (user + system) per object, of the tool and of the S3 server over the same run; "
                 "cores busy = both together over the wall time (the machine has 2).")
    report.table("1. Copy", ["tool", "objects", "seconds", "objects/s", "MB/s", "peak RSS", "exit", "tool CPU ms/obj", "server CPU ms/obj", "cores busy"], rows, notes)
    ladder = []
    for path in sorted(glob.glob(os.path.join(results, "ladder_*.json"))):
        with open(path) as handle:
            record = json.load(handle)
        result = record.get("stdout_json") or {}
        if result.get("objects"):
            ladder.append((record["name"], result["objects"] / record["seconds"], result.get("errors"), record))
    if ladder:
        labels = {
            "sse_kms": "+ SSE-KMS (bare bucket)",
            "locked_bucket": "+ destination = locked archive bucket (versioning, Object Lock default, default SSE-KMS)",
            "sha256": "+ SHA-256 computed and sent as x-amz-checksum-sha256",
            "object_lock": "+ explicit Object Lock COMPLIANCE retain-until per PUT",
            "provenance": "+ provenance metadata (4 x-amz-meta headers) and the S3 Bucket Key flag",
            "head": "+ HEAD of the created version (checksum mode) after every PUT",
            "inflate": "+ inflate every body (libdeflate) and SHA-256 of the raw and inflated bytes (the floor, issue 16)",
        }
        rows = [["bare GET->PUT", fmt(gp_rate), "100%", *cpu_cells(gp, gp_json.get("objects")), ""]]
        for name, rate, errors, record in ladder:
            label = labels.get(name.split("_", 2)[2], name)
            objects = (record.get("stdout_json") or {}).get("objects")
            rows.append([label, fmt(rate), f"{100 * rate / gp_rate:.0f}%" if gp_rate else "n/a", *cpu_cells(record, objects), f"{errors} errors" if errors else ""])
        if tv_rate:
            rows.append([
                "trailvault collect (all of the above + store, gzip inspection (inflate + SHA-256 of the content), account-claims parse, listing per partition)",
                fmt(tv_rate), f"{100 * tv_rate / gp_rate:.0f}%" if gp_rate else "n/a", *cpu_cells(tv, tv_objects), "",
            ])
        report.table(
            "1b. Where the copy time goes (GET->PUT loop, same SDK and concurrency, adding trailvault's per-object work step by step)",
            ["step", "objects/s", "of bare", "tool CPU ms/obj", "server CPU ms/obj", "cores busy", "notes"],
            rows,
            ["When cores busy is at the machine's 2, the run is CPU-bound: every CPU millisecond the tool spends per object is taken from the server."],
        )
    if tv_rate and best_rate:
        ratio = tv_rate / best_rate
        report.target("copy >= 1.3x rclone's best objects/s", "PASS" if ratio >= 1.3 else "FAIL", f"{tv_rate:.0f} vs {best_rate:.0f} obj/s = {ratio:.2f}x")
    else:
        report.target("copy >= 1.3x rclone's best objects/s", "NOT MEASURED", "a copy run failed")
    if tv_rate and gp_rate:
        ratio = tv_rate / gp_rate
        report.target("copy >= 80% of the bare GET->PUT loop", "PASS" if ratio >= 0.8 else "FAIL", f"{tv_rate:.0f} vs {gp_rate:.0f} obj/s = {100 * ratio:.0f}%")
    else:
        report.target("copy >= 80% of the bare GET->PUT loop", "NOT MEASURED", "a copy run failed")

    # ---- no-op and 1 %
    def counts(record):
        proxy = (record or {}).get("proxy_requests") or {}
        # trailbench's proxy files HeadBucket (a bucket's Region, once per bucket per run) under
        # other, with GetBucket:*: HEAD and GET count requests for objects.
        return proxy.get("by_type", {}), proxy.get("by_operation", {})

    def ops_text(by_operation):
        return ", ".join(f"{op} {n}" for op, n in sorted(by_operation.items(), key=lambda kv: -kv[1])) or "n/a"

    noop_tv, noop_rc = load(results, "noop_trailvault"), load(results, "noop_rclone")
    noop_tv_c, noop_rc_c = load(results, "noop_trailvault_counted"), load(results, "noop_rclone_counted")
    new_tv, new_rc = load(results, "new1pct_trailvault"), load(results, "new1pct_rclone")
    extension = (load(results, "extend_1pct") or {}).get("stdout_json", {}) or {}
    added = extension.get("added", {})
    rows = []
    for label, timed, counted in [
        ("trailvault collect, nothing new", noop_tv, noop_tv_c),
        (f"rclone copy, no change ({best[1]}/{best[2]})" if best else "rclone copy, no change", noop_rc, noop_rc_c),
        (f"trailvault collect, 1 % new ({fmt(added.get('log_files', 0) + added.get('digests', 0))} objects; via proxy)", new_tv, new_tv),
        ("rclone copy, 1 % new (via proxy)", new_rc, new_rc),
    ]:
        by_type, by_operation = counts(counted)
        rows.append([
            label, fmt(timed["seconds"], 2) if timed else "n/a", (timed or {}).get("exit_code"),
            by_type.get("LIST", 0), by_type.get("HEAD", 0), by_type.get("GET", 0), by_type.get("PUT", 0), by_type.get("OTHER", 0), ops_text(by_operation),
        ])
    partitions = stats(noop_tv).get("partitions_listed")
    report.table(
        "2. Incremental runs",
        ["run", "seconds", "exit", "LIST", "HEAD", "GET", "PUT", "other", "requests by operation"],
        rows,
        [
            f"trailvault listed {fmt(partitions)} open partitions in the no-op run.",
            "No-op wall times are from direct runs; request counts from an identical run through `trailbench proxy` (exact per operation). "
            "1 % runs went through the proxy (time includes it). SeaweedFS's own counters (HEAD filed as GET) are in .bench/results/*.json.",
        ],
    )
    if noop_tv and noop_rc and noop_tv["seconds"] > 0:
        speedup = noop_rc["seconds"] / noop_tv["seconds"]
        report.target("no-op >= 20x faster than rclone's no-change re-run", "PASS" if speedup >= 20 else "FAIL", f"{noop_tv['seconds']:.2f} s vs {noop_rc['seconds']:.2f} s = {speedup:.1f}x")
    else:
        report.target("no-op >= 20x faster than rclone's no-change re-run", "NOT MEASURED", "a run is missing")
    by_type, by_operation = counts(noop_tv_c)
    if noop_tv_c and partitions is not None:
        lists = by_type.get("LIST", 0)
        ok = lists <= partitions and by_type.get("HEAD", 0) == 0 and by_type.get("GET", 0) == 0
        report.target(
            "no-op: <= 1 LIST per open partition, no HEAD or GET of an object",
            "PASS" if ok else "FAIL",
            f"{lists} LIST for {partitions} partitions, {by_type.get('HEAD', 0)} HEAD, {by_type.get('GET', 0)} GET; other (bucket-level: HeadBucket, GetBucket:*, KMS): {by_type.get('OTHER', 0)}",
        )
    else:
        report.target("no-op: <= 1 LIST per open partition, no HEAD or GET of an object", "NOT MEASURED", "counted run missing")

    # ---- validation
    cli = load(results, "validate_awscli")
    cli_json = (cli or {}).get("stdout_json") or {}
    cli_seconds = cli["seconds"] if cli else None
    rows = []
    if cli_json:
        rows.append([
            f"AWS CLI validation module (awscli {cli_json.get('awscli_version')}), all chains from the sources", fmt(cli_json.get("digests")), fmt(cli_json.get("log_files")),
            fmt(cli_seconds), fmt(cli_json.get("digests", 0) / cli_seconds), fmt(cli_json.get("log_files", 0) / cli_seconds), fmt(inflated0 / MB / cli_seconds),
            *cpu_cells(cli, cli_json.get("log_files")),
            f"{cli_json.get('digests_invalid', 0)} invalid digests, {cli_json.get('logs_invalid', 0)} invalid logs",
        ])
    cli_logs_rate = cli_json.get("log_files", 0) / cli_seconds if cli_json and cli_seconds else None
    full_figures = {}
    for label, name in [
        ("trailvault verify --full", "verify_full"),
        ("trailvault verify (incremental, nothing new)", "verify_incremental_noop"),
        ("trailvault verify (incremental, after the 1 % step)", "verify_incremental_1pct"),
    ]:
        record = load(results, name)
        if verify_measured(record):
            st = stats(record)
            digests, logs = st.get("digests_validated", 0), st.get("log_files_validated", 0)
            secs = record["seconds"]
            inflated = inflated0 if name == "verify_full" else None
            rows.append([label, fmt(digests), fmt(logs), fmt(secs, 2), fmt(digests / secs), fmt(logs / secs), fmt(inflated / MB / secs) if inflated else "n/a",
                         *(cpu_cells(record, logs) if name == "verify_full" else ["", "", ""]),
                         f"exit {record['exit_code']}, {len((record.get('stdout_json') or {}).get('findings', []))} findings"])
            full_figures[name] = (digests, logs, secs)
        else:
            rows.append([label, "", "", "", "", "", "", "", "", "", verify_note(record)])
    incremental = load(results, "verify_incremental_1pct")
    notes = ["Inflated MB/s: the data set's inflated bytes (logs + digests) over the wall time. "
             "CPU columns as in table 1, per log file."]
    if verify_measured(incremental):
        notes.append(
            f"Requests of the incremental verify after the 1 % step (SeaweedFS counters; GET includes HEAD): {incremental.get('seaweed_requests')}; "
            f"new digests: {fmt(added.get('digests'))}, new log files: {fmt(added.get('log_files'))}."
        )
    report.table("3. Validation", ["validator", "digests", "log files", "seconds", "digests/s", "log files/s", "inflated MB/s", "tool CPU ms/log", "server CPU ms/log", "cores busy", "notes"], rows, notes)
    if "verify_full" in full_figures and cli_logs_rate:
        digests, logs, secs = full_figures["verify_full"]
        ratio = (logs / secs) / cli_logs_rate
        report.target("verify --full >= 8x the AWS CLI's throughput", "PASS" if ratio >= 8 else "FAIL", f"{logs / secs:.0f} vs {cli_logs_rate:.0f} log files/s = {ratio:.1f}x")
    else:
        report.target("verify --full >= 8x the AWS CLI's throughput", "NOT MEASURED", f"trailvault verify: {verify_note(load(results, 'verify_full'))}; AWS CLI: {fmt(cli_logs_rate)} log files/s")
    if "verify_incremental_1pct" in full_figures and cli_seconds:
        digests, logs, secs = full_figures["verify_incremental_1pct"]
        ratio = cli_seconds / secs
        proportional = digests <= added.get("digests", 0) + len(info.get("chains", [])) if info else True
        report.target(
            "incremental verify >= 100x the AWS CLI's, proportional to new digests",
            "PASS" if ratio >= 100 and proportional else "FAIL",
            f"{secs:.2f} s vs {cli_seconds:.1f} s = {ratio:.0f}x; validated {digests} digests for {added.get('digests')} new",
        )
    else:
        report.target("incremental verify >= 100x the AWS CLI's, proportional to new digests", "NOT MEASURED", f"trailvault verify: {verify_note(load(results, 'verify_incremental_1pct'))}")

    # ---- scaling
    scale_copy = load(results, "scale_copy_trailvault")
    small_store = read_number(results, "store_small_bytes.txt")
    large_store = read_number(results, "store_large_bytes.txt")
    rows = []
    scale_objects = stats(scale_copy).get("objects_copied") if scale_copy else None
    small_recorded = (tv_objects or 0) + stats(new_tv).get("objects_copied", 0) if tv_objects else None
    for label, copy, store, objects, noop, vfull in [
        ("small", tv, small_store, small_recorded, noop_tv, load(results, "verify_full")),
        ("large", scale_copy, large_store, scale_objects, load(results, "scale_noop_trailvault"), load(results, "scale_verify_full")),
    ]:
        if not copy:
            continue
        copy_rate = stats(copy).get("objects_copied", 0) / copy["seconds"] if objects else None
        rows.append([
            label, fmt(objects), f"{(own_rss_kb(copy) or 0) / 1024:.0f} MB", fmt(copy_rate), fmt(store / objects if store and objects else None),
            fmt(noop["seconds"], 2) if noop else "n/a", fmt(vfull["seconds"], 1) if verify_measured(vfull) else verify_note(vfull),
        ])
    report.table(
        "4. Scaling",
        ["archive", "objects copied", "collect peak RSS", "collect objects/s", "store bytes/object", "no-op listing run (s)", "verify --full (s)"],
        rows,
        ["Store size: the disk space of the store directory (`du -s --block-size=1`: blocks allocated; redb doubles its file's length ahead of need and the unwritten part is a hole) divided by the objects it records (small: after the copy, no-op, 1 % and verify steps; large: right after the copy)."],
    )
    if scale_copy and own_rss_kb(scale_copy):
        rss = own_rss_kb(scale_copy) / 1024
        small_rss = (own_rss_kb(tv) or 0) / 1024
        report.target(f"peak RSS < 200 MB at {fmt(scale_objects)} objects", "PASS" if rss < 200 else "FAIL", f"{rss:.0f} MB")
        growth = rss / small_rss if small_rss else None
        report.target(
            "peak RSS flat in object count (large/small <= 1.25)",
            "PASS" if growth and growth <= 1.25 else "FAIL",
            f"{small_rss:.0f} MB at {fmt(tv_objects)} -> {rss:.0f} MB at {fmt(scale_objects)} objects ({growth:.2f}x)" if growth else "n/a",
        )
    else:
        report.target("peak RSS < 200 MB at 200k objects", "NOT MEASURED", "scaling step not run")
    per_object = [store / objects for store, objects in [(small_store, small_recorded), (large_store, scale_objects)] if store and objects]
    if per_object:
        worst = max(per_object)
        report.target("store < 512 bytes per object", "PASS" if worst < 512 else "FAIL", " / ".join(f"{p:.0f} B" for p in per_object))
    else:
        report.target("store < 512 bytes per object", "NOT MEASURED", "no store measured")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from report_floor import add_floor

    add_floor(report, results, load, stats, fmt)
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--info")
    parser.add_argument("--write")
    parser.add_argument("--best-rclone", action="store_true")
    args = parser.parse_args()
    if args.best_rclone:
        runs = [(r["seconds"], t, c) for t, c, r in rclone_runs(args.results) if r["exit_code"] == 0]
        if not runs:
            print("no successful rclone run", file=sys.stderr)
            return 1
        _, transfers, checkers = min(runs)
        print(f"{transfers}/{checkers}")
        return 0
    info = {}
    if args.info and os.path.exists(args.info):
        with open(args.info) as handle:
            info = json.load(handle)
    report = build(args.results, info)
    print(report.text())
    if args.write:
        repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        description = machine(repo_root)
        lines = [
            "# Benchmark results (issue 7)",
            "",
            "Produced by `scripts/bench` (see its header and `bench/README.md`); every figure below comes from "
            "`.bench/results/*.json` of that run. SeaweedFS, the tools and the data generator share the machine's cores.",
            "",
            "## Machine",
            "",
            "```",
            *[f"{key}: {value if isinstance(value, str) else ' '.join(value)}" for key, value in description.items() if key != "free -g"],
            "free -g:",
            description["free -g"],
            "```",
            "",
            "## Figures",
            "",
            report.markdown(),
        ]
        # Sections written by other steps or by hand are kept across full runs: the cost model
        # (scripts/bench --cost), the memory step (--memory) and the analysis of the figures.
        if os.path.exists(args.write):
            with open(args.write) as handle:
                previous = handle.read()
            for name in ("memory", "analysis", "cost-model"):
                start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
                if start in previous and end in previous:
                    lines += ["", previous[previous.index(start):previous.index(end) + len(end)], ""]
        with open(args.write, "w") as handle:
            handle.write("\n".join(lines))
        print(f"\nbench: wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
