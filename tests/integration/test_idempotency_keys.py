"""``Idempotency-Key`` on the backend API's writes, against a real gateway, broker and database.

A retry with the key gets the first answer (replayed) and runs nothing again; the same key with
another request is a 422; a retry while the first attempt runs is a 409; a 5xx is not kept; a
``DELETE`` whose answer was lost after the deletion committed answers success on retry, without
deleting again; keys are per environment. Without the header nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from auth_gateway.operations.outbox_relay import RELAY
from auth_gateway.resources import STORES
from keyway_cli.rotate import Rotator
from keyway_shared.cipher import CredentialCipher, generate_key
from keyway_shared.store import ClaimResult, RequestOutcomeStore, StoredAnswer

from .gateway_app import Gateway, StartGateway, create_integration
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

REPLAYED = "Idempotent-Replayed"


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway() as gateway:
        await create_integration(gateway, "posthog", "ph")
        yield gateway


def keyed(gw: Gateway, key: str) -> dict[str, str]:
    return {**gw.auth, "Idempotency-Key": key}


def imported(connection_id: str, api_key: str = "phx_secret_1") -> dict[str, Any]:
    return {"connection_id": connection_id, "provider_config_key": "ph", "api_key": api_key}


async def stored_connection(db: Any, connection_id: str, environment: str = "dev") -> dict[str, Any] | None:
    doc: dict[str, Any] | None = await db["connections"].find_one(
        {"environment": environment, "provider_config_key": "ph", "connection_id": connection_id}
    )
    return doc


async def test_a_retried_import_is_answered_once_and_replayed(gw: Gateway, db: Any) -> None:
    key = str(uuid.uuid4())
    first = await gw.client.post("/connection", json=imported("idem-1"), headers=keyed(gw, key))
    assert first.status == 201, await first.text()
    assert REPLAYED not in first.headers
    before = await stored_connection(db, "idem-1")
    assert before is not None

    again = await gw.client.post("/connection", json=imported("idem-1"), headers=keyed(gw, key))
    assert again.status == 201
    assert again.headers[REPLAYED] == "true"
    assert again.headers["Content-Type"].startswith("application/json")
    assert await again.read() == await first.read()
    # The retry wrote nothing: without the key, a second import rewrites the connection (updated_at).
    after = await stored_connection(db, "idem-1")
    assert after is not None
    assert (after["id"], after["updated_at"]) == (before["id"], before["updated_at"])
    assert await db["connections"].count_documents({"connection_id": "idem-1"}) == 1

    # The answer echoes the API key: it is kept encrypted, as is the request's fingerprint.
    outcome = await db["request_outcomes"].find_one({"environment": "dev", "key": key})
    assert outcome is not None
    assert (outcome["state"], outcome["status"]) == ("done", 201)
    assert "phx_secret_1" not in repr(outcome)
    assert outcome["answer_enc"].startswith("kw1:")
    assert outcome["fingerprint_enc"].startswith("kw1:")


async def test_the_same_key_with_another_request_is_a_422(gw: Gateway, db: Any) -> None:
    key = str(uuid.uuid4())
    resp = await gw.client.post("/connection", json=imported("idem-2"), headers=keyed(gw, key))
    assert resp.status == 201
    other_body = await gw.client.post("/connection", json=imported("idem-2b"), headers=keyed(gw, key))
    assert other_body.status == 422
    assert_envelope(await other_body.json(), "idempotency_key_mismatch")
    assert await stored_connection(db, "idem-2b") is None  # not run
    other_route = await gw.client.delete("/connection/idem-2?provider_config_key=ph", headers=keyed(gw, key))
    assert other_route.status == 422
    assert await stored_connection(db, "idem-2") is not None  # not deleted
    other_query = await gw.client.post("/connection?x=1", json=imported("idem-2"), headers=keyed(gw, key))
    assert other_query.status == 422


def hold_first_save(gw: Gateway) -> tuple[asyncio.Event, asyncio.Event]:
    """The first connection write waits for ``release`` (``entered`` says it got there); later ones run."""
    store = gw.client.app[STORES].connections
    original = store.save_with_event
    entered, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def held(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            await release.wait()
        return await original(*args, **kwargs)

    store.save_with_event = held  # type: ignore[method-assign]
    return entered, release


async def test_a_retry_while_the_first_runs_is_a_409(gw: Gateway, db: Any) -> None:
    key = str(uuid.uuid4())
    entered, release = hold_first_save(gw)
    first = asyncio.create_task(gw.client.post("/connection", json=imported("idem-3"), headers=keyed(gw, key)))
    try:
        await asyncio.wait_for(entered.wait(), 10)
        busy = await gw.client.post("/connection", json=imported("idem-3"), headers=keyed(gw, key))
        assert busy.status == 409, await busy.text()
        assert busy.headers["Retry-After"] == "1"
        assert_envelope(await busy.json(), "idempotency_key_in_use")
    finally:
        release.set()
    resp = await first
    assert resp.status == 201
    replay = await gw.client.post("/connection", json=imported("idem-3"), headers=keyed(gw, key))
    assert (replay.status, replay.headers.get(REPLAYED)) == (201, "true")
    doc = await stored_connection(db, "idem-3")
    assert doc is not None
    assert doc["updated_at"] == doc["created_at"]  # written once


async def test_a_retry_waits_a_moment_for_an_attempt_about_to_end(gw: Gateway, db: Any) -> None:
    # The first attempt ends while the retry waits: the retry is its answer, not a 409. (So is a
    # claim whose release lands just after the database came back, the fault run's case.)
    key = str(uuid.uuid4())
    entered, release = hold_first_save(gw)
    first = asyncio.create_task(gw.client.post("/connection", json=imported("idem-wait"), headers=keyed(gw, key)))
    try:
        await asyncio.wait_for(entered.wait(), 10)
        retry = asyncio.create_task(gw.client.post("/connection", json=imported("idem-wait"), headers=keyed(gw, key)))
        await asyncio.sleep(0.3)  # the retry is waiting on the claim by now
        assert not retry.done()
    finally:
        release.set()
    assert (await first).status == 201
    waited = await retry
    assert (waited.status, waited.headers.get(REPLAYED)) == (201, "true"), await waited.text()
    doc = await stored_connection(db, "idem-wait")
    assert doc is not None
    assert doc["updated_at"] == doc["created_at"]  # written once


async def test_two_replicas_racing_on_one_key_run_it_once(gw: Gateway, start_gateway: StartGateway, db: Any) -> None:
    key = str(uuid.uuid4())
    async with start_gateway(keys_of=gw) as other:
        replicas = [gw, other] * 4
        answers = await asyncio.gather(
            *(r.client.post("/connection", json=imported("idem-race"), headers=keyed(r, key)) for r in replicas)
        )
        ran = [a for a in answers if a.status == 201 and REPLAYED not in a.headers]
        assert len(ran) == 1, [(a.status, dict(a.headers)) for a in answers]
        assert all(a.status == 409 or a.headers.get(REPLAYED) == "true" for a in answers if a not in ran)
    doc = await stored_connection(db, "idem-race")
    assert doc is not None
    assert doc["updated_at"] == doc["created_at"]  # written once


def database_away_for_saves(gw: Gateway) -> Callable[[], None]:
    """Connection writes fail as on a reset database link, until the returned call heals them."""
    store = gw.client.app[STORES].connections
    original = store.save_with_event
    failing = True

    async def database_away(*args: Any, **kwargs: Any) -> Any:
        if failing:
            raise AutoReconnect("connection reset by the test")
        return await original(*args, **kwargs)

    def heal() -> None:
        nonlocal failing
        failing = False

    store.save_with_event = database_away  # type: ignore[method-assign]
    return heal


async def test_a_server_failure_is_not_kept_and_the_retry_runs(gw: Gateway, db: Any) -> None:
    key = str(uuid.uuid4())
    heal = database_away_for_saves(gw)
    failed = await gw.client.post("/connection", json=imported("idem-5"), headers=keyed(gw, key))
    assert failed.status >= 500, await failed.text()
    heal()
    retried = await gw.client.post("/connection", json=imported("idem-5"), headers=keyed(gw, key))
    assert retried.status == 201, await retried.text()
    assert REPLAYED not in retried.headers  # it ran: the failure was not its answer
    assert await stored_connection(db, "idem-5") is not None
    replay = await gw.client.post("/connection", json=imported("idem-5"), headers=keyed(gw, key))
    assert (replay.status, replay.headers.get(REPLAYED)) == (201, "true")  # the success is kept


async def test_a_retry_frees_the_key_its_ended_attempt_is_slow_to_give_back(
    gw: Gateway, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fault run's case: the first attempt answered 503, and the background release of its
    # claim is stuck on a dead link while the retry's own link works. The retry releases that
    # claim itself (it is this replica's, and over) instead of waiting out its patience and a 409.
    key = str(uuid.uuid4())
    original_release = RequestOutcomeStore.release
    stuck_task: asyncio.Task[Any] | None = None
    link_back = asyncio.Event()

    async def stuck_in_background(self: RequestOutcomeStore, environment: str, key: str, holder: str) -> bool:
        nonlocal stuck_task
        if stuck_task is None:
            stuck_task = asyncio.current_task()
        if asyncio.current_task() is stuck_task:  # the first release's own task: a dead socket
            await link_back.wait()
        return await original_release(self, environment, key, holder)

    heal = database_away_for_saves(gw)
    monkeypatch.setattr(RequestOutcomeStore, "release", stuck_in_background)
    failed = await gw.client.post("/connection", json=imported("idem-stuck"), headers=keyed(gw, key))
    assert failed.status == 503, await failed.text()
    heal()
    try:
        retried = await gw.client.post("/connection", json=imported("idem-stuck"), headers=keyed(gw, key))
        assert retried.status == 201, await retried.text()
        assert REPLAYED not in retried.headers
    finally:
        link_back.set()
    assert stuck_task is not None
    await asyncio.wait_for(stuck_task, 5)  # the stuck release then finds nothing of its own to free, and ends
    doc = await db["request_outcomes"].find_one({"environment": "dev", "key": key})
    assert doc is not None
    assert doc["state"] == "done"  # the retry's answer is the one kept
    replay = await gw.client.post("/connection", json=imported("idem-stuck"), headers=keyed(gw, key))
    assert (replay.status, replay.headers.get(REPLAYED)) == (201, "true")


def hang_after_delete_commits(gw: Gateway) -> tuple[asyncio.Event, asyncio.Event]:
    """The replica stops right after a deletion committed (before it answers): its answer is lost."""
    relay = gw.client.app[RELAY]
    committed, never = asyncio.Event(), asyncio.Event()

    async def hung() -> None:
        committed.set()
        await never.wait()

    relay.drained = hung  # type: ignore[method-assign]
    return committed, never


async def expire_lease(db: Any, key: str) -> None:
    """Time passing over a replica that died: its claim's lease runs out."""
    await db["request_outcomes"].update_one(
        {"environment": "dev", "key": key}, {"$set": {"lease_until": datetime(2000, 1, 1, tzinfo=UTC)}}
    )


