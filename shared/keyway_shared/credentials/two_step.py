"""TWO_STEP: a person's credentials exchanged for a short-lived token at the template's token request.

Read from Nango's ``connection.service.ts`` (``getTwoStepCredentials``, ``parseRawCredentials``) for
the protocol facts; written for Keyway. One exchange is:

1. the template's ``token_url`` (``${connectionConfig.x}`` checked as every URL is; ``${credentials.x}``
   in its query percent-encoded), its ``token_headers`` and its body (``token_params`` as written,
   nested objects and JSON values kept) evaluated as Nango expressions: ``${credentials.x}`` and
   ``${x}`` read the person's fields, ``${connectionConfig.x}`` the connection's configuration,
   ``${now...}``/``${random}`` one reading per request, ``base64(...)`` and the other functions;
2. sent as ``body_format`` says (JSON by default, form, XML, or ``query``: the parameters in the
   URL's query, where Nango's templates write them into the URL) with ``token_request_method``
   (POST by default, or GET without a body); only a 200 or 201 answer counts, as in Nango;
3. then each of ``additional_steps``, whose expressions may also read ``${stepN.path}`` of the
   answers before it;
4. the last answer read at ``token_response``'s paths (``token: ''`` is the whole answer, a bare
   token): the token, a refresh token, an expiry (``expireAt`` a date, ``expireIn`` seconds or a
   duration such as ``1h``), else ``token_expires_in_ms``, else a JWT token's own ``exp``.

A refresh (the token-refresher, refresh-on-read) runs the same exchange with the stored fields;
a template with ``refresh_token_params``/``refresh_token_headers`` sends those to ``refresh_url``
when the connection holds a refresh token, and falls back to the whole exchange when the provider
refuses it.

Where Keyway differs, on purpose: a token without a declared expiry is stored without one (Nango
writes one 99 years ahead) and is never refreshed; a variable without a value is an error naming it
(Nango sends the ``${...}`` text), except a field the template declares optional, whose parameter is
left out; the JWT ``exp`` is the expiry itself (the refresher keeps its own margin); a refresh the
provider refuses falls back to the full exchange. Signed JWTs and client assertions
(``signature``, ``assertion``) are made by :mod:`.two_step_jwt`; SAML assertions are refused with
``two_step_unsupported``.

No error message quotes a value: only the names of fields and the status the provider answered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy

from ..providers import ProviderTemplate
from ..providers.expressions import Scope, expand
from ..providers.interpolation import MissingParamError, UnsafeParamError
from .errors import PermanentTokenError
from .oauth2_client import query_url
from .shapes import TwoStepCredentials
from .token_http import send_token_request
from .tokens import js_iso, value_at_path
from .two_step_answer import expiry, token_text
from .two_step_jwt import signed_values
from .two_step_wire import encoded, parsed

__all__ = ["TwoStepToken", "mint_two_step_token", "preconfigured_fields"]

# What a person's fields may not name: the keys the stored document keeps for the token itself, and
# the SDK's ``assertionOption`` (key material for an assertion, never stored).
_NOT_A_FIELD = TwoStepCredentials.RESERVED | {"assertionOption"}
_STEP = re.compile(r"step\d+")
_SUCCESS = (200, 201)


@dataclass(frozen=True, kw_only=True)
class TwoStepToken:
    """What one exchange gives: the credentials to store, when they expire, and the connection
    configuration fields the template's ``token_response_metadata`` reads from the answers."""

    credentials: TwoStepCredentials
    expires_at: datetime | None
    metadata: dict[str, Any]


def preconfigured_fields(template: ProviderTemplate, integration_custom: Mapping[str, Any] | None) -> dict[str, str]:
    """The template's ``integration_config`` fields the integration holds a value for: they take the
    place of the person's (Epic's client and key, Sage 300's licence key) and are never stored with
    the connection."""
    custom = integration_custom or {}
    return {
        name: str(custom[name])
        for name in template.integration_config
        if isinstance(custom.get(name), str | int) and custom.get(name) != ""
    }


