#!/usr/bin/env python3
"""Makes the golden references of tests/data/golden/ with Hugging Face transformers.

Run on the GPU machine (where torch and transformers are installed); it runs on its CPU in float32:

    python3 scripts/make_golden.py --out tests/data/golden

For each small random model of a supported family and variant it writes, into OUT/<name>/:
  config.json (+ generation_config.json for some), model.safetensors or sharded
  model-0000x-of-0000y.safetensors + model.safetensors.index.json, in the variant's dtype;
  reference.safetensors: float32 logits "logits.<i>" of shape [len(prompt i), vocab] for every
  prompt position, computed from the stored (possibly f16/bf16-rounded) weights upcast to float32;
  golden.json: the prompts, 24-token greedy continuations (with HF's KV cache, as generate() runs),
  and the smallest top-1/top-2 logit gap seen during greedy decoding;
  with a GPU, also "greedy_bf16": the same greedy prompts continued by the checkpoint loaded in
  bfloat16 on cuda (sdpa attention), each with every step's top-1/top-2 logit gap, so a test can
  tell the decisive steps, and "greedy_bf16_run" saying how they were made (the cuda backend's
  acceptance: its greedy tokens equal HF's in bf16).
It also writes OUT/block_hash.json: chained xxh3 block hashes computed with python-xxhash, so the
C++ implementation is checked against an independent one.

Weights are committed (the models are small: ~100k parameters each) instead of being regenerated
from a seed, because torch's generator cannot be reproduced from C++.

To add (or redo) only the bf16 greedy references of the committed models, leaving their weights and
every other key of golden.json byte-identical:

    python3 scripts/make_golden.py --out tests/data/golden --only-bf16-greedy
"""
import argparse
import json
import math
import os
import shutil
import struct

import torch
import transformers
from safetensors.torch import save_file

VOCAB = 256
PROMPT_LENS = [1, 7, 16, 33, 135]
GREEDY_PROMPT_LENS = [5, 40]
GREEDY_STEPS = 24


def base_kwargs(**over):
    kw = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
              rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    kw.update(over)
    return kw


# name -> (model_type, config kwargs, rope_parameters, dtype, spelling, sharded, generation_config)
VARIANTS = {
    "llama_gqa_f32": ("llama", base_kwargs(), {"rope_type": "default", "rope_theta": 10000.0},
                      torch.float32, "classic", False, False),
    "llama_mqa_linear_f16": ("llama", base_kwargs(num_key_value_heads=1, rms_norm_eps=1e-6),
                             {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
                             torch.float16, "classic", False, True),
    "llama_dynamic_f32": ("llama", base_kwargs(max_position_embeddings=64),
                          {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 4.0},
                          torch.float32, "new", False, False),
    "llama3_tied_bf16": ("llama", base_kwargs(tie_word_embeddings=True, eos_token_id=[2, 3]),
                         {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 64},
                         torch.bfloat16, "classic", False, True),
    "llama_yarn_sharded_bf16": ("llama", base_kwargs(max_position_embeddings=256),
                                {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                 "original_max_position_embeddings": 64, "beta_fast": 32.0,
                                 "beta_slow": 1.0},
                                torch.bfloat16, "new", True, False),
    "llama_headdim_bias_f32": ("llama", base_kwargs(head_dim=32, attention_bias=True,
                                                    mlp_bias=True),
                               {"rope_type": "default", "rope_theta": 10000.0},
                               torch.float32, "new", False, False),
    "mistral_window_bf16": ("mistral", base_kwargs(sliding_window=40, head_dim=16),
                            {"rope_type": "default", "rope_theta": 1000000.0},
                            torch.bfloat16, "classic", False, True),
    "qwen2_tied_bf16": ("qwen2", base_kwargs(tie_word_embeddings=True, num_attention_heads=8,
                                             num_key_value_heads=2, eos_token_id=[2, 4]),
                        {"rope_type": "default", "rope_theta": 1000000.0},
                        torch.bfloat16, "new", False, True),
}


def make_config(model_type, kwargs, rope):
    kw = dict(kwargs)
    kw["rope_parameters"] = dict(rope)
    if model_type == "qwen2":
        kw["use_sliding_window"] = False
    cfg = transformers.AutoConfig.for_model(model_type, **kw)
    cfg._attn_implementation = "eager"
    return cfg


def randomize(model, seed):
    # HF's init leaves norms at 1 and biases at 0; draw every parameter so each one matters.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))


def rewrite_spelling(path, spelling):
    """Writes config.json's RoPE in the classic (rope_theta + rope_scaling) or new spelling."""
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    rope = cfg.get("rope_parameters") or {}
    for key in ("rope_parameters", "rope_scaling", "rope_theta"):
        cfg.pop(key, None)
    if spelling == "classic":
        cfg["rope_theta"] = rope["rope_theta"]
        scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
        cfg["rope_scaling"] = None if scaling.get("rope_type") == "default" else scaling
    else:
        cfg["rope_parameters"] = rope
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)


