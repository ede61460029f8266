"""``builtin.json``, the built-in provider catalog as services read it, generated from the YAML files.

    python -m keyway_shared.providers.builtin_json write   regenerate it from providers.yaml and providers.d/
    python -m keyway_shared.providers.builtin_json check   exit 1 when it is not what the YAML files generate

``make providers-json`` runs ``write``. The YAML files stay the source people edit; a service never
parses them (see ``catalog.BUILTIN_JSON`` for why).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .catalog import BUILTIN_JSON, REGENERATE_BUILTIN_JSON, _parse_builtin, render_builtin_json

__all__ = ["builtin_json_path", "expected_text", "main"]


def builtin_json_path() -> Path:
    """Where ``builtin.json`` lives: beside this module, in the source tree (an editable install)."""
    return Path(__file__).with_name(BUILTIN_JSON)


def expected_text() -> str:
    """What ``builtin.json`` must hold: the YAML files' entries, rendered."""
    return render_builtin_json(*_parse_builtin())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keyway_shared.providers.builtin_json", description=__doc__)
    parser.add_argument("command", choices=["write", "check"])
    args = parser.parse_args(argv)
    path = builtin_json_path()
    expected = expected_text()
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if args.command == "write":
        if current != expected:
            path.write_text(expected, encoding="utf-8")
            print(f"wrote {path}")
        else:
            print(f"{BUILTIN_JSON} up to date")
        return 0
    if current != expected:
        print(f"{path} is not what the YAML files generate: run `{REGENERATE_BUILTIN_JSON}`", file=sys.stderr)
        return 1
    print(f"{BUILTIN_JSON} up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
