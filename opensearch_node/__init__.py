"""A real OpenSearch node for tests, the demo and `make cluster`, assembled from Maven Central.

`build.py` resolves the integ-test distribution, the lang-painless and analysis-common modules
and the job-scheduler, ml-commons, k-NN and neural-search plugins with Maven (published checksums
enforced) and assembles a read-only home in a cache outside the work tree; `node.py` runs one
single-node cluster from that home on 127.0.0.1 with its own config, data and logs in a temporary
directory.
"""
