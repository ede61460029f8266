"""Provider-specific token handling, for what a template's declarative fields cannot say.

Declarative first: ``token_params``/``refresh_params``, ``token_headers``,
``alternate_access_token_response_path``, ``expires_in_unit`` and ``token_expires_in_ms`` cover most
providers and are honoured for every template (:mod:`..oauth2_grant`). A template whose provider
needs code names a hook (``token_hook: salesforce``); this registry is the one place hooks are
listed, one module per provider family. The gateway's code exchange and the shared refresh (the
gateway's refresh on read, the token-refresher's in the background) both find hooks here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ...providers import ProviderTemplate
from ...providers.catalog import TOKEN_HOOK_NAMES
from ..errors import PermanentTokenError
from .base import CodeGrant, TokenCall, TokenHook
from .meta_long_lived import INSTAGRAM, THREADS
from .salesforce import Salesforce
from .slack import Slack
from .stripe_app import StripeApp
from .tiktok_ads import TikTokAds

__all__ = ["HOOKS", "STANDARD", "CodeGrant", "TokenCall", "TokenHook", "hook_for"]

STANDARD = TokenHook()

HOOKS: Mapping[str, TokenHook] = MappingProxyType(
    {
        "instagram": INSTAGRAM,
        "salesforce": Salesforce(),
        "slack": Slack(),
        "stripe-app": StripeApp(),
        "threads": THREADS,
        "tiktok-ads": TikTokAds(),
    }
)

if set(HOOKS) != TOKEN_HOOK_NAMES:  # the catalog refuses names not in TOKEN_HOOK_NAMES: keep them one list
    raise RuntimeError(f"token hooks {sorted(HOOKS)} differ from the catalog's TOKEN_HOOK_NAMES")


def hook_for(template: ProviderTemplate) -> TokenHook:
    """The template's hook; the standard grants when it names none."""
    if template.token_hook is None:
        return STANDARD
    hook = HOOKS.get(template.token_hook)
    if hook is None:
        message = f"The provider template names an unknown token hook, {template.token_hook}."
        raise PermanentTokenError("unknown_token_hook", message)
    return hook
