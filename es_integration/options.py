"""Validated options of one run, and small pure helpers about the sidecar URL and names."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from es_integration.errors import UsageError
from es_integration.transport import ClusterAuth, TlsOptions

# Field names go into JsonPath brackets and JSON strings: keep them to what mappings allow.
_FIELD_RE = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_@.\-]*$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class Timeouts:
    """Connector client_config values, in seconds (2.13 wants milliseconds: os_resources
    converts; docs/contracts.md §7)."""

    connect_s: int = 3
    read_s: int = 10
    max_connections: int = 64
    max_retries: int = 2
    retry_backoff_ms: int = 50
    retry_timeout_s: int = 10


@dataclass(frozen=True)
class Names:
    prefix: str = "rerank-sidecar"
    pipeline: str | None = None
    connector: str | None = None
    model: str | None = None

    @property
    def model_group(self) -> str:
        return self.prefix

    @property
    def main_pipeline(self) -> str:
        return self.pipeline or self.prefix

    @property
    def ext_pipeline(self) -> str:
        return f"{self.main_pipeline}-ext"

    @property
    def rerank_connector(self) -> str:
        return self.connector or f"{self.prefix}-rerank"

    @property
    def dsl_connector(self) -> str:
        return f"{self.rerank_connector}-dsl"

    @property
    def window_connector(self) -> str:
        return f"{self.rerank_connector}-window"

    @property
    def rerank_model(self) -> str:
        return self.model or f"{self.prefix}-rerank"

    @property
    def dsl_model(self) -> str:
        return f"{self.rerank_model}-dsl"

    @property
    def window_model(self) -> str:
        return f"{self.rerank_model}-window"

    @property
    def connectors(self) -> tuple[str, ...]:
        """Every connector setup may create."""
        return (self.rerank_connector, self.dsl_connector, self.window_connector)

    @property
    def models(self) -> tuple[str, ...]:
        """Every model setup may register."""
        return (self.rerank_model, self.dsl_model, self.window_model)

    @property
    def inference_id(self) -> str:
        return self.prefix


@dataclass(frozen=True)
class Options:
    urls: list[str]
    auth: ClusterAuth = field(default_factory=ClusterAuth)
    tls: TlsOptions = field(default_factory=TlsOptions)
    indices: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    sidecar_url: str | None = None
    sidecar_token: str | None = None
    instruction: str | None = None
    # ISO 639-1 code (or "default") -> fields in that language; the sidecar detects the query's.
    fields_by_language: dict[str, list[str]] = field(default_factory=dict)
    names: Names = field(default_factory=Names)
    timeouts: Timeouts = field(default_factory=Timeouts)
    wait_timeout_s: float = 120.0
    one_to_one: bool = False
    # Rerank the top N hits and show the page asked for from them (None: the page only).
    rerank_window: int | None = None
    dry_run: bool = False
    assume_yes: bool = False
    assume_version: str | None = None
    private_endpoint: bool | None = None  # None = decide from the URL


def validate_fields(fields: list[str]) -> list[str]:
    for name in fields:
        if not _FIELD_RE.match(name):
            raise UsageError(f"--fields: {name!r} is not a plain field name or dot path")
    if len(set(fields)) != len(fields):
        raise UsageError("--fields: a field is listed twice")
    return fields


_LANGUAGE_RE = re.compile(r"^(?:[a-z]{2}|default)$")


def parse_fields_by_language(entries: list[str]) -> dict[str, list[str]]:
    """`zh=title_zh,desc_zh en=title_en default=title_en` (space- or flag-separated entries)."""
    mapping: dict[str, list[str]] = {}
    for entry in (part for value in entries for part in value.split()):
        code, sep, names = entry.partition("=")
        if not sep or not _LANGUAGE_RE.match(code):
            raise UsageError(
                f"--fields-by-language: {entry!r} is not <iso 639-1 code or default>=<fields>"
            )
        if code in mapping:
            raise UsageError(f"--fields-by-language: {code!r} is given twice")
        fields = [name for name in names.split(",") if name]
        if not fields:
            raise UsageError(f"--fields-by-language: {code!r} has no field")
        try:
            mapping[code] = validate_fields(fields)
        except UsageError as exc:
            raise UsageError(str(exc).replace("--fields", "--fields-by-language")) from None
    if mapping and "default" not in mapping:
        raise UsageError("--fields-by-language needs default=<fields> for the other languages")
    return mapping


def fields_to_read(fields: list[str], by_language: dict[str, list[str]]) -> list[str]:
    """Every field a hit must carry: --fields, then each language's, each once."""
    names = [*fields, *by_language.get("default", [])]
    for language_fields in by_language.values():
        names.extend(language_fields)
    return list(dict.fromkeys(names))


