"""`python -m bench.gpu_paper`: the GPU plan on paper (docs/performance.md), from model shapes.

FLOPs of one formatted pair of L tokens through a Qwen3 decoder: 2 x (non-embedding parameters)
per token for the matrix products, plus causal attention, 2 x L^2 x (query heads x head dim) per
layer (QK^T and AV, half of each masked out). The score head reads one position: negligible.
The pairs/s ceiling divides the GPU's dense bf16 peak by that; real prefill reaches a fraction of
it (model FLOPs utilisation), which the `--vllm-url` bench measures.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    """A Qwen3 model's shape, from its config.json on the Hugging Face Hub."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    query_heads: int
    kv_heads: int
    head_dim: int = 128

    @property
    def non_embedding_params(self) -> int:
        attention = self.hidden * self.head_dim * (2 * self.query_heads + 2 * self.kv_heads)
        mlp = 3 * self.hidden * self.intermediate
        return self.layers * (attention + mlp)

    def flops_per_pair(self, tokens: int) -> float:
        linear = 2 * self.non_embedding_params * tokens
        attention = 2 * self.layers * tokens**2 * self.query_heads * self.head_dim
        return float(linear + attention)


MODELS = (
    Shape("Qwen3-Reranker-0.6B", layers=28, hidden=1024, intermediate=3072, query_heads=16,
          kv_heads=8),
    Shape("Qwen3-Reranker-4B", layers=36, hidden=2560, intermediate=9728, query_heads=32,
          kv_heads=8),
    Shape("Qwen3-Reranker-8B", layers=36, hidden=4096, intermediate=12288, query_heads=32,
          kv_heads=8),
)  # fmt: skip
# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s.
GPUS = {"H100 SXM": 989.0, "A100 SXM": 312.0, "L4": 121.0}
LENGTHS = (128, 256, 512, 1024, 2048)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_paper", description=__doc__)
    parser.add_argument(
        "--sidecar-cpu-ms-per-pair",
        type=float,
        default=0.075,
        help="the sidecar's CPU per pair (the P1 table's server CPU ms/request / 50; 0.075 was "
        "measured with fresh documents and tiktoken's BPE core on the 2-core machine, 0.15 "
        "before it)",
    )
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed FLOPs utilisation")
    args = parser.parse_args()

    print("## FLOPs per pair (GFLOP), by formatted pair length in tokens\n")
    print("| model | non-embedding params | " + " | ".join(f"L={n}" for n in LENGTHS) + " |")
    print("|---|---:|" + "---:|" * len(LENGTHS))
    for model in MODELS:
        cells = " | ".join(f"{model.flops_per_pair(n) / 1e9:,.0f}" for n in LENGTHS)
        print(f"| {model.name} | {model.non_embedding_params / 1e9:.2f} B | {cells} |")

    print(
        f"\n## Pairs/s per GPU: ceiling at the bf16 peak (and at {args.mfu:.0%} utilisation), "
        f"pairs of 256 / 1024 tokens; sidecar cores to keep up at L=256 "
        f"({args.sidecar_cpu_ms_per_pair} ms CPU per pair)\n"
    )
    print("| model | GPU | L=256 pairs/s | L=1024 pairs/s | sidecar cores, L=256 |")
    print("|---|---|---:|---:|---:|")
    for model in MODELS:
        for gpu, tflops in GPUS.items():
            short = tflops * 1e12 / model.flops_per_pair(256)
            long = tflops * 1e12 / model.flops_per_pair(1024)
            cores = short * args.sidecar_cpu_ms_per_pair / 1000
            print(
                f"| {model.name} | {gpu} | {short:,.0f} ({short * args.mfu:,.0f}) | "
                f"{long:,.0f} ({long * args.mfu:,.0f}) | {cores:.2f} ({cores * args.mfu:.2f}) |"
            )


if __name__ == "__main__":
    main()
