"""Cluster versions and what each one supports. Each gate: docs/contracts.md §7 (source files and
the versions they were read at)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION_RE.match(text.strip())
        if match is None:
            raise ValueError(f"not a version number: {text!r}")
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


# OpenSearch (ml-commons and neural-search versions follow the core version)
OS_MINIMUM = Version(2, 12)  # neural-search `rerank` with `ml_opensearch`
OS_CLIENT_CONFIG = Version(2, 13)  # connector `client_config` exists; 2.12 drops it silently
OS_CLIENT_CONFIG_SECONDS = Version(2, 14)  # 2.13 reads its timeouts as milliseconds
OS_CONNECTOR_RETRY = Version(2, 15)  # client_config retry fields exist
OS_PRIVATE_IP_SETTING = Version(2, 15)  # before: private/loopback connector hosts always refused
OS_ML_INFERENCE_REQUEST_PATHS = Version(2, 18)  # ml_inference `$._request...` + rerank by_field
# `ignore_failure` on ml_inference is dropped on 2.18.0 and 2.19.0 (every failed call fails the
# search); fixed in 2.19.1 and in 3.0.0, so one comparison covers both lines.
OS_ML_INFERENCE_IGNORE_FAILURE = Version(2, 19, 1)
# Retries on 429/5xx from 3.8; before, only on an x-amzn-ErrorType throttling answer.
OS_RETRY_ON_STATUS = Version(3, 8)

# Elasticsearch: the `custom` inference service (8.19 and 9.1+, not 9.0).
ES_MINIMUM_8 = Version(8, 19)
ES_MINIMUM_9 = Version(9, 1)


def es_supports_custom_service(version: Version) -> bool:
    if version.major == 8:
        return version >= ES_MINIMUM_8
    return version >= ES_MINIMUM_9
