"""A bounded cache of document token ids, keyed by the document's text.

In e-commerce the same products come back across searches, and tokenizing a document is most of
the sidecar's own cost; a popular product is tokenized once, not once per search. The ids are the
tokenizer's own for that text, so the formatted pair's ids are unchanged. Entries are kept as the
bytes of 4-byte ids, and the bound counts them and the text's. Bytes, not arrays: an array is
tracked by the garbage collector, and 40,000 cached arrays made each full collection walk them
(measured with fresh documents: ~0.3 ms of collection per request, most of it in full ones).
"""

from __future__ import annotations

import sys
import threading
from array import array
from collections.abc import Callable, Sequence

from sidecar.lru import BoundedLRU

# The bytes' object header, the LRU's tuple and the OrderedDict link (the key string is counted
# whole: a CJK character takes 2 bytes, an emoji 4).
_ENTRY_OVERHEAD = sys.getsizeof(b"") + 64 + 100


class DocumentTokenCache:
    def __init__(self, max_bytes: int) -> None:
        self._cache: BoundedLRU[str, bytes] | None = (
            BoundedLRU(max_bytes) if max_bytes > 0 else None
        )
        # Encoders run in worker threads.
        self._lock = threading.Lock()

    def missing(self, documents: Sequence[str]) -> list[str]:
        """The documents not cached (what `ids` would tokenize)."""
        if self._cache is None:
            return list(documents)
        with self._lock:
            return [document for document in documents if document not in self._cache]

    def ids(
        self, documents: Sequence[str], tokenize: Callable[[list[str]], list[array[int]]]
    ) -> list[array[int]]:
        """Each document's ids: from the cache, or `tokenize` for the ones not in it (one call)."""
        if self._cache is None:
            return tokenize(list(documents))
        with self._lock:
            cached = [self._cache.get(document) for document in documents]
        found = [None if raw is None else array("I", raw) for raw in cached]
        missing = [i for i, ids in enumerate(found) if ids is None]
        if missing:
            fresh = tokenize([documents[i] for i in missing])
            with self._lock:
                for i, ids in zip(missing, fresh, strict=True):
                    found[i] = ids
                    raw = ids.tobytes()
                    self._cache.put(
                        documents[i], raw, _ENTRY_OVERHEAD + sys.getsizeof(documents[i]) + len(raw)
                    )
        return [ids for ids in found if ids is not None]
