"""Which vLLM replicas there are: fixed URLs, and names that stand for one replica per address.

`http://host:port` is one replica. `dns+http://name:port` (or `dns+https://`) is one replica per
address `name` resolves to: a Kubernetes headless Service answers one A record per ready pod, so
each vLLM pod gets its own least-loaded accounting and health check, and a pod that stops being
ready leaves the answer. Names are resolved again on every `refresh()`. A name that fails to
resolve keeps its last answer (a DNS hiccup must not empty the fleet); its pods' health checks
still tell which ones are gone.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DNS_PREFIX = "dns+"
SCHEMES = ("http", "https")

# (host, port) -> the addresses it resolves to.
Resolve = Callable[[str, int], Awaitable[list[str]]]


def check_url(url: str) -> str | None:
    """Why `url` is not a vLLM URL the sidecar can use, or None."""
    scheme, _, rest = url.partition("://")
    if scheme.removeprefix(DNS_PREFIX) not in SCHEMES or not rest:
        return f"{url!r} must start with http://, https://, dns+http:// or dns+https://"
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        return f"{url!r}: {exc}"
    if not parts.hostname:
        return f"{url!r} has no host"
    return None


async def resolve_with_system(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives (what a pod's /etc/resolv.conf points at)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [str(info[4][0]) for info in infos]
    # A dual-stack pod answers with both families: one replica a pod, IPv4 when there is one.
    ipv4 = [address for address in addresses if ":" not in address]
    return ipv4 or addresses


class Discovery:
    def __init__(self, urls: Sequence[str], resolve: Resolve = resolve_with_system) -> None:
        self._fixed = [url for url in urls if not url.startswith(DNS_PREFIX)]
        self._names = [url for url in urls if url.startswith(DNS_PREFIX)]
        self._resolve = resolve
        self._last: dict[str, list[str]] = {name: [] for name in self._names}
        self._failing: set[str] = set()

    @property
    def dynamic(self) -> bool:
        return bool(self._names)

    def describe(self) -> str:
        return ", ".join([*self._fixed, *self._names])

    async def refresh(self) -> list[str]:
        """Every replica URL now: the fixed ones, then each name's current answer."""
        await asyncio.gather(*(self._refresh(name) for name in self._names))
        urls = list(self._fixed)
        for name in self._names:
            urls.extend(url for url in self._last[name] if url not in urls)
        return urls

    async def _refresh(self, name: str) -> None:
        parts = urlsplit(name.removeprefix(DNS_PREFIX))
        assert parts.hostname is not None, "checked by check_url"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = await self._resolve(parts.hostname, port)
        except OSError as exc:
            if name not in self._failing:
                self._failing.add(name)
                log.warning(
                    "vLLM discovery: %s does not resolve (%s); keeping its %d replica(s)",
                    name,
                    exc,
                    len(self._last[name]),
                )
            return
        if name in self._failing:
            self._failing.discard(name)
            log.warning("vLLM discovery: %s resolves again", name)
        path = parts.path.rstrip("/")
        urls = [f"{parts.scheme}://{_host(address)}:{port}{path}" for address in addresses]
        urls = sorted(set(urls))
        if urls != self._last[name]:
            log.info("vLLM discovery: %s -> %s", name, urls or "nothing")
        self._last[name] = urls


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
