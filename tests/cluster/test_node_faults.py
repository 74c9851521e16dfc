"""`opensearch_node` refuses to start with one line naming the cause and the fix."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from opensearch_node.build import ensure_home
from opensearch_node.errors import NodeError
from opensearch_node.node import check_memory, find_java_home


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opensearch_node", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def test_port_taken_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", "--port", str(port))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"port {port}" in line and "taken" in line and "choose another port" in line


def test_missing_artifact_leaves_no_half_written_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSEARCH_NODE_CACHE", str(tmp_path))
    with pytest.raises(NodeError) as error:
        ensure_home("2.99.0", log=False)
    message = str(error.value)
    assert "2.99.0" in message and "Maven Central" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []  # the temporary work directory is gone too


def test_not_enough_memory_is_refused_before_starting() -> None:
    with pytest.raises(NodeError, match="not enough memory"):
        check_memory(heap_mb=10**8)


def test_no_matching_jdk_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    # 3.x needs JDK 21+; with only the lookups pointed at nothing, none is found.
    monkeypatch.setattr("opensearch_node.node.JVM_DIRECTORY", Path("/nonexistent"))
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("OPENSEARCH_JAVA_HOME", raising=False)
    with pytest.raises(NodeError, match=r"no JDK 21-99 found.*OPENSEARCH_JAVA_HOME"):
        find_java_home("3.0.0")


def test_an_altered_artifact_is_refused(tmp_path: Path) -> None:
    from opensearch_node.build import _verify

    (tmp_path / "plugin.zip").write_bytes(b"what Maven Central served")
    pins = {"plugin.zip": hashlib.sha256(b"what Maven Central served").hexdigest()}
    _verify("2.19.1", tmp_path, pins)
    (tmp_path / "plugin.zip").write_bytes(b"something else")
    with pytest.raises(NodeError, match="does not match its recorded SHA-256"):
        _verify("2.19.1", tmp_path, pins)
    (tmp_path / "extra.jar").write_bytes(b"")
    with pytest.raises(NodeError, match=r"unexpected: \['extra.jar'\]"):
        _verify("2.19.1", tmp_path, pins)


def test_recorded_checksums_cover_the_default_version() -> None:
    from opensearch_node.build import DEFAULT_VERSION, PLUGIN_ZIPS, pinned_checksums

    pins = pinned_checksums(DEFAULT_VERSION)
    assert pins is not None
    assert {f"{name}-{DEFAULT_VERSION}.0.zip" for name in PLUGIN_ZIPS} <= set(pins)
    assert f"opensearch-{DEFAULT_VERSION}.zip" in pins
