"""The activity log's shared half: the search keys its writer stores, the redacted excerpts producers
publish, and the reads the gateway's ``/logs`` API answers with (the activity-log service writes)."""

from .excerpts import MAX_BODY_BYTES, body_excerpt, http_excerpt, redacted_text, redacted_url
from .keys import all_key, facet_key, operation_keys, word_key, words
from .query import MAX_PAGE, MAX_VALUES, Cursor, OperationFilter, Page, get_operation, list_operations, window_filters

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_PAGE",
    "MAX_VALUES",
    "Cursor",
    "OperationFilter",
    "Page",
    "all_key",
    "body_excerpt",
    "facet_key",
    "get_operation",
    "http_excerpt",
    "list_operations",
    "operation_keys",
    "redacted_text",
    "redacted_url",
    "window_filters",
    "word_key",
    "words",
]
