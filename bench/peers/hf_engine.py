#!/usr/bin/env python3
"""The peer of bench/engine_gpu: Hugging Face transformers running Llama-shaped models with random
bf16 weights on one GPU, eager and torch.compile'd, with sdpa attention.

Decode rows: B sequences whose cache holds C random prompt tokens (prefilled by the model itself,
in chunks of --prefill-chunk-tokens), then single-token greedy steps: one forward of the last
sampled tokens, argmax on the device, cache update. Each step is timed with CUDA events; `ms` is
the median step, tokens_per_s = B / median step.
Prefill rows: one sequence of L random tokens, one forward (use_cache=False, logits of the last
position only where the model takes logits_to_keep); `ms` the median forward, TFLOP/s from
prefill_flops().

  eager    DynamicCache and the model's forward as is.
  compile  transformers' static-cache recipe: a StaticCache of C + steps positions, filled by the
           uncompiled model (generate() does not compile the prefill either), then the step
           (forward + argmax) under torch.compile(mode="reduce-overhead", fullgraph=True,
           dynamic=False); if the full graph does not compile, again with graph breaks (the row's
           note says which ran). The static cache's tensors are guarded by address, so every
           (batch, context) compiles anew. Prefill rows compile the forward without CUDA graphs.

Rows run in order (per model, per mode: decode then prefill); a row whose estimated cost no longer
fits in --max-seconds (counted from the start) is skipped and marked so. The JSON is rewritten
after every row, not-yet-run rows marked "pending", so a run killed from outside keeps what it
measured.

    python3 bench/peers/hf_engine.py --model llama-3.1-8b --modes eager,compile \\
        --decode-batches 1,8,32,64,128 --contexts 512,4096 --prefill-lengths 512,2048,8192 \\
        --max-seconds 540 --out hf_engine.json
    python3 bench/peers/hf_engine.py --tiny --quick --device cpu --out /tmp/tiny.json  # smoke run
"""
import argparse
import gc
import inspect
import json
import os
import statistics
import sys
import time
import traceback

import torch
import torch._dynamo
import transformers

T0 = time.monotonic()

# Real shapes. `rope` is transformers 5's rope_parameters.
MODELS = {
    "llama-3.1-8b": dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, vocab_size=128256, max_position_embeddings=131072,
        rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}),
    "llama-3.2-1b": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, vocab_size=128256, max_position_embeddings=131072,
        rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}),
    # For debugging the script itself (--tiny), on the CPU or the GPU in seconds.
    "tiny": dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, vocab_size=1024, max_position_embeddings=8192,
        rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 1024}),
}

# A row's cost before one like it has run (seconds): whether it may still start.
FIRST_ROW_GUESS_S = {("eager", "decode"): 10, ("eager", "prefill"): 5,
                     ("compile", "decode"): 60, ("compile", "prefill"): 60}


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def non_embedding_params(shape):
    """The decoder layers' matmul weights (q, k, v, o, gate, up, down); the embedding, the lm_head
    and the norms are left out."""
    h, d = shape["hidden_size"], shape["head_dim"]
    q = shape["num_attention_heads"] * d
    kv = shape["num_key_value_heads"] * d
    per_layer = 2 * h * q + 2 * h * kv + 3 * h * shape["intermediate_size"]
    return shape["num_hidden_layers"] * per_layer


def prefill_flops(shape, length):
    """FLOPs of one causal prefill of `length` tokens, a multiply-add counted as 2:

        2 * non_embedding_params * length                         (the linear layers)
      + 2 * 2 * length * length / 2 * head_dim * heads * layers   (attention)

    Attention: QK^T and PV each cost 2 * head_dim FLOPs per (query, key) pair and head, and a causal
    prefill has length^2 / 2 such pairs per head and layer. The lm_head (one row with
    logits_to_keep=1), norms, RoPE and softmax are not counted. bench/engine_gpu counts the same."""
    linear = 2 * non_embedding_params(shape) * length
    attention = (2 * 2 * length * length / 2 * shape["head_dim"] * shape["num_attention_heads"]
                 * shape["num_hidden_layers"])
    return linear + attention


