#!/usr/bin/env python3
"""The P/D study on mock clusters (issue 17): one table from the JSON reports that
`bench/run_mock_cluster.sh pd` writes (tandem bench --json-out), goodput at TTFT <= 2 s and
TPOT <= 50 ms by cluster shape, with the best disaggregated shape against aggregated.

    bench/pd_mock_report.py OUT_DIR > report.md     # the runs' reports
    bench/pd_mock_report.py results/pd_mock/summary.json  # their summaries, as committed
    bench/pd_mock_report.py OUT_DIR --summary FILE        # also writes that summary
"""
import glob
import json
import os
import re
import sys

src = sys.argv[1]
runs = {}
if src.endswith(".json"):
    runs = json.load(open(src))
else:
    for path in sorted(glob.glob(os.path.join(src, "pd_*.json"))):
        if not path.endswith(".ports.json"):
            j = json.load(open(path))
            runs[os.path.basename(path)[:-5]] = {"config": j["config"], "summary": j["summary"]}
if len(sys.argv) == 4 and sys.argv[2] == "--summary":
    json.dump(runs, open(sys.argv[3], "w"), indent=1)
shapes = [("agg4", "4 aggregated"), ("1p3d", "1P3D"), ("2p2d", "2P2D"), ("3p1d", "3P1D")]
workloads = {}
for name, run in runs.items():
    m = re.match(r"pd_(agg4|1p3d|2p2d|3p1d)_(code|conv|random)_(\w+)$", name)
    if not m:
        continue
    shape, workload, load = m.groups()
    workloads.setdefault((workload, load), {})[shape] = run


def load_label(workload, load):
    if workload == "random":
        return f"random 4000/250 at {load[1:]} req/s"
    return f"Azure {workload} at {load[1:]}x"


def order(key):
    workload, load = key
    return (["code", "conv", "random"].index(workload), float(load[1:]))


print("| workload | offered req/s | " + " | ".join(f"{label} goodput (TTFT p50 / TPOT p50 ms)"
                                                 for _, label in shapes) + " | best P/D ÷ aggregated |")
print("|---|---:|" + "---:|" * len(shapes) + "---:|")
for key in sorted(workloads, key=order):
    runs = workloads[key]
    cells, goodput = [], {}
    offered = None
    for shape, _ in shapes:
        r = runs.get(shape)
        if r is None:
            cells.append("—")
            continue
        s = r["summary"]
        goodput[shape] = s["goodput"]
        sent = s["completed"] + s["failed"] + s["cancelled"]
        offered = offered or sent / r["config"]["duration_s"]
        cells.append(f"{s['goodput']:.1f} ({s['ttft_ms']['p50']:,.0f} / {s['tpot_ms']['p50']:.1f})")
    best = max((g for s, g in goodput.items() if s != "agg4"), default=None)
    ratio = f"{best / goodput['agg4']:.2f}" if best is not None and goodput.get("agg4") else "—"
    print(f"| {load_label(*key)} | {offered or 0:.1f} | " + " | ".join(cells) + f" | {ratio} |")

thresholds = sorted(n for n in runs if re.match(r"pd_2p2d_t\d+_conv_x12$", n))
if thresholds:
    print("\n2P2D, Azure conv at 12x, by --local-prefill-tokens:\n")
    print("| threshold | goodput | TTFT p50 ms | TTFT p90 ms | TPOT p50 ms |")
    print("|---:|---:|---:|---:|---:|")
    rows = [(int(re.search(r"_t(\d+)_", n).group(1)), runs[n]["summary"]) for n in thresholds]
    base = workloads.get(("conv", "x12"), {}).get("2p2d")
    if base:
        rows.append((512, base["summary"]))
    for t, s in sorted(rows):
        print(f"| {t} | {s['goodput']:.1f} | {s['ttft_ms']['p50']:,.0f} | {s['ttft_ms']['p90']:,.0f} | "
              f"{s['tpot_ms']['p50']:.1f} |")
