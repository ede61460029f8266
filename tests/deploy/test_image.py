"""deploy/Dockerfile without a Docker engine: its shape (one target per service, non-root, a health
check, ``python -m <package>``), then a rehearsal of what it does: the build stage's COPY lines and
``uv sync`` steps run here into a fresh virtual environment per service, and the service is started
from it the way the image starts it (its CMD, only environment variables, a working directory that
is not the repository), answers its HEALTHCHECK, and stops cleanly on SIGTERM.

What only a real build would show (the base image's contents, BuildKit's cache mounts, file
ownership) is not checked here; checkov's Dockerfile rules run in test_manifests.py.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ..support.procs import free_port
from .support import DOCKERFILE, ROOT, Service, Stage, dockerfile_stages, exec_form, services, stage_chain, uv

pytestmark = pytest.mark.deploy

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", ".ruff_cache")


def test_one_target_per_service_with_user_healthcheck_and_command() -> None:
    stages = dockerfile_stages()
    for svc in services():
        chain = stage_chain(stages, svc.name)
        target = chain[0]
        assert chain[-1].base.startswith("python:3.11-slim"), chain[-1].base
        users = [i.args for stage in chain for i in stage.all("USER")]
        assert users, f"{svc.name} runs as root"
        uid = users[0].split(":")[0]
        assert uid.isdigit(), "a numeric UID: Kubernetes' runAsNonRoot can check it"
        assert int(uid) >= 10000

        (cmd,) = target.all("CMD")
        assert exec_form(cmd.args) == ["python", "-m", svc.package]
        (expose,) = target.all("EXPOSE")
        assert expose.args == str(svc.default_port)
        (health,) = target.all("HEALTHCHECK")
        probe = exec_form(health.args.split(" CMD ", 1)[1])
        assert probe[:2] == ["python", "-c"]
        assert "urllib.request" in probe[2]
        assert "/healthz" in probe[2]
        assert svc.port_var in probe[2], "the health check follows the port variable"

        copies = [i.args for i in target.all("COPY")]
        assert copies == [f"--from=build-{svc.name} --chown=root:root /app/.venv /app/.venv"]
        for stage in chain:  # nothing is installed at run time, by apt or pip
            for run in stage.all("RUN"):
                assert not re.search(r"\b(apt-get|apk|pip)\s+install\b", run.args), run.args


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    build = dockerfile_stages()["build"]
    order = [(i.keyword, i.args) for i in build.instructions if i.keyword in {"COPY", "RUN"}]
    first_sync = next(n for n, (kw, args) in enumerate(order) if kw == "RUN" and "uv sync" in args)
    before = [args for kw, args in order[:first_sync] if kw == "COPY" and not args.startswith("--from")]
    copied = {src for args in before for src in args.split()[:-1]}
    assert copied == {
        "pyproject.toml",
        "uv.lock",
        "shared/pyproject.toml",
        *(f"services/{s.name}/pyproject.toml" for s in services()),
    }, "only the manifests and the lock before the dependency layer"
    sync = order[first_sync][1]
    assert "--mount=type=cache,target=/root/.cache/uv" in sync  # uv's cache never lands in a layer
    assert "--frozen" in sync
    assert "--no-dev" in sync
    assert "--no-install-workspace" in sync
    after = [args for kw, args in order[first_sync:] if kw == "COPY"]
    assert after == ["shared/ shared/", "services/ services/"]


def test_the_build_context_is_kept_small() -> None:
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"]  # everything out, then back in by name
    assert {"!pyproject.toml", "!uv.lock", "!shared/", "!services/"} <= set(ignore)


def _uv_syncs(stage: Stage) -> list[list[str]]:
    commands = []
    for run in stage.all("RUN"):
        words = [w for w in shlex.split(run.args) if not w.startswith("--mount=")]
        if words[:2] == ["uv", "sync"]:
            commands.append(words)
    return commands


def _env_of(stages: list[Stage], replacements: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage in reversed(stages):  # outermost first
        for instruction in stage.all("ENV"):
            for word in shlex.split(instruction.args):
                key, _, value = word.partition("=")
                for old, new in replacements.items():
                    value = value.replace(old, new)
                env[key] = value
    return env


def _lay_out_context(src: Path) -> None:
    """The build stage's own COPY lines (not --from), relative to its WORKDIR."""
    for copy in dockerfile_stages()["build"].all("COPY"):
        if copy.args.startswith("--from"):
            continue
        *sources, dest = copy.args.split()
        for source in sources:
            origin, target = ROOT / source, src / dest
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=IGNORED, dirs_exist_ok=True)
            elif dest.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


