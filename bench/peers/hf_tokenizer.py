#!/usr/bin/env python3
"""The peer of bench/tokenizer: Hugging Face tokenizers (and tiktoken for tiktoken rank files),
single-threaded, on the same corpus and in the same way (document by document, no special
tokens, then decode each document's ids). Writes {name: {encode_mb_per_s, decode_mb_per_s,
tokens, library}} as JSON.

    python3 bench/peers/hf_tokenizer.py --corpus corpus.txt \
        --tokenizer llama3=DIR/tokenizer.json --tokenizer llama3-tiktoken=DIR/tokenizer.model \
        --json-out peer.json
"""
import argparse
import base64
import json
import os
import statistics
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

SEPARATOR = "\n\x1e\n"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def load(path):
    if path.endswith(".json"):
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(path)
        # Some saved files carry truncation or padding settings (gpt2's has max_length 50):
        # serving encodes whole texts, so compare on whole texts.
        tok.no_truncation()
        tok.no_padding()
        return ("tokenizers",
                lambda s: tok.encode(s, add_special_tokens=False).ids,
                lambda ids: tok.decode(ids, skip_special_tokens=False))
    import tiktoken
    ranks = {}
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                tok_b64, rank = line.split()
                ranks[base64.b64decode(tok_b64)] = int(rank)
    enc = tiktoken.Encoding(name="peer", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                            special_tokens={})
    return ("tiktoken", lambda s: enc.encode(s, disallowed_special=()), enc.decode)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", action="append", default=[])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json-out", required=True)
    args = ap.parse_args()
    with open(args.corpus, "rb") as f:
        corpus = f.read().decode("utf-8")
    docs = [d for d in corpus.split(SEPARATOR) if d]
    text_bytes = sum(len(d.encode("utf-8")) for d in docs)
    out = {}
    for spec in args.tokenizer:
        name, path = spec.split("=", 1)
        library, encode, decode = load(path)
        enc_t, dec_t = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ids = [encode(d) for d in docs]
            t1 = time.perf_counter()
            for i in ids:
                decode(i)
            t2 = time.perf_counter()
            enc_t.append(t1 - t0)
            dec_t.append(t2 - t1)
        out[name] = {"library": library, "tokens": sum(len(i) for i in ids),
                     "encode_mb_per_s": text_bytes / 1e6 / statistics.median(enc_t),
                     "decode_mb_per_s": text_bytes / 1e6 / statistics.median(dec_t)}
        print(name, out[name], flush=True)
    with open(args.json_out, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
