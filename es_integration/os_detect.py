"""Detection: which OpenSearch this is, its plugins, and which rerank mechanism it can run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from es_integration import os_api
from es_integration.errors import SetupError, UnexpectedAnswer
from es_integration.session import Session
from es_integration.versions import (
    OS_MINIMUM,
    OS_ML_INFERENCE_IGNORE_FAILURE,
    OS_ML_INFERENCE_REQUEST_PATHS,
    Version,
)

ML_PLUGIN = "opensearch-ml"
NEURAL_PLUGIN = "opensearch-neural-search"
SECURITY_PLUGIN = "opensearch-security"
# The transport action both rerank processors run as the searching user (docs/contracts.md §7).
PREDICT_PERMISSION = "cluster:admin/opensearch/ml/predict"

Mechanism = Literal["ml_inference", "ml_opensearch"]


@dataclass(frozen=True)
class ClusterFacts:
    version: Version
    plugins: frozenset[str]
    mechanism: Mechanism

    @property
    def secured(self) -> bool:
        return SECURITY_PLUGIN in self.plugins


def mechanism_for(version: Version) -> Mechanism:
    """`ml_inference` reads the query from the request (2.18+), but only where its
    `ignore_failure` works (2.19.1+, 3.0+): on 2.18.0/2.19.0 every search it cannot score would
    fail. Elsewhere `ml_opensearch`, which needs `ext.rerank` from the client."""
    return "ml_inference" if version >= OS_ML_INFERENCE_IGNORE_FAILURE else "ml_opensearch"


def mechanism_text(facts: ClusterFacts) -> str:
    if facts.mechanism == "ml_inference":
        return "ml_inference + rerank by_field (plain query DSL is reranked)"
    if facts.version >= OS_ML_INFERENCE_REQUEST_PATHS:
        return (
            "rerank ml_opensearch: clients must send ext.rerank (ml_inference's ignore_failure "
            f"does not work on {facts.version}; 2.19.1 or 3.0+ reranks unchanged clients)"
        )
    return "rerank ml_opensearch: clients must send ext.rerank (others pass through)"


def detect(session: Session) -> ClusterFacts:
    info = os_api.cluster_info(session.t)
    if info.distribution != "opensearch":
        raise SetupError(
            f"this cluster reports distribution {info.distribution!r}, not OpenSearch; "
            "for Elasticsearch use `python -m es_integration elasticsearch ...`"
        )
    try:
        version = Version.parse(info.version)
    except ValueError:
        raise UnexpectedAnswer("GET /", "a version number", info.version) from None
    if version < OS_MINIMUM:
        raise SetupError(
            f"OpenSearch {version} is too old: reranking through the sidecar needs "
            f"OpenSearch {OS_MINIMUM.major}.{OS_MINIMUM.minor} or later (neural-search `rerank` "
            "processor with `ml_opensearch`)"
        )
    missing = [p for p in (ML_PLUGIN, NEURAL_PLUGIN) if p not in info.plugins]
    if missing:
        raise SetupError(
            f"missing plugin(s) {', '.join(missing)}: the rerank pipeline needs ml-commons "
            "and neural-search"
        )
    facts = ClusterFacts(version, info.plugins, mechanism_for(version))
    session.report.cluster = {"version": str(version), "mechanism": mechanism_text(facts)}
    if facts.secured:
        session.report.cluster["search users need"] = (
            f"{PREDICT_PERMISSION} (the pipeline calls the model as the searching user)"
        )
    return facts
