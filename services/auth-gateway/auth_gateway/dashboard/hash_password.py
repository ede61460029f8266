"""``python -m auth_gateway.dashboard.hash_password``: print a hash for ``KEYWAY_ADMIN_PASSWORD_HASH``.

Asks twice on a terminal; reads one line from standard input otherwise (for scripts).
"""

from __future__ import annotations

import getpass
import sys

from .passwords import hash_password

__all__ = ["main"]

MIN_LENGTH = 12


def main() -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Admin password: ")
        if getpass.getpass("Again: ") != password:
            print("The two passwords differ.", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_LENGTH:
        print(f"Use at least {MIN_LENGTH} characters.", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
