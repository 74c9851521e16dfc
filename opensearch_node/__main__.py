"""`python -m opensearch_node build|run`: the test node for a person (`make cluster`)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from opensearch_node.build import DEFAULT_VERSION, ensure_home
from opensearch_node.errors import NodeError
from opensearch_node.node import running_node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opensearch_node", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="fetch and assemble the node (cached)")
    build.add_argument("--version", default=DEFAULT_VERSION)
    run = commands.add_parser("run", help="run a node in the foreground until Ctrl-C")
    run.add_argument("--version", default=DEFAULT_VERSION)
    run.add_argument("--port", type=int, default=9200)
    run.add_argument("--heap-mb", type=int, default=1024)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(ensure_home(args.version))
            return 0
        return _run(args.version, args.port, args.heap_mb)
    except NodeError as error:
        print(f"opensearch_node: {error}", file=sys.stderr)
        return 2


def _run(version: str, port: int, heap_mb: int) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"opensearch_node: starting OpenSearch {version} on 127.0.0.1:{port} ...", flush=True)
    with running_node(version, port=port, heap_mb=heap_mb) as node:
        print(f"opensearch_node: ready at {node.url} (data in {node.workdir}); Ctrl-C stops it",
              flush=True)  # fmt: skip
        stop.wait()
        print("opensearch_node: stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
