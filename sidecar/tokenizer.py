"""Loading the fast tokenizers both encoders use."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer


def load_tokenizer(model: str) -> Tokenizer:
    """The model's own fast tokenizer, from a directory or a Hugging Face model name.

    Truncation and padding saved in tokenizer.json are switched off: token budgets are counted
    and cut here, and a silent cut inside the tokenizer would break both.
    """
    path = Path(model)
    if path.is_dir():
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    else:
        tokenizer = Tokenizer.from_pretrained(model)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer
