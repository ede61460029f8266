"""What a TWO_STEP template declares beyond the common fields (Nango's ``ProviderTwoStep``): where the
token is in the token response, the further requests some providers need before it (``additional_steps``),
and the token request's body as written (nested objects and JSON booleans kept).

The request itself is made by :mod:`keyway_shared.credentials.two_step`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .expressions import ExpressionSyntaxError, check_syntax

__all__ = ["TwoStepStep", "TwoStepTokenResponse", "check_body_expressions", "scalar_params"]


class TwoStepTokenResponse(BaseModel):
    """Dot paths into the (last) token response; ``token: ''`` is the whole response (a bare token)."""

    model_config = ConfigDict(extra="allow")
    token: str = ""
    token_expiration: str | None = None
    token_expiration_strategy: Literal["expireAt", "expireIn"] = "expireAt"  # noqa: S105 - not a secret
    refresh_token: str | None = None


class TwoStepStep(BaseModel):
    """One request after the first, whose expressions may read ``${stepN.path}`` of earlier answers."""

    model_config = ConfigDict(extra="allow")
    token_url: str
    token_request_method: Literal["GET", "POST"] | None = None
    body_format: Literal["json", "form"] | None = None
    token_params: dict[str, str] = Field(default_factory=dict)
    token_headers: dict[str, str] = Field(default_factory=dict)


def scalar_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters the common ``token_params`` field can hold (text); nested ones stay in the body."""
    return {name: value for name, value in params.items() if not isinstance(value, dict | list)}


def check_body_expressions(value: Any, where: str) -> None:
    """ValueError naming the place of an expression in a nested body that cannot be evaluated."""
    if isinstance(value, str):
        try:
            check_syntax(value)
        except ExpressionSyntaxError as exc:
            raise ValueError(f"{where}: {exc}") from None
    elif isinstance(value, dict):
        for name, item in value.items():
            check_body_expressions(item, f"{where}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_body_expressions(item, f"{where}[{index}]")
