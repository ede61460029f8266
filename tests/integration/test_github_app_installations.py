"""A browser cannot name someone else's GitHub App installation (issue 14, item 2).

The attacker holds only what a customer's page exposes (the public key) and their own GitHub user.
The fake GitHub on 127.0.0.1 knows a victim organisation's installations of both apps, made a month
ago; the attacker completes connect flows that name them. Each must be refused before any token is
minted for the victim's installation, store nothing, and announce ``auth.failed``; the same flows
without tampering still connect (plain APP, an APP installation changed during the flow, CUSTOM with
the installation on the user's second page of installations, CUSTOM by a member of the organisation).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from ..support.github_app_provider import GitHubApp, GitHubLikeProvider, rsa_key_pem
from .flow_helpers import EventWatch, PopupResult, get_connection, open_socket, run_popup, watched_events
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

APP_ID = "314159"  # the plain GitHub App (APP)
OAUTH_APP_ID = "271828"  # the GitHub App that also authorizes the user (CUSTOM)
A_MONTH = timedelta(days=30)


@dataclass
class World:
    github: GitHubLikeProvider
    victim_app_installation: str  # the victim organisation's installation of the plain app
    victim_oauth_installation: str  # ... and of the app with user authorization
    app_key_pem: str
    oauth_app_key_pem: str


@pytest.fixture
async def world() -> AsyncIterator[World]:
    github = await GitHubLikeProvider(user="mallory").start()
    app_pem, app_public = rsa_key_pem()
    oauth_pem, oauth_public = rsa_key_pem()
    github.apps["keyway-plain"] = GitHubApp(app_id=APP_ID, slug="keyway-plain", public_key=app_public)
    github.apps["keyway-oauth"] = GitHubApp(
        app_id=OAUTH_APP_ID,
        slug="keyway-oauth",
        public_key=oauth_public,
        client_id="Iv1.gh-client",
        client_secret="gh-client-secret",
    )
    world = World(
        github=github,
        victim_app_installation=github.add_installation(APP_ID, "victim-org", ["victoria"], age=A_MONTH),
        victim_oauth_installation=github.add_installation(OAUTH_APP_ID, "victim-org", ["victoria"], age=A_MONTH),
        app_key_pem=app_pem,
        oauth_app_key_pem=oauth_pem,
    )
    yield world
    await github.stop()


@pytest.fixture
async def events(amqp: Any, namespace: str) -> AsyncIterator[EventWatch]:
    async with watched_events(amqp, namespace, "github-installations") as watch:
        yield watch


@pytest.fixture
async def gw(world: World, events: EventWatch, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    github = world.github
    installation_url = github.installation_token_url()
    catalog = {
        "test-github-app": {"auth_mode": "APP", "token_url": installation_url},
        "test-github-app-oauth": {
            "auth_mode": "CUSTOM",
            "token_url": {"OAUTH2": f"{github.base}/login/oauth/access_token", "APP": installation_url},
        },
    }
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, catalog),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
        public_key_connect="allowed",  # the attacker holds the public key, as on a page allowing it
    ) as gateway:
        public_url = gateway.settings.public_url.rstrip("/")
        github.apps["keyway-plain"].setup_url = f"{public_url}/app-auth/connect"
        github.apps["keyway-oauth"].setup_url = f"{public_url}/oauth/callback"
        await create_integration(
            gateway,
            "test-github-app",
            "ghapp",
            oauth_client_id=APP_ID,
            oauth_client_secret=base64.b64encode(world.app_key_pem.encode()).decode(),
            app_link=f"{github.base}/apps/keyway-plain",
        )
        await create_integration(
            gateway,
            "test-github-app-oauth",
            "ghapp-oauth",
            oauth_client_id="Iv1.gh-client",
            oauth_client_secret="gh-client-secret",
            app_link=f"{github.base}/apps/keyway-oauth",
            custom={"app_id": OAUTH_APP_ID, "private_key": world.oauth_app_key_pem},
        )
        yield gateway


Rewrite = Callable[[dict[str, str]], dict[str, str]]


async def tampered_popup(gw: Gateway, key: str, query: str, rewrite: Rewrite, *, visit_github: bool) -> PopupResult:
    """A connect flow whose return to the gateway the attacker rewrites: after GitHub's page, or
    without visiting it at all (then the return is made up from the ``state`` of the flow's start)."""
    socket, ws_client_id = await open_socket(gw)
    try:
        resp = await gw.client.get(
            f"/oauth/connect/{key}?{query}&public_key={gw.public_key}&ws_client_id={ws_client_id}",
            allow_redirects=False,
        )
        assert resp.status == 302, await resp.text()
        location = resp.headers["Location"]
        resp.release()
        if visit_github:
            async with gw.client.session.get(location, allow_redirects=False) as github_page:
                assert github_page.status == 302, await github_page.text()
                back = urlsplit(github_page.headers["Location"])
            path, params = back.path, {k: v[0] for k, v in parse_qs(back.query).items()}
        else:
            (state,) = parse_qs(urlsplit(location).query)["state"]
            path, params = "/app-auth/connect", {"state": state, "setup_action": "install"}
        resp = await gw.client.get(f"{path}?{urlencode(rewrite(params))}", allow_redirects=False)
        frame = json.loads((await socket.receive(timeout=10)).data)
        return PopupResult(resp.status, await resp.text(), frame, location)
    finally:
        await socket.close()


async def assert_refused(
    result: PopupResult, events: EventWatch, db: Any, github: GitHubLikeProvider, connection_id: str, victim: str
) -> str:
    """Refused before any token for the victim's installation; nothing stored or announced. The reason."""
    assert result.frame["message_type"] == "error", result.frame
    assert result.frame["error_type"] == "callback_err", result.frame
    assert github.minted_for(victim) == 0
    failed = await events.wait_for("auth.failed", connection_id)
    assert failed["error"]["type"] == "callback_err"
    assert await db["connections"].count_documents({}) == 0
    assert not events.announced_connection(connection_id)
    return str(result.frame["error_desc"])


# --- GitHub App (APP) ------------------------------------------------------------------------


@pytest.mark.parametrize("visit_github", [True, False], ids=["after-installing-own", "without-installing"])
async def test_app_callback_naming_the_victims_installation_is_refused(
    gw: Gateway, world: World, events: EventWatch, db: Any, visit_github: bool
) -> None:
    victim = world.victim_app_installation
    result = await tampered_popup(
        gw, "ghapp", "connection_id=evil-1", lambda q: q | {"installation_id": victim}, visit_github=visit_github
    )
    reason = await assert_refused(result, events, db, world.github, "evil-1", victim)
    assert f"installation {victim} was not created or changed during this connection flow" in reason
    # GitHub was asked, as the app, about the victim's installation — and only that.
    assert world.github.api_requests[-1]["path"] == f"/app/installations/{victim}"


async def test_app_connect_params_cannot_name_the_installation(
    gw: Gateway, world: World, events: EventWatch, db: Any
) -> None:
    """``params[installation_id]`` from the browser is no installation: GitHub's redirect names it, or none is."""
    victim = world.victim_app_installation
    result = await tampered_popup(
        gw,
        "ghapp",
        f"connection_id=evil-2&params[installation_id]={victim}",
        lambda q: {k: v for k, v in q.items() if k != "installation_id"},
        visit_github=False,
    )
    reason = await assert_refused(result, events, db, world.github, "evil-2", victim)
    assert reason == "GitHub's callback has no installation_id."


async def test_app_installation_of_another_app_is_refused(
    gw: Gateway, world: World, events: EventWatch, db: Any
) -> None:
    """Just created, but of the other app: GitHub, asked as this app, does not know it."""
    other = world.github.add_installation(OAUTH_APP_ID, "mallory", ["mallory"])
    result = await tampered_popup(
        gw, "ghapp", "connection_id=evil-3", lambda q: q | {"installation_id": other}, visit_github=True
    )
    reason = await assert_refused(result, events, db, world.github, "evil-3", other)
    assert reason == f"GitHub knows no installation {other} of this app."


async def test_app_install_and_update_still_connect(gw: Gateway, world: World, events: EventWatch) -> None:
    github = world.github
    result = await run_popup(gw, "ghapp", "connection_id=gh-new")
    assert result.frame["message_type"] == "success", result.frame
    created = max(github.installations, key=int)
    connection = await get_connection(gw, "gh-new", "ghapp")
    assert connection["connection_config"] == {"installation_id": created, "app_id": APP_ID}
    assert github.minted_for(created) == 1

    # An installation made long ago, changed (repositories added) from the connect window: GitHub
    # returns with setup_action=update, and its updated_at shows the change.
    old = github.add_installation(APP_ID, "mallory", ["mallory"], age=A_MONTH)
    github.install_into = old
    result = await run_popup(gw, "ghapp", "connection_id=gh-update")
    assert result.frame["message_type"] == "success", result.frame
    connection = await get_connection(gw, "gh-update", "ghapp")
    assert connection["connection_config"] == {"installation_id": old, "app_id": APP_ID}
    assert connection["credentials"]["access_token"].startswith("ghs_")
    await events.wait_for("connection.created", "gh-update")


# --- GitHub App with user authorization (CUSTOM) ---------------------------------------------


async def test_custom_callback_naming_the_victims_installation_is_refused(
    gw: Gateway, world: World, events: EventWatch, db: Any
) -> None:
    victim = world.victim_oauth_installation
    result = await tampered_popup(
        gw, "ghapp-oauth", "connection_id=evil-4", lambda q: q | {"installation_id": victim}, visit_github=True
    )
    reason = await assert_refused(result, events, db, world.github, "evil-4", victim)
    assert reason == (
        f"The installation {victim} is not among the installations of this app that the authorizing "
        "GitHub user can access."
    )
    assert world.github.api_requests[-1]["path"] == "/user/installations"  # asked with mallory's token


async def test_custom_connect_params_naming_the_victims_installation_is_refused(
    gw: Gateway, world: World, events: EventWatch, db: Any
) -> None:
    """The organisation must approve (no installation in GitHub's redirect); params[...] names the victim's."""
    world.github.install_mode = "request"
    victim = world.victim_oauth_installation
    result = await tampered_popup(
        gw,
        "ghapp-oauth",
        f"connection_id=evil-5&params[installation_id]={victim}",
        lambda q: q,
        visit_github=True,
    )
    await assert_refused(result, events, db, world.github, "evil-5", victim)


async def test_custom_still_connects_through_pages_of_installations(gw: Gateway, world: World) -> None:
    """mallory can access 150 installations of the app already: the new one is on the second page."""
    github = world.github
    for n in range(150):
        github.add_installation(OAUTH_APP_ID, f"org-{n}", ["mallory"], age=A_MONTH)
    result = await run_popup(gw, "ghapp-oauth", "connection_id=gho-1")
    assert result.frame["message_type"] == "success", result.frame
    created = max(github.installations, key=int)
    connection = await get_connection(gw, "gho-1", "ghapp-oauth")
    assert connection["connection_config"] == {"installation_id": created, "app_id": OAUTH_APP_ID}
    assert github.minted_for(created) == 1
    pages = [r["query"] for r in github.api_requests if r["path"] == "/user/installations"]
    assert pages == [{"per_page": "100", "page": "1"}, {"per_page": "100", "page": "2"}]


async def test_custom_member_of_the_organisation_may_name_its_installation(gw: Gateway, world: World) -> None:
    """What the user's token can access is theirs to connect: victoria is a member of victim-org."""
    github = world.github
    github.user, github.install_mode = "victoria", "request"
    victim = world.victim_oauth_installation
    result = await run_popup(gw, "ghapp-oauth", f"connection_id=gho-2&params[installation_id]={victim}")
    assert result.frame == {
        "message_type": "success",
        "provider_config_key": "ghapp-oauth",
        "connection_id": "gho-2",
        "is_pending": False,
    }
    connection = await get_connection(gw, "gho-2", "ghapp-oauth")
    assert connection["connection_config"]["installation_id"] == victim
    assert github.minted_for(victim) == 1


# --- Installations started on github.com (no state of ours) -----------------------------------


@pytest.mark.parametrize("path", ["/app-auth/connect", "/oauth/callback"])
async def test_installation_without_our_state_mints_nothing(
    gw: Gateway, world: World, events: EventWatch, db: Any, path: str
) -> None:
    victim = world.victim_app_installation
    query = urlencode(
        {
            "installation_id": victim,
            "setup_action": "install",
            "connection_id": "evil-6",
            "provider_config_key": "ghapp",
            "public_key": gw.public_key,
            "params[installation_id]": victim,
        }
    )
    resp = await gw.client.get(f"{path}?{query}", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, "https://github.com")
    resp = await gw.client.get(f"{path}?{query}&state=", allow_redirects=False)
    assert resp.status == 302
    assert world.github.token_requests == []
    assert world.github.api_requests == []
    assert await db["connections"].count_documents({}) == 0
