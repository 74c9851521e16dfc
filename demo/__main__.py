"""`make demo` = `python -m demo`: BM25 against reranked, side by side, on a real OpenSearch node.

One command: starts the OpenSearch node (`opensearch_node`) and the sidecar (embedded CPU model, or
`--vllm-url` for a real Qwen3-Reranker), indexes the multilingual demo catalog, runs
`es_integration opensearch setup` on it, and prints for each demo query the top 5 by plain BM25
(`search_pipeline=_none`) and after reranking (the index's default pipeline), from the same client
query. Everything it started is stopped at the end; `--opensearch-url` uses a running cluster.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from demo.catalog import INDEX_NAME, CatalogError
from demo.report import DemoError, index_catalog, run_demo
from es_integration.cli import main as es_integration
from opensearch_node.build import DEFAULT_VERSION
from opensearch_node.errors import NodeError
from opensearch_node.node import running_node
from tests.support.servers import sidecar_process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--vllm-url", help="a vLLM serving Qwen3-Reranker (default: embedded)")
    parser.add_argument("--model", default="Qwen/Qwen3-Reranker-0.6B", help="with --vllm-url")
    parser.add_argument("--served-model-name", help="with --vllm-url, if vLLM serves another name")
    parser.add_argument("--opensearch-url", help="use this cluster instead of starting a node")
    parser.add_argument("--opensearch-version", default=DEFAULT_VERSION)
    parser.add_argument("--index", default=INDEX_NAME)
    args = parser.parse_args(argv)
    try:
        with ExitStack() as stack:
            url = args.opensearch_url or stack.enter_context(_node(args.opensearch_version))
            sidecar_args, label = _backend(args)
            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "sidecar.log"
            print("demo: starting the sidecar ...", flush=True)
            sidecar = stack.enter_context(sidecar_process(log, *sidecar_args))
            count = index_catalog(url, args.index)
            print(f"demo: indexed {count} products into {args.index!r}", flush=True)
            setup = ["opensearch", "setup", "--url", url, "--sidecar-url", sidecar.url,
                     "--index", args.index, "--fields", "title,description", "--yes"]  # fmt: skip
            if es_integration(setup) != 0:
                return 1
            run_demo(
                url,
                args.index,
                backend_label=label,
                out=sys.stdout,
                english_centric_model=not args.vllm_url,
            )
    except (NodeError, DemoError, CatalogError) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    return 0


@contextmanager
def _node(version: str) -> Iterator[str]:
    print(f"demo: starting OpenSearch {version} (first run: assembled from Maven Central) ...")
    with running_node(version) as node:
        print(f"demo: OpenSearch ready at {node.url}", flush=True)
        yield node.url


def _backend(args: argparse.Namespace) -> tuple[list[str], str]:
    if not args.vllm_url:
        return ["--backend", "embedded"], "all-MiniLM-L6-v2 (embedded bi-encoder, CPU)"
    served = ["--served-model-name", args.served_model_name] if args.served_model_name else []
    return (
        ["--vllm-url", args.vllm_url, "--model", args.model, *served],
        f"{args.served_model_name or args.model} (cross-encoder on vLLM at {args.vllm_url})",
    )


if __name__ == "__main__":
    sys.exit(main())