async def test_a_delete_whose_answer_was_lost_answers_success_on_retry(
    gw: Gateway, start_gateway: StartGateway, db: Any
) -> None:
    resp = await gw.client.post("/connection", json=imported("idem-6"), headers=gw.auth)
    assert resp.status == 201
    key = str(uuid.uuid4())
    path = "/connection/idem-6?provider_config_key=ph"
    committed, unblock = hang_after_delete_commits(gw)
    lost = asyncio.create_task(gw.client.delete(path, headers=keyed(gw, key)))
    try:
        await asyncio.wait_for(committed.wait(), 10)
        # The replica hangs there, its answer never sent, as if it had died (the test server would
        # cancel the handler of a client that hangs up, so this client stays until the end).
        assert await stored_connection(db, "idem-6") is None
        claim = await db["request_outcomes"].find_one({"environment": "dev", "key": key})
        assert claim is not None
        assert claim["state"] == "running"  # no outcome stored
        assert claim["removal"]["connection_id"] == "idem-6"  # written with the deletion

        async with start_gateway(keys_of=gw) as other:
            busy = await other.client.delete(path, headers=keyed(other, key))
            assert busy.status == 409  # the first attempt still holds its lease
            # Someone makes a connection of the same id meanwhile: the retry must not delete it.
            again = await other.client.post("/connection", json=imported("idem-6", "phx_new"), headers=other.auth)
            assert again.status == 201
            await expire_lease(db, key)  # the first replica is gone for good
            retried = await other.client.delete(path, headers=keyed(other, key))
            assert retried.status == 200, await retried.text()
            assert await retried.json() == {"success": True}
            assert REPLAYED not in retried.headers
            survivor = await stored_connection(db, "idem-6")
            assert survivor is not None  # deleted once, by the first attempt
            replay = await other.client.delete(path, headers=keyed(other, key))
            assert (replay.status, replay.headers.get(REPLAYED)) == (200, "true")

            # A key that removed nothing: the connection never existed, and that 404 is kept (a 4xx).
            other_key = str(uuid.uuid4())
            missing = "/connection/never-there?provider_config_key=ph"
            first = await other.client.delete(missing, headers=keyed(other, other_key))
            assert first.status == 404
            await other.client.post("/connection", json={**imported("never-there")}, headers=other.auth)  # exists now
            kept = await other.client.delete(missing, headers=keyed(other, other_key))
            assert (kept.status, kept.headers.get(REPLAYED)) == (404, "true")
            assert await stored_connection(db, "never-there") is not None
    finally:
        unblock.set()
        with contextlib.suppress(Exception):
            await lost  # the lost answer, at last; it cannot be stored: the claim is no longer its


