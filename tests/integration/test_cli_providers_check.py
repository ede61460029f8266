"""``keyway providers check FILE...`` (issue 18): an operator's provider files checked without starting
anything, neither database nor key: each bad entry with its field, the entries of modes Keyway has
no flow for, the counts, and a non-zero exit when the gateway would refuse the files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keyway_cli.main import main
from keyway_shared.providers import CatalogError

from .gateway_app import StartGateway

GOOD = """\
acme:
  display_name: Acme
  auth_mode: API_KEY
  proxy:
    base_url: https://${connectionConfig.host} || https://api.acme.example
    retry:
      after: [retry-after]
    verification:
      method: GET
      endpoints: [/v1/me, /v2/me]
acme-eu:
  alias: acme
  proxy:
    base_url: https://eu.acme.example
acme-oauth:
  auth_mode: OAUTH2
  authorization_url: https://acme.example/authorize
  token_url: https://acme.example/token
  token_params:
    expiring: 1
  authorization_params:
    force_verify: false
acme-jwt:
  auth_mode: TABLEAU
  token: {expires_in_ms: 3600000}
"""

BAD = """\
fine:
  auth_mode: BASIC
broken-retry:
  auth_mode: API_KEY
  proxy:
    base_url: https://x.example
    retry:
      at: {header: x-reset}
broken-mode:
  auth_mode: OAUTH3
lost-alias:
  alias: nowhere
"""


def _run(capsys: pytest.CaptureFixture[str], *files: Path) -> tuple[int, list[str]]:
    status = main(["providers", "check", *map(str, files)])
    return status, capsys.readouterr().out.splitlines()


def test_a_good_file_passes_with_its_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "providers.yaml"
    good.write_text(GOOD, encoding="utf-8")
    status, lines = _run(capsys, good)
    assert status == 0
    assert lines == [
        "skipped: provider 'acme-jwt': unsupported auth mode TABLEAU",
        "loaded: 3 (API_KEY 2, OAUTH2 1)",
        "unsupported auth mode: 1 (TABLEAU 1)",
        "bad: 0",
    ]


def test_each_bad_entry_is_named_with_its_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD, encoding="utf-8")
    bad.write_text(BAD, encoding="utf-8")
    status, lines = _run(capsys, good, bad)
    assert status == 1
    bad_lines = [line for line in lines if line.startswith("bad: ") and line != "bad: 3"]
    assert bad_lines[0] == f"bad: {bad}: provider 'lost-alias' field alias: aliases unknown provider 'nowhere'"
    assert bad_lines[1].startswith(f"bad: {bad}: provider 'broken-retry' field proxy.retry.at: ")
    assert bad_lines[2].startswith(f"bad: {bad}: provider 'broken-mode' field auth_mode: Input should be ")
    assert len(bad_lines) == 3
    assert lines[-3:] == ["loaded: 4 (API_KEY 2, BASIC 1, OAUTH2 1)", "unsupported auth mode: 1 (TABLEAU 1)", "bad: 3"]


def test_a_duplicate_provider_fails_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text("acme:\n  auth_mode: API_KEY\nacme:\n  auth_mode: BASIC\n", encoding="utf-8")
    status, lines = _run(capsys, twice)
    assert status == 1
    assert lines == [f"error: {twice}: duplicate key 'acme' at line 3 (first at line 1)"]
    status, lines = _run(capsys, tmp_path / "absent.yaml")
    assert status == 1
    assert lines == [f"error: {tmp_path / 'absent.yaml'}: No such file or directory"]


def test_the_console_script_needs_no_deployment(tmp_path: Path) -> None:
    """As an operator runs it: no MONGODB_URL, no encryption key in the environment."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD, encoding="utf-8")
    environ = {name: value for name, value in os.environ.items() if not name.startswith(("KEYWAY_", "MONGODB"))}
    answer = subprocess.run(
        [sys.executable, "-m", "keyway_cli.main", "providers", "check", str(bad)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 1, answer.stderr
    assert f"bad: {bad}: provider 'broken-retry' field proxy.retry.at: " in answer.stdout
    assert answer.stdout.endswith("bad: 3\n")
    assert answer.stderr == ""


NANGO = Path(__file__).resolve().parents[1] / "sdk" / "node_modules" / "nango-providers-07110" / "providers.yaml"


@pytest.mark.broker
@pytest.mark.mongo
async def test_what_check_passes_a_gateway_serves(
    start_gateway: StartGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nango's whole catalog as KEYWAY_PROVIDERS_FILE: check passes it, a gateway starts on it and
    serves its entries, those of the modes Keyway added last (TWO_STEP) too."""
    if not NANGO.is_file():
        pytest.fail(f"{NANGO} is missing: run make test-deps (it installs tests/sdk's pinned npm packages)")
    status, lines = _run(capsys, NANGO)
    assert status == 0
    assert lines[-1] == "bad: 0"
    async with start_gateway(providers_file=str(NANGO)) as gw:
        found = await gw.client.get("/providers/intercom", headers=gw.auth)
        assert found.status == 200, await found.text()
        intercom = (await found.json())["data"]
        assert intercom["authorization_url"] == (
            "https://app.${connectionConfig.region}.intercom.com/oauth || https://app.intercom.com/oauth"
        )
        # Every entry of Nango 0.71.10 is of a mode Keyway connects, so none is skipped.
        two_step = await gw.client.get("/providers/sage-intacct", headers=gw.auth)
        assert two_step.status == 200, await two_step.text()
        assert (await two_step.json())["data"]["auth_mode"] == "TWO_STEP"


@pytest.mark.broker
@pytest.mark.mongo
async def test_a_gateway_refuses_to_start_on_what_check_fails(tmp_path: Path, start_gateway: StartGateway) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD, encoding="utf-8")
    with pytest.raises(CatalogError) as refused:
        async with start_gateway(providers_file=str(bad)):
            pass
    assert str(refused.value) == (
        f"{bad}: provider 'lost-alias' field alias: aliases unknown provider 'nowhere' (and 2 more bad entries)"
    )