def _build_venv(svc: Service, workdir: Path) -> Path:
    stages = dockerfile_stages()
    src, venv = workdir / "src", workdir / "venv"
    src.mkdir()
    _lay_out_context(src)
    env = {
        **os.environ,
        **_env_of([stages["build"]], {"/app/.venv": str(venv)}),
        "UV_PYTHON": sys.executable,  # the image's /usr/local/bin/python3.11 is this machine's 3.11 here
    }
    for command in [*_uv_syncs(stages["build"]), *_uv_syncs(stages[f"build-{svc.name}"])]:
        out = subprocess.run([uv(), *command[1:]], cwd=src, env=env, capture_output=True, text=True, check=False)
        assert out.returncode == 0, f"{' '.join(command)} failed:\n{out.stderr}"
    return venv


@pytest.mark.broker
@pytest.mark.mongo
@pytest.mark.parametrize("svc", services(), ids=lambda s: s.name)
def test_image_rehearsal_starts_answers_its_healthcheck_and_stops(
    svc: Service, tmp_path: Path, mongo_url: str, amqp_url: str, db: object, db_name: str, namespace: str, amqp: object
) -> None:
    venv = _build_venv(svc, tmp_path)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [python, "-c", f"import keyway_shared, {svc.package}; print(keyway_shared.__file__, {svc.package}.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(path.startswith(str(venv)) for path in installed), "installed as wheels, not editable from the tree"
    for dev_tool in ("pytest", "ruff", "mypy", "secantus"):
        assert subprocess.run([python, "-c", f"import {dev_tool}"], capture_output=True, check=False).returncode != 0
    # The operator tools (tools/keyway-cli: the `keyway` command, its psycopg, the doc generators) are
    # not part of any service's runtime.
    for tool in ("keyway_cli", "psycopg"):
        assert subprocess.run([python, "-c", f"import {tool}"], capture_output=True, check=False).returncode != 0
    assert not (venv / "bin" / "keyway").exists()

    stages = dockerfile_stages()
    chain = stage_chain(stages, svc.name)
    port = free_port()
    env = {
        **_env_of(chain, {"/app/.venv": str(venv), "$PATH": "/usr/bin:/bin"}),
        # what an operator gives the container; nothing else from this machine
        "MONGODB_URL": mongo_url,
        "MONGODB_DATABASE": db_name,
        "AMQP_URL": amqp_url,
        "KEYWAY_BUS_NAMESPACE": namespace,
        "KEYWAY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        svc.port_var: str(port),
    }
    (cmd,) = chain[0].all("CMD")
    (health,) = chain[0].all("HEALTHCHECK")
    healthcheck = exec_form(health.args.split(" CMD ", 1)[1])
    workdir = tmp_path / "app"
    workdir.mkdir()
    log = (tmp_path / "service.log").open("wb")
    proc = subprocess.Popen(exec_form(cmd.args), cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(healthcheck, cwd=workdir, env=env, capture_output=True, check=False).returncode != 0:
            assert proc.poll() is None, f"{svc.name} exited: {(tmp_path / 'service.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{svc.name} never passed its HEALTHCHECK"
            time.sleep(0.5)
        while not _ok(f"http://127.0.0.1:{port}/readyz"):
            assert time.monotonic() < deadline, f"{svc.name} never became ready"
            time.sleep(0.3)
        assert _ok(f"http://127.0.0.1:{port}/metrics")
        if svc.name == "auth-gateway":
            assert _ok(f"http://127.0.0.1:{port}/openapi.json")  # built from the installed package
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, "SIGTERM should end in a clean exit"
        assert subprocess.run(healthcheck, cwd=workdir, env=env, capture_output=True, check=False).returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - a local test server
            return bool(response.status == 200)
    except OSError:
        return False
