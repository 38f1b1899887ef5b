#!/usr/bin/env python3
"""Writes a Llama-3.1-8B-Instruct model directory without weights, for serving with random
weights (`--weights random`, cuda) or with the mock backend: Meta's config.json and
generation_config.json, the real Llama 3 tokenizer and chat template from
../shared/data/tokenizers/llama3 (see its SOURCES.md). `--shape llama-3.2-1b` writes
Llama-3.2-1B-Instruct's configuration instead (same tokenizer family).

  scripts/llama31_8b_dir.py DEST [--shape llama-3.1-8b|llama-3.2-1b]
                                 [--tokenizer-dir ../shared/data/tokenizers/llama3]
"""
import argparse
import json
import os
import shutil
import sys

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 128256,
}
# Llama-3.2-1B-Instruct: what differs from the 8B configuration.
LLAMA32_1B = {
    "head_dim": 64,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": True,
}
GENERATION = {"bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128008, 128009],
              "temperature": 0.6, "top_p": 0.9}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dest")
    p.add_argument("--shape", choices=["llama-3.1-8b", "llama-3.2-1b"], default="llama-3.1-8b")
    p.add_argument("--tokenizer-dir",
                   default=os.path.join(here, "..", "..", "shared", "data", "tokenizers", "llama3"))
    args = p.parse_args()
    tok = os.path.join(args.tokenizer_dir, "tokenizer.json")
    tmpl = os.path.join(args.tokenizer_dir, "chat_template.Llama-3.1-8B-Instruct.jinja")
    for f in (tok, tmpl):
        if not os.path.exists(f):
            sys.exit(f"llama31_8b_dir: {f} is missing (give --tokenizer-dir)")
    os.makedirs(args.dest, exist_ok=True)
    config = dict(CONFIG, **(LLAMA32_1B if args.shape == "llama-3.2-1b" else {}))
    with open(os.path.join(args.dest, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(args.dest, "generation_config.json"), "w") as f:
        json.dump(GENERATION, f, indent=2)
    shutil.copyfile(tok, os.path.join(args.dest, "tokenizer.json"))
    tokenizer_config = {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "clean_up_tokenization_spaces": True,
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": open(tmpl).read(),
    }
    with open(os.path.join(args.dest, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config, f, indent=2)
    print(args.dest)


if __name__ == "__main__":
    main()
