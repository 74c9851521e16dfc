"""`python -m es_integration` and the `rerank-es-integration` console script."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from es_integration.cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
