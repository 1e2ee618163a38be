"""Command line: ``ftpsd serve``, ``ftpsd check-config``, ``ftpsd quota`` and ``ftpsd hash-password``.

check-config is what the Ansible role runs as the template's ``validate:`` command on a temporary
copy, so it reads only the file content and exits 1 with one line naming the bad key.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence

from ftpsd.config import ConfigError, load_config
from ftpsd.passwords import hash_password
from ftpsd.quotas import quota_report
from ftpsd.tls import TlsSetupError, load_material


def _serve(args: argparse.Namespace) -> int:
    from ftpsd.server import Server, StartupError  # noqa: PLC0415 - keep the other commands light

    try:
        server = Server(args.config)
    except (ConfigError, TlsSetupError, StartupError) as err:
        print(f"ftpsd: {err}", file=sys.stderr)
        return 1
    server.serve_forever()
    return 0


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
        load_material(config.tls)
    except (ConfigError, TlsSetupError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"ok: {len(config.users)} users")
    return 0


def _quota(args: argparse.Namespace) -> int:
    """Each quota's usage as counted on disk now (the server's own count follows it, see quotas.py)."""
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    report = quota_report(config.quotas)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if not report:
        print("no quotas configured")
    for item in report:
        missing = "" if item["exists"] else "  (folder missing)"
        print(
            f"{item['path']}: bytes {item['used_bytes']}/{item['max_bytes'] or 'unlimited'}"
            f"  files {item['used_files']}/{item['max_files'] or 'unlimited'}{missing}"
        )
    return 0


def _hash_password(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("error: passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("error: empty password", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftpsd", description="Hardened FTPS server.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server in the foreground")
    serve.add_argument("--config", required=True, help="path of the TOML config file")
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check-config", help="validate a config file, its certificate and key")
    check.add_argument("file")
    check.set_defaults(func=_check_config)
    quota = sub.add_parser("quota", help="print each folder quota's usage, counted on disk now")
    quota.add_argument("--config", required=True, help="path of the TOML config file")
    quota.add_argument("--json", action="store_true", help="one JSON list, one object per quota")
    quota.set_defaults(func=_quota)
    hashp = sub.add_parser("hash-password", help="read one password on stdin and print its hash")
    hashp.set_defaults(func=_hash_password)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
