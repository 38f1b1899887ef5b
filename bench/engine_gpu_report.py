#!/usr/bin/env python3
"""Puts bench/engine_gpu's JSON beside its Hugging Face peer's (bench/peers/hf_engine.py) as one
markdown table: each tandem row with its fraction of the roofline (decode: memory bandwidth,
prefill: bf16 GEMM rate), the peer's tokens/s eager and compiled, and tandem's ratio to the faster
peer; then the issue's targets for Llama-3.1-8B. Missing files or rows print as '-'."""
import argparse
import json
import os
import sys

TARGETS = [  # (model, kind, batch, length, minimum tokens/s, label)
    ("llama-3.1-8b", "decode", 1, None, 225.0, "decode batch 1 >= 85% of roofline (~225 tok/s)"),
    ("llama-3.1-8b", "decode", 64, 512, 9000.0, "decode batch 64 @ 512 >= 9,000 tok/s"),
    ("llama-3.1-8b", "prefill", 1, 2048, 40000.0, "prefill 2048 >= 40,000 tok/s"),
]


def load(path):
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def length_of(row):
    return row.get("context", row.get("length"))


def peer_rate(peer, model, kind, batch, length, mode):
    for r in peer.get("rows", []):
        if (r.get("model") == model and r.get("kind") == kind and r.get("mode") == mode
                and r.get("batch", 1) == batch and length_of(r) == length
                and r.get("status", "ok") == "ok" and r.get("tokens_per_s")):
            return float(r["tokens_per_s"])
    return None


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True)
    ap.add_argument("--peer", action="append", default=[], help="peer JSON (repeatable)")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    ours = load(a.ours)
    peer = {"rows": []}
    for path in a.peer:
        part = load(path)
        peer["rows"] += part.get("rows", [])
        for key in ("transformers", "torch"):
            peer.setdefault(key, part.get(key))
    lines = []
    if ours:
        lines.append(f"Device: {ours.get('device')}; measured copy bandwidth "
                     f"{ours.get('copy_gbps', 0) / 1000:.2f} TB/s, bf16 GEMM "
                     f"{ours.get('gemm_tflops', 0):.0f} TFLOP/s.")
    if peer["rows"]:
        lines.append(f"Peer: transformers {peer.get('transformers')}, torch {peer.get('torch')}.")
    lines.append("")
    lines.append("| model | kind | batch | tokens | tandem ms | tandem tok/s | roofline | "
                 "HF eager tok/s | HF compile tok/s | tandem / best HF |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in ours.get("rows", []):
        length = length_of(r)
        eager = peer_rate(peer, r["model"], r["kind"], r["batch"], length, "eager")
        comp = peer_rate(peer, r["model"], r["kind"], r["batch"], length, "compile")
        best = max([v for v in (eager, comp) if v], default=None)
        roof = r.get("bandwidth_fraction", r.get("gemm_fraction"))
        ratio = r["tokens_per_s"] / best if best else None
        roof_s = "-" if roof is None else f"{100 * roof:.0f}% {'BW' if r['kind'] == 'decode' else 'GEMM'}"
        lines.append(f"| {r['model']} | {r['kind']} | {r['batch']} | {length} | {r['ms']:.2f} | "
                     f"{r['tokens_per_s']:,.0f} | {roof_s} | {fmt(eager, ',.0f')} | "
                     f"{fmt(comp, ',.0f')} | {fmt(ratio, '.2f')} |")
    lines.append("")
    for model, kind, batch, length, minimum, label in TARGETS:
        got = [r for r in ours.get("rows", []) if r["model"] == model and r["kind"] == kind
               and r["batch"] == batch and (length is None or length_of(r) == length)]
        for r in got:
            verdict = "met" if r["tokens_per_s"] >= minimum else "NOT met"
            lines.append(f"- target {label}: {r['tokens_per_s']:,.0f} tok/s at {length_of(r)} "
                         f"tokens: {verdict}")
        if not got:
            lines.append(f"- target {label}: no row")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
