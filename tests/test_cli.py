"""The `rerank-sidecar serve` entry point as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.servers import free_port, wait_http_ok

BIN = Path(sys.executable).parent


def test_console_script_serves_with_flags_and_environment(tiny_model_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "RERANK_BACKEND": "null", "RERANK_MODEL": str(tiny_model_dir)}
    process = subprocess.Popen(
        [
            str(BIN / "rerank-sidecar"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-documents",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout_s=60, process=process)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/rerank",
            data=b'{"query": "q", "documents": ["a", "b", "c"]}',
            headers={"Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError("three documents should exceed --max-documents 2")
        except urllib.error.HTTPError as error:
            assert error.code == 413
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0


def test_invalid_settings_exit_2_naming_the_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--max-batch-pairs", "zero"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "max_batch_pairs" in result.stderr


def test_every_setting_is_a_documented_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    for flag in (
        "--vllm-url",
        "--model",
        "--max-length",
        "--instruction",
        "--max-batch-tokens",
        "--max-wait-ms",
        "--max-queue-pairs",
        "--api-token",
    ):
        assert flag in result.stdout
    assert "RERANK_MAX_BATCH_TOKENS" in result.stdout


def test_a_queue_smaller_than_the_largest_request_is_refused_at_start() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar",
            "serve",
            "--max-queue-pairs",
            "10",
            "--max-documents",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "max_queue_pairs (10) must be at least max_documents (20)" in result.stderr
