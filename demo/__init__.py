"""`make demo`: a multilingual product catalog on a real OpenSearch node, BM25 against reranked."""