def validate_name(flag: str, value: str) -> str:
    if not _NAME_RE.match(value):
        raise UsageError(f"{flag}: {value!r} must be lowercase letters, digits, '-', '_' or '.'")
    return value


# index.max_result_window's default: a wider window would fail every search it rewrites.
MAX_RERANK_WINDOW = 10_000


def validate_rerank_window(window: int | None) -> int | None:
    if window is not None and not 1 <= window <= MAX_RERANK_WINDOW:
        raise UsageError(f"--rerank-window must be between 1 and {MAX_RERANK_WINDOW}")
    return window


def validate_instruction(text: str | None) -> str | None:
    if text is None:
        return None
    if not text.strip():
        raise UsageError("--instruction must contain text")
    # ML Commons and Elasticsearch substitute `${...}` in request templates.
    if "${" in text:
        raise UsageError("--instruction must not contain '${'")
    return text


def validate_sidecar_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--sidecar-url: {url!r} must be an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise UsageError("--sidecar-url: no query string or fragment")
    return url.rstrip("/")


def validate_cluster_url(url: str) -> str:
    """An http(s) URL with a host and, if given, a numeric port (clients fail obscurely else)."""
    try:
        parts = urlsplit(url)
        valid = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and (parts.port is None or parts.port > 0)
        )
    except ValueError:  # a broken IPv6 literal, a port that is not a number
        valid = False
    if not valid:
        raise UsageError(
            f"--url: {url!r} must be an http(s) URL with a host, e.g. https://opensearch:9200"
        )
    return url


def endpoint_url(sidecar_url: str, path: str) -> str:
    return sidecar_url.rstrip("/") + path


def trusted_endpoint_regex(sidecar_url: str) -> str:
    """A regex matching every sidecar endpoint URL and nothing else.

    Shaped like ML Commons' defaults (`^https://host/.*$`): its ReDoS check refuses a quantified
    group such as `(/.*)?`, and patterns over 256 characters.
    """
    parts = urlsplit(sidecar_url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    regex = "^" + re.escape(base).replace("\\-", "-") + "/.*$"
    if len(regex) > 256:
        raise UsageError("--sidecar-url is too long for ML Commons' 256-character regex limit")
    return regex


_CLUSTER_LOCAL_SUFFIXES = (".svc", ".svc.cluster.local", ".cluster.local", ".local", ".internal")


def is_private_endpoint(sidecar_url: str, resolve: bool = True) -> bool:
    """Whether ML Commons will see a private/loopback address behind the sidecar URL.

    The cluster resolves the name, not us: in-cluster names (`*.svc`, single-label hosts) are
    private by construction; other names are resolved here as a best guess.
    """
    host = urlsplit(sidecar_url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return address.is_private or address.is_loopback or address.is_link_local
    if host == "localhost" or "." not in host or host.endswith(_CLUSTER_LOCAL_SUFFIXES):
        return True
    if not resolve:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if ip.is_private or ip.is_loopback or ip.is_link_local:
            return True
    return False


def token_fingerprint(token: str | None, salt: str) -> str:
    """A slow, salted, truncated hash: lets re-runs notice a new token without storing it."""
    if not token:
        return ""
    digest = hashlib.scrypt(
        token.encode(), salt=("rerank-sidecar:" + salt).encode(), n=2**12, r=8, p=1, dklen=16
    )
    return "scrypt:" + digest.hex()[:16]
