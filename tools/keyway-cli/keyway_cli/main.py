"""The ``keyway`` command: operator tasks run against a deployment's database, beside the services.

    keyway keys status [--json] [--check]      which key each stored secret is encrypted with
    keyway keys rotate [--batch-size N]        re-encrypt everything with KEYWAY_ENCRYPTION_KEY
    keyway export --out FILE --passphrase-env VAR | --key-env VAR [--environment NAME]…
    keyway import --in FILE --passphrase-env VAR | --key-env VAR [--force]
    keyway import-nango [--postgres-url URL] [--nango-encryption-key-env VAR] [--environment NAME]…
    keyway providers check FILE [FILE...]       would these provider files load (no database needed)
    keyway providers diff NANGO_FILE [--kept F]  what differs from a Nango providers.yaml (no database)
    keyway providers import-nango NANGO_FILE     draft entries the catalog lacks from a Nango providers.yaml

Settings come from the environment exactly as the services read them (``MONGODB_URL``,
``KEYWAY_ENCRYPTION_KEY``, ``KEYWAY_ENCRYPTION_KEYS_OLD``, …); secrets the command needs besides
(a passphrase, a key) are named by environment variable, so they never show in a process list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from pymongo import AsyncMongoClient

from keyway_shared.cipher import CredentialCipher
from keyway_shared.providers import load_catalog
from keyway_shared.service.resources import build_cipher
from keyway_shared.settings import BaseServiceSettings
from keyway_shared.store import Database, ensure_indexes, open_client

from .archive import ArchiveError, ArchiveKey, ArchiveReader, key_from_base64, key_from_passphrase
from .nango import NangoError, NangoReader
from .nango_import import NangoImport
from .provider_diff import add_diff_parser, diff_command
from .provider_import import add_import_parser, import_command
from .providers_check import add_check_parser, check_command
from .rotate import Rotator, key_usage, print_usage
from .transfer import export_deployment, import_deployment

__all__ = ["build_parser", "main", "run"]


def _archive_key_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--passphrase-env", metavar="VAR", help="environment variable holding a passphrase (scrypt)")
    group.add_argument("--key-env", metavar="VAR", help="environment variable holding a base64 key of 32 bytes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keyway", description="Keyway operator commands.")
    commands = parser.add_subparsers(dest="command", required=True)

    keys = commands.add_parser("keys", help="the master encryption key").add_subparsers(
        dest="keys_command", required=True
    )
    status = keys.add_parser("status", help="how many stored secrets use which key id")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--check", action="store_true", help="exit 1 while anything uses another key than the current one"
    )
    rotate = keys.add_parser("rotate", help="re-encrypt every stored secret with KEYWAY_ENCRYPTION_KEY")
    rotate.add_argument("--batch-size", type=int, default=200, help="documents read per batch (default 200)")
    rotate.add_argument("--concurrency", type=int, default=16, help="compare-and-swaps in flight (default 16)")
    rotate.add_argument("--max-wait", type=float, default=300.0, help="seconds to keep retrying busy documents")

    export = commands.add_parser("export", help="write a deployment to an encrypted archive")
    export.add_argument("--out", required=True, type=Path, help="the archive to write (.tar.gz)")
    _archive_key_options(export)
    export.add_argument("--environment", action="append", default=[], help="only this environment (repeatable)")

    restore = commands.add_parser("import", help="restore an archive into this deployment")
    restore.add_argument("--in", dest="path", required=True, type=Path, help="the archive to read")
    _archive_key_options(restore)
    restore.add_argument("--force", action="store_true", help="replace integrations and connections of the same name")

    nango = commands.add_parser("import-nango", help="bring a Nango deployment across from its PostgreSQL")
    nango.add_argument("--postgres-url", help="the Nango database (default: $NANGO_DATABASE_URL)")
    key = nango.add_mutually_exclusive_group()
    key.add_argument("--nango-encryption-key-env", metavar="VAR", help="variable with NANGO_ENCRYPTION_KEY (default)")
    key.add_argument("--nango-encryption-key", metavar="KEY", help="the key itself (visible in the process list)")
    nango.add_argument("--schema", default="nango", help="Nango's schema (NANGO_DB_SCHEMA; default nango)")
    nango.add_argument("--environment", action="append", default=[], help="only this environment (repeatable)")
    nango.add_argument("--account-id", type=int, help="only this Nango account's environments")
    nango.add_argument("--force", action="store_true", help="replace integrations and connections of the same name")
    nango.add_argument("--dry-run", action="store_true", help="read and decrypt everything, write nothing")

    providers = commands.add_parser("providers", help="the provider catalog").add_subparsers(
        dest="providers_command", required=True
    )
    add_check_parser(providers)
    add_diff_parser(providers)
    add_import_parser(providers)
    return parser


def _offline(args: argparse.Namespace, out: TextIO) -> int | None:
    """The exit status of a command that needs no deployment (no database, no key); None for the others."""
    if args.command == "providers" and args.providers_command == "check":
        return check_command(args.files, out=out)
    if args.command == "providers" and args.providers_command == "diff":
        return diff_command(args, out=out)
    if args.command == "providers" and args.providers_command == "import-nango":
        return import_command(args, out=out)
    return None


def _secret(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name)
    if not value:
        raise ArchiveError(f"the environment variable {name} is not set")
    return value


def _archive_key(args: argparse.Namespace, environ: Mapping[str, str]) -> ArchiveKey:
    if args.passphrase_env:
        return key_from_passphrase(_secret(environ, args.passphrase_env))
    return key_from_base64(_secret(environ, args.key_env))


async def run(
    args: argparse.Namespace, settings: BaseServiceSettings, *, environ: Mapping[str, str], out: TextIO
) -> int:
    """One command against the deployment ``settings`` name; the exit status."""
    cipher = build_cipher(settings)
    client = open_client(settings.mongodb_url, app_name="keyway-cli")
    try:
        db = client[settings.mongodb_database]
        await ensure_indexes(db)
        if args.command == "keys" and args.keys_command == "status":
            usage = await key_usage(db, cipher)
            if args.json:
                print(json.dumps(usage.as_json(), indent=2), file=out)
            else:
                print_usage(usage, cipher, out)
            return 1 if args.check and usage.not_current() else 0
        if args.command == "keys":
            rotator = Rotator(db, cipher, out=out, batch_size=args.batch_size, concurrency=args.concurrency)
            return await rotator.run(max_wait=args.max_wait)
        if args.command == "export":
            manifest = await export_deployment(
                db, cipher, args.out, _archive_key(args, environ), environments=args.environment, out=out
            )
            print(f"wrote {args.out}: {manifest['counts']}", file=out)
            return 0
        if args.command == "import":
            reader = ArchiveReader(
                args.path,
                passphrase=_secret(environ, args.passphrase_env) if args.passphrase_env else None,
                key_b64=_secret(environ, args.key_env) if args.key_env else None,
            )
            return await import_deployment(db, cipher, reader, force=args.force, out=out)
        return await _import_nango(args, settings, environ, client, db, cipher, out)
    except (ArchiveError, NangoError) as exc:
        print(f"error: {exc}", file=out)
        return 2
    finally:
        await client.close()


async def _import_nango(
    args: argparse.Namespace,
    settings: BaseServiceSettings,
    environ: Mapping[str, str],
    client: AsyncMongoClient[dict[str, Any]],
    db: Database,
    cipher: CredentialCipher,
    out: TextIO,
) -> int:
    url = args.postgres_url or environ.get("NANGO_DATABASE_URL")
    if not url:
        raise NangoError("give --postgres-url (or set NANGO_DATABASE_URL)")
    key = args.nango_encryption_key or environ.get(args.nango_encryption_key_env or "NANGO_ENCRYPTION_KEY") or None
    reader = await NangoReader.connect(url, schema=args.schema, key_b64=key)
    try:
        job = NangoImport(client, db, cipher, load_catalog(settings.providers_file), reader, out=out)
        return await job.run(
            environments=args.environment, account_id=args.account_id, force=args.force, dry_run=args.dry_run
        )
    finally:
        await reader.close()


async def run_cli(
    argv: Sequence[str], settings: BaseServiceSettings, *, environ: Mapping[str, str] | None = None, out: TextIO
) -> int:
    """Parse and run, as the console script does, with settings given (tests build their own)."""
    args = build_parser().parse_args(list(argv))
    offline = _offline(args, out)
    if offline is not None:
        return offline
    return await run(args, settings, environ=environ or {}, out=out)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    offline = _offline(args, sys.stdout)
    if offline is not None:
        return offline
    settings = BaseServiceSettings()
    return asyncio.run(run(args, settings, environ=os.environ, out=sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
