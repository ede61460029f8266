"""Service settings: read from the environment when built, or constructed directly in tests."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import Field, SecretStr, ValidationError

from keyway_shared.cipher import generate_key
from keyway_shared.settings import BaseServiceSettings, parse_cidrs

_ENV = [
    "AMQP_URL",
    "KEYWAY_AMQP_URL",
    "MONGODB_URL",
    "KEYWAY_MONGODB_URL",
    "MONGODB_DATABASE",
    "KEYWAY_MONGODB_DATABASE",
    "KEYWAY_LOG_LEVEL",
    "KEYWAY_LOG_JSON",
    "KEYWAY_ENCRYPTION_KEY",
    "KEYWAY_ENCRYPTION_KEYS_OLD",
    "KEYWAY_EGRESS_ALLOWLIST",
    "KEYWAY_PROVIDERS_FILE",
    "KEYWAY_QUEUE_TYPE",
    "KEYWAY_BUS_NAMESPACE",
    "KEYWAY_SHUTDOWN_GRACE_SECONDS",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's or CI's own variables must not leak into what these tests read."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = BaseServiceSettings()
    assert settings.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.mongodb_database == "keyway"
    assert settings.encryption_keys_old == []
    assert settings.egress_allowlist == []
    assert settings.queue_type == "quorum"
    assert settings.events_exchange == "keyway.events"
    assert settings.providers_file is None


def test_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    current, old_1, old_2 = generate_key(), generate_key(), generate_key()
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@rabbit:5673/vh")
    monkeypatch.setenv("MONGODB_URL", "mongodb://mongo:27018/?replicaSet=rs0")
    monkeypatch.setenv("MONGODB_DATABASE", "keyway_test")
    monkeypatch.setenv("KEYWAY_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("KEYWAY_LOG_JSON", "true")
    monkeypatch.setenv("KEYWAY_ENCRYPTION_KEY", current)
    monkeypatch.setenv("KEYWAY_ENCRYPTION_KEYS_OLD", f" {old_1} ,{old_2},")
    monkeypatch.setenv("KEYWAY_EGRESS_ALLOWLIST", "127.0.0.1/32, 10.1.2.3/8 ,::1/128")
    monkeypatch.setenv("KEYWAY_PROVIDERS_FILE", "/etc/keyway/providers.yaml")
    monkeypatch.setenv("KEYWAY_QUEUE_TYPE", "classic")
    monkeypatch.setenv("KEYWAY_BUS_NAMESPACE", "kwtest")
    monkeypatch.setenv("KEYWAY_SHUTDOWN_GRACE_SECONDS", "2.5")

    settings = BaseServiceSettings()
    assert settings.amqp_url == "amqp://u:p@rabbit:5673/vh"
    assert settings.mongodb_url == "mongodb://mongo:27018/?replicaSet=rs0"
    assert settings.mongodb_database == "keyway_test"
    assert settings.log_level == "DEBUG"
    assert settings.log_json is True
    assert settings.encryption_key.get_secret_value() == current
    assert [k.get_secret_value() for k in settings.encryption_keys_old] == [old_1, old_2]
    assert settings.egress_allowlist == [
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ]
    assert settings.providers_file == "/etc/keyway/providers.yaml"
    assert settings.queue_type == "classic"
    assert settings.events_exchange == "kwtest.events"
    assert settings.shutdown_grace_seconds == 2.5


def test_keyway_prefixed_urls_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYWAY_AMQP_URL", "amqp://prefixed/")
    monkeypatch.setenv("KEYWAY_MONGODB_URL", "mongodb://prefixed/")
    settings = BaseServiceSettings()
    assert settings.amqp_url == "amqp://prefixed/"
    assert settings.mongodb_url == "mongodb://prefixed/"


def test_keys_never_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    current, old = generate_key(), generate_key()
    monkeypatch.setenv("KEYWAY_ENCRYPTION_KEY", current)
    monkeypatch.setenv("KEYWAY_ENCRYPTION_KEYS_OLD", old)
    settings = BaseServiceSettings()
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert current not in text
        assert old not in text


def test_constructed_directly_without_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://from-env/")
    settings = BaseServiceSettings(
        amqp_url="amqp://given/",
        egress_allowlist=[ipaddress.ip_network("192.168.0.0/16")],
        encryption_keys_old=[SecretStr("a"), SecretStr("b")],
        queue_type="classic",
    )
    assert settings.amqp_url == "amqp://given/"  # an explicit argument wins over the environment
    assert settings.egress_allowlist == [ipaddress.ip_network("192.168.0.0/16")]
    assert [k.get_secret_value() for k in settings.encryption_keys_old] == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEYWAY_EGRESS_ALLOWLIST", "127.0.0.1/32,not-a-cidr"),
        ("KEYWAY_EGRESS_ALLOWLIST", "10.0.0.0/33"),
        ("KEYWAY_QUEUE_TYPE", "stream"),
        ("KEYWAY_SHUTDOWN_GRACE_SECONDS", "soon"),
    ],
)
def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        BaseServiceSettings()


def test_empty_allowlist_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYWAY_EGRESS_ALLOWLIST", "")
    assert BaseServiceSettings().egress_allowlist == []
    assert parse_cidrs(None) == []
    assert parse_cidrs(" , ") == []
    assert parse_cidrs(["fd00::/8", "127.0.0.1"]) == [
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("127.0.0.1/32"),
    ]


class _GatewayLikeSettings(BaseServiceSettings):
    port: int = Field(default=3003, validation_alias="KEYWAY_GATEWAY_PORT")


def test_a_service_subclass_adds_its_own_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _GatewayLikeSettings().port == 3003
    monkeypatch.setenv("KEYWAY_GATEWAY_PORT", "4004")
    monkeypatch.setenv("AMQP_URL", "amqp://sub/")
    settings = _GatewayLikeSettings()
    assert settings.port == 4004
    assert settings.amqp_url == "amqp://sub/"


def test_the_first_alias_set_wins_and_case_does_not_matter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("keyway_amqp_url", "amqp://second-choice/")
    assert BaseServiceSettings().amqp_url == "amqp://second-choice/"
    monkeypatch.setenv("AMQP_URL", "amqp://first-choice/")
    assert BaseServiceSettings().amqp_url == "amqp://first-choice/"


def test_an_argument_by_alias_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://from-env/")
    settings = BaseServiceSettings.model_validate({"KEYWAY_AMQP_URL": "amqp://given/"})
    assert settings.amqp_url == "amqp://given/"


@pytest.mark.parametrize("name", ["HOST", "host", "LOG_LEVEL", "QUEUE_TYPE"])
def test_a_field_name_alone_is_not_an_environment_variable(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # Platforms set HOST and PORT for their own reasons; only the documented names are read.
    monkeypatch.setenv(name, "stream")
    settings = BaseServiceSettings()
    assert (settings.host, settings.log_level, settings.queue_type) == ("0.0.0.0", "INFO", "quorum")


def test_a_bad_default_is_rejected_like_a_bad_value() -> None:
    class Misconfigured(BaseServiceSettings):
        queue_type: str = Field(default="stream", validation_alias="KEYWAY_QUEUE_TYPE")

    with pytest.raises(ValidationError):
        Misconfigured()


def test_a_subclass_field_without_alias_reads_its_name_in_capitals(monkeypatch: pytest.MonkeyPatch) -> None:
    class Plain(BaseServiceSettings):
        keyway_widget_count: int = Field(default=1, description="widgets")

    monkeypatch.setenv("KEYWAY_WIDGET_COUNT", "7")
    assert Plain().keyway_widget_count == 7
