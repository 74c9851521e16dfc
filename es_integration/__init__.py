"""Connect a cluster to the rerank sidecar with one command.

`python -m es_integration {opensearch,elasticsearch} {setup,status,teardown}` (console script
`rerank-es-integration`). OpenSearch: cluster settings, connectors, models, search pipelines and
`index.search.default_pipeline`, so unchanged query-DSL clients get reranked hits. Elasticsearch:
a `custom` rerank inference endpoint for the `text_similarity_reranker` retriever.
"""

MANAGED_MARKER = "Managed by rerank-sidecar es_integration"
