"""The floor step's table (scripts/bench --floor N): per round, trailvault collect
--no-verify against ladder steps 6 and 7 on the same data set, and the medians of the
per-round ratios that issue 16's item 2 targets (objects/s >= 95 % of step 6, tool CPU
per object <= 1.1x step 7's)."""

import argparse
import statistics

from report import load  # same results directory layout as the full report


def figures(record, objects):
    """(objects/s, tool CPU ms/object) of one measured step, or None."""
    if not record or record.get("exit_code") != 0 or not objects:
        return None
    cpu = record.get("client_cpu_seconds")
    return objects / record["seconds"], (1000 * cpu / objects) if cpu is not None else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--rounds", type=int, required=True)
    args = parser.parse_args()
    rows, rate_ratios, cpu_ratios = [], [], []
    verify_rows, verify_ratios = [], []
    for round_ in range(1, args.rounds + 1):
        tv = load(args.results, f"floor_{round_}_collect")
        stats = ((tv or {}).get("stdout_json") or {}).get("stats") or {}
        tv_f = figures(tv, stats.get("objects_copied"))
        step = {}
        for name in ("step6", "step7"):
            record = load(args.results, f"floor_{round_}_{name}")
            step[name] = figures(record, ((record or {}).get("stdout_json") or {}).get("objects"))
        if not tv_f or not step["step6"] or not step["step7"]:
            rows.append(f"| {round_} | failed: see {args.results}/floor_{round_}_*.json | | | | |")
            continue
        rate_ratio = tv_f[0] / step["step6"][0]
        cpu_ratio = tv_f[1] / step["step7"][1] if tv_f[1] and step["step7"][1] else None
        rate_ratios.append(rate_ratio)
        if cpu_ratio is not None:
            cpu_ratios.append(cpu_ratio)
        rows.append(
            f"| {round_} | {tv_f[0]:.0f} obj/s, {tv_f[1]:.2f} ms | {step['step6'][0]:.0f} obj/s, {step['step6'][1]:.2f} ms"
            f" | {step['step7'][0]:.0f} obj/s, {step['step7'][1]:.2f} ms | {100 * rate_ratio:.0f} %"
            f" | {'n/a' if cpu_ratio is None else f'{cpu_ratio:.2f}x'} |"
        )
        full = load(args.results, f"floor_{round_}_verify_full")
        ref = load(args.results, f"floor_{round_}_validate_ref")
        if full and ref and full.get("exit_code") in (0, 3) and ref.get("exit_code") == 0:
            objects = ((ref.get("stdout_json") or {}).get("objects")) or 0
            ratio = ref["seconds"] / full["seconds"]
            verify_ratios.append(ratio)
            cpu = lambda r: f"{1000 * r['client_cpu_seconds'] / objects:.2f} ms" if objects and r.get("client_cpu_seconds") is not None else "n/a"
            verify_rows.append(f"| {round_} | {full['seconds']:.1f} s, {cpu(full)} | {ref['seconds']:.1f} s, {cpu(ref)} | {objects} | {100 * ratio:.0f} % |")
    print("| round | collect --no-verify | step 6 | step 7 | collect / step 6 (obj/s) | collect / step 7 (CPU/object) |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    if rate_ratios:
        rate = statistics.median(rate_ratios)
        print(f"\nmedian collect / step 6 objects/s: {100 * rate:.0f} % (target >= 95 %): {'PASS' if rate >= 0.95 else 'FAIL'}")
    if cpu_ratios:
        cpu = statistics.median(cpu_ratios)
        print(f"median collect / step 7 tool CPU per object: {cpu:.2f}x (target <= 1.1x): {'PASS' if cpu <= 1.1 else 'FAIL'}")

    if verify_rows:
        print("\n| round | verify --full | reference loop | objects | verify --full / loop (speed) |")
        print("| --- | --- | --- | --- | --- |")
        print("\n".join(verify_rows))
        ratio = statistics.median(verify_ratios)
        print(f"\nmedian verify --full / reference loop: {100 * ratio:.0f} % (target >= 90 %): {'PASS' if ratio >= 0.9 else 'FAIL'}")


if __name__ == "__main__":
    main()
