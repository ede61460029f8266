"""Which events become Nango auth webhooks (spec §4.1) and their exact bodies (spec §4.2)."""

from __future__ import annotations

import pytest

from keyway_shared.events import (
    AuthFailed,
    CloudEvent,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionUpdated,
    ErrorInfo,
    EventData,
    TokenRefreshed,
    TokenRefreshFailed,
)
from keyway_shared.jsjson import js_stringify
from keyway_shared.store import WebhookSettings
from webhook_dispatcher.body import auth_webhook, should_send, webhook_urls

CONN = {"connection_id": "c-1", "provider_config_key": "gh", "provider": "github", "auth_mode": "OAUTH2"}
BASE = (
    '{"from":"nango","type":"auth","connectionId":"c-1","providerConfigKey":"gh","authMode":"OAUTH2",'
    '"provider":"github","environment":"prod"'
)
ERROR = ErrorInfo(type="refresh_token_external_error", description="The token was revoked — «éß»")


def ev(type: str, data: EventData) -> CloudEvent[EventData]:
    return CloudEvent[EventData](type=type, source="/t", environment="prod", data=data)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ev("connection.created", ConnectionCreated(**CONN)), BASE + ',"operation":"creation","success":true}'),
        (ev("connection.updated", ConnectionUpdated(**CONN)), BASE + ',"operation":"override","success":true}'),
        (
            ev("token.refreshed", TokenRefreshed(**CONN, recovered=True)),
            BASE + ',"operation":"refresh","success":true}',
        ),
        (
            ev("token.refresh_failed", TokenRefreshFailed(**CONN, error=ERROR)),
            BASE
            + ',"operation":"refresh","success":false,"error":{"type":"refresh_token_external_error",'
            + '"description":"The token was revoked — «éß»"}}',
        ),
    ],
)
def test_bodies_are_byte_exact(event: CloudEvent[EventData], expected: str) -> None:
    webhook = auth_webhook(event)
    assert webhook is not None
    assert js_stringify(webhook.body) == expected


def test_a_failed_attempt_without_a_connection_sends_nulls() -> None:
    webhook = auth_webhook(ev("auth.failed", AuthFailed(operation="override", error=ERROR)))
    assert webhook is not None
    assert webhook.operation == "override"
    assert js_stringify(webhook.body).startswith(
        '{"from":"nango","type":"auth","connectionId":null,"providerConfigKey":null,"authMode":null,"provider":null,'
        '"environment":"prod","operation":"override","success":false,"error":'
    )


@pytest.mark.parametrize(
    "event",
    [
        ev("connection.deleted", ConnectionDeleted(**CONN)),
        ev("connection.updated", ConnectionUpdated(**CONN, operation="metadata")),
        ev("token.refreshed", TokenRefreshed(**CONN)),
    ],
)
def test_events_without_a_webhook(event: CloudEvent[EventData]) -> None:
    assert auth_webhook(event) is None


def test_send_rules() -> None:
    on = WebhookSettings(primary_url="https://example.com/hook")
    off = WebhookSettings(primary_url="https://example.com/hook", on_auth_creation=False, on_auth_refresh_error=False)
    assert all(should_send(on, op) for op in ("creation", "override", "refresh", "unknown"))
    assert not should_send(off, "creation")
    assert not should_send(off, "refresh")
    assert should_send(off, "override")
    assert not should_send(WebhookSettings(), "override")  # nothing without a URL


OWNED = {
    **CONN,
    "end_user": {"id": "u-1", "email": "ann@example.com", "tags": {"Plan": "pro"}, "organization": {"id": "o-1"}},
    "tags": {"end_user_id": "u-1", "team": "core"},
}


def test_a_connection_with_an_end_user_says_so_as_nango_does() -> None:
    """Nango's current body: ``tags`` then ``endUser`` between ``operation`` and ``success``; a refresh too."""
    owned = (
        ',"tags":{"end_user_id":"u-1","team":"core"},'
        '"endUser":{"endUserId":"u-1","endUserEmail":"ann@example.com","organizationId":"o-1","tags":{"Plan":"pro"}}'
    )
    created = auth_webhook(ev("connection.created", ConnectionCreated(**OWNED)))
    assert created is not None
    assert js_stringify(created.body) == BASE + ',"operation":"creation"' + owned + ',"success":true}'
    failed = auth_webhook(ev("token.refresh_failed", TokenRefreshFailed(**OWNED, error=ERROR)))
    assert failed is not None
    assert js_stringify(failed.body).startswith(BASE + ',"operation":"refresh"' + owned + ',"success":false,"error":')
    # no email: null; no organization: no organizationId; no tags of its own: {}
    bare = auth_webhook(ev("connection.created", ConnectionCreated(**CONN, end_user={"id": "u-2"})))
    assert bare is not None
    assert bare.body["endUser"] == {"endUserId": "u-2", "endUserEmail": None, "tags": {}}
    assert "tags" not in bare.body


def test_a_connections_webhook_url_replaces_the_environments() -> None:
    both = WebhookSettings(primary_url="https://a.test/h", secondary_url="https://b.test/h", on_auth_creation=False)
    plain = ev("connection.created", ConnectionCreated(**CONN))
    assert webhook_urls(both, plain) == [("primary", "https://a.test/h"), ("secondary", "https://b.test/h")]
    own = ev("connection.created", ConnectionCreated(**CONN, webhook_url_override="https://c.test/mine"))
    assert webhook_urls(both, own) == [("override", "https://c.test/mine")]
    assert webhook_urls(WebhookSettings(), own) == [("override", "https://c.test/mine")]
    # the toggles still apply; the override counts as a URL where the environment has none
    assert not should_send(both, "creation", has_url=True)
    assert should_send(WebhookSettings(), "override", has_url=True)