def greedy(model, prompt, steps=GREEDY_STEPS, device=None):
    """Greedy continuation with HF's KV cache; returns (tokens, every step's top-1/top-2 logit gap).
    The gaps are taken in float32 (exact for bf16 logits); ties go to the lowest id."""
    ids = torch.tensor([prompt], device=device)
    out = model(input_ids=ids, use_cache=True)
    past = out.past_key_values
    logits = out.logits[0, -1].float()
    tokens, gaps = [], []
    for _ in range(steps):
        top2 = torch.topk(logits, 2).values
        gaps.append(float(top2[0] - top2[1]))
        tok = int(torch.argmax(logits))
        tokens.append(tok)
        out = model(input_ids=torch.tensor([[tok]], device=device), past_key_values=past,
                    use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1].float()
    return tokens, gaps


def greedy_bf16(path, greedy_refs, device, attn):
    """The fp32 greedy references' prompts continued (as many tokens) by the checkpoint at `path`
    loaded in bfloat16 on `device`. Returns (the "greedy_bf16" entries, "greedy_bf16_run")."""
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.bfloat16, attn_implementation=attn).to(device)
    model.eval()
    entries = []
    with torch.no_grad():
        for ref in greedy_refs:
            tokens, gaps = greedy(model, ref["prompt"], steps=len(ref["tokens"]), device=device)
            entries.append({"prompt": ref["prompt"], "tokens": tokens, "top2_gaps": gaps,
                            "min_top2_gap": min(gaps)})
        logits_dtype = model(input_ids=torch.tensor([[3]], device=device)).logits.dtype
    dev = torch.device(device)
    run = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev),
           "dtype": "bfloat16", "attn_implementation": model.config._attn_implementation,
           "logits_dtype": str(logits_dtype).replace("torch.", ""),
           "transformers": transformers.__version__, "torch": torch.__version__}
    del model
    return entries, run


def print_bf16(name, golden):
    pairs = list(zip(golden["greedy_bf16"], golden["greedy"]))
    same = sum(e["tokens"] == r["tokens"] for e, r in pairs)
    first_diff = [next((i for i, (a, b) in enumerate(zip(e["tokens"], r["tokens"])) if a != b),
                       None) for e, r in pairs]
    gaps = [e["min_top2_gap"] for e in golden["greedy_bf16"]]
    print(f"{name:28s} bf16 greedy on {golden['greedy_bf16_run']['device']}: "
          f"{same}/{len(gaps)} equal to fp32 (first differing step {first_diff}), "
          f"min_gap={min(gaps):.4g}")


