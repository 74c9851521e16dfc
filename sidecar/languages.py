"""The language of a query, to pick the document fields written in it (cross-border catalogs).

lingua decides, offline (its models ship in the wheel). It chooses among the languages a request
maps fields for plus English, so that an English query to a catalog mapped for, say, zh and es is
not forced into one of them and falls to the `default` fields. A detector per set of languages is
built once, in a thread, and kept: its models take ~25 MB a language (measured: 292 MB for 12)
and ~0.2 s a language to load, so the set stays small.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

DEFAULT = "default"
# Recognised even when not mapped: the language most catalogs have as their default.
OTHERS = frozenset({"en"})
# Below this distance between the two likeliest languages the query is too short to tell.
MIN_RELATIVE_DISTANCE = 0.1
MAX_DETECTORS = 16
MAX_CHARS = 1000


def known_code(code: str) -> bool:
    """Whether `code` is an ISO 639-1 code lingua can detect."""
    return _language(code) is not None


def _language(code: str) -> Language | None:
    try:
        return Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
    except ValueError:
        return None


class LanguageDetection:
    def __init__(self) -> None:
        self._detectors: dict[frozenset[str], asyncio.Task[LanguageDetector]] = {}

    async def detect(self, text: str, codes: Collection[str]) -> str:
        """One of `codes` (ISO 639-1), or DEFAULT when the query is in none of them or unclear."""
        # Shielded: a client that leaves must not cancel the build other requests wait for.
        detector = await asyncio.shield(self._detector(frozenset(codes) | OTHERS))
        # A query's language shows in its start; the whole of a multi-MB one would block the loop.
        language = detector.detect_language_of(text[:MAX_CHARS])
        code = language.iso_code_639_1.name.lower() if language is not None else None
        return code if code is not None and code in codes else DEFAULT

    def _detector(self, codes: frozenset[str]) -> asyncio.Task[LanguageDetector]:
        task = self._detectors.get(codes)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            if len(self._detectors) >= MAX_DETECTORS:
                self._detectors.pop(next(iter(self._detectors)))
            # A task: concurrent first requests for the same set share one build.
            task = asyncio.ensure_future(asyncio.to_thread(_build, codes))
            self._detectors[codes] = task
        return task


def _build(codes: frozenset[str]) -> LanguageDetector:
    languages = [language for code in sorted(codes) if (language := _language(code))]
    return (
        LanguageDetectorBuilder.from_languages(*languages)
        .with_minimum_relative_distance(MIN_RELATIVE_DISTANCE)
        .with_preloaded_language_models()
        .build()
    )
