"""Keyway's declarative post-connection steps (a template's ``post_connection``), as a pydantic model.

A step reads one document and copies values out of it into ``connection_config``::

    post_connection:
      - request: {method: GET, endpoint: /account-info/v3/details}   # the JSON answer of a call
        set: {portalId: portalId}
      - read: access_token_claims                                     # the access token's JWT claims
        set: {tenantId: tid}
      - read: token_response                                          # the token endpoint's answer
        set: {companyId: {path: companyId, as: text}}

A path is dot-separated: keys, list indexes (``accounts.0.id``) and filters that keep the first list
element, or the object itself, whose field equals a value (``accounts[is_default=true].base_uri``,
``resource[type=Company].uuid``). ``as`` turns the value into text or into the last segment of a
URL path (Calendly's organization URI). A step with ``overwrite: false`` leaves fields already given
(a subdomain the user typed) as they are, and is not run when all of them are.

This module imports nothing of the template, so the template may type its field with it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator

__all__ = ["JsonPath", "Pick", "PostConnectionStep", "StepRequest", "parse_path"]

_FIELD_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SEGMENT = re.compile(r"(?P<key>[^.\[\]]*)(?:\[(?P<field>[^=\[\]]+)=(?P<value>[^\[\]]*)\])?")


@dataclass(frozen=True)
class _Segment:
    key: str  # "" when the segment is only a filter on what the previous one gave
    field: str | None = None
    value: str | None = None

    def step(self, node: Any) -> tuple[bool, Any]:
        if self.key:
            if isinstance(node, dict) and self.key in node:
                node = node[self.key]
            elif isinstance(node, list) and self.key.isdigit() and int(self.key) < len(node):
                node = node[int(self.key)]
            else:
                return False, None
        if self.field is None:
            return True, node
        candidates = node if isinstance(node, list) else [node]
        for candidate in candidates:
            if isinstance(candidate, dict) and self.field in candidate and _text(candidate[self.field]) == self.value:
                return True, candidate
        return False, None


def _text(value: Any) -> str:
    """A JSON scalar as a filter compares it: ``true``, ``12``, ``Company``."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class JsonPath:
    """A parsed path into a JSON document; :meth:`find` gives ``(found, value)``."""

    text: str
    segments: tuple[_Segment, ...]

    def find(self, document: Any) -> tuple[bool, Any]:
        node = document
        for segment in self.segments:
            found, node = segment.step(node)
            if not found:
                return False, None
        return node is not None, node

    def __str__(self) -> str:
        return self.text


def parse_path(text: str) -> JsonPath:
    """``accounts[is_default=true].account_id`` as a :class:`JsonPath`, or ValueError."""
    if not text or text != text.strip():
        raise ValueError("a path is a non-empty text without surrounding spaces")
    segments: list[_Segment] = []
    for part in text.split("."):
        match = _SEGMENT.fullmatch(part)
        if match is None or not (match["key"] or match["field"]):
            raise ValueError(f"{text!r} is not a path (keys, indexes and [field=value] filters, joined by '.')")
        segments.append(_Segment(match["key"], match["field"], match["value"]))
    return JsonPath(text, tuple(segments))


def _path(value: Any) -> Any:
    return parse_path(value) if isinstance(value, str) else value


Path = Annotated[JsonPath, BeforeValidator(_path), PlainSerializer(str)]


class Pick(BaseModel):
    """Where one field's value is in the document, and what to make of it."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True)
    path: Path
    as_: Literal["value", "text", "last_path_segment"] = Field(default="value", alias="as")

    def value_in(self, document: Any) -> tuple[bool, Any]:
        found, value = self.path.find(document)
        if not found:
            return False, None
        if self.as_ == "value":
            return True, value
        if isinstance(value, dict | list | bool):
            return False, None
        text = str(value)
        if self.as_ == "last_path_segment":
            text = urlsplit(text).path.rstrip("/").rpartition("/")[2]
        return bool(text), text


def _pick(value: Any) -> Any:
    return {"path": value} if isinstance(value, str) else value


class StepRequest(BaseModel):
    """A call to the provider, with the connection's credentials applied as the proxy applies them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["GET", "POST", "PUT", "PATCH"] = "GET"
    endpoint: str = Field(min_length=1)
    # Another origin than the proxy's (``https://login.mailchimp.com``); may hold ${connectionConfig.x}.
    base_url_override: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any] | list[Any] | None = None  # sent as JSON

    @model_validator(mode="after")
    def _endpoint_is_a_path(self) -> StepRequest:
        if "://" in self.endpoint or self.endpoint.startswith("//"):
            raise ValueError("endpoint is a path under the base URL; another origin goes in base_url_override")
        return self


class PostConnectionStep(BaseModel):
    """One step: a document (a call's answer, or something the connection already holds) and the
    ``connection_config`` fields filled from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    request: StepRequest | None = None
    read: Literal["access_token_claims", "token_response"] | None = None
    set: dict[str, Annotated[Pick, BeforeValidator(_pick)]] = Field(default_factory=dict)
    overwrite: bool = True  # false: a field already given (by the user) is kept, and an all-given step skipped

    @model_validator(mode="after")
    def _one_source(self) -> PostConnectionStep:
        if (self.request is None) == (self.read is None):
            raise ValueError("a step has exactly one of 'request' (a call) and 'read' (a document it holds)")
        if self.read is not None and not self.set:
            raise ValueError("a 'read' step must 'set' at least one field")
        bad = [name for name in self.set if not _FIELD_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"'set' names fields with letters, digits, '_', '.' or '-' only, not {bad}")
        return self

    def fields(self) -> list[str]:
        return list(self.set)