async def test_a_lapsed_claim_without_a_removal_is_run_again(gw: Gateway, db: Any) -> None:
    """No deletion marker: the retry runs; a connection that is not there is a 404 ("never existed")."""
    key = str(uuid.uuid4())
    path = "/connection/idem-7?provider_config_key=ph&revoke=false"  # straight to the deletion
    entered, release = asyncio.Event(), asyncio.Event()
    store = gw.client.app[STORES].connections
    original = store.delete_with_event

    async def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await release.wait()
        return await original(*args, **kwargs)

    store.delete_with_event = held  # type: ignore[method-assign]
    first = asyncio.create_task(gw.client.delete(path, headers=keyed(gw, key)))
    try:
        await asyncio.wait_for(entered.wait(), 10)
        await expire_lease(db, key)
        store.delete_with_event = original  # type: ignore[method-assign]
        retried = await gw.client.delete(path, headers=keyed(gw, key))
        assert retried.status == 404
        assert_envelope(await retried.json(), "unknown_connection")
        assert REPLAYED not in retried.headers  # it ran, in place of the attempt whose lease ran out
    finally:
        release.set()
    assert (await first).status == 404
    replay = await gw.client.delete(path, headers=keyed(gw, key))
    assert (replay.status, replay.headers.get(REPLAYED)) == (404, "true")


