"""Loading the fast tokenizers both encoders use."""

from __future__ import annotations

import functools
from pathlib import Path

from tokenizers import Tokenizer


def load_tokenizer(model: str) -> Tokenizer:
    """The model's own fast tokenizer, from a directory or a Hugging Face model name.

    Truncation and padding saved in tokenizer.json are switched off: token budgets are counted
    and cut here, and a silent cut inside the tokenizer would break both. One object per version
    of the file: encoders made from it share its tiktoken core (sidecar/token_ids.py), which
    takes about a second to build. Callers must not change it (truncation, padding).
    """
    path = Path(model) / "tokenizer.json"
    if path.parent.is_dir():
        stat = path.stat()
        # ctime changes with any write, even one that keeps the mtime (`cp -p`).
        return _load(str(path), (stat.st_ino, stat.st_ctime_ns, stat.st_size))
    return _load(model, None)


@functools.lru_cache(maxsize=4)
def _load(source: str, file_version: tuple[int, int, int] | None) -> Tokenizer:
    """`file_version` (inode, ctime, size) for a file, None for a model name."""
    if file_version is None:
        tokenizer = Tokenizer.from_pretrained(source)
    else:
        tokenizer = Tokenizer.from_file(source)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer
