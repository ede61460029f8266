"""What syncing the embedded server's journal at every commit costs Keyway's writes.

    uv run --frozen python bench/bench_durable_writes.py [--seconds 8] [--writers 8]

Two embedded servers, one after the other, each on a fresh data directory: the baseline with
``KEYWAY_EMBEDDED_DB_SYNC=0`` (commits reach the journal's buffer only: a SIGKILL loses the last
ones), then the stack's default (the journal synced at every commit). Each is loaded for the same
time by ``--writers`` concurrent writers creating connections through ``ConnectionStore`` — the
gateway's transaction with its outbox row, through Keyway's client (``w=majority, journal=true``).
Prints creations per second for each and the ratio synced / baseline. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from common import ROOT  # noqa: F401 - puts the repository root on sys.path

from keyway_shared.cipher import CredentialCipher, generate_key
from keyway_shared.credentials.shapes import ApiKeyCredentials
from keyway_shared.events import CloudEvent, ConnectionCreated, EventData, make_event
from keyway_shared.store import Connection, ConnectionStore, ensure_indexes, open_client
from tests.support.procs import start_mongo


def _created(connection_id: str, _first: bool) -> CloudEvent[EventData]:
    data = ConnectionCreated(
        connection_id=connection_id, provider_config_key="bench", provider="github", auth_mode="API_KEY"
    )
    return make_event(data, type="connection.created", source="/bench", environment="dev")


async def _creations_per_second(sync: bool, seconds: float, writers: int) -> float:
    os.environ["KEYWAY_EMBEDDED_DB_SYNC"] = "1" if sync else "0"  # read by the server's launcher
    with TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        proc, url = start_mongo(data_dir)
        client = open_client(url, app_name="bench-durable-writes")
        try:
            db = client["bench"]
            await ensure_indexes(db)
            store = ConnectionStore(client, db, CredentialCipher(current_key=generate_key()))
            done = 0
            until = time.monotonic() + seconds

            async def writer(number: int) -> None:
                nonlocal done
                sequence = 0
                while time.monotonic() < until:
                    sequence += 1
                    connection_id = f"w{number}-{sequence}"
                    connection = Connection(
                        environment="dev",
                        provider_config_key="bench",
                        connection_id=connection_id,
                        provider="github",
                        auth_mode="API_KEY",
                        credentials=ApiKeyCredentials(api_key="k"),
                        connection_config={},
                    )
                    await store.save_with_event(connection, functools.partial(_created, connection_id))
                    done += 1

            started = time.monotonic()
            await asyncio.gather(*(writer(n) for n in range(writers)))
            return done / (time.monotonic() - started)
        finally:
            await client.close()
            proc.terminate()
            proc.wait(timeout=30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    baseline = await _creations_per_second(False, args.seconds, args.writers)
    synced = await _creations_per_second(True, args.seconds, args.writers)
    print(f"connection creations/s, {args.writers} writers, {args.seconds:.0f} s each")
    print(f"  baseline (journal not synced at commit): {baseline:8.1f}")
    print(f"  synced at every commit (the default):    {synced:8.1f}")
    print(f"  ratio synced / baseline:                 {synced / baseline:8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
