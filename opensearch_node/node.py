"""Run one single-node OpenSearch cluster on 127.0.0.1 from an assembled home.

The home stays read-only and shared; each node gets its own config, data, logs and tmp in a fresh
directory that is removed when it stops. OpenSearch refuses to run as root, so under root the node
runs as an unprivileged system user created for it.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from opensearch_node.build import DEFAULT_VERSION, ensure_home
from opensearch_node.errors import NodeError

NODE_USER = "rerank-opensearch"
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 30.0
JVM_DIRECTORY = Path("/usr/lib/jvm")
# Heap plus what the JVM, Lucene's mmaps and the ML plugin's native libraries take beside it.
MEMORY_HEADROOM_MB = 1024

# Leave the trusted-endpoint regex and private_ip_enabled at their defaults: the set-up command
# must be what changes them.
BASE_SETTINGS: Mapping[str, object] = {
    "cluster.name": "rerank-sidecar-test",
    "node.name": "node-1",
    "discovery.type": "single-node",
    "network.host": "127.0.0.1",
    "cluster.routing.allocation.disk.threshold_enabled": False,
    "plugins.ml_commons.only_run_on_ml_node": False,
    # The ML circuit breakers trip at 90 % OS memory / 85 % heap, which a busy test machine reaches.
    "plugins.ml_commons.native_memory_threshold": 100,
    "plugins.ml_commons.jvm_heap_memory_threshold": 100,
}


@dataclass(frozen=True)
class RunningNode:
    url: str
    version: str
    pid: int
    workdir: Path

    @property
    def log(self) -> Path:
        return self.workdir / "logs" / "console.log"


@contextmanager
def running_node(
    version: str = DEFAULT_VERSION,
    *,
    port: int = 0,
    heap_mb: int = 1024,
    extra_settings: Mapping[str, object] | None = None,
    keep_workdir: bool = False,
) -> Iterator[RunningNode]:
    """Start a node (building its home first if needed); stop it and remove its data on exit."""
    home = ensure_home(version)
    java_home = find_java_home(version)
    port = port or free_port()
    check_port_free(port)
    check_memory(heap_mb)
    workdir = Path(tempfile.mkdtemp(prefix=f"opensearch-{version}-"))
    try:
        process = _start(
            home, java_home, workdir, port, heap_mb, {**BASE_SETTINGS, **(extra_settings or {})}
        )
        node = RunningNode(f"http://127.0.0.1:{port}", version, process.pid, workdir)
        try:
            _wait_ready(node, process)
            yield node
        finally:
            _stop(process)
    finally:
        if not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int) -> None:
    with socket.socket() as sock:
        # As the JVM does: connections of a node that just stopped (TIME_WAIT) do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise NodeError(
                f"port {port} on 127.0.0.1 is taken: stop what listens there or choose another port"
            ) from None


def check_memory(heap_mb: int) -> None:
    available_kb = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                available_kb = int(line.split()[1])
    needed_mb = heap_mb + MEMORY_HEADROOM_MB
    if available_kb and available_kb // 1024 < needed_mb:
        raise NodeError(
            f"not enough memory: the node needs about {needed_mb} MB ({heap_mb} MB heap) and "
            f"{available_kb // 1024} MB are available; free memory or pass a smaller heap"
        )


def find_java_home(version: str) -> Path:
    """A JDK that this OpenSearch version runs on: 17-23 for 2.x, 21+ for 3.x."""
    wanted = range(17, 24) if version.startswith("2.") else range(21, 100)
    candidates = [os.environ.get("OPENSEARCH_JAVA_HOME"), os.environ.get("JAVA_HOME")]
    java_on_path = shutil.which("java")
    if java_on_path:
        candidates.append(str(Path(os.path.realpath(java_on_path)).parent.parent))
    candidates += [str(p) for p in sorted(JVM_DIRECTORY.glob("*")) if p.is_dir()]
    for candidate in filter(None, candidates):
        java = Path(candidate) / "bin" / "java"
        if java.is_file() and _java_major(java) in wanted:
            return Path(candidate)
    raise NodeError(
        f"no JDK {wanted.start}-{wanted.stop - 1} found for OpenSearch {version} (looked at "
        "OPENSEARCH_JAVA_HOME, JAVA_HOME, java on PATH, /usr/lib/jvm): install one "
        "(apt-get install openjdk-17-jdk-headless) or set OPENSEARCH_JAVA_HOME"
    )


def _java_major(java: Path) -> int:
    result = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', result.stderr)
    return int(match.group(1)) if match else 0


def _start(
    home: Path,
    java_home: Path,
    workdir: Path,
    port: int,
    heap_mb: int,
    settings: Mapping[str, object],
) -> subprocess.Popen[bytes]:
    config = workdir / "config"
    shutil.copytree(home / "config", config)
    for name in ("data", "logs", "tmp"):
        (workdir / name).mkdir()
    # The launcher runs from the read-only home: the GC log, heap dumps and crash files that
    # jvm.options places relative to it go to this node's directories instead.
    jvm_options = config / "jvm.options"
    jvm_options.write_text(
        jvm_options.read_text()
        .replace("file=logs/", f"file={workdir}/logs/")
        .replace("HeapDumpPath=data", f"HeapDumpPath={workdir}/data")
        .replace("ErrorFile=logs/", f"ErrorFile={workdir}/logs/")
    )
    all_settings = {
        **settings,
        "http.port": port,
        "path.data": str(workdir / "data"),
        "path.logs": str(workdir / "logs"),
    }
    # JSON is YAML: every value is written unambiguously.
    (config / "opensearch.yml").write_text(
        "".join(f"{key}: {json.dumps(value)}\n" for key, value in all_settings.items())
    )
    env = {
        **os.environ,
        "OPENSEARCH_PATH_CONF": str(config),
        "OPENSEARCH_JAVA_HOME": str(java_home),
        "OPENSEARCH_JAVA_OPTS": f"-Xms{heap_mb}m -Xmx{heap_mb}m",
        "OPENSEARCH_TMPDIR": str(workdir / "tmp"),
    }
    command = [str(home / "bin" / "opensearch")]
    if os.geteuid() == 0:
        user = _node_user()
        for path in (workdir, *workdir.rglob("*")):
            os.chown(path, user.pw_uid, user.pw_gid)
        command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                   "--clear-groups", "--", *command]  # fmt: skip
    console = (workdir / "logs" / "console.log").open("wb")
    with console:
        return subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop the node
        )


def _node_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(NODE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NODE_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(NODE_USER)


def _wait_ready(node: RunningNode, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    health = f"{node.url}/_cluster/health?wait_for_status=yellow&timeout=2s"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NodeError(
                f"OpenSearch {node.version} exited with {process.returncode} while starting: "
                f"{_first_error(node.log)} (full log: {node.log}; pass keep_workdir to keep it)"
            )
        try:
            with urllib.request.urlopen(health, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)  # polling a readiness condition with a deadline, not synchronising
    raise NodeError(
        f"OpenSearch {node.version} did not answer within {START_TIMEOUT_S:.0f} s "
        f"({_first_error(node.log)}); the machine may be overloaded"
    )


def _first_error(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    errors = [line.strip() for line in lines if re.search(r"\berror\b|Exception", line, re.I)]
    return (
        " | ".join(errors[:3])[:600]
        if errors
        else (lines[-1].strip()[:400] if lines else "empty log")
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
