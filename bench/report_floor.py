"""Issue 16's sections of the report: the copy against the floor of the required work
(ladder steps 6 and 7), verify --full against its reference loop, and the whole job
(rclone + the AWS CLI's validation vs one `trailvault collect`). Called by report.py."""

import os


def _cpu_ms(record, objects):
    client = (record or {}).get("client_cpu_seconds")
    if client is None or not objects:
        return None
    return 1000 * client / objects


def _cores(record):
    record = record or {}
    client, server, seconds = record.get("client_cpu_seconds"), record.get("server_cpu_seconds"), record.get("seconds")
    if client is None or server is None or not seconds:
        return None
    return (client + server) / seconds


def add_floor(report, results, load, stats, fmt):
    def cell(value, digits=2):
        return "n/a" if value is None else f"{value:,.{digits}f}"

    def ladder(step_name):
        record = load(results, step_name)
        objects = ((record or {}).get("stdout_json") or {}).get("objects")
        if not record or not objects or record.get("exit_code") != 0:
            return None, None, None, record
        return objects, objects / record["seconds"], _cpu_ms(record, objects), record

    tv = load(results, "copy_trailvault")
    tv_objects = stats(tv).get("objects_copied")
    tv_rate = tv_objects / tv["seconds"] if tv and tv_objects else None
    tv_cpu = _cpu_ms(tv, tv_objects)
    _, step6_rate, step6_cpu, step6 = ladder("ladder_6_head")
    _, step7_rate, step7_cpu, step7 = ladder("ladder_7_inflate")
    rows = [
        ["ladder step 6: the loop making every request trailvault makes", cell(step6_rate, 1), cell(step6_cpu), cell(_cores(step6))],
        ["ladder step 7: step 6 + inflate every body (libdeflate) + SHA-256 of raw and inflated bytes (the floor)", cell(step7_rate, 1), cell(step7_cpu), cell(_cores(step7))],
        ["trailvault collect --no-verify", cell(tv_rate, 1), cell(tv_cpu), cell(_cores(tv))],
    ]
    report.table(
        "5a. Copy against the floor of the required work (issue 16)",
        ["run", "objects/s", "tool CPU ms/obj", "cores busy"],
        rows,
        ["objects/s depends on who else uses the 2 cores (the server, other processes); tool CPU per object does not, "
         "and is the robust figure of the two."],
    )
    if tv_rate and step6_rate:
        ratio = tv_rate / step6_rate
        report.target("collect --no-verify >= 95% of ladder step 6's objects/s", "PASS" if ratio >= 0.95 else "FAIL",
                      f"{tv_rate:.0f} vs {step6_rate:.0f} obj/s = {100 * ratio:.0f}%")
    else:
        report.target("collect --no-verify >= 95% of ladder step 6's objects/s", "NOT MEASURED", "a run is missing or failed")
    if tv_cpu and step7_cpu:
        ratio = tv_cpu / step7_cpu
        report.target("collect --no-verify tool CPU/object <= 1.1x ladder step 7's", "PASS" if ratio <= 1.1 else "FAIL",
                      f"{tv_cpu:.2f} vs {step7_cpu:.2f} ms/obj = {ratio:.2f}x")
    else:
        report.target("collect --no-verify tool CPU/object <= 1.1x ladder step 7's", "NOT MEASURED", "a run is missing or failed")

    # ---- verify --full against its reference loop and the AWS CLI
    full = load(results, "verify_full")
    ref = load(results, "validate_ref")
    cli = load(results, "validate_awscli")
    ref_json = (ref or {}).get("stdout_json") or {}
    cli_json = (cli or {}).get("stdout_json") or {}
    full_ok = full is not None and full.get("exit_code") in (0, 3)
    full_logs = stats(full).get("log_files_validated") if full_ok else None
    objects = ref_json.get("objects")
    rows = []
    if ref_json:
        rows.append(["reference loop: GET + inflate + SHA-256 of every archived object (same concurrency)", fmt(objects), cell(ref["seconds"]),
                     cell(objects / ref["seconds"], 1), cell(_cpu_ms(ref, objects)), cell(_cores(ref)),
                     f"{ref_json.get('errors', 0)} errors, {ref_json.get('not_gzip', 0)} not gzip"])
    if full_ok:
        rows.append(["trailvault verify --full", fmt(objects), cell(full["seconds"]), cell(objects / full["seconds"], 1) if objects else "n/a",
                     cell(_cpu_ms(full, objects)), cell(_cores(full)), f"{fmt(full_logs)} log files validated"])
    if cli_json:
        rows.append(["AWS CLI validation module", fmt(cli_json.get("log_files", 0) + cli_json.get("digests", 0)), cell(cli["seconds"]), "", "", cell(_cores(cli)),
                     f"{fmt(cli_json.get('log_files'))} log files"])
    report.table("5b. verify --full against the reference loop (issue 16)",
                 ["run", "objects", "seconds", "objects/s", "tool CPU ms/obj", "cores busy", "notes"], rows,
                 ["Both read the same archived objects; the ratio is of wall times over that one set."])
    if full_ok and ref_json and ref_json.get("errors") == 0:
        ratio = ref["seconds"] / full["seconds"]
        report.target("verify --full >= 90% of the reference loop", "PASS" if ratio >= 0.9 else "FAIL",
                      f"{full['seconds']:.1f} s vs {ref['seconds']:.1f} s for {fmt(objects)} objects = {100 * ratio:.0f}%")
    else:
        report.target("verify --full >= 90% of the reference loop", "NOT MEASURED", "a run is missing or failed")
    if full_ok and cli_json and full_logs:
        ratio = (full_logs / full["seconds"]) / (cli_json.get("log_files", 0) / cli["seconds"])
        report.target("verify --full >= 4x the AWS CLI (same run)", "PASS" if ratio >= 4 else "FAIL",
                      f"{full_logs / full['seconds']:.0f} vs {cli_json.get('log_files', 0) / cli['seconds']:.0f} log files/s = {ratio:.1f}x")
    else:
        report.target("verify --full >= 4x the AWS CLI (same run)", "NOT MEASURED", "a run is missing or failed")

    # ---- the whole job
    combined = load(results, "whole_rclone_awscli")
    whole = load(results, "whole_trailvault")
    rows = []
    for label, record in [("rclone copy (best setting) then the AWS CLI's validation, back to back", combined),
                          ("trailvault collect (copy + validation) from an empty archive", whole)]:
        if record:
            rows.append([label, cell(record["seconds"], 1), record.get("exit_code"), cell(record.get("client_cpu_seconds"), 1), cell(_cores(record))])
    report.table("5c. The whole job (issue 16)", ["run", "seconds", "exit", "tool CPU s", "cores busy"], rows,
                 ["Same sources, same chains, each into a fresh destination bucket. Wall time is what a user waits; "
                  "tool CPU seconds do not depend on other load on the machine."])
    if combined and whole and combined.get("exit_code") == 0 and whole.get("exit_code") in (0, 3):
        ratio = combined["seconds"] / whole["seconds"]
        cpu = ""
        if combined.get("client_cpu_seconds") and whole.get("client_cpu_seconds"):
            cpu = f"; tool CPU {combined['client_cpu_seconds']:.0f} s vs {whole['client_cpu_seconds']:.0f} s = {combined['client_cpu_seconds'] / whole['client_cpu_seconds']:.1f}x"
        report.target("whole job: trailvault >= 3x faster than rclone + AWS CLI validation", "PASS" if ratio >= 3 else "FAIL",
                      f"{whole['seconds']:.1f} s vs {combined['seconds']:.1f} s = {ratio:.1f}x{cpu}")
    else:
        report.target("whole job: trailvault >= 3x faster than rclone + AWS CLI validation", "NOT MEASURED", "a run is missing or failed")

    # ---- where the copy's CPU runs
    path = os.path.join(results, "threads_collect.json")
    if os.path.exists(path):
        import json

        with open(path) as handle:
            threads = json.load(handle)
        total = threads.get("cpu_seconds") or 0
        rows = []
        for entry in threads.get("threads", []):
            share = 100 * entry["cpu_seconds"] / total if total else 0
            busy = sorted(entry.get("per_thread", []), reverse=True)
            rows.append([entry["name"], entry["count"], f"{entry['cpu_seconds']:.2f}", f"{share:.0f}%",
                         ", ".join(f"{c:.2f}" for c in busy[:8]) + (" ..." if len(busy) > 8 else "")])
        report.table(
            "5d. Where collect's CPU runs (issue 16): concurrency 64, blocking pool = one thread per core",
            ["thread name", "threads", "CPU s", "share", "CPU s of the busiest threads"],
            rows,
            [f"`trailvault collect --no-verify` into a fresh archive, exit {threads.get('exit_code')}, {threads.get('seconds', 0):.1f} s wall, "
             f"{total:.1f} s CPU; per-thread user + system time from /proc/<pid>/task/*/stat, last seen before exit. "
             "`tokio-runtime-w` are the runtime's worker and blocking threads (tokio names both so)."],
        )
