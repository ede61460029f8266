"""The auth modes' flows: ``MODES`` holds one ``AuthModeSpec`` per mode of ``keyway_shared.auth_modes``.

One module a mode (``github_app`` holds the flows its two modules, ``app`` and ``custom``, name). What
is known of a mode without its flow (the dashboard's fields, what an integration must hold, how an
import reads it) is in ``keyway_shared.auth_modes``, where the parts of the gateway that may not
import ``connect/`` read it; its credentials, and how they are refreshed and sent upstream, are a class
of ``keyway_shared.credentials.shapes``.

The order below is the order of the form routes in the route table (and in ``/openapi.json``).
"""

from __future__ import annotations

from keyway_shared.auth_modes import AuthMode

from ...openapi_spec import Route
from . import (
    api_key,
    app,
    app_store,
    aws_sigv4,
    basic,
    bill,
    custom,
    install_plugin,
    jwt,
    mcp_oauth2,
    mcp_oauth2_generic,
    none,
    oauth1,
    oauth2,
    oauth2_cc,
    signature,
    tba,
    two_step,
)
from .spec import CONNECT_PARAMS, CONNECTED, AuthModeSpec, FormFlow, LinkForm, PopupFlow

__all__ = [
    "CONNECTED",
    "CONNECT_PARAMS",
    "FORM_ROUTES",
    "LINK_FORMS",
    "MODES",
    "AuthModeSpec",
    "FormFlow",
    "LinkForm",
    "PopupFlow",
    "form_route",
    "popup_flow",
]

MODES: dict[AuthMode, AuthModeSpec] = {
    spec.mode: spec
    for spec in (
        oauth2.SPEC,
        oauth1.SPEC,
        app.SPEC,
        custom.SPEC,
        api_key.SPEC,
        basic.SPEC,
        oauth2_cc.SPEC,
        app_store.SPEC,
        none.SPEC,
        tba.SPEC,
        mcp_oauth2.SPEC,
        mcp_oauth2_generic.SPEC,
        jwt.SPEC,
        signature.SPEC,
        aws_sigv4.SPEC,
        bill.SPEC,
        install_plugin.SPEC,
        two_step.SPEC,
    )
}
_BY_NAME: dict[str, AuthModeSpec] = {mode: spec for mode, spec in MODES.items()}  # a stored name may be any string

# The routes the frontend SDK posts typed credentials to, mode by mode (the route table splices them in).
FORM_ROUTES: tuple[Route, ...] = tuple(
    route for spec in MODES.values() if isinstance(spec.flow, FormFlow) for route in spec.flow.routes
)
# The modes a connect link's hosted page has a form for, with that form.
LINK_FORMS: dict[AuthMode, LinkForm] = {
    mode: spec.flow.link_form
    for mode, spec in MODES.items()
    if isinstance(spec.flow, FormFlow) and spec.flow.link_form is not None
}


def popup_flow(mode: str) -> PopupFlow | None:
    """The starter and finisher of ``mode``; None when it has no popup flow."""
    spec = _BY_NAME.get(mode)
    return spec.flow if spec is not None and isinstance(spec.flow, PopupFlow) else None


def form_route(mode: str) -> Route | None:
    """The route today's frontend SDK posts ``mode``'s form to (the last of its routes: NONE's older
    ``/unauth`` comes first); None when the mode has no form."""
    spec = _BY_NAME.get(mode)
    return spec.flow.routes[-1] if spec is not None and isinstance(spec.flow, FormFlow) else None
