"""Assemble an OpenSearch home from Maven Central artifacts, once per version, in a cache.

Layout of the result (what the integ-test zip lacks is added the way the full distribution has it):
`lib/`, `bin/`, `config/` from the integ-test zip; `modules/transport-netty4` (in the zip),
`modules/lang-painless`, `modules/analysis-common` and, where Maven Central has it,
`modules/search-pipeline-common` (jars plus a descriptor and policy written here);
`plugins/<name>/` for each plugin zip (flat zips, unpacked as they are). Facts:
docs/contracts.md §9.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from opensearch_node.errors import NodeError

POM = Path(__file__).with_name("pom.xml")
CHECKSUMS = Path(__file__).with_name("checksums")
DEFAULT_VERSION = "2.19.6"
# Plugins load in dependency order: each names the one it extends.
PLUGIN_ZIPS = (
    "opensearch-job-scheduler",
    "opensearch-ml-plugin",
    "opensearch-knn",
    "neural-search",
)


@dataclass(frozen=True)
class Module:
    """A core module that is published as a jar, not as a zip."""

    name: str
    description: str
    main_class_candidates: tuple[str, ...]  # renamed across versions; the jar tells which
    extends: str = ""
    # Grants from the module's plugin-metadata/plugin-security.policy in the OpenSearch source.
    policy: str = ""


LANG_PAINLESS = Module(
    name="lang-painless",
    description="An easy, safe and fast scripting language for OpenSearch",
    main_class_candidates=(
        "org.opensearch.painless.PainlessPlugin",
        "org.opensearch.painless.PainlessModulePlugin",
    ),
    policy=(
        "grant {\n"
        '  permission java.lang.RuntimePermission "createClassLoader";\n'
        '  permission java.lang.RuntimePermission "getClassLoader";\n'
        "};\n"
    ),
)
ANALYSIS_COMMON = Module(
    name="analysis-common",
    description='Adds "built in" analyzers to OpenSearch.',
    main_class_candidates=(
        "org.opensearch.analysis.common.CommonAnalysisPlugin",
        "org.opensearch.analysis.common.CommonAnalysisModulePlugin",
    ),
    extends="lang-painless",
)
# oversample, truncate_hits and script: what a rerank window needs (es_integration --rerank-window).
SEARCH_PIPELINE_COMMON = Module(
    name="search-pipeline-common",
    description="Modules for search pipelines",
    main_class_candidates=(
        "org.opensearch.search.pipeline.common.SearchPipelineCommonModulePlugin",
    ),
    extends="lang-painless",
)
MODULES = (LANG_PAINLESS, ANALYSIS_COMMON, SEARCH_PIPELINE_COMMON)


def cache_root() -> Path:
    """Outside the work tree, readable by the unprivileged user the node runs as under root."""
    configured = os.environ.get("OPENSEARCH_NODE_CACHE")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/cache/rerank-sidecar/opensearch")
    return Path.home() / ".cache" / "rerank-sidecar" / "opensearch"


def home_path(version: str) -> Path:
    return cache_root() / version


def ensure_home(version: str = DEFAULT_VERSION, *, log: bool = True) -> Path:
    """The assembled home for `version`, built now if the cache does not have it."""
    home = home_path(version)
    if (home / "bin" / "opensearch").is_file():
        return home
    if shutil.which("mvn") is None:
        raise NodeError(
            "Maven (mvn) is not installed: install it (apt-get install maven) and retry"
        )
    home.parent.mkdir(parents=True, exist_ok=True)
    if log:
        print(f"opensearch_node: assembling OpenSearch {version} from Maven Central into {home}")
    # Everything happens in a sibling temporary directory and is renamed into place at the end,
    # so a failed download or unpack never leaves a half-built home behind.
    with tempfile.TemporaryDirectory(prefix=f".{version}-", dir=home.parent) as work:
        artifacts = Path(work) / "artifacts"
        _resolve(version, artifacts)
        staged = Path(work) / "home"
        _assemble(version, artifacts, staged)
        if os.geteuid() == 0:
            _make_traversable(home.parent)
        staged.rename(home)
    return home


def pinned_checksums(version: str) -> dict[str, str] | None:
    """{file name: SHA-256} recorded for `version`, or None where none are recorded."""
    path = CHECKSUMS / f"{version}.sha256"
    if not path.is_file():
        return None
    pairs = (line.split() for line in path.read_text().splitlines() if line.strip())
    return {name: digest for digest, name in pairs}


def _resolve(version: str, into: Path) -> None:
    # Maven Central has no checksum files for some plugin zips (ml-commons, neural-search and
    # job-scheduler 2.19.1.0), so Maven's strict policy cannot apply to them: versions with
    # recorded SHA-256 sums are checked against those, any other version with --strict-checksums.
    pins = pinned_checksums(version)
    # Recorded versions list what Maven Central has; search-pipeline-common is absent for some.
    without_spc = pins is not None and _module_jar(SEARCH_PIPELINE_COMMON, version) not in pins
    command = [
        "mvn", "-B", "-q", "-Dstyle.color=never", "-f", str(POM),
        *([] if pins else ["--strict-checksums"]),
        *(["-Dno.search.pipeline.common"] if without_spc else []),
        f"-Dopensearch.version={version}",
        "dependency:copy-dependencies", f"-DoutputDirectory={into}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in result.stdout.splitlines() if "[ERROR]" in line]
        cause = lines[0].replace("[ERROR]", "").strip() if lines else result.stderr.strip()
        missing = re.search(r"could not be resolved: (.*?)(?:: |$)", cause)
        raise NodeError(
            f"Maven could not fetch the OpenSearch {version} artifacts "
            f"({'missing: ' + missing.group(1) if missing else cause[:400]}); check that "
            "Maven Central publishes them for this version (docs/contracts.md §9) and that the "
            "network reaches it, then retry"
        )
    if pins is not None:
        _verify(version, into, pins)


def _verify(version: str, artifacts: Path, pins: dict[str, str]) -> None:
    found = {path.name: path for path in artifacts.iterdir()}
    if set(found) != set(pins):
        raise NodeError(
            f"the OpenSearch {version} artifacts differ from the recorded list "
            f"(unexpected: {sorted(set(found) - set(pins))}, missing: "
            f"{sorted(set(pins) - set(found))}); update {CHECKSUMS / (version + '.sha256')}"
        )
    for name, path in sorted(found.items()):
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != pins[name]:
            raise NodeError(
                f"{name} does not match its recorded SHA-256 (a corrupt or altered download): "
                f"remove it from ~/.m2/repository and retry"
            )


def _assemble(version: str, artifacts: Path, home: Path) -> None:
    distribution = artifacts / f"opensearch-{version}.zip"
    with zipfile.ZipFile(distribution) as archive:
        archive.extractall(home.parent / "unpacked")
    (home.parent / "unpacked" / f"opensearch-{version}").rename(home)
    os.chmod(home / "bin" / "opensearch", 0o755)
    for script in (home / "bin").iterdir():
        script.chmod(0o755)

    # Each single-jar module gets its jar; lang-painless gets the rest (its runtime libraries).
    single = {
        module: artifacts / _module_jar(module, version)
        for module in MODULES
        if module is not LANG_PAINLESS and (artifacts / _module_jar(module, version)).is_file()
    }
    module_jars = {module: [jar] for module, jar in single.items()}
    module_jars[LANG_PAINLESS] = [
        jar for jar in artifacts.glob("*.jar") if jar not in single.values()
    ]
    for module, jars in module_jars.items():
        _install_module(home / "modules" / module.name, module, jars, version)

    for name in PLUGIN_ZIPS:
        _install_plugin(home / "plugins", artifacts / f"{name}-{version}.0.zip", version)


def _module_jar(module: Module, version: str) -> str:
    return f"{module.name}-{version}.jar"


def _install_module(target: Path, module: Module, jars: list[Path], version: str) -> None:
    target.mkdir(parents=True)
    for jar in jars:
        shutil.copy2(jar, target / jar.name)
    main_jar = target / _module_jar(module, version)
    with zipfile.ZipFile(main_jar) as archive:
        names = set(archive.namelist())
    classname = next(
        (c for c in module.main_class_candidates if c.replace(".", "/") + ".class" in names), None
    )
    if classname is None:
        raise NodeError(
            f"{main_jar.name} has none of {module.main_class_candidates}: this OpenSearch version "
            "renamed the module's plugin class; add the new name to opensearch_node/build.py"
        )
    descriptor = {
        "description": module.description,
        "version": version,
        "name": module.name,
        "classname": classname,
        "java.version": "11",
        "opensearch.version": version,
        "extended.plugins": module.extends,
        "has.native.controller": "false",
    }
    (target / "plugin-descriptor.properties").write_text(
        "".join(f"{key}={value}\n" for key, value in descriptor.items())
    )
    if module.policy:
        (target / "plugin-security.policy").write_text(module.policy)


def _install_plugin(plugins: Path, archive_path: Path, version: str) -> None:
    with zipfile.ZipFile(archive_path) as archive:
        descriptor = archive.read("plugin-descriptor.properties").decode()
        properties = dict(
            line.split("=", 1) for line in descriptor.splitlines() if "=" in line and line[0] != "#"
        )
        if properties.get("opensearch.version") != version:
            raise NodeError(
                f"{archive_path.name} is built for OpenSearch "
                f"{properties.get('opensearch.version')}, "
                f"not {version}: every plugin must match the server exactly"
            )
        archive.extractall(plugins / properties["name"])


def _make_traversable(path: Path) -> None:
    # Started by root, the node runs as an unprivileged user, who must reach the home.
    for directory in (path, *path.parents):
        if directory != Path("/"):
            directory.chmod(directory.stat().st_mode | 0o755)
