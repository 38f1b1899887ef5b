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
  and the smallest top-1/top-2 logit gap seen during greedy decoding.
It also writes OUT/block_hash.json: chained xxh3 block hashes computed with python-xxhash, so the
C++ implementation is checked against an independent one.

Weights are committed (the models are small: ~100k parameters each) instead of being regenerated
from a seed, because torch's generator cannot be reproduced from C++.
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


def greedy(model, prompt):
    ids = torch.tensor([prompt])
    out = model(input_ids=ids, use_cache=True)
    past = out.past_key_values
    logits = out.logits[0, -1]
    tokens, min_gap = [], float("inf")
    for _ in range(GREEDY_STEPS):
        top2 = torch.topk(logits, 2).values
        min_gap = min(min_gap, float(top2[0] - top2[1]))
        tok = int(torch.argmax(logits))
        tokens.append(tok)
        out = model(input_ids=torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1]
    return tokens, min_gap


def make_variant(out_dir, name, spec, seed):
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
        greedy_out = [greedy(ref, p) for p in greedy_prompts]
    save_file(tensors, os.path.join(path, "reference.safetensors"))
    golden = {
        "model_type": model_type, "dtype": str(dtype).replace("torch.", ""), "spelling": spelling,
        "sharded": sharded, "transformers": transformers.__version__, "torch": torch.__version__,
        "prompts": prompts,
        "greedy": [{"prompt": p, "tokens": t, "min_top2_gap": gap}
                   for p, (t, gap) in zip(greedy_prompts, greedy_out)],
    }
    with open(os.path.join(path, "golden.json"), "w") as f:
        json.dump(golden, f)
    gaps = [gap for _, gap in greedy_out]
    print(f"{name:28s} dtype={golden['dtype']:9s} files={sorted(os.listdir(path))} "
          f"min_gap={min(gaps):.4g}")


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
    args = ap.parse_args()
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    os.makedirs(args.out, exist_ok=True)
    for i, (name, spec) in enumerate(VARIANTS.items()):
        make_variant(args.out, name, spec, seed=1000 + i)
    make_block_hashes(args.out)


if __name__ == "__main__":
    main()