async def test_keys_belong_to_one_environment(start_gateway: StartGateway, db: Any) -> None:
    prod_secret = str(uuid.uuid4())
    async with start_gateway(KEYWAY_SECRET_KEY_PROD=prod_secret) as gw:
        await create_integration(gw, "posthog", "ph")
        prod = {"Authorization": f"Bearer {prod_secret}"}
        resp = await gw.client.post("/config", json={"provider": "posthog", "provider_config_key": "ph"}, headers=prod)
        assert resp.status == 200, await resp.text()
        key = "order-42"  # two apps may well pick the same key
        dev = await gw.client.post("/connection", json=imported("idem-8"), headers=keyed(gw, key))
        other = await gw.client.post(
            "/connection", json=imported("idem-8b", "phx_prod"), headers={**prod, "Idempotency-Key": key}
        )
        assert (dev.status, other.status) == (201, 201), await other.text()
        assert REPLAYED not in other.headers
        assert await stored_connection(db, "idem-8b", environment="prod") is not None
        dev_again = await gw.client.post("/connection", json=imported("idem-8"), headers=keyed(gw, key))
        prod_again = await gw.client.post(
            "/connection", json=imported("idem-8b", "phx_prod"), headers={**prod, "Idempotency-Key": key}
        )
        assert dev_again.headers.get(REPLAYED) == prod_again.headers.get(REPLAYED) == "true"
        assert (await dev_again.json())["connection_id"] == "idem-8"
        assert (await prod_again.json())["connection_id"] == "idem-8b"


