"""The wire side of a TWO_STEP token request: the body as ``body_format`` says (form, JSON, XML as
Nango's XMLBuilder writes it, ``$``-keys as attributes) and the answer read as JSON, XML, a form or,
for a provider that answers with the bare token, the text itself."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from .errors import PermanentTokenError

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

# The xml modules (and pyexpat's extension) are imported by the functions that need them: only a
# TWO_STEP provider with an XML body or answer does, and every gateway and refresher would otherwise
# hold them (about 0.5 MB resident) from start.

__all__ = ["encoded", "parsed"]


def _wire(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _xml(value: Any, name: str) -> str:
    """Nango's XMLBuilder as the catalog uses it: a ``$``-prefixed key is an attribute."""
    from xml.sax.saxutils import escape, quoteattr

    if not isinstance(value, dict):
        return f"<{name}>{escape(_wire(value))}</{name}>"
    attributes = "".join(f" {key[1:]}={quoteattr(_wire(item))}" for key, item in value.items() if key.startswith("$"))
    children = "".join(_xml(item, key) for key, item in value.items() if not key.startswith("$"))
    return f"<{name}{attributes}>{children}</{name}>"


def encoded(body: dict[str, Any], body_format: str) -> tuple[str, str]:
    """The body and its content type."""
    if body_format == "form":
        return urlencode({name: _wire(value) for name, value in body.items()}), "application/x-www-form-urlencoded"
    if body_format == "xml":
        return "".join(_xml(item, name) for name, item in body.items()), "application/xml"
    return json.dumps(body), "application/json"


def _xml_value(element: Element) -> Any:
    children = list(element)
    if not children:
        text = (element.text or "").strip()
        return int(text) if text.isdigit() else text
    result: dict[str, Any] = {}
    for child in children:
        result[child.tag] = _xml_value(child)
    return result


def parsed(body: bytes, content_type: str) -> Any:
    """JSON, XML, a form-encoded answer, or the text itself (a bare token: Avanan, JobDiva)."""
    text = body.decode("utf-8", "replace").strip()
    if "json" in content_type or text[:1] in {"{", "[", '"'}:
        try:
            return json.loads(text)
        except ValueError:
            raise PermanentTokenError(
                "unable_to_parse_token_response", "The token endpoint sent invalid JSON."
            ) from None
    if "xml" in content_type or text.startswith("<?xml"):
        import xml.etree.ElementTree as ElementTree

        try:
            root = ElementTree.fromstring(text)  # noqa: S314 - the stdlib parser expands no external entities
        except ElementTree.ParseError:
            raise PermanentTokenError(
                "unable_to_parse_token_response", "The token endpoint sent invalid XML."
            ) from None
        return {root.tag: _xml_value(root)}
    if "x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(text, keep_blank_values=True))
    return text
