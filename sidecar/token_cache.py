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

from cachetools import LRUCache

# The key string's and the array's object headers, and cachetools' links, per entry.
_ENTRY_OVERHEAD = sys.getsizeof("") + sys.getsizeof(array("I")) + 100

_Entry = tuple[int, "array[int]"]


class DocumentTokenCache:
    def __init__(self, max_bytes: int) -> None:
        # Values are (the text's length, its ids): the size function sees only the value.
        self._cache: LRUCache[str, _Entry] | None = (
            LRUCache(maxsize=max_bytes, getsizeof=_entry_bytes) if max_bytes > 0 else None
        )
        # Encoders run in worker threads; cachetools' caches are not thread-safe.
        self._lock = threading.Lock()

    def ids(
        self, documents: Sequence[str], tokenize: Callable[[list[str]], list[list[int]]]
    ) -> list[list[int]]:
        """Each document's ids: from the cache, or `tokenize` for the ones not in it (one call)."""
        if self._cache is None:
            return tokenize(list(documents))
        found: list[list[int] | None] = []
        with self._lock:
            for document in documents:
                cached = self._cache.get(document)
                found.append(None if cached is None else cached[1].tolist())
        missing = [i for i, ids in enumerate(found) if ids is None]
        if missing:
            fresh = tokenize([documents[i] for i in missing])
            with self._lock:
                for i, ids in zip(missing, fresh, strict=True):
                    found[i] = ids
                    entry = (len(documents[i]), array("I", ids))
                    # A document larger than the whole cache is just not kept.
                    if _entry_bytes(entry) <= self._cache.maxsize:
                        self._cache[documents[i]] = entry
        return [ids for ids in found if ids is not None]


def _entry_bytes(entry: _Entry) -> float:
    text_length, ids = entry
    return _ENTRY_OVERHEAD + text_length + ids.itemsize * len(ids)
