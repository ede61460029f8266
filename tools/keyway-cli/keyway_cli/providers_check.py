"""``keyway providers check FILE...``: would these provider files load? Without starting anything.

The files are read as ``KEYWAY_PROVIDERS_FILE`` is (over the built-in catalog, later files winning,
aliases resolved), and every entry of them is reported: a bad one with its field, one of an auth
mode Keyway has no flow for yet as skipped, then the counts. The exit status is 1 when an entry
is bad or a file cannot be read (the gateway would refuse to start on it), else 0.

    keyway providers check FILE [FILE...]
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from keyway_shared.providers.catalog import CatalogError, check_files

__all__ = ["add_check_parser", "check_command"]


def add_check_parser(providers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = providers.add_parser("check", help="check provider files as KEYWAY_PROVIDERS_FILE would load them")
    check.add_argument("files", nargs="+", metavar="FILE", help="a providers.yaml (later files win, as in the setting)")


def _by_mode(counts: Counter[str]) -> str:
    return ", ".join(f"{mode} {count}" for mode, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def check_command(files: Sequence[str], *, out: TextIO) -> int:
    try:
        result = check_files(files)
    except CatalogError as exc:
        print(f"error: {exc}", file=out)
        return 1
    for problem in result.problems:
        print(f"bad: {problem}", file=out)
    for name, mode in sorted(result.unsupported.items()):
        print(f"skipped: provider {name!r}: unsupported auth mode {mode}", file=out)
    loaded = Counter[str](result.loaded_by_mode())
    unsupported = Counter(result.unsupported.values())
    bad = len({problem.provider for problem in result.problems})
    print(f"loaded: {sum(loaded.values())} ({_by_mode(loaded)})", file=out)
    print(f"unsupported auth mode: {sum(unsupported.values())} ({_by_mode(unsupported)})", file=out)
    print(f"bad: {bad}", file=out)
    return 1 if bad else 0
