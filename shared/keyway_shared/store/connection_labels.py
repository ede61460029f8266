"""What an app labels a connection with, and finding connections by those labels.

A connection carries its end user (``end_user``: id, email, display name, tags, organization), its
tags (``tags``: a flat ``{key: value}`` of strings, Nango's connection tags) and the URL its
webhooks go to instead of the environment's (``webhook_url_override``). Nango's current API lists
connections by any of them and lets the app change them (``PATCH /connections/{id}``).

Tag keys are the app's own, so no index can name them field by field. Every write of ``tags`` also
writes ``tag_index``, the same pairs as ``"key=value"`` strings under one multikey index (a tag key
never holds ``=``: Nango's key pattern has none). Write tags through :func:`tag_fields` so both stay
together.

The embedded server answers from an index only a query whose fields are an index's prefix: one
condition beside the environment. A list therefore asks the database for its most selective
condition and checks the others, and the free-text search, on what comes back
(:func:`list_connection_documents`). Credentials never leave the database here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.mongo_client import AsyncMongoClient

from ..events import CloudEvent
from .client import Database, db_now
from .connections import _commit, _retrying_conflicts
from .outbox import OutboxRow, OutboxStore

__all__ = [
    "LISTED_FIELDS",
    "TAG_INDEX",
    "ConnectionLabelStore",
    "ConnectionListQuery",
    "list_connection_documents",
    "tag_fields",
    "tag_pair",
]

TAG_INDEX = "tag_index"

# What a listed connection shows: never its credentials.
LISTED_FIELDS: dict[str, int] = {
    "id": 1,
    "connection_id": 1,
    "provider_config_key": 1,
    "provider": 1,
    "created_at": 1,
    "metadata": 1,
    "end_user": 1,
    "tags": 1,
    "refresh_failed": 1,
}
_NEWEST_FIRST = [("created_at", -1), ("id", -1)]  # id breaks ties, so pages never overlap


def tag_pair(key: str, value: str) -> str:
    return f"{key}={value}"


def tag_fields(tags: Mapping[str, str]) -> dict[str, Any]:
    """The fields a write of ``tags`` sets: the tags and their indexed pairs."""
    return {"tags": dict(tags), TAG_INDEX: sorted(tag_pair(key, value) for key, value in tags.items())}


@dataclass(frozen=True, kw_only=True)
class ConnectionListQuery:
    """Nango's list filters; every one given must hold. ``page`` counts from 0."""

    connection_id: str | None = None
    integration_ids: Sequence[str] = ()
    end_user_id: str | None = None
    organization_id: str | None = None
    tags: Mapping[str, str] | None = None
    search: str | None = None
    limit: int = 10_000
    page: int = 0

    def conditions(self) -> list[dict[str, Any]]:
        """Each filter as a condition on one field, the most selective first."""
        found: list[dict[str, Any]] = []
        if self.connection_id is not None:
            found.append({"connection_id": self.connection_id})
        if self.end_user_id is not None:
            found.append({"end_user.id": self.end_user_id})
        found.extend({TAG_INDEX: tag_pair(key, value)} for key, value in (self.tags or {}).items())
        if self.organization_id is not None:
            found.append({"end_user.organization.id": self.organization_id})
        if self.integration_ids:
            found.append({"provider_config_key": {"$in": list(self.integration_ids)}})
        return found

    def admits(self, doc: Mapping[str, Any]) -> bool:
        """Whether a document the database returned passes every filter and the search."""
        end_user = doc.get("end_user") or {}
        organization = end_user.get("organization") or {}
        tags = doc.get("tags") or {}
        checks = (
            self.connection_id is None or doc.get("connection_id") == self.connection_id,
            self.end_user_id is None or end_user.get("id") == self.end_user_id,
            self.organization_id is None or organization.get("id") == self.organization_id,
            not self.integration_ids or doc.get("provider_config_key") in self.integration_ids,
            all(tags.get(key) == value for key, value in (self.tags or {}).items()),
        )
        return all(checks) and self._found(doc, end_user)

    def _found(self, doc: Mapping[str, Any], end_user: Mapping[str, Any]) -> bool:
        """Nango's search: a part of the connection id, or of the end user's display name or email, case aside."""
        if not self.search:
            return True
        needle = self.search.lower()
        haystacks = (doc.get("connection_id"), end_user.get("display_name"), end_user.get("email"))
        return any(isinstance(text, str) and needle in text.lower() for text in haystacks)


async def list_connection_documents(
    db: Database, environment: str, query: ConnectionListQuery, *, whole: bool = False
) -> list[dict[str, Any]]:
    """One page of the environment's connections that ``query`` admits, newest first.

    ``whole``: read whole documents (without their credentials) instead of a projection, which the
    embedded server fails on a document nested too deep (the gateway's ``deep_documents``).
    """
    conditions = query.conditions()
    lead = {"environment": environment, **(conditions[0] if conditions else {})}
    cursor = db["connections"].find(lead, None if whole else LISTED_FIELDS).sort(_NEWEST_FIRST)
    offset = query.page * query.limit
    page: list[dict[str, Any]] = []
    if len(conditions) <= 1 and not query.search:  # the database's answer is the list: page there
        page = [doc async for doc in cursor.skip(offset).limit(query.limit)]
    else:
        admitted = 0
        async for doc in cursor:
            if not query.admits(doc):
                continue
            admitted += 1
            if admitted > offset:
                page.append(doc)
                if len(page) == query.limit:
                    break
    if whole:
        page = [{field: doc.get(field) for field in LISTED_FIELDS} for doc in page]
    return page


class ConnectionLabelStore:
    """Changing a connection's labels, with its event in the same transaction."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], db: Database) -> None:
        self._client = client
        self._col = db["connections"]
        self._outbox = OutboxStore(db)

    async def relabel_with_event(
        self,
        environment: str,
        provider_config_key: str,
        connection_id: str,
        changes: Mapping[str, Any],
        make_event: Callable[[dict[str, Any]], CloudEvent[Any]],
    ) -> tuple[dict[str, Any], OutboxRow] | None:
        """Set ``changes`` (fields of the document) and add ``make_event(document)``; None: no such connection.

        The document handed to ``make_event`` and returned is the changed one, without credentials.
        """
        key = {"environment": environment, "provider_config_key": provider_config_key, "connection_id": connection_id}
        projection = {"credentials_enc": 0}

        async def relabel_once() -> tuple[dict[str, Any], OutboxRow] | None:
            async with self._client.start_session() as session, await session.start_transaction():
                doc = await self._col.find_one_and_update(
                    key,
                    {"$set": {**changes, "updated_at": db_now()}},
                    projection=projection,
                    return_document=ReturnDocument.AFTER,
                    session=session,
                )
                if doc is None:
                    return None
                row = await self._outbox.add(make_event(doc), session=session)
                await _commit(session)
            return doc, row

        return await _retrying_conflicts(relabel_once)
