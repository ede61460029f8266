"""Running what a template says happens once a connection is made, before it is stored.

What runs, in order: the template's own ``post_connection`` steps, then the code hook named by its
``post_connection_script`` (``hooks.HOOKS``). A script name with no code is implemented by the steps
a built-in catalog entry declares beside the same name, so a Nango entry brought over as it is
(``post_connection_script: hubspotPostConnection`` and nothing else) is enriched as Keyway's own.

Nothing here fails a connection: a step that cannot fill its fields is a *problem* (the caller
records it as a warning) and the connection is stored without them. Each step sees the fields the
steps before it filled. Values are checked against the ``pattern`` the template declares for their
field, since the proxy will put them into URLs.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ...logging import get_logger
from ..catalog import load_catalog
from ..interpolation import param_text
from ..template import ProviderTemplate
from .context import CallRecord, EnrichmentContext, EnrichmentError
from .hooks import HOOKS, NO_OP, Hook
from .steps import PostConnectionStep

__all__ = ["EnrichmentOutcome", "Program", "enrich", "program_for"]

log = get_logger(__name__)
_STEPS = TypeAdapter(list[PostConnectionStep])
MAX_FIELD_BYTES = 64 * 1024  # a configuration field is an id or a short list (Basecamp's accounts)


@dataclass(frozen=True)
class Program:
    """What runs for one template: its steps, then its hook; ``problem`` when it cannot be known."""

    steps: tuple[PostConnectionStep, ...] = ()
    hook: Hook | None = None
    script: str | None = None
    problem: str | None = None

    def __bool__(self) -> bool:
        return bool(self.steps or self.hook or self.problem)


@dataclass(frozen=True)
class EnrichmentOutcome:
    connection_config: dict[str, Any]  # what to store: the flow's configuration with the fields filled
    filled: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    calls: tuple[CallRecord, ...] = ()
    ran: bool = False


def _steps(template: ProviderTemplate) -> tuple[PostConnectionStep, ...]:
    return tuple(_STEPS.validate_python(template.post_connection))


@cache
def _builtin_steps() -> dict[str, dict[str, tuple[PostConnectionStep, ...]]]:
    """Script name -> provider -> steps, of the built-in catalog (read once, when first needed)."""
    catalog = load_catalog()
    found: dict[str, dict[str, tuple[PostConnectionStep, ...]]] = {}
    for name in catalog.names():
        template = catalog.get(name)
        if template is not None and template.post_connection_script and template.post_connection:
            found.setdefault(template.post_connection_script, {})[name] = _steps(template)
    return found


def program_for(template: ProviderTemplate, provider: str) -> Program:
    """What runs once a connection to ``provider`` (this template) is made."""
    try:
        steps = _steps(template)
    except ValidationError as exc:
        return Program(problem=f"the template's post_connection is invalid ({exc.error_count()} errors)")
    script = template.post_connection_script
    if not script or script in NO_OP:
        return Program(steps=steps, script=script)
    hook = HOOKS.get(script)
    if hook is not None:
        return Program(steps=steps, hook=hook, script=script)
    if steps:
        return Program(steps=steps, script=script)
    by_provider = _builtin_steps().get(script)
    if by_provider:
        # The same provider's first (docusign-sandbox's own origin), else any that shares the name.
        return Program(steps=by_provider.get(provider) or next(iter(by_provider.values())), script=script)
    return Program(script=script, problem=f"Keyway has no post-connection script named {script}")


async def _run_step(ctx: EnrichmentContext, step: PostConnectionStep) -> tuple[dict[str, Any], list[str]]:
    """The fields a step fills, and those it should have filled but its document lacks."""
    wanted = [name for name in step.set if step.overwrite or not ctx.given(name)]
    if step.set and not wanted:
        return {}, []  # everything it would set was given
    if step.request is not None:
        call = step.request
        document: Any = await ctx.request(
            call.endpoint,
            method=call.method,
            base_url_override=call.base_url_override,
            headers=call.headers,
            query=call.query,
            body=call.body,
        )
    elif step.read == "access_token_claims":
        document = ctx.access_token_claims()
        if not document:
            raise EnrichmentError("the access token is not a JWT with claims to read")
    else:
        document = ctx.token_response()
    fields: dict[str, Any] = {}
    missing: list[str] = []
    for name in wanted:
        found, value = step.set[name].value_in(document)
        if found:
            fields[name] = value
        else:
            missing.append(f"{name} (at {step.set[name].path})")
    return fields, missing


def _refusal(template: ProviderTemplate, name: str, value: Any) -> str | None:
    """Why ``value`` may not be stored as ``name``; None when it may. Never quotes the value."""
    if value is None:
        return None
    if len(json.dumps(value, default=str)) > MAX_FIELD_BYTES:
        return f"{name} is larger than {MAX_FIELD_BYTES} bytes"
    pattern = template.field_patterns().get(name)
    if pattern:
        text = param_text(value)
        try:
            fits = text is not None and re.search(pattern, text) is not None
        except re.error:
            fits = False
        if not fits:
            return f"{name} does not match the pattern the provider declares ({pattern})"
    return None


def _merge(config: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(config)
    for name, value in fields.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


async def enrich(ctx: EnrichmentContext) -> EnrichmentOutcome:
    """Run the template's program on the connection ``ctx`` describes."""
    program = program_for(ctx.template, ctx.provider)
    start = dict(ctx.connection_config)
    if not program:
        return EnrichmentOutcome(connection_config=start)
    problems: list[str] = [program.problem] if program.problem else []
    filled: dict[str, Any] = {}

    def take(fields: Mapping[str, Any]) -> None:
        accepted: dict[str, Any] = {}
        for name, value in fields.items():
            refusal = _refusal(ctx.template, name, value)
            if refusal:
                problems.append(refusal)
            else:
                accepted[name] = value
        filled.update(accepted)
        ctx.connection_config = _merge(ctx.connection_config, accepted)

    try:
        async with asyncio.timeout(ctx.limits.total_seconds):
            for step in program.steps:
                try:
                    fields, missing = await _run_step(ctx, step)
                except EnrichmentError as exc:
                    problems.append(str(exc))
                    continue
                take(fields)
                if missing:
                    problems.append("the answer has no " + ", ".join(missing))
            if program.hook is not None:
                try:
                    take(await program.hook(ctx))
                except EnrichmentError as exc:
                    problems.append(str(exc))
    except TimeoutError:
        problems.append(f"enrichment took longer than {ctx.limits.total_seconds:g} s and was cut short")
    except Exception as exc:  # a hook's bug must not lose the user's connection
        name = type(exc).__name__
        log.warning("post-connection script failed", provider=ctx.provider, script=program.script, error=name)
        problems.append(f"the post-connection script {program.script} failed ({type(exc).__name__})")
    return EnrichmentOutcome(
        connection_config=_merge(start, filled),
        filled=tuple(name for name, value in filled.items() if value is not None),
        problems=tuple(problems),
        calls=tuple(ctx.calls),
        ran=True,
    )
