"""`python -m es_integration {opensearch,elasticsearch} {setup,status,teardown} [flags]`, and
`python -m es_integration opensearch eval` (es_integration/eval.py).

Exit status: 0 done (status: everything works), 1 failed, 2 bad usage, 3 a change needs --yes,
4 status found a problem.
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from es_integration import dryrun, es_setup, os_setup, os_status, os_teardown
from es_integration.errors import EXIT_USAGE, EsIntegrationError, UsageError
from es_integration.options import (
    Names,
    Options,
    Timeouts,
    fields_to_read,
    parse_fields_by_language,
    validate_cluster_url,
    validate_fields,
    validate_instruction,
    validate_name,
    validate_rerank_window,
    validate_sidecar_url,
)
from es_integration.report import Report
from es_integration.session import Confirm, Session
from es_integration.transport import (
    REDACTED,
    ClusterAuth,
    DryRunTransport,
    ElasticsearchTransport,
    OpenSearchTransport,
    TlsOptions,
    Transport,
)

EXIT_OK, EXIT_UNHEALTHY = 0, 4  # the others (1 failed, 2 usage, 3 refused): errors.py

Command = Callable[[Session], None]
COMMANDS: dict[str, dict[str, Command]] = {
    "opensearch": {
        "setup": os_setup.setup,
        "status": os_status.status,
        "teardown": os_teardown.teardown,
    },
    "elasticsearch": {
        "setup": es_setup.setup,
        "status": es_setup.status,
        "teardown": es_setup.teardown,
    },
}

ENV_PREFIX = {"opensearch": "OPENSEARCH", "elasticsearch": "ELASTICSEARCH"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rerank-es-integration",
        description="Register the rerank sidecar with OpenSearch (existing query-DSL clients "
        "get reranked hits) or Elasticsearch (a rerank inference endpoint).",
    )
    parser.add_argument("target", choices=("opensearch", "elasticsearch"))
    parser.add_argument("command", choices=("setup", "status", "teardown", "eval"))
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument(
        "--url",
        action="append",
        default=[],
        help="cluster URL, repeatable (env OPENSEARCH_URL / ELASTICSEARCH_URL, comma-separated)",
    )
    cluster.add_argument("--username", help="basic auth user (env <TARGET>_USERNAME)")
    cluster.add_argument(
        "--password", help="basic auth password (env <TARGET>_PASSWORD; asked if missing on a TTY)"
    )
    cluster.add_argument("--api-key", help="API key, sent as 'ApiKey <key>' (env <TARGET>_API_KEY)")
    cluster.add_argument("--ca-certs", metavar="PATH", help="CA bundle to verify the cluster's TLS")
    cluster.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify TLS certificates (verified by default)",
    )
    cluster.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="timeout of each call to the cluster (default 30)",
    )
    what = parser.add_argument_group("what to connect")
    what.add_argument(
        "--index",
        action="append",
        default=[],
        help="index (or alias) whose searches are reranked; repeatable or comma-separated",
    )
    what.add_argument(
        "--fields",
        action="append",
        default=[],
        help="document fields to rerank on, e.g. title,body (dot paths allowed)",
    )
    what.add_argument(
        "--sidecar-url",
        default=None,
        help="the sidecar's base URL as the cluster reaches it (env RERANK_SIDECAR_URL)",
    )
    what.add_argument(
        "--sidecar-token",
        default=None,
        help="the sidecar's API token (env RERANK_SIDECAR_TOKEN); stored encrypted, "
        "sent as 'Authorization: Bearer'",
    )
    what.add_argument(
        "--fields-by-language",
        action="append",
        default=[],
        metavar="CODE=FIELDS ...",
        help="OpenSearch 2.19.1+: rerank on the fields in the query's language, e.g. "
        "'zh=title_zh,desc_zh en=title_en,desc_en default=title_en,desc_en' (ISO 639-1 codes; "
        "the sidecar detects the language; 'default' for any other)",
    )
    what.add_argument("--instruction", help="task instruction sent with every rerank call")
    what.add_argument(
        "--one-to-one",
        action="store_true",
        help="OpenSearch 2.19.1+: one sidecar call per hit (the sidecar batches them) "
        "instead of one call per search",
    )
    what.add_argument(
        "--rerank-window",
        type=int,
        default=None,
        metavar="N",
        help="rerank the top N hits and return the requested page (from/size) of that ranking "
        "(OpenSearch 2.19.1+ with oversample/truncate_hits; Elasticsearch: rank_window_size)",
    )
    what.add_argument(
        "--private-endpoint",
        choices=("auto", "yes", "no"),
        default="auto",
        help="is the sidecar URL private/in-cluster for the cluster? (default: guess from the URL)",
    )
    names = parser.add_argument_group("names")
    names.add_argument(
        "--name", default="rerank-sidecar", help="prefix of every name (default %(default)s)"
    )
    names.add_argument("--pipeline-name", help="search pipeline name (default: the prefix)")
    names.add_argument("--connector-name", help="connector name (default: <prefix>-rerank)")
    names.add_argument("--model-name", help="model name (default: <prefix>-rerank)")
    tuning = parser.add_argument_group("connector client (OpenSearch)")
    for flag, default, metavar, text in (
        ("--connect-timeout", Timeouts.connect_s, "S", "connection_timeout, seconds"),
        ("--read-timeout", Timeouts.read_s, "S", "read_timeout, seconds"),
        ("--max-connections", Timeouts.max_connections, "N", "max_connection per node"),
        ("--max-retries", Timeouts.max_retries, "N", "max_retry_times (exponential backoff)"),
    ):
        tuning.add_argument(
            flag, type=int, default=default, metavar=metavar, help=f"{text} (default {default})"
        )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--wait-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for a model to deploy (default 120)",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="print every request as JSON, send nothing"
    )
    run.add_argument(
        "--assume-version",
        metavar="X.Y.Z",
        help="cluster version for --dry-run (default OpenSearch "
        + dryrun.DEFAULT_OPENSEARCH_VERSION
        + ", Elasticsearch "
        + dryrun.DEFAULT_ELASTICSEARCH_VERSION
        + ")",
    )
    run.add_argument(
        "--yes", action="store_true", help="answer yes to confirmations (non-interactive use)"
    )
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluation = parser.add_argument_group("eval (OpenSearch): BM25 against the rerank pipeline")
    evaluation.add_argument("--queries", type=Path, help="TSV: <query id> TAB <query text>")
    evaluation.add_argument(
        "--judgments", type=Path, help="TREC qrels: <query id> <iteration> <doc _id> <grade>"
    )
    evaluation.add_argument(
        "--results", type=Path, default=Path("eval.json"), help="JSON output (default eval.json)"
    )
    evaluation.add_argument(
        "--chart", type=Path, default=Path("eval.png"), help="PNG output (default eval.png)"
    )
    return parser


def _split(values: list[str]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _positive(flag: str, value: float) -> None:
    if value <= 0:
        raise UsageError(f"{flag} must be positive")


def options_from_args(args: argparse.Namespace, env: dict[str, str]) -> Options:
    prefix = ENV_PREFIX[args.target]
    urls = [
        validate_cluster_url(url)
        for url in _split(args.url) or _split([env.get(f"{prefix}_URL", "")])
    ]
    if not urls and not args.dry_run:
        raise UsageError(f"no cluster URL: pass --url or set {prefix}_URL")
    username = args.username or env.get(f"{prefix}_USERNAME")
    password = args.password or env.get(f"{prefix}_PASSWORD")
    if username and password is None and sys.stdin.isatty() and not args.dry_run:
        password = getpass.getpass(f"password for {username}: ")
    auth = ClusterAuth(username, password, args.api_key or env.get(f"{prefix}_API_KEY"))
    if args.ca_certs and not os.path.exists(args.ca_certs):
        raise UsageError(f"--ca-certs: {args.ca_certs} does not exist")
    for flag, value in (
        ("--request-timeout", args.request_timeout),
        ("--wait-timeout", args.wait_timeout),
        ("--connect-timeout", args.connect_timeout),
        ("--read-timeout", args.read_timeout),
        ("--max-connections", args.max_connections),
    ):
        _positive(flag, value)
    if args.max_retries < 0:
        raise UsageError("--max-retries must be 0 or more")
    for flag, value in (
        ("--name", args.name),
        ("--pipeline-name", args.pipeline_name),
        ("--connector-name", args.connector_name),
        ("--model-name", args.model_name),
    ):
        if value is not None:
            validate_name(flag, value)
    if args.assume_version and not args.dry_run:
        raise UsageError("--assume-version only applies to --dry-run")
    by_language = parse_fields_by_language(args.fields_by_language)
    raw_sidecar_url = args.sidecar_url or env.get("RERANK_SIDECAR_URL")
    sidecar_url = validate_sidecar_url(raw_sidecar_url) if raw_sidecar_url else None
    return Options(
        urls=urls or ["http://dry-run.invalid:9200"],
        auth=auth,
        tls=TlsOptions(verify=not args.insecure, ca_certs=args.ca_certs),
        indices=_split(args.index),
        fields=fields_to_read(validate_fields(_split(args.fields)), by_language),
        fields_by_language=by_language,
        sidecar_url=sidecar_url,
        sidecar_token=args.sidecar_token or env.get("RERANK_SIDECAR_TOKEN") or None,
        instruction=validate_instruction(args.instruction),
        names=Names(args.name, args.pipeline_name, args.connector_name, args.model_name),
        timeouts=Timeouts(
            connect_s=args.connect_timeout,
            read_s=args.read_timeout,
            max_connections=args.max_connections,
            max_retries=args.max_retries,
        ),
        wait_timeout_s=args.wait_timeout,
        one_to_one=args.one_to_one,
        rerank_window=validate_rerank_window(args.rerank_window),
        dry_run=args.dry_run,
        assume_yes=args.yes,
        assume_version=args.assume_version,
        private_endpoint={"auto": None, "yes": True, "no": False}[args.private_endpoint],
    )


def make_transport(target: str, options: Options, request_timeout: float, out: TextIO) -> Transport:
    if options.dry_run:
        responder: dryrun.EmptyOpenSearch | dryrun.EmptyElasticsearch
        if target == "opensearch":
            responder = dryrun.EmptyOpenSearch(
                options.assume_version or dryrun.DEFAULT_OPENSEARCH_VERSION
            )
        else:
            responder = dryrun.EmptyElasticsearch(
                options.assume_version or dryrun.DEFAULT_ELASTICSEARCH_VERSION
            )
        return DryRunTransport(responder, out)
    cls = OpenSearchTransport if target == "opensearch" else ElasticsearchTransport
    return cls(options.urls, options.auth, options.tls, request_timeout)


def make_confirm(options: Options, stdin: TextIO, out: TextIO) -> Confirm:
    def confirm(question: str) -> bool:
        if options.assume_yes or options.dry_run:
            return True
        if not stdin.isatty():
            return False
        out.write(f"{question} [y/N] ")
        out.flush()
        return stdin.readline().strip().lower() in ("y", "yes")

    return confirm


def _secrets(options: Options) -> list[str]:
    values = [options.auth.password, options.auth.api_key, options.sidecar_token]
    return [value for value in values if value and len(value) >= 4]


def scrub(text: str, secrets: Sequence[str]) -> str:
    """Last line of defence: no secret ever reaches the terminal, whatever echoed it."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def run_eval(
    args: argparse.Namespace,
    options: Options,
    transport: Transport | None,
    out: TextIO,
    secrets: Sequence[str],
) -> int:
    """`opensearch eval` prints its own table or JSON: it changes nothing, so no setup report."""
    try:
        if args.target != "opensearch":
            raise UsageError("eval runs against OpenSearch only")
        if options.dry_run:
            raise UsageError("eval sends searches and changes nothing: --dry-run does not apply")
        if len(options.indices) != 1 or not args.queries or not args.judgments:
            raise UsageError("eval needs one --index, --queries and --judgments")
        try:
            # The eval extra (ir-measures, matplotlib, tqdm) is loaded by this command only.
            from es_integration import eval as evaluation
        except ImportError as exc:
            raise UsageError(f"eval needs: pip install 'rerank-sidecar[eval]' ({exc})") from None
        evaluation.run(
            transport or make_transport(args.target, options, args.request_timeout, out),
            index=options.indices[0],
            queries_path=args.queries,
            judgments_path=args.judgments,
            fields=options.fields,
            results_path=args.results,
            chart_path=args.chart,
            as_json=args.json,
            out=out,
        )
    except EsIntegrationError as exc:
        print(scrub(f"rerank-es-integration: error: {exc}", secrets), file=sys.stderr)
        return exc.exit_code
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    env: dict[str, str] | None = None,
    stdout: TextIO | None = None,
    stdin: TextIO | None = None,
    transport: Transport | None = None,
) -> int:
    out = stdout or sys.stdout
    environ = dict(os.environ) if env is None else env
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        options = options_from_args(args, environ)
    except UsageError as exc:
        print(f"rerank-es-integration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    secrets = _secrets(options)
    if args.command == "eval":
        return run_eval(args, options, transport, out, secrets)
    report = Report(target=args.target, command=args.command, dry_run=options.dry_run)
    # With --json, a dry run's requests go into the JSON document instead of stdout lines.
    request_lines: TextIO = io.StringIO() if (args.json and options.dry_run) else out
    t = transport or make_transport(args.target, options, args.request_timeout, request_lines)
    confirm = make_confirm(options, stdin or sys.stdin, out)
    code = EXIT_OK
    try:
        COMMANDS[args.target][args.command](Session(t, options, report, confirm))
        if args.command == "status" and not report.ok:
            code = EXIT_UNHEALTHY
    except EsIntegrationError as exc:
        report.ok, report.error, code = False, str(exc), exc.exit_code
    if args.json:
        document = report.to_json()
        if isinstance(t, DryRunTransport):
            data = json.loads(document)
            data["requests"] = [request.redacted() for request in t.requests]
            document = json.dumps(data, indent=2, sort_keys=True)
        print(scrub(document, secrets), file=out)
    else:
        print(scrub(report.to_text(), secrets), file=out)
    return code