def _optional_fields(template: ProviderTemplate) -> set[str]:
    """Fields declared optional (credentials, connection configuration, integration configuration)."""
    names: set[str] = set()
    for group in (template.credentials, template.connection_config, template.integration_config):
        for name, spec in group.items():
            if isinstance(spec, dict) and spec.get("optional") is True:
                names |= {name, f"credentials.{name}"}
    return names


def _what(name: str) -> str:
    if name.startswith("credentials."):
        return f"the credential '{name.removeprefix('credentials.')}'"
    if _STEP.fullmatch(name.split(".", 1)[0]):
        return f"'{name}' of an earlier answer"
    return f"params[{name}]"


def _unsafe_code(name: str) -> str:
    return "invalid_two_step_credentials" if name.startswith("credentials.") else "invalid_connection_config"


class _Omit:
    """A parameter left out: every value it needs is of an optional field that was not given."""


_OMIT = _Omit()


@dataclass(frozen=True, kw_only=True)
class _Evaluator:
    scope: Scope
    optional: set[str]

    def text(self, text: str, where: str, *, header: bool = False) -> str | _Omit:
        if "${" not in text:
            return text
        try:
            return expand(text, self.scope, header=header)
        except MissingParamError as exc:
            if set(exc.names) <= self.optional:
                return _OMIT
            needed = ", ".join(_what(name) for name in exc.names)
            raise PermanentTokenError("missing_two_step_credentials", f"The {where} needs {needed}.") from None
        except UnsafeParamError as exc:
            message = f"The {where} cannot use {_what(exc.name)}: it {exc.reason}."
            raise PermanentTokenError(_unsafe_code(exc.name), message) from None

    def value(self, value: Any, where: str) -> Any:
        """A body value with its expressions evaluated; nested objects and non-text values kept."""
        if isinstance(value, str):
            return self.text(value, where)
        if isinstance(value, dict):
            evaluated = {name: self.value(item, f"{where}'s {name}") for name, item in value.items()}
            return {name: item for name, item in evaluated.items() if item is not _OMIT}
        if isinstance(value, list):
            return [item for item in (self.value(item, where) for item in value) if item is not _OMIT]
        return value

    def headers(self, headers: Mapping[str, str], where: str) -> dict[str, str]:
        evaluated = {name: self.text(text, f"{where}'s {name} header", header=True) for name, text in headers.items()}
        return {name: text for name, text in evaluated.items() if isinstance(text, str)}


def _url(template: ProviderTemplate, text: str, evaluator: _Evaluator, config: Mapping[str, Any], stored: bool) -> str:
    """The token URL: the configuration checked as every template URL is (a person's value cannot
    move it), the person's fields allowed only in the query, where they are percent-encoded."""
    fields = evaluator.scope.values.get("credentials") or {}
    values = {**config, **{f"credentials.{name}": value for name, value in fields.items()}}
    try:
        return template.render_url(text, values, stored=stored)
    except MissingParamError as exc:
        needed = ", ".join(_what(name) for name in exc.names)
        raise PermanentTokenError("missing_two_step_credentials", f"The token URL needs {needed}.") from None
    except UnsafeParamError as exc:
        message = f"The token URL cannot use {_what(exc.name)}: it {exc.reason}."
        raise PermanentTokenError(_unsafe_code(exc.name), message) from None


def _step_url(text: str, evaluator: _Evaluator, step: int) -> str:
    """A later step's URL, made of an earlier answer (Docuware's identity service, Salesforce's
    instance): the provider's own value, so only its scheme is checked here; where it may point is
    the egress guard's to decide, as for every request Keyway sends."""
    url = evaluator.text(text, f"token request of step {step}")
    if not isinstance(url, str) or urlsplit(url).scheme not in {"https", "http"} or not urlsplit(url).hostname:
        raise PermanentTokenError("invalid_token_response", f"Step {step}'s URL is not an http(s) URL.")
    return url


@dataclass(frozen=True, kw_only=True)
class _Context:
    """What every request of one exchange shares."""

    session: aiohttp.ClientSession
    template: ProviderTemplate
    config: Mapping[str, Any]
    now: datetime
    timeout_seconds: float
    stored: bool
    assertion_option: dict[str, Any]


@dataclass(frozen=True)
class _Answer:
    body: Any
    headers: CIMultiDictProxy[str]


