"""A token-refresher killed with SIGKILL while it holds leases: another replica refreshes those
connections once the leases run out, before their access tokens expire, and no refresh token is
spent twice.

Two replicas share 20 connections; the provider takes a second to answer, so the one killed is
caught mid-refresh, its requests dying with it (the provider notices the closed connection and
never acts on them), which is the case a lease can rescue. Leases last 3 s here
(``KEYWAY_REFRESH_LEASE_SECONDS``) and a token request may take 2 s: a second of slack over the
provider's delay, so a busy machine's slow response is not mistaken for a dead refresher's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from ..integration.refresher_world import RefreshProvider
from ..support.polling import eventually
from ..support.stack import Stack
from .conftest import wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo]

CONNECTIONS = 20
EXPIRES_IN = 20  # due at 10 s; lease 3 s; a 1 s provider: ample time for the survivor to start and refresh


async def test_killed_refresher_leases_run_out_and_another_refreshes_before_expiry(
    cleanup_stack: Stack, http: aiohttp.ClientSession, mongo_client: Any, tmp_path: Path
) -> None:
    stack = cleanup_stack
    provider = await RefreshProvider(token_lifetime=3600, delay=1.0).start()
    try:
        providers_file = tmp_path / "providers.yaml"
        providers_file.write_text(yaml.safe_dump({"test-oauth2": provider.template()}))
        stack.extra_env.update(
            {
                "KEYWAY_PROVIDERS_FILE": str(providers_file),
                "KEYWAY_RATE_LIMIT_PER_MINUTE": "0",
                "KEYWAY_REFRESH_LEASE_SECONDS": "3",
                "KEYWAY_PROVIDER_TIMEOUT_SECONDS": "2",
                "KEYWAY_REFRESH_MAX_SLEEP_SECONDS": "1",
            }
        )
        gateway = stack.start("auth_gateway")
        replicas = [stack.start("token_refresher") for _ in range(2)]
        for proc in (gateway, *replicas):
            assert proc.port is not None
            await wait_ready(http, proc.port)
        base = f"http://127.0.0.1:{gateway.port}"
        auth = {"Authorization": f"Bearer {stack.secret_key}"}
        body = {
            "provider": "test-oauth2",
            "provider_config_key": "oauth",
            "oauth_client_id": provider.client_id,
            "oauth_client_secret": provider.client_secret,
        }
        async with http.post(f"{base}/config", json=body, headers=auth) as resp:
            assert resp.status == 200, await resp.text()

        grants: dict[str, str] = {}
        for i in range(CONNECTIONS):
            access, refresh = provider.mint()
            grants[f"fo-{i}"] = provider.refresh_index[refresh]
            body = {
                "connection_id": f"fo-{i}",
                "provider_config_key": "oauth",
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": EXPIRES_IN,
            }
            async with http.post(f"{base}/connection", json=body, headers=auth) as resp:
                assert resp.status == 201, await resp.text()
        connections = mongo_client[stack.database]["connections"]
        expiries = {doc["connection_id"]: doc["credentials_expires_at"] async for doc in connections.find({})}

        # Wait until one replica holds several leases with its provider calls in flight: kill it.
        async def held() -> tuple[Any, list[str]] | None:
            if provider.delayed < 3:
                return None
            for proc in replicas:
                assert proc.proc is not None
                owner = {"$regex": f":{proc.proc.pid}$"}
                found = [doc["connection_id"] async for doc in connections.find({"refresh_lease_owner": owner})]
                if len(found) >= 3:
                    return proc, found
            return None

        doomed, leased = await eventually(held, timeout=30, interval=0.02, what="a refresher to hold leases")
        doomed.kill()
        killed_at = time.time()

        async def all_refreshed() -> bool:
            return len({g for g, _ in provider.refreshes}) == CONNECTIONS

        await eventually(all_refreshed, timeout=30, what="every connection refreshed by the survivor")
        first_refresh = {}
        for grant, at in provider.refreshes:
            first_refresh.setdefault(grant, at)
        late = [c for c in grants if first_refresh[grants[c]] >= expiries[c].timestamp()]
        print(
            f"\nkilled while holding {len(leased)} leases; {provider.dropped} provider calls died with it; "
            f"the survivor refreshed them {min(first_refresh[grants[c]] for c in leased) - killed_at:.1f}"
            f"-{max(first_refresh[grants[c]] for c in leased) - killed_at:.1f} s after the kill"
        )
        assert provider.dropped >= 1  # it died mid-request, which is what the leases must cover
        assert late == []  # every connection refreshed before its access token expired
        assert provider.reuse_detected == 0
        assert all(count == 1 for count in provider.refresh_counts().values())
        assert await connections.count_documents({"refresh_failed": True}) == 0

        # What the survivor stored (its writes land just after the provider answered) is the grant's
        # current refresh token: the connections go on working.
        behind: dict[str, str] = {}

        async def stored_current() -> bool:
            behind.clear()
            for connection_id in leased:
                url = f"{base}/connection/{connection_id}?provider_config_key=oauth&refresh_token=true"
                async with http.get(url, headers=auth) as resp:
                    body = await resp.json()
                grant = provider.grants[grants[connection_id]]
                served = body.get("credentials", {}).get("refresh_token")
                if served != grant.refresh_tokens[-1] or grant.revoked:
                    issued = grant.refresh_tokens.index(served) if served in grant.refresh_tokens else None
                    behind[connection_id] = (
                        f"status {resp.status}, serves refresh token {issued} of {len(grant.refresh_tokens)}, "
                        f"revoked {grant.revoked}"
                    )
            return not behind

        try:
            await eventually(stored_current, timeout=10, what="the survivor's refreshed credentials to be stored")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{explain(behind, provider, stack)}") from None
    finally:
        await provider.stop()


def explain(behind: dict[str, str], provider: RefreshProvider, stack: Stack) -> str:
    """What a failure needs to be understood: each connection's state and the services' warnings."""
    lines = [f"{connection_id}: {state}" for connection_id, state in behind.items()]
    lines.append(
        f"provider: reuse detected {provider.reuse_detected}, counts {sorted(provider.refresh_counts().values())}"
    )
    for log in sorted(stack.log_dir.glob("*.log")):
        warnings = [line for line in log.read_text(errors="replace").splitlines() if '"level": "warning"' in line]
        warnings += [line for line in log.read_text(errors="replace").splitlines() if '"level": "error"' in line]
        lines += [f"{log.name}: {line[:400]}" for line in warnings[-20:]]
    return "\n".join(lines)
