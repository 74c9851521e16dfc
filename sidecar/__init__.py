"""rerank-sidecar: a reranking service for OpenSearch and Elasticsearch.

Data path: HTTP layer (`app`, `routes`) -> contract (`schemas`) -> `service` -> `batcher` ->
backend (`backends`), with the pair encoding (`prompt`) chosen per backend.
"""

__version__ = "0.1.0"
