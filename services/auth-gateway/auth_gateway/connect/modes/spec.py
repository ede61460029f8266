"""What the gateway knows of an auth mode beyond its facts: how a browser goes through it.

An ``AuthModeSpec`` is a mode's entry in ``connect.modes.MODES``: its facts (``keyway_shared.auth_modes``,
which the dashboard and the configuration checks read without the flows) and its flow, one of

- ``PopupFlow``: a starter that sends the browser to the provider (``/oauth/connect``) and a finisher
  for the provider's callback (``/oauth/callback``), both in ``connect.oauth``'s dispatch;
- ``FormFlow``: the routes the frontend SDK posts the typed credentials to, and, when a connect
  link's hosted page may ask for them, that page's form;
- None: no browser flow (the mode's connections are imported).

Also the parameters and the answer every form route shares, which the route table's popup lines reuse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from keyway_shared.auth_modes import MODE_FACTS, AuthMode, ModeFacts
from keyway_shared.credentials import Credentials

from ... import openapi_schemas as schema
from ...openapi_spec import Route, bracketed, json_answer, query
from ..link_page import LinkField
from ..popup_common import Finisher, Starter

__all__ = ["CONNECTED", "CONNECT_PARAMS", "AuthModeSpec", "FormFlow", "LinkForm", "PopupFlow"]

# What the frontend SDK sends with every connect call (frontend_request.py), and with a popup's first step.
CONNECT_PARAMS = (
    query("connection_id", "The connection to create or replace; with a connect session the server may name it"),
    bracketed("params", "Connection configuration, e.g. params[subdomain]=acme"),
    query("hmac", "HMAC-SHA256 of '<providerConfigKey>:<connectionId>' when the environment requires one"),
)
CONNECTED = json_answer(schema=schema.CONNECTED)


@dataclass(frozen=True, kw_only=True)
class PopupFlow:
    start: Starter
    finish: Finisher


@dataclass(frozen=True, kw_only=True)
class LinkForm:
    """A connect link's hosted page asks for these, and makes the credentials of what is posted."""

    fields: tuple[LinkField, ...]
    credentials: Callable[[dict[str, str]], Credentials]  # ApiError for what a person must correct


@dataclass(frozen=True, kw_only=True)
class FormFlow:
    routes: tuple[Route, ...]  # the frontend SDK's calls, in the route table's connect lines
    link_form: LinkForm | None = None


@dataclass(frozen=True, kw_only=True)
class AuthModeSpec:
    mode: AuthMode
    flow: PopupFlow | FormFlow | None  # None: no browser flow

    @property
    def facts(self) -> ModeFacts:
        return MODE_FACTS[self.mode]
