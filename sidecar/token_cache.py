"""A bounded cache of document token ids, keyed by the document's text.

In e-commerce the same products come back across searches, and tokenizing a document is most of
the sidecar's own cost; a popular product is tokenized once, not once per search. The ids are the
tokenizer's own for that text, so the formatted pair's ids are unchanged. Entries are kept as
4-byte arrays and the bound counts their bytes and the text's.
"""

from __future__ import annotations

import sys
import threading
from array import array
from collections.abc import Callable, Sequence

from sidecar.lru import BoundedLRU

# The key string's and the array's object headers, and the OrderedDict link, per entry.
_ENTRY_OVERHEAD = sys.getsizeof("") + sys.getsizeof(array("I")) + 100


class DocumentTokenCache:
    def __init__(self, max_bytes: int) -> None:
        self._cache: BoundedLRU[str, array[int]] | None = (
            BoundedLRU(max_bytes) if max_bytes > 0 else None
        )
        # Encoders run in worker threads.
        self._lock = threading.Lock()

    def missing_chars(self, documents: Sequence[str]) -> int:
        """Characters of the documents not cached (what `ids` would tokenize)."""
        if self._cache is None:
            return sum(map(len, documents))
        with self._lock:
            return sum(len(document) for document in documents if document not in self._cache)

    def ids(
        self, documents: Sequence[str], tokenize: Callable[[list[str]], list[array[int]]]
    ) -> list[array[int]]:
        """Each document's ids: from the cache, or `tokenize` for the ones not in it (one call).

        Cached arrays are shared, not copied: callers only read them."""
        if self._cache is None:
            return tokenize(list(documents))
        with self._lock:
            found = [self._cache.get(document) for document in documents]
        missing = [i for i, ids in enumerate(found) if ids is None]
        if missing:
            fresh = tokenize([documents[i] for i in missing])
            with self._lock:
                for i, ids in zip(missing, fresh, strict=True):
                    found[i] = ids
                    size = _ENTRY_OVERHEAD + len(documents[i]) + ids.itemsize * len(ids)
                    self._cache.put(documents[i], ids, size)
        return [ids for ids in found if ids is not None]
