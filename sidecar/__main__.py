"""`rerank-sidecar serve` (= `python -m sidecar serve`): flags and RERANK_* variables."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from sidecar.config import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rerank-sidecar", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the reranking service")
    for name, field in Settings.model_fields.items():
        env = f"RERANK_{name.upper()}"
        default = field.get_default(call_default_factory=True)
        serve.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            metavar=name.upper(),
            help=f"{field.description or name} (env {env}; default {default!r})",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    given = {
        name: value for name, value in vars(args).items() if name != "command" and value is not None
    }
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        print(f"rerank-sidecar: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    from sidecar.server import serve

    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
