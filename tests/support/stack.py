"""The whole Keyway stack as real processes, isolated per test by database name and bus namespace."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import providers_file
from .procs import ServiceProcess, free_port

PACKAGES = {
    "auth_gateway": "KEYWAY_GATEWAY_PORT",
    "activity_log": "KEYWAY_ACTIVITY_LOG_PORT",
    "webhook_dispatcher": "KEYWAY_WEBHOOK_DISPATCHER_PORT",
    "token_refresher": "KEYWAY_TOKEN_REFRESHER_PORT",
}


@dataclass
class Stack:
    mongo_url: str
    amqp_url: str
    log_dir: Path
    database: str = field(default_factory=lambda: f"kwe2e_{uuid.uuid4().hex[:10]}")
    namespace: str = field(default_factory=lambda: f"kwt{uuid.uuid4().hex[:10]}")
    encryption_key: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())
    secret_key: str = field(default_factory=lambda: str(uuid.uuid4()))
    public_key: str = field(default_factory=lambda: str(uuid.uuid4()))
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[ServiceProcess] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        base = {
            "MONGODB_URL": self.mongo_url,
            "MONGODB_DATABASE": self.database,
            "AMQP_URL": self.amqp_url,
            "KEYWAY_BUS_NAMESPACE": self.namespace,
            "KEYWAY_QUEUE_TYPE": "classic",
            "KEYWAY_ENCRYPTION_KEY": self.encryption_key,
            "KEYWAY_SECRET_KEY_DEV": self.secret_key,
            "KEYWAY_PUBLIC_KEY_DEV": self.public_key,
            "KEYWAY_PUBLIC_KEY_CONNECT": "allowed",  # the stack tests connect with the public key (2024 protocol)
            "KEYWAY_EGRESS_ALLOWLIST": "127.0.0.0/8",
            "KEYWAY_OUTBOX_SWEEP_SECONDS": "0.5",
            "KEYWAY_OUTBOX_STALE_SECONDS": "1",
            "KEYWAY_SHUTDOWN_GRACE_SECONDS": "10",
        }
        merged = {**base, **self.extra_env, **overrides}
        merged["KEYWAY_PROVIDERS_FILE"] = providers_file(merged.get("KEYWAY_PROVIDERS_FILE"))
        return merged

    def start(self, package: str, **overrides: str) -> ServiceProcess:
        port = free_port()
        env = self.env(**{PACKAGES[package]: str(port)}, **overrides)
        if package == "auth_gateway":
            env.setdefault("KEYWAY_PUBLIC_URL", f"http://127.0.0.1:{port}")
        proc = ServiceProcess(package, env, log_dir=self.log_dir, port=port)
        self.processes.append(proc)
        return proc.start()

    def start_all(self, packages: Iterable[str] = tuple(PACKAGES)) -> dict[str, ServiceProcess]:
        return {package: self.start(package) for package in packages}

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {p.package}:{p.port}\n{p.logs()[-6000:]}" for p in self.processes)
