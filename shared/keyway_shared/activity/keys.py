"""What makes the activity log searchable without a text index: lowercase words and facet keys.

The embedded MongoDB-wire server has no text index and never uses an index for ``$regex``, so each
operation carries ``keys``: strings such as ``dev|*`` (every operation of ``dev``), ``dev|c|user-42``
(its connection), ``dev|i|github`` (its integration), ``dev|t|auth:refresh_token`` (its type) and
``dev|w|invalid`` (a word of one of its messages), under one multikey index with ``created_at``.
Every list filter and search word is then an equality on ``keys`` plus a time range: the one query
shape that rides an index on that server and on MongoDB alike. Writer and reader both build keys
here, so they cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "KEY_KINDS",
    "MAX_WORDS_PER_MESSAGE",
    "all_key",
    "facet_key",
    "operation_keys",
    "word_key",
    "words",
]

KEY_KINDS = {"type": "t", "integration": "i", "connection": "c", "word": "w"}
MAX_WORDS_PER_MESSAGE = 32
_MAX_KEY = 300  # index keys stay small; a longer connection id is cut, both when written and read
_MIN_WORD, _MAX_WORD = 2, 40
_WORD = re.compile(r"[a-z0-9]+")
_URL_TAIL = re.compile(r"(https?://[^\s?#]*)[?#][^\s]*", re.IGNORECASE)  # a query string is values, not words
_RANDOM = re.compile(r"(?=.*[a-z])(?=.*[0-9])[a-z0-9]{16,}|[0-9]{7,}")  # ids, nonces, hashes, timestamps
# Words too common to narrow anything down, and the redaction marker itself.
_STOP = frozenset(
    {
        *("a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "http", "https"),
        *("in", "is", "it", "its", "no", "not", "of", "on", "or", "the", "this", "to", "was", "were"),
        *("will", "with", "www", "redacted"),
    }
)


def words(*texts: str | None, limit: int = MAX_WORDS_PER_MESSAGE) -> list[str]:
    """The distinct searchable words of ``texts``, in order: lowercase runs of letters and digits.

    Query strings of URLs, and runs that look random (long mixes of letters and digits, long
    numbers), are left out: nobody searches for a nonce, and each word is an index entry.
    """
    seen: dict[str, None] = {}
    for text in texts:
        if not text:
            continue
        for word in _WORD.findall(_URL_TAIL.sub(r"\1", text).lower()):
            if _MIN_WORD <= len(word) <= _MAX_WORD and word not in _STOP and not _RANDOM.fullmatch(word):
                seen.setdefault(word)
                if len(seen) >= limit:
                    return list(seen)
    return list(seen)


def all_key(environment: str) -> str:
    return f"{environment}|*"


def facet_key(environment: str, kind: str, value: str) -> str:
    return f"{environment}|{KEY_KINDS[kind]}|{value}"[:_MAX_KEY]


def word_key(environment: str, word: str) -> str:
    return facet_key(environment, "word", word)


def operation_keys(
    environment: str,
    *,
    operation_type: str,
    provider_config_key: str | None,
    connection_id: str | None,
    message_words: Iterable[str],
) -> list[str]:
    keys = [all_key(environment), facet_key(environment, "type", operation_type)]
    if provider_config_key:
        keys.append(facet_key(environment, "integration", provider_config_key))
    if connection_id:
        keys.append(facet_key(environment, "connection", connection_id))
    keys.extend(word_key(environment, word) for word in message_words)
    return list(dict.fromkeys(keys))
