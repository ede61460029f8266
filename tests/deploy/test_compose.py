"""deploy/docker-compose.yml, checked without a Docker engine: valid against the Compose
Specification's JSON schema, every service, port and variable the code reads present, and the
environment each container would get accepted by the service's own settings class.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml

from keyway_shared.settings import BaseServiceSettings

from .support import (
    COMPOSE_FILE,
    COMPOSE_SCHEMA,
    InterpolationError,
    container_environment,
    dockerfile_stages,
    env_names,
    interpolate,
    services,
)

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def project_env() -> dict[str, str]:
    """What `make compose-env` writes to deploy/.env."""
    return {
        "KEYWAY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KEYWAY_SECRET_KEY_DEV": str(uuid.uuid4()),
        "KEYWAY_PUBLIC_KEY_DEV": str(uuid.uuid4()),
    }


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    if not COMPOSE_SCHEMA.exists():
        pytest.fail(f"{COMPOSE_SCHEMA} is missing: `make test-deps` installs it (npm ci in tests/deploy)")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The schema says draft 2019-09 under a URI jsonschema does not know; its keywords are draft-07's
    # (the specification's own repository declares draft-07 since).
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)
    # and the validator does reject what the specification forbids
    broken = {**compose, "services": {"x": {"image": "a", "healthcheck": {"intervall": "1s"}}}}
    assert list(validator.iter_errors(broken))


def test_every_service_is_there_built_from_its_target(compose: dict[str, Any]) -> None:
    declared = compose["services"]
    targets = set(dockerfile_stages())
    for svc in services():
        spec = declared.get(svc.name)
        assert spec is not None, f"{svc.name} is missing from the compose file"
        assert spec["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile", "target": svc.name}
        assert svc.name in targets
        assert spec["image"].startswith(f"keyway/{svc.name}:")
        conditions = {name: dep["condition"] for name, dep in spec["depends_on"].items()}
        assert conditions == {"rabbitmq": "service_healthy", "mongodb": "service_healthy"}
        assert spec["read_only"] is True
        assert spec["cap_drop"] == ["ALL"]
    assert set(declared) == {svc.name for svc in services()} | {"rabbitmq", "mongodb"}


def test_every_variable_the_code_reads_is_listed_and_nothing_else(compose: dict[str, Any]) -> None:
    problems: list[str] = []
    for svc in services():
        listed = set(compose["services"][svc.name]["environment"])
        for field_name, names in svc.env.items():
            if not listed & set(names):
                problems.append(f"{svc.name}: {names[0]} ({field_name}) is not in its environment")
        for variable in sorted(listed):
            if not svc.reads(variable):
                problems.append(f"{svc.name}: {variable} is set but {svc.settings.__name__} reads no such variable")
    assert not problems, "\n".join(problems)


def test_ports_health_checks_and_the_published_gateway(compose: dict[str, Any], project_env: dict[str, str]) -> None:
    for svc in services():
        spec = compose["services"][svc.name]
        env = container_environment(spec, project_env)
        port = int(env[svc.port_var])
        assert port == svc.default_port, f"{svc.name} should keep its documented port"
        test = spec["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"]
        assert f"http://127.0.0.1:{port}/healthz" in test[-1]
        if svc.name == "auth-gateway":
            assert spec["ports"] == [f"127.0.0.1:3003:{port}"]
        else:
            assert spec["expose"] == [str(port)]
            assert "ports" not in spec  # only the gateway takes traffic from outside


def test_the_environment_each_container_gets_is_valid(compose: dict[str, Any], project_env: dict[str, str]) -> None:
    for svc in services():
        env = container_environment(compose["services"][svc.name], project_env)
        settings = svc.settings.model_validate(env)  # by alias, and without reading this process's environment
        assert settings.encryption_key.get_secret_value() == project_env["KEYWAY_ENCRYPTION_KEY"]
        url = urlsplit(settings.mongodb_url)
        assert url.hostname == "mongodb"
        assert parse_qs(url.query)["replicaSet"] == ["rs0"]  # transactions need a replica set
        assert urlsplit(settings.amqp_url).hostname == "rabbitmq"
        assert settings.queue_type == "quorum"
        # pass-through variables left unset keep the code's defaults
        assert settings.shutdown_grace_seconds == BaseServiceSettings.model_fields["shutdown_grace_seconds"].default
        if svc.name == "auth-gateway":
            assert settings.public_url == "http://127.0.0.1:3003"  # type: ignore[attr-defined]
            assert settings.secret_key_dev == project_env["KEYWAY_SECRET_KEY_DEV"]  # type: ignore[attr-defined]


def test_the_encryption_key_is_required_with_a_way_to_make_one(compose: dict[str, Any]) -> None:
    spec = compose["services"]["auth-gateway"]
    with pytest.raises(InterpolationError, match="make compose-env"):
        container_environment(spec, {})


def test_stop_grace_outlasts_the_drain(compose: dict[str, Any], project_env: dict[str, str]) -> None:
    grace = BaseServiceSettings.model_fields["shutdown_grace_seconds"].default
    for svc in services():
        spec = compose["services"][svc.name]
        match = re.fullmatch(r"(\d+)s", spec["stop_grace_period"])
        assert match is not None
        # consumers get the grace plus 5 s to close (their __main__ passes shutdown_grace_seconds + 5)
        assert int(match[1]) > grace + 5


def test_backing_services(compose: dict[str, Any], project_env: dict[str, str]) -> None:
    declared = compose["services"]
    rabbit, mongo = declared["rabbitmq"], declared["mongodb"]
    assert rabbit["image"].startswith("rabbitmq:")
    assert rabbit["image"].endswith("-management")
    # the services' AMQP_URL carries the user the broker is created with (guest only logs in locally)
    amqp = container_environment(declared["auth-gateway"], project_env)["AMQP_URL"]
    broker_env = {k: interpolate(str(v), project_env) for k, v in rabbit["environment"].items()}
    url = urlsplit(amqp)
    assert (url.username, url.password) == (broker_env["RABBITMQ_DEFAULT_USER"], broker_env["RABBITMQ_DEFAULT_PASS"])
    assert url.username != "guest"

    assert mongo["command"][:2] == ["--replSet", "rs0"]
    check = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in check
    assert "_id: 'rs0'" in check
    assert "mongodb:27017" in check
    assert "isWritablePrimary" in check  # healthy only once writable: the services start after that

    named = set(compose["volumes"])
    for spec in (rabbit, mongo):
        for volume in spec["volumes"]:
            assert volume.split(":", 1)[0] in named  # named volumes, not bind mounts


def test_interpolation_helper() -> None:
    env = {"A": "1", "E": ""}
    assert interpolate("${A}-${B:-two}-${E:-three}-${E-four}-$$-${A:+set}", env) == "1-two-three--$-set"
    with pytest.raises(InterpolationError):
        interpolate("${B:?missing}", env)


def test_env_names_reads_aliases() -> None:
    names = env_names(BaseServiceSettings)
    assert names["amqp_url"] == ("AMQP_URL", "KEYWAY_AMQP_URL")
    assert names["shutdown_grace_seconds"] == ("KEYWAY_SHUTDOWN_GRACE_SECONDS",)