async def test_bad_keys_are_a_400_and_what_the_view_did_not_answer_is_not_kept(gw: Gateway, db: Any) -> None:
    def post(headers: dict[str, str]) -> Awaitable[Any]:
        return gw.client.post("/connection", json=imported("idem-9"), headers=headers)

    for bad in ("", "   ", "k" * 256, '"unterminated', '"a"b'):
        resp = await post(keyed(gw, bad))
        assert resp.status == 400, bad
        assert_envelope(await resp.json(), "invalid_idempotency_key")
    assert await stored_connection(db, "idem-9") is None
    # An unknown secret key is the usual 401, before any claim: the key stays free.
    resp = await post({"Authorization": f"Bearer {uuid.uuid4()}", "Idempotency-Key": "k" * 255})
    assert resp.status == 401
    resp = await post(keyed(gw, "k" * 255))
    assert (resp.status, resp.headers.get(REPLAYED)) == (201, None)
    # A structured-field string and the bare text are one key.
    resp = await post(keyed(gw, '"quoted-1"'))
    assert resp.status == 201
    resp = await post(keyed(gw, "quoted-1"))
    assert resp.headers.get(REPLAYED) == "true"


async def test_without_the_header_nothing_is_kept(gw: Gateway, db: Any) -> None:
    for _ in range(2):
        resp = await gw.client.post("/connection", json=imported("idem-10"), headers=gw.auth)
        assert resp.status == 201
        assert REPLAYED not in resp.headers
    doc = await stored_connection(db, "idem-10")
    assert doc is not None
    assert doc["updated_at"] > doc["created_at"]  # both ran
    # Reads and the browser's routes ignore the header.
    resp = await gw.client.get("/connection", headers=keyed(gw, "a-read"))
    assert resp.status == 200
    assert await db["request_outcomes"].count_documents({}) == 0


async def test_a_key_rotation_keeps_answers_readable(db: Any) -> None:
    """``keyway keys rotate`` re-encrypts kept answers: a retry after it, under the new key alone, replays."""
    old_key, new_key = generate_key(), generate_key()
    before = RequestOutcomeStore(db, CredentialCipher(current_key=old_key))
    claim = await before.claim("dev", "rotated-1", "fingerprint")
    assert claim.result is ClaimResult.CLAIMED
    assert claim.holder is not None
    answer = StoredAnswer(status=201, headers={"Content-Type": "application/json"}, body=b'{"api_key":"phx"}')
    assert await before.complete("dev", "rotated-1", claim.holder, answer)
    rotator = Rotator(db, CredentialCipher(current_key=new_key, old_keys=[old_key]), out=io.StringIO())
    assert await rotator.run() == 0
    after = await RequestOutcomeStore(db, CredentialCipher(current_key=new_key)).claim(
        "dev", "rotated-1", "fingerprint"
    )
    assert (after.result, after.answer) == (ClaimResult.DONE, answer)