async def _send(context: _Context, method: str, url: str, headers: dict[str, str], data: str | None) -> _Answer:
    answer = await send_token_request(
        context.session, method, url, headers=headers, data=data, timeout_seconds=context.timeout_seconds
    )
    if answer.status not in _SUCCESS:
        raise PermanentTokenError(
            "invalid_two_step_credentials",
            f"The token endpoint refused the credentials ({answer.status}).",
            status=answer.status,
        )
    return _Answer(parsed(answer.body, answer.headers.get("Content-Type", "")), answer.headers)


def _body_format(template: ProviderTemplate) -> str:
    """JSON unless the template says otherwise (the common field's default, form, is OAuth 2's)."""
    return template.body_format if "body_format" in template.model_fields_set else "json"


def _request_headers(headers: dict[str, str], content_type: str | None) -> dict[str, str]:
    """The template's headers; the body's own content type where they name none."""
    given = {name.lower() for name in headers}
    extra = {"Content-Type": content_type} if content_type and "content-type" not in given else {}
    accept = {} if "accept" in given else {"Accept": "application/json"}
    return {**accept, **extra, **headers, "User-Agent": "Keyway"}


def _kept_headers(answer: _Answer, names: list[str], kept: dict[str, str]) -> None:
    """``token_response_headers``: a header's value by its name; cookies by their names, and all
    of them as ``_cookies`` (SAP Business One's session), added to from step to step."""
    for name in names:
        if name.lower() == "set-cookie":
            pairs = []
            for cookie in answer.headers.getall("Set-Cookie", []):
                cookie_name, sep, cookie_value = cookie.split(";", 1)[0].partition("=")
                if sep and cookie_name.strip():
                    kept[cookie_name.strip()] = cookie_value.strip()
                    pairs.append(f"{cookie_name.strip()}={cookie_value.strip()}")
            if pairs:
                earlier = kept.get("_cookies")
                kept["_cookies"] = "; ".join([earlier, *pairs] if earlier else pairs)
        elif name in answer.headers:
            kept[name] = answer.headers[name]


async def mint_two_step_token(
    session: aiohttp.ClientSession,
    *,
    template: ProviderTemplate,
    fields: Mapping[str, Any],
    connection_config: Mapping[str, Any],
    now: datetime,
    timeout_seconds: float = 15.0,
    preconfigured: Mapping[str, str] | None = None,
    refresh_token: str | None = None,
    stored: bool = False,
    assertion_option: Mapping[str, Any] | None = None,
) -> TwoStepToken:
    """Exchange ``fields`` (the person's, or those a connection stored) for a token.

    ``preconfigured``: the integration's own values (:func:`preconfigured_fields`), used and not
    stored. ``refresh_token``: the connection's, for a refresh (see the module). ``stored``: the
    configuration is a stored connection's (a token-response field may then fill a whole origin).
    ``assertion_option``: key material for a client assertion, given at connect time, never stored."""
    preset = dict(preconfigured or {})
    # A field the integration holds is the integration's: the person's value for it is neither used nor kept.
    own = {name: value for name, value in fields.items() if name not in _NOT_A_FIELD and name not in preset}
    inputs = {**own, **preset}
    context = _Context(
        session=session,
        template=template,
        config=connection_config,
        now=now,
        timeout_seconds=timeout_seconds,
        stored=stored,
        assertion_option=dict(assertion_option or {}),
    )
    if refresh_token and (template.refresh_token_params or template.refresh_token_headers):
        try:
            return await _exchange(context, inputs, own, refresh_token)
        except PermanentTokenError:
            pass  # the refresh token is spent or refused: the person's fields mint a new one
    return await _exchange(context, inputs, own, None)