def csv_ints(s):
    return [int(x) for x in s.split(",") if x.strip()]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[],
                    help=f"one of {', '.join(MODELS)}; repeat or comma-separate for several "
                         "(default llama-3.1-8b)")
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--kinds", default="decode,prefill",
                    help="which rows: decode, prefill or both (to split a run across calls)")
    ap.add_argument("--decode-batches", type=csv_ints, default=[1, 8, 32, 64, 128])
    ap.add_argument("--contexts", type=csv_ints, default=[512, 4096])
    ap.add_argument("--prefill-lengths", type=csv_ints, default=[512, 2048, 8192])
    ap.add_argument("--warmup", type=int, default=5,
                    help="untimed decode steps / prefill forwards before the timed ones")
    ap.add_argument("--iters", type=int, default=20, help="timed decode steps / prefill forwards")
    ap.add_argument("--prefill-chunk-tokens", type=int, default=16384,
                    help="tokens per forward (batch x positions) when filling a decode row's cache")
    ap.add_argument("--max-seconds", type=float, default=540,
                    help="budget from the start; rows that no longer fit are skipped")
    ap.add_argument("--out", required=True, help="JSON file, rewritten after every row")
    ap.add_argument("--quick", action="store_true",
                    help="smoke subset: batches 1,8, context 512, prefill 512, warmup 2, iters 5")
    ap.add_argument("--tiny", action="store_true", help="the tiny model only (debugging)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)
    models = [m for spec in (args.model or ["llama-3.1-8b"]) for m in spec.split(",") if m]
    if args.tiny:
        models = ["tiny"]
    for m in models:
        if m not in MODELS:
            ap.error(f"--model {m}: not one of {', '.join(MODELS)}")
    args.models = models
    args.modes = [m for m in args.modes.split(",") if m]
    for m in args.modes:
        if m not in ("eager", "compile"):
            ap.error(f"--modes {m}: not eager or compile")
    args.kinds = [k for k in args.kinds.split(",") if k]
    for k in args.kinds:
        if k not in ("decode", "prefill"):
            ap.error(f"--kinds {k}: not decode or prefill")
    if args.quick:
        args.decode_batches, args.contexts, args.prefill_lengths = [1, 8], [512], [512]
        args.warmup, args.iters = 2, 5
    if args.iters < 1 or args.warmup < 0:
        ap.error("--iters must be >= 1 and --warmup >= 0")
    return args


def plan_rows(args):
    rows = []
    for model in args.models:
        for mode in args.modes:
            for c in args.contexts if "decode" in args.kinds else []:
                for b in args.decode_batches:
                    rows.append({"model": model, "mode": mode, "kind": "decode", "batch": b,
                                 "context": c})
            for n in args.prefill_lengths if "prefill" in args.kinds else []:
                rows.append({"model": model, "mode": mode, "kind": "prefill", "batch": 1,
                             "length": n})
    for r in rows:
        r.update(ms=None, ms_mean=None, tokens_per_s=None, status="pending")
        if r["kind"] == "prefill":
            r["tflops"] = None
    return rows


def table(rows):
    lines = [f"{'model':13s} {'mode':7s} {'kind':7s} {'batch':>5s} {'ctx/len':>7s} {'ms':>9s} "
             f"{'tok/s':>10s} {'TFLOP/s':>7s}  status"]
    for r in rows:
        n = r.get("context", r.get("length"))
        ms = f"{r['ms']:.3f}" if r["ms"] is not None else "-"
        tps = f"{r['tokens_per_s']:.1f}" if r["tokens_per_s"] is not None else "-"
        tf = f"{r['tflops']:.1f}" if r.get("tflops") is not None else "-"
        lines.append(f"{r['model']:13s} {r['mode']:7s} {r['kind']:7s} {r['batch']:5d} {n:7d} "
                     f"{ms:>9s} {tps:>10s} {tf:>7s}  {r['status']}"
                     + (f" ({r['note']})" if r.get("note") else ""))
    return "\n".join(lines)


def write_json(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)


def is_oom(e):
    text = str(e)
    return (isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower()
            or "CUBLAS_STATUS_ALLOC_FAILED" in text)


def reset_compiled():
    """Drops every compiled graph and the CUDA graph trees' memory pools."""
    torch._dynamo.reset()
    try:
        from torch._inductor.cudagraph_trees import reset_cudagraph_trees
        reset_cudagraph_trees()
    except Exception:  # noqa: BLE001 (internal API; dynamo's reset covers it in recent torch)
        pass


def cudagraph_skips():
    try:
        from torch._dynamo.utils import counters
        return int(counters["inductor"].get("cudagraph_skips", 0))
    except Exception:  # noqa: BLE001 (internal API; informational only)
        return 0


def free_memory(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class StepTimer:
    """Per-step intervals (CUDA events on a GPU, perf_counter on the CPU) and one window around all
    timed steps."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.steps = []
        self.window = None

    def _mark(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def _ms(self, a, b):
        return a.elapsed_time(b) if self.cuda else (b - a) * 1e3

    def start(self):
        self._start = self._mark()

    def stop(self):
        self.steps.append((self._start, self._mark()))

    def result(self):
        """(median step ms, mean step ms over the window)."""
        if self.cuda:
            torch.cuda.synchronize()
        per_step = [self._ms(a, b) for a, b in self.steps]
        window = self._ms(self.steps[0][0], self.steps[-1][1])
        return statistics.median(per_step), window / len(per_step)


class Runner:
    """One model on the device and the rows run on it."""

    def __init__(self, name, args, device):
        self.name, self.args, self.device = name, args, device
        self.shape = MODELS[name]
        self.cfg = self._config()
        self.model = self._build()
        params = inspect.signature(type(self.model).forward).parameters
        inner = inspect.signature(type(self.model.model).forward).parameters
        self.has_cache_position = "cache_position" in params or "cache_position" in inner
        if "logits_to_keep" in params:
            self.last_logits_kw = {"logits_to_keep": 1}
        elif "num_logits_to_keep" in params:
            self.last_logits_kw = {"num_logits_to_keep": 1}
        else:
            self.last_logits_kw = {}
        log(f"model {name}: forward takes cache_position={self.has_cache_position}, "
            f"last-logits kwarg={list(self.last_logits_kw) or 'none (all logits computed)'}")

    def _config(self):
        kw = dict(self.shape)
        rope = kw.pop("rope")
        cfg = transformers.LlamaConfig(rope_parameters=dict(rope), **kw)
        if not getattr(cfg, "rope_parameters", None):  # transformers 4's spelling
            cfg.rope_theta = rope["rope_theta"]
            cfg.rope_scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
        cfg._attn_implementation = "sdpa"
        rope_seen = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None)
        log(f"model {self.name}: rope {rope_seen}")
        return cfg

    def _build(self):
        """Builds directly in bf16 on the device (parameters never exist in fp32 or on the host),
        then draws every weight: N(0, 0.02) for matrices, 1 for the RMSNorm weights."""
        t = time.monotonic()
        torch.manual_seed(self.args.seed)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            with torch.device(self.device):
                model = transformers.LlamaForCausalLM(self.cfg)
        finally:
            torch.set_default_dtype(previous)
        odd = {str(p.dtype) + "@" + str(p.device) for p in model.parameters()
               if p.dtype != torch.bfloat16 or p.device.type != self.device.type}
        if odd:
            log(f"model {self.name}: parameters built as {sorted(odd)}; moving to bf16 on "
                f"{self.device}")
            model.to(device=self.device, dtype=torch.bfloat16)
        model.eval()
        model.requires_grad_(False)
        if self.cfg.tie_word_embeddings:
            emb, head = model.get_input_embeddings(), model.get_output_embeddings()
            if emb.weight.data_ptr() != head.weight.data_ptr():
                try:
                    model.tie_weights()
                except Exception as e:  # noqa: BLE001 (untied costs memory, not speed)
                    log(f"model {self.name}: tie_weights failed ({e}); lm_head left untied")
        g = torch.Generator(device=self.device).manual_seed(self.args.seed)
        with torch.no_grad():
            for _, p in model.named_parameters():  # a tied weight is listed once
                if p.dim() == 1:
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, 0.02, generator=g)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        n = sum(p.numel() for p in model.parameters())
        layer_mats = sum(p.numel() for name, p in model.named_parameters()
                         if ".layers." in name and p.dim() == 2)
        tied = (model.get_input_embeddings().weight.data_ptr()
                == model.get_output_embeddings().weight.data_ptr())
        self.info = {"params": n, "non_embedding_params": non_embedding_params(self.shape),
                     "tied_embeddings": tied,
                     "attn_implementation": model.config._attn_implementation}
        log(f"model {self.name}: built in {time.monotonic() - t:.1f}s, {n / 1e9:.3f}B params, "
            f"layer matmul weights {layer_mats / 1e9:.3f}B (formula "
            f"{non_embedding_params(self.shape) / 1e9:.3f}B), tied={tied}, "
            f"attn={model.config._attn_implementation}")
        return model

    # --- caches and inputs

    def tokens(self, batch, length, seed):
        g = torch.Generator(device=self.device).manual_seed(seed)
        return torch.randint(0, self.shape["vocab_size"], (batch, length), device=self.device,
                             generator=g)

    def dynamic_cache(self):
        try:
            return transformers.DynamicCache(config=self.cfg)
        except TypeError:
            return transformers.DynamicCache()

    def static_cache(self, batch, max_len):
        # transformers 5 takes (config, max_cache_len) and allocates on the first update; 4.x also
        # wanted the batch, device and dtype (5 accepts and ignores them).
        try:
            return transformers.StaticCache(config=self.cfg, max_cache_len=max_len,
                                            max_batch_size=batch, device=self.device,
                                            dtype=torch.bfloat16)
        except TypeError:
            return transformers.StaticCache(config=self.cfg, max_cache_len=max_len)

    def kv_bytes(self, batch, positions):
        s = self.shape
        return (batch * positions * s["num_hidden_layers"] * s["num_key_value_heads"]
                * s["head_dim"] * 2 * 2)

    def fill(self, cache, prompt):
        """Runs the prompt through the (uncompiled) model into `cache` in chunks of about
        --prefill-chunk-tokens tokens; returns the greedy next tokens [B, 1]."""
        b, c = prompt.shape
        step = max(1, self.args.prefill_chunk_tokens // b)
        for s in range(0, c, step):
            e = min(c, s + step)
            kw = dict(input_ids=prompt[:, s:e], past_key_values=cache, use_cache=True,
                      **self.last_logits_kw)
            if self.has_cache_position:
                kw["cache_position"] = torch.arange(s, e, device=self.device)
            else:
                kw["position_ids"] = torch.arange(s, e, device=self.device).unsqueeze(0)
            logits = self.model(**kw).logits
            tok = logits[:, -1].argmax(-1, keepdim=True)
            del logits
        return tok

    def step_kwargs(self, tok, pos, cache):
        kw = dict(input_ids=tok, past_key_values=cache, use_cache=True)
        if self.has_cache_position:
            kw["cache_position"] = pos
        else:
            kw["position_ids"] = pos.unsqueeze(0)
        return kw

    # --- rows

    def decode(self, mode, batch, context):
        """Returns (median ms, mean ms, note)."""
        a = self.args
        # CUDA graph trees run a function once, record it on the next call, replay from the third.
        warmup = max(a.warmup, 3) if mode == "compile" else a.warmup
        steps = warmup + a.iters
        max_len = context + steps + 4
        if self.device.type == "cuda":
            need = self.kv_bytes(batch, max_len)
            free, _ = torch.cuda.mem_get_info()
            if need > free:
                raise torch.cuda.OutOfMemoryError(
                    f"estimated: KV cache {need / 2**30:.1f} GiB > free {free / 2**30:.1f} GiB")
        prompt = self.tokens(batch, context, a.seed + batch * 100003 + context)
        pos = torch.tensor([context], device=self.device)
        timer = StepTimer(self.device)
        with torch.no_grad():
            if mode == "eager":
                cache = self.dynamic_cache()
                tok = self.fill(cache, prompt)
                del prompt
                note = "DynamicCache"
                for i in range(steps):
                    if i >= warmup:
                        timer.start()
                    logits = self.model(**self.step_kwargs(tok, pos, cache)).logits
                    tok = logits[:, -1].argmax(-1, keepdim=True)
                    del logits
                    pos += 1
                    if i >= warmup:
                        timer.stop()
            else:
                cache = self.static_cache(batch, max_len)
                tok = self.fill(cache, prompt)
                del prompt
                model = self.model

                def step(tok, pos, cache):
                    logits = model(**self.step_kwargs(tok, pos, cache)).logits
                    return logits[:, -1].argmax(-1, keepdim=True)

                fn, note, skips = None, None, cudagraph_skips()
                for i in range(steps):
                    if i >= warmup:
                        timer.start()
                    mark_step = getattr(torch.compiler, "cudagraph_mark_step_begin", None)
                    if mark_step is not None:
                        mark_step()
                    if fn is None:
                        fn, note, tok = self.first_compiled_call(
                            step, (tok, pos, cache), mode="reduce-overhead")
                    else:
                        tok = fn(tok, pos, cache)
                    tok = tok.clone()  # the graph's output buffer is rewritten by the next replay
                    pos += 1
                    if i >= warmup:
                        timer.stop()
                skips = cudagraph_skips() - skips
                note = f"StaticCache, {note}" + (
                    f", CUDA graphs skipped {skips}x (see the log)" if skips else "")
            ms, ms_mean = timer.result()
        return ms, ms_mean, note

    def prefill(self, mode, length):
        a = self.args
        ids = self.tokens(1, length, a.seed + length)
        model = self.model
        kw = dict(use_cache=False, **self.last_logits_kw)

        def forward(ids):
            return model(input_ids=ids, **kw).logits

        timer = StepTimer(self.device)
        note = "eager" if mode == "eager" else None
        fn = forward if mode == "eager" else None
        warmup = max(a.warmup, 1) if mode == "compile" else a.warmup  # the first call compiles
        with torch.no_grad():
            for i in range(warmup + a.iters):
                if i >= warmup:
                    timer.start()
                if fn is None:
                    fn, note, out = self.first_compiled_call(forward, (ids,), mode=None)
                else:
                    out = fn(ids)
                del out
                if i >= warmup:
                    timer.stop()
            ms, ms_mean = timer.result()
        if not self.last_logits_kw:
            note += ", all logits computed"
        return ms, ms_mean, note

    def first_compiled_call(self, fn, inputs, mode):
        """Compiles `fn` (fullgraph, else with graph breaks) and makes its first call; returns
        (compiled fn, which path ran, first output)."""
        kw = dict(dynamic=False)
        if mode:
            kw["mode"] = mode
        t = time.monotonic()
        try:
            compiled = torch.compile(fn, fullgraph=True, **kw)
            out = compiled(*inputs)
            path = "fullgraph"
        except Exception as e:  # noqa: BLE001 (dynamo raises many types)
            if is_oom(e):
                raise
            log(f"  fullgraph compile failed ({type(e).__name__}: {str(e)[:300]}); "
                "retrying with graph breaks")
            reset_compiled()
            compiled = torch.compile(fn, fullgraph=False, **kw)
            out = compiled(*inputs)
            path = "graph breaks"
        path = f"torch.compile({mode or 'default'}, {path}, compiled in " \
               f"{time.monotonic() - t:.0f}s)"
        log(f"  {path}")
        return compiled, path, out

    def close(self):
        del self.model
        reset_compiled()
        free_memory(self.device)


def setup_dynamo():
    # Every (batch, context) recompiles; never fall back to eager for hitting the limit.
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                 "accumulated_cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 1024)


def main():
    args = parse_args()
    device = torch.device(args.device)
    torch.set_grad_enabled(False)
    setup_dynamo()
    rows = plan_rows(args)
    doc = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "transformers": transformers.__version__,
           "args": {k: v for k, v in vars(args).items()},
           "flops": "prefill: 2 * non_embedding_params * L + 2 * L^2 * head_dim * heads * layers "
                    "(non_embedding_params: the decoder layers' matmul weights)",
           "models": {}, "rows": rows}
    write_json(args.out, doc)
    log(f"{doc['device']}, torch {doc['torch']}, transformers {doc['transformers']}, "
        f"{len(rows)} rows, budget {args.max_seconds:.0f}s")
    last_cost = {}
    runner, build_failed = None, {}
    for r in rows:
        key = (r["mode"], r["kind"])
        left = args.max_seconds - (time.monotonic() - T0)
        if r["model"] in build_failed:
            r["status"] = build_failed[r["model"]]
            write_json(args.out, doc)
            continue
        if runner is None or runner.name != r["model"]:
            if runner is not None:
                runner.close()
                runner = None
            if left < 15:
                r["status"] = "skipped: budget"
                write_json(args.out, doc)
                continue
            try:
                runner = Runner(r["model"], args, device)
            except Exception as e:  # noqa: BLE001 (the other models may still run)
                traceback.print_exc(limit=8, file=sys.stderr)
                build_failed[r["model"]] = (
                    "skipped: out of memory" if is_oom(e)
                    else f"error: building the model: {type(e).__name__}: {str(e)[:300]}")
                r["status"] = build_failed[r["model"]]
                free_memory(device)
                write_json(args.out, doc)
                continue
            doc["models"][r["model"]] = runner.info
            last_cost = {}
            left = args.max_seconds - (time.monotonic() - T0)
        estimate = last_cost.get(key, FIRST_ROW_GUESS_S[key])
        if left < estimate:
            r["status"] = "skipped: budget"
            log(f"skip {r['model']} {r['mode']} {r['kind']} batch={r['batch']} "
                f"n={r.get('context', r.get('length'))}: {left:.0f}s left, needs ~{estimate:.0f}s")
            write_json(args.out, doc)
            continue
        label = (f"{r['model']} {r['mode']} {r['kind']} batch={r['batch']} "
                 f"{'context' if r['kind'] == 'decode' else 'length'}="
                 f"{r.get('context', r.get('length'))}")
        log(f"row {label}")
        t = time.monotonic()
        try:
            if r["kind"] == "decode":
                ms, ms_mean, note = runner.decode(r["mode"], r["batch"], r["context"])
                r["tokens_per_s"] = r["batch"] / (ms / 1e3)
            else:
                ms, ms_mean, note = runner.prefill(r["mode"], r["length"])
                r["tokens_per_s"] = r["length"] / (ms / 1e3)
                r["tflops"] = prefill_flops(runner.shape, r["length"]) / (ms / 1e3) / 1e12
            r.update(ms=ms, ms_mean=ms_mean, status="ok", note=note)
        except Exception as e:  # noqa: BLE001 (a row's failure must not end the run)
            if is_oom(e):
                r["status"] = "skipped: out of memory"
                r["note"] = str(e)[:300]
            else:
                r["status"] = f"error: {type(e).__name__}: {str(e)[:300]}"
                traceback.print_exc(limit=8, file=sys.stderr)
        if r["mode"] == "compile":
            reset_compiled()
        free_memory(device)
        cost = time.monotonic() - t
        if r["status"] == "ok":
            last_cost[key] = cost
        r["seconds"] = round(cost, 1)
        extra = f" tflops={r['tflops']:.1f}" if r.get("tflops") else ""
        log(f"  {r['status']} in {cost:.1f}s" + (
            f": {r['ms']:.3f} ms, {r['tokens_per_s']:.1f} tok/s{extra}" if r["ms"] else ""))
        write_json(args.out, doc)
    if runner is not None:
        runner.close()
    write_json(args.out, doc)
    print(f"{doc['device']}, torch {doc['torch']}, transformers {doc['transformers']}")
    print(table(rows), flush=True)


if __name__ == "__main__":
    main()
