"""The connect flows beyond OAuth 2 (spec §2.4, §2.5, §5.8, §5.9), end to end through the gateway
against small real providers on 127.0.0.1: OAuth 1.0a, client credentials, App Store, GitHub App,
GitHub App with OAuth, and unauthenticated. Each success is read back as the node SDK would; each
failure must reach the SDK, publish ``auth.failed`` and write no connection.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from ..support.github_app_provider import AppStoreKey, GitHubApp, GitHubLikeProvider, ec_key_pem, rsa_key_pem
from ..support.oauth1_provider import OAuth1Provider
from ..support.oauth_provider import OAuthProvider
from .flow_helpers import ANNOUNCED, EventWatch, create_integration, get_connection, run_popup
from .gateway_app import Gateway, running_gateway

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

APP_ID = "314159"


@dataclass_free_providers := None  # noqa: B018 - placeholder removed below
