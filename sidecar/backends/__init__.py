"""Scoring backends: vLLM (Qwen3-Reranker), the embedded CPU bi-encoder, and a null backend.

`factory` builds the one the settings ask for; the types they share are in `sidecar.scoring_types`.
"""
