"""``docs/openapi.json`` is the gateway's contract: Schemathesis, every check, against a real gateway.

The gateway runs in this process on the real broker and database; Schemathesis's engine runs in a
thread beside it and sends what the document allows (and what it forbids) to every operation, with
the credential each operation's ``security`` names. Seeded so operations get past "unknown": an
API-key integration ``ph`` with a connection ``conn-1``, a connect session minted for each request
that needs one (a connect spends its session, ``DELETE /connect/session`` ends it). Reproducible and
bounded: a fixed seed, derandomized generation, 100 examples per operation, one pass (a time limit
would make Schemathesis fuzz in cycles until it runs out, as many as the machine's speed allows).

Any server error, any status or content type the document does not list, any body that does not match
its schema, fails the test with Schemathesis's own account of it (the request to replay it included).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis import AuthContext, Case
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES as POSITIVE_DEFAULT
from schemathesis.engine import StopReason, events

from auth_gateway.openapi import DOCUMENT_PATH

from .gateway_app import Gateway, StartGateway, create_integration

pytestmark = [pytest.mark.broker, pytest.mark.mongo, pytest.mark.timeout(600)]

SEED = 14
MAX_EXAMPLES = 100
INTEGRATION, CONNECTION = "ph", "conn-1"
# Not fuzzed, and why:
EXCLUDED_TAGS = [
    # HTML forms behind a signed-in cookie and a per-session CSRF token, driven as a browser does by
    # tests/e2e/test_dashboard.py and tests/integration/test_dashboard_lockout.py; the contract is the API.
    "dashboard",
]


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    # No rate limit: the fuzzer's hundreds of requests a minute would otherwise end as 429s, documented
    # but testing nothing. The public key may connect, as the 2024 SDKs do, so its routes are reachable.
    async with start_gateway(
        rate_limit_per_minute=0,
        public_rate_limit_per_minute=0,
        client_rate_limit_per_minute=0,
        public_key_connect="allowed",
    ) as gateway:
        await create_integration(gateway, "posthog", INTEGRATION)
        resp = await gateway.client.post(
            "/connection",
            json={"connection_id": CONNECTION, "provider_config_key": INTEGRATION, "api_key": "seeded-key"},
            headers=gateway.auth,
        )
        assert resp.status == 201, await resp.text()
        yield gateway


class GatewayAuth:
    """The credential each operation's ``security`` asks for: the secret key, the public key, or a new
    connect session token (as the ``connect_session_token`` query or a bearer token)."""

    def __init__(self, gateway: Gateway) -> None:
        self.url, self.secret_key, self.public_key = gateway.url, gateway.secret_key, gateway.public_key

    def _session_token(self) -> str:
        resp = requests.post(
            f"{self.url}/connect/sessions",
            json={"end_user": {"id": f"fuzz-{uuid.uuid4().hex[:8]}"}},
            headers={"Authorization": f"Bearer {self.secret_key}"},
            timeout=10,
        )
        resp.raise_for_status()
        token: str = resp.json()["data"]["token"]
        return token

    def get(self, case: Case, ctx: AuthContext) -> dict[str, str]:
        schemes = {name for requirement in case.operation.definition.raw.get("security", []) for name in requirement}
        if "secretKey" in schemes:
            return {"header": f"Bearer {self.secret_key}"}
        if "connectSessionBearer" in schemes:
            return {"header": f"Bearer {self._session_token()}"}
        if "publicKey" in schemes:
            return {"public_key": self.public_key}
        return {}

    def set(self, case: Case, data: dict[str, str], ctx: AuthContext) -> None:
        if "header" in data:
            case.headers = {**(case.headers or {}), "Authorization": data["header"]}
        if "public_key" in data:
            case.query = {**(case.query or {}), "public_key": data["public_key"]}


def schemathesis_config(gateway: Gateway) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "base-url": gateway.url,
            "seed": SEED,
            "max-redirects": 0,  # a redirect is an answer to check, never a place to go (the provider, GitHub)
            "request-timeout": 30,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "no-shrink": True},
            "checks": {
                "enabled": True,
                # Nango's protocol answers 400, not 404 or 422, to a well-formed request naming what does not
                # exist (an integration, a provider, a connection's integration), and every JSON body is also
                # refused for what no schema can say (lone surrogates, '$' or '.' in a key, nesting past 20
                # levels); a connect link's page that expired answers 410; an Idempotency-Key the fuzzer
                # already sent with another request answers 422 (the IETF draft's). A schema-valid request
                # may get those; any other refusal still fails.
                "positive_data_acceptance": {"expected-statuses": [*POSITIVE_DEFAULT, "400", "410", "422"]},
            },
            "phases": {"stateful": {"enabled": False}},
            "operations": [
                # GET and DELETE /connection/metadata are GET and DELETE /connection/{connectionId} of the
                # connection "metadata" (Nango's paths overlap), so the router rightly allows them there;
                # the same holds for the current generation's /connections/metadata, and for
                # /integrations/quickstart beside /integrations/{uniqueKey}.
                {"include-path": "/connection/metadata", "checks": {"allow_header_conformance": {"enabled": False}}},
                {"include-path": "/connections/metadata", "checks": {"allow_header_conformance": {"enabled": False}}},
                {
                    "include-path": "/integrations/quickstart",
                    "checks": {"allow_header_conformance": {"enabled": False}},
                },
            ],
        }
    )


def fuzz(gateway: Gateway) -> list[str]:
    schema = schemathesis.openapi.from_path(DOCUMENT_PATH, config=schemathesis_config(gateway))
    for tag in EXCLUDED_TAGS:
        schema = schema.exclude(tag=tag)
    auth = GatewayAuth(gateway)

    @schema.auth(refresh_interval=None)
    class _Auth:
        def get(self, case: Case, ctx: AuthContext) -> dict[str, str]:
            return auth.get(case, ctx)

        def set(self, case: Case, data: dict[str, str], ctx: AuthContext) -> None:
            auth.set(case, data, ctx)

    problems: list[str] = []
    timings: list[tuple[float, str]] = []
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            problems.extend(_failures(event))
            timings.append((event.elapsed_time, f"{event.phase.value} {event.label}"))
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            problems.append(f"{type(event).__name__}: {event.info.format() if hasattr(event, 'info') else event}")
        elif isinstance(event, events.EngineFinished):
            problems.extend(f"{f.operation}: {f.title}\n{f.message}" for f in event.failures)
            if event.stop_reason is not StopReason.COMPLETED:
                problems.append(f"the run stopped early ({event.stop_reason.value}): some operations went untested")
            phases: dict[str, float] = {}
            for seconds, label in timings:
                phases[label.split()[0]] = phases.get(label.split()[0], 0.0) + seconds
            shown = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in phases.items())
            print(f"schemathesis ran {event.running_time:.0f} s ({shown}); slowest:")  # pytest shows it on failure
            for seconds, label in sorted(timings, reverse=True)[:10]:
                print(f"  {seconds:6.1f} s  {label}")
    return problems


def _failures(event: events.ScenarioFinished) -> list[str]:
    found: list[str] = []
    for checks in event.recorder.checks.values():
        for check in checks:
            if check.failure_info is None:
                continue
            failure = check.failure_info.failure
            found.append(
                f"[{event.phase.value}] {failure.operation}: {failure.title} ({check.name})\n"
                f"{failure.message}\n{check.failure_info.code_sample}"
            )
    return found


async def test_the_gateway_keeps_its_openapi_contract(gw: Gateway) -> None:
    problems = await asyncio.to_thread(fuzz, gw)
    unique: dict[str, Any] = dict.fromkeys(problems)
    assert not unique, f"{len(unique)} contract failures:\n\n" + "\n\n".join(unique)