async def _exchange(
    context: _Context, inputs: dict[str, Any], own: dict[str, Any], refresh_token: str | None
) -> TwoStepToken:
    """The token request (or, with ``refresh_token``, the refresh request), then the further steps."""
    template, config = context.template, context.config
    values: dict[str, Any] = {**inputs, "credentials": inputs, "assertionOption": context.assertion_option}
    if refresh_token:
        values["refresh_token"] = refresh_token
    optional = _optional_fields(template)
    scope = Scope(values=values, config=dict(config), now=context.now, patterns=template.field_patterns())
    evaluator = _Evaluator(scope=scope, optional=optional)
    if not refresh_token:  # a refresh request carries the refresh token, not a new assertion
        signed, kept_fields = signed_values(template, scope, inputs)
        values.update(signed)
        inputs.update(kept_fields)  # ${credentials.assertion} reads it, and the connection keeps it
        own = {**own, **kept_fields}

    if refresh_token:
        url_text = template.refresh_url or template.token_url_for("TWO_STEP")
        body: Any = dict(template.refresh_token_params)
        header_texts = template.refresh_token_headers or template.token_headers
    else:
        url_text = template.token_url_for("TWO_STEP")
        body = template.token_body or dict(template.token_params)
        header_texts = template.token_headers
    if not url_text:
        raise PermanentTokenError("missing_token_url", "The provider template has no token URL.")
    url = _url(template, url_text, evaluator, config, context.stored)
    method = template.token_request_method or "POST"
    headers = evaluator.headers(header_texts, "token request")
    data: str | None = None
    content_type: str | None = None
    if _body_format(template) == "query":  # Keyway's spelling of parameters written into Nango's URLs
        url = query_url(url, encoded(evaluator.value(body, "token request"), "form")[0])
    elif method != "GET":
        data, content_type = encoded(evaluator.value(body, "token request"), _body_format(template))
    answer = await _send(context, method, url, _request_headers(headers, content_type), data)

    kept: dict[str, str] = {}
    _kept_headers(answer, template.token_response_headers, kept)
    answers = [answer.body]
    for number, step in enumerate(template.additional_steps, start=2):
        values[f"step{number - 1}"] = answers[-1]
        step_evaluator = evaluator  # its scope reads ``values``, which now holds this step's predecessors
        where = f"token request of step {number}"
        step_url = _step_url(step.token_url, step_evaluator, number)
        step_method = step.token_request_method or "POST"
        step_headers = step_evaluator.headers(step.token_headers, where)
        step_data: str | None = None
        step_type: str | None = None
        if step_method != "GET":
            step_format = step.body_format or _body_format(template)
            step_data, step_type = encoded(step_evaluator.value(dict(step.token_params), where), step_format)
        step_answer = await _send(context, step_method, step_url, _request_headers(step_headers, step_type), step_data)
        _kept_headers(step_answer, template.token_response_headers, kept)
        answers.append(step_answer.body)

    return _credentials(template, answers, own, kept, refresh_token, context.now)


def _credentials(
    template: ProviderTemplate,
    answers: list[Any],
    own: dict[str, Any],
    kept: dict[str, str],
    previous_refresh_token: str | None,
    now: datetime,
) -> TwoStepToken:
    raw = answers[-1]
    spec = template.token_response
    token_path = spec.token if spec is not None else ""
    token = token_text(raw if not token_path else value_at_path(raw, token_path) if isinstance(raw, dict) else None)
    if token is None:
        raise PermanentTokenError(
            "incomplete_raw_credentials", "The token endpoint's answer has no token where the provider puts it."
        )
    refresh_path = spec.refresh_token if spec is not None else None
    refresh = token_text(value_at_path(raw, refresh_path)) if refresh_path and isinstance(raw, dict) else None
    refresh = refresh or previous_refresh_token
    expires_at = expiry(template, raw, token, refresh, now)
    credentials = TwoStepCredentials(
        token=token,
        expires_at=js_iso(expires_at) if expires_at is not None else None,
        refresh_token=refresh,
        raw=raw,
    )
    extra = {**own, **{name: value for name, value in kept.items() if name not in TwoStepCredentials.RESERVED}}
    if extra:
        credentials = credentials.with_fields(**extra)
    metadata: dict[str, Any] = {}
    for name in template.token_response_metadata:
        for answer in reversed(answers):
            found = value_at_path(answer, name) if isinstance(answer, dict) else None
            if found not in (None, ""):
                metadata[name] = found
                break
    return TwoStepToken(credentials=credentials, expires_at=expires_at, metadata=metadata)
