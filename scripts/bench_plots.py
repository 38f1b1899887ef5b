#!/usr/bin/python3
"""Plots of a `tandem bench` report.

Usage: bench_plots.py REPORT.json OUT_DIR

Writes into OUT_DIR:
  ttft_cdf.png         CDF of time to first token, one line per run
  itl_cdf.png          CDF of inter-token latency, one line per run
  throughput.png       output tokens/s and requests in flight over the run's time
  latency_vs_rate.png  TTFT and TPOT (p50, p99) against request rate (sweeps only)

`tandem bench --plots DIR` runs it with Debian's matplotlib (/usr/bin/python3); the report
layout is documented in src/cli/bench/README.md.
"""
import json
import math
import os
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("bench_plots.py: matplotlib is missing: apt-get install python3-matplotlib "
             "(scripts/setup.sh installs it)")


def runs_of(report):
    return report["runs"] if "runs" in report else [report]


def label(run):
    config = run.get("config", {})
    rate = config.get("request_rate")
    if rate is None:
        text = "trace" if config.get("arrivals") == "trace" else "all at once"
    elif rate == "inf":
        text = "all at once"
    else:
        text = f"{rate:g} req/s"
    if config.get("max_concurrency"):
        text += f", concurrency {config['max_concurrency']}"
    return text


def completed(run):
    return [r for r in run.get("requests", []) if r.get("error") is None]


def cdf(ax, values, name):
    values = sorted(values)
    if not values:
        return
    n = len(values)
    ax.step(values, [(i + 1) / n for i in range(n)], where="post", label=name)


def plot_cdfs(runs, out_dir):
    for key, file, title in (("ttft_ms", "ttft_cdf.png", "Time to first token"),
                             ("itl_ms", "itl_cdf.png", "Inter-token latency")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for run in runs:
            values = []
            for r in completed(run):
                v = r.get(key)
                if isinstance(v, list):
                    values.extend(v)
                elif v is not None:
                    values.append(v)
            cdf(ax, values, label(run))
        ax.set_xlabel(f"{title} (ms)")
        ax.set_ylabel("fraction of " + ("requests" if key == "ttft_ms" else "tokens"))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, file), dpi=120)
        plt.close(fig)


def plot_throughput(runs, out_dir):
    fig, (tok_ax, flight_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for run in runs:
        requests = run.get("requests", [])
        end = max((r["start_s"] + r["e2e_ms"] / 1e3 for r in requests), default=0.0)
        if end <= 0:
            continue
        bins = 60
        width = end / bins
        tokens = [0.0] * bins
        for r in completed(run):
            if r.get("ttft_ms") is None:
                continue
            times = [r["ttft_ms"]]
            for gap in r["itl_ms"]:
                times.append(times[-1] + gap)
            weight = r["output_tokens"] / len(times) if times else 0
            for t in times:
                i = min(bins - 1, int((r["start_s"] + t / 1e3) / width))
                tokens[i] += weight
        xs = [(i + 0.5) * width for i in range(bins)]
        tok_ax.plot(xs, [t / width for t in tokens], label=label(run))
        events = sorted([(r["start_s"], 1) for r in requests] +
                        [(r["start_s"] + r["e2e_ms"] / 1e3, -1) for r in requests])
        level, ts, levels = 0, [0.0], [0]
        for t, delta in events:
            level += delta
            ts.append(t)
            levels.append(level)
        flight_ax.step(ts, levels, where="post", label=label(run))
    tok_ax.set_ylabel("output tokens/s")
    tok_ax.set_title("Throughput and requests in flight")
    tok_ax.grid(alpha=0.3)
    tok_ax.legend()
    flight_ax.set_ylabel("requests in flight")
    flight_ax.set_xlabel("time since the run started (s)")
    flight_ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "throughput.png"), dpi=120)
    plt.close(fig)


def plot_latency_vs_rate(runs, out_dir):
    rated = [r for r in runs if r.get("config", {}).get("request_rate") is not None]
    if len(rated) < 2:
        return
    finite = [r["config"]["request_rate"] for r in rated if r["config"]["request_rate"] != "inf"]
    inf_x = max(finite) * 2 if finite else 1.0
    xs = [inf_x if r["config"]["request_rate"] == "inf" else r["config"]["request_rate"]
          for r in rated]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, title in zip(axes, ("ttft_ms", "tpot_ms", "e2e_ms"), ("TTFT", "TPOT", "E2E")):
        for stat in ("p50", "p99"):
            ys = [r["summary"][key][stat] for r in rated]
            ys = [math.nan if y is None else y for y in ys]
            ax.plot(xs, ys, marker="o", label=stat)
        ax.set_xlabel("request rate (req/s; rightmost = inf)" if "inf" in
                      [r["config"]["request_rate"] for r in rated] else "request rate (req/s)")
        ax.set_ylabel(f"{title} (ms)")
        ax.set_title(f"{title} against request rate")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "latency_vs_rate.png"), dpi=120)
    plt.close(fig)


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    try:
        with open(argv[1]) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"bench_plots.py: cannot read {argv[1]}: {e}")
    os.makedirs(argv[2], exist_ok=True)
    runs = runs_of(report)
    plot_cdfs(runs, argv[2])
    plot_throughput(runs, argv[2])
    plot_latency_vs_rate(runs, argv[2])


if __name__ == "__main__":
    main(sys.argv)