def make_variant(out_dir, name, spec, seed, bf16_device, bf16_attn):
    model_type, kwargs, rope, dtype, spelling, sharded, gen_cfg = spec
    path = os.path.join(out_dir, name)
    shutil.rmtree(path, ignore_errors=True)
    torch.manual_seed(seed)
    cfg = make_config(model_type, kwargs, rope)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    randomize(model, seed)
    model = model.to(dtype)
    model.save_pretrained(path, max_shard_size="60KB" if sharded else "1GB")
    if not gen_cfg:
        gp = os.path.join(path, "generation_config.json")
        if os.path.exists(gp):
            os.remove(gp)
    rewrite_spelling(path, spelling)

    # The reference: the checkpoint as written, read back (checks HF reads our spelling the same
    # way), upcast to float32.
    ref = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                            attn_implementation="eager")
    ref.eval()
    g = torch.Generator().manual_seed(seed + 1)
    prompts = [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in PROMPT_LENS]
    tensors = {}
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            logits = ref(input_ids=torch.tensor([prompt]), use_cache=False).logits[0]
            tensors[f"logits.{i}"] = logits.float().contiguous()
        greedy_prompts = [torch.randint(3, VOCAB, (n,), generator=g).tolist()
                          for n in GREEDY_PROMPT_LENS]
        greedy_out = [(t, min(gaps)) for t, gaps in (greedy(ref, p) for p in greedy_prompts)]
    save_file(tensors, os.path.join(path, "reference.safetensors"))
    golden = {
        "model_type": model_type, "dtype": str(dtype).replace("torch.", ""), "spelling": spelling,
        "sharded": sharded, "transformers": transformers.__version__, "torch": torch.__version__,
        "prompts": prompts,
        "greedy": [{"prompt": p, "tokens": t, "min_top2_gap": gap}
                   for p, (t, gap) in zip(greedy_prompts, greedy_out)],
    }
    if bf16_device:
        golden["greedy_bf16"], golden["greedy_bf16_run"] = greedy_bf16(
            path, golden["greedy"], bf16_device, bf16_attn)
    with open(os.path.join(path, "golden.json"), "w") as f:
        json.dump(golden, f)
    gaps = [gap for _, gap in greedy_out]
    print(f"{name:28s} dtype={golden['dtype']:9s} files={sorted(os.listdir(path))} "
          f"min_gap={min(gaps):.4g}")
    if bf16_device:
        print_bf16(name, golden)


def add_bf16_greedy(out_dir, name, bf16_device, bf16_attn):
    """Adds (or replaces) "greedy_bf16" and "greedy_bf16_run" in OUT/<name>/golden.json; the
    weights and every other key stay as they are, byte for byte."""
    path = os.path.join(out_dir, name)
    golden_path = os.path.join(path, "golden.json")
    with open(golden_path) as f:
        text = f.read()
    golden = json.loads(text)
    if json.dumps(golden) != text:
        raise SystemExit(f"{golden_path}: not as json.dump writes it; rewriting it would change "
                         "more than the bf16 keys")
    golden["greedy_bf16"], golden["greedy_bf16_run"] = greedy_bf16(
        path, golden["greedy"], bf16_device, bf16_attn)
    with open(golden_path, "w") as f:
        json.dump(golden, f)
    print_bf16(name, golden)


def make_block_hashes(out_dir):
    import xxhash
    identity = "tandem-block-hash-test"
    seed = xxhash.xxh3_64_intdigest(identity.encode())
    salted = xxhash.xxh3_64_intdigest(identity.encode() + b"\0" + b"salt")
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, 128256, (16 * 5 + 3,), generator=g).tolist()
    hashes, parent = [], None
    for b in range(len(tokens) // 16):
        data = b"" if parent is None else struct.pack("<Q", parent)
        data += struct.pack("<16I", *tokens[16 * b:16 * (b + 1)])
        parent = xxhash.xxh3_64_intdigest(data, seed=seed)
        hashes.append(parent)
    with open(os.path.join(out_dir, "block_hash.json"), "w") as f:
        json.dump({"identity": identity, "seed": seed, "salt": "salt", "salted_seed": salted,
                   "block_size": 16, "tokens": tokens, "hashes": hashes}, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/golden")
    ap.add_argument("--only-bf16-greedy", action="store_true",
                    help="only add greedy_bf16 to the existing OUT/<model>/golden.json files")
    ap.add_argument("--bf16-device", default=None,
                    help="device of the bf16 greedy run (default: cuda when there is one; "
                         "without, the full run leaves greedy_bf16 out)")
    ap.add_argument("--bf16-attn", default="sdpa", help="attn_implementation of the bf16 run")
    args = ap.parse_args()
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    bf16_device = args.bf16_device or ("cuda" if torch.cuda.is_available() else None)
    if args.only_bf16_greedy:
        if not bf16_device:
            raise SystemExit("--only-bf16-greedy: no cuda device (pass --bf16-device to force one)")
        for name in VARIANTS:
            add_bf16_greedy(args.out, name, bf16_device, args.bf16_attn)
        return
    if not bf16_device:
        print("no cuda device: golden.json files get no greedy_bf16")
    os.makedirs(args.out, exist_ok=True)
    for i, (name, spec) in enumerate(VARIANTS.items()):
        make_variant(args.out, name, spec, seed=1000 + i, bf16_device=bf16_device,
                     bf16_attn=args.bf16_attn)
    make_block_hashes(args.out)


if __name__ == "__main__":
    main()
