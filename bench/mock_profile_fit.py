#!/usr/bin/env python3
"""Fits the mock engine's timing model to the cuda backend's measured step times.

Reads bench/results/engine_gpu.json (bench_engine_gpu on the GPU machine) and writes a mock
profile (the JSON `--mock-profile` takes) for one model:

  decode step  = decode_fixed_ms + decode_per_seq_us * seqs + decode_per_context_token_ns * sum(context)
  prefill step = prefill_fixed_ms + prefill_per_token_us * tokens
                 + prefill_per_token_context_ns * sum(tokens * mean attended context)

Least squares over every decode row (batch x context) and every prefill row (one prompt of T
tokens from position 0: mean attended context T/2). Standard library only.

  bench/mock_profile_fit.py [--model llama-3.1-8b] [--in FILE] [--out FILE]
"""
import argparse
import json


def lstsq(rows, ys):
    """Ordinary least squares by the normal equations (3 unknowns, a handful of rows)."""
    n = len(rows[0])
    a = [[sum(r[i] * r[j] for r in rows) for j in range(n)] for i in range(n)]
    b = [sum(r[i] * y for r, y in zip(rows, ys)) for i in range(n)]
    for col in range(n):  # Gauss-Jordan with partial pivoting.
        piv = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[piv] = a[piv], a[col]
        b[col], b[piv] = b[piv], b[col]
        for r in range(n):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col])]
                b[r] -= f * b[col]
    return [b[i] / a[i][i] for i in range(n)]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama-3.1-8b")
    p.add_argument("--in", dest="src", default="bench/results/engine_gpu.json")
    p.add_argument("--out", default="bench/results/mock_profile_llama-3.1-8b_h200.json")
    args = p.parse_args()
    data = json.load(open(args.src))
    rows = [r for r in data["rows"] if r["model"] == args.model]
    dec = [r for r in rows if r["kind"] == "decode"]
    pre = [r for r in rows if r["kind"] == "prefill"]
    # Decode: ms = a + b*seqs + c*seqs*context.
    d = lstsq([[1.0, r["batch"], r["batch"] * r["context"]] for r in dec], [r["ms"] for r in dec])
    # Prefill: ms = a + b*T + c*T*(T/2), T the prompt length.
    pf = lstsq([[1.0, r["length"], r["length"] * r["length"] / 2] for r in pre],
               [r["ms"] for r in pre])
    profile = {
        "name": f"{args.model} on {data.get('device', 'unknown')} (cuda backend, bf16)",
        "source": args.src,
        "prefill_fixed_ms": pf[0],
        "prefill_per_token_us": pf[1] * 1e3,
        "prefill_per_token_context_ns": pf[2] * 1e6,
        "decode_fixed_ms": d[0],
        "decode_per_seq_us": d[1] * 1e3,
        "decode_per_context_token_ns": d[2] * 1e6,
    }
    print("| kind | batch | tokens | measured ms | model ms | error |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in dec:
        m = d[0] + d[1] * r["batch"] + d[2] * r["batch"] * r["context"]
        print(f"| decode | {r['batch']} | {r['context']} | {r['ms']:.2f} | {m:.2f} | "
              f"{(m / r['ms'] - 1) * 100:+.1f}% |")
    for r in pre:
        t = r["length"]
        m = pf[0] + pf[1] * t + pf[2] * t * t / 2
        print(f"| prefill | 1 | {t} | {r['ms']:.2f} | {m:.2f} | {(m / r['ms'] - 1) * 100:+.1f}% |")
    with open(args.out, "w") as f:
        json.dump(profile, f, indent=2)
        f.write("\n")
    print(json.dumps(profile, indent=2))


if __name__ == "__main__":
    main()
