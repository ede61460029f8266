"""The hosted page of a connect link: the integrations it allows, a button per OAuth-style flow and a
small form per API key or Basic integration. Plain HTML, no script, nothing loaded from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import quote

from aiohttp import web

__all__ = ["LinkChoice", "LinkField", "gone_page", "link_page"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#1d2330}"
    "section{border:1px solid #d5d9e0;border-radius:8px;padding:1rem;margin:1rem 0}"
    "label{display:block;margin:.5rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}"
    "button{margin-top:.8rem;padding:.5rem 1rem}.error{color:#a40e26}.muted{color:#667}"
)
_HEADERS = {
    "Cache-Control": "no-store",
    # The path holds the link's token: never send it to another origin. Same-origin keeps Origin on form posts.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True, kw_only=True)
class LinkField:
    """A credential the page's form asks for (its mode's ``LinkForm`` in ``connect.modes``)."""

    label: str
    name: str
    kind: str = "text"  # the input's type: text | password


@dataclass(kw_only=True)
class LinkChoice:
    key: str
    name: str
    auth_mode: str
    kind: str  # "redirect" (a popup mode's flow), "form" (a mode with a link form) or "unsupported"
    params: dict[str, Any] = field(default_factory=dict)  # the template's connection_config fields
    fields: tuple[LinkField, ...] = ()  # a form's credentials


def _document(title: str, body: str, status: int) -> web.Response:
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return web.Response(status=status, body=page, content_type="text/html", headers=_HEADERS)


def _input(label: str, name: str, *, kind: str = "text", hint: str = "") -> str:
    example = f" placeholder='{escape(hint)}'" if hint else ""
    return (
        f"<label>{escape(label)}<input type='{kind}' name='{escape(name)}' required autocomplete='off'{example}>"
        "</label>"
    )


def _param_inputs(choice: LinkChoice) -> str:
    parts = []
    for name, spec in choice.params.items():
        spec = spec if isinstance(spec, dict) else {}
        parts.append(_input(str(spec.get("title") or name), f"params[{name}]", hint=str(spec.get("example") or "")))
    return "".join(parts)


def _choice_html(token: str, choice: LinkChoice) -> str:
    key = quote(choice.key, safe="")
    head = f"<section><h2>{escape(choice.name)}</h2>"
    if choice.kind == "redirect":
        return (
            f"{head}<form method='get' action='/oauth/connect/{key}'>"
            f"<input type='hidden' name='connect_session_token' value='{escape(token)}'>"
            f"<input type='hidden' name='redirect' value='1'>{_param_inputs(choice)}"
            f"<button type='submit'>Connect {escape(choice.name)}</button></form></section>"
        )
    if choice.kind == "form":
        fields = "".join(_input(f.label, f.name, kind=f.kind) for f in choice.fields)
        return (
            f"{head}<form method='post' action='/connect/link/{escape(token)}/connect/{key}'>"
            f"{fields}{_param_inputs(choice)}"
            f"<button type='submit'>Connect {escape(choice.name)}</button></form></section>"
        )
    return f"{head}<p class='muted'>{escape(choice.auth_mode)} connections cannot be made from this page.</p></section>"


def link_page(token: str, choices: list[LinkChoice], *, error: str | None = None, status: int = 200) -> web.Response:
    notice = f"<p class='error' role='alert'>{escape(error)}</p>" if error else ""
    listed = "".join(_choice_html(token, c) for c in choices) or "<p>This link allows no integration.</p>"
    cancel = (
        f"<form method='post' action='/connect/link/{escape(token)}/cancel'>"
        "<button type='submit'>Cancel and go back</button></form>"
    )
    return _document("Connect", f"<h1>Connect an account</h1>{notice}{listed}{cancel}", status)


def gone_page() -> web.Response:
    return _document(
        "Link expired",
        "<h1>This connect link has expired or was already used</h1>"
        "<p>Go back to the app and start connecting again: it will give you a new link.</p>",
        410,
    )
