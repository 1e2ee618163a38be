"""``ftps-doctor``: the command line around diagnose().

Passwords never go on the command line (visible in ps and shell history): they come from
--password-file (a path, or "-" for stdin) or the FTPS_DOCTOR_PASSWORD environment variable.
Exit codes: 0 nothing failed (warnings allowed), 1 a step failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence

from ftpsd.doctor.options import DEFAULT_TIMEOUT, Options
from ftpsd.doctor.render import to_json, to_text
from ftpsd.doctor.runner import diagnose
from ftpsd.doctor.tlsclient import CaFileError, verifying_context

PASSWORD_ENV = "FTPS_DOCTOR_PASSWORD"  # noqa: S105 - the variable's name, not a password
USAGE_ERROR = 2


class UsageError(ValueError):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftps-doctor",
        description="Check an FTPS server step by step the way a client uses it, and say what is wrong.",
        epilog=f"The password comes from --password-file or the {PASSWORD_ENV} environment variable. "
        "Exit status: 0 no failure (warnings allowed), 1 a check failed, 2 usage error.",
    )
    parser.add_argument(
        "host", help="server name or IP address, as clients use it (checked against the certificate)"
    )
    parser.add_argument("--port", type=int, help="control port (default 21, or 990 with --implicit)")
    parser.add_argument("--implicit", action="store_true", help="implicit FTPS: TLS from the first byte")
    parser.add_argument("--user", help="log in as this user and check the data channel")
    parser.add_argument(
        "--password-file", metavar="FILE", help='file whose first line is the password ("-": stdin)'
    )
    parser.add_argument(
        "--ca",
        metavar="FILE",
        help="PEM CA (or the server's own certificate) to trust instead of the system store",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds per network operation (default %(default)s)",
    )
    parser.add_argument(
        "--roundtrip",
        action="store_true",
        help="also upload, list, download, compare and delete a probe file",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="log in even when the certificate is not trusted (sends the password anyway)",
    )
    parser.add_argument(
        "--masquerade",
        metavar="ADDRESS",
        help="checking from inside the NAT: PASV must announce this public IPv4 address (the masquerade "
        "address); data connections go to HOST",
    )
    parser.add_argument(
        "--login-only",
        action="store_true",
        help="stop after login and PROT P, for accounts that may not list (such as upload-only ones)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    output.add_argument("--brief", action="store_true", help="text without the measured facts")
    return parser


def read_password(path: str | None) -> str:
    """The first line (binary read: only LF ends it, so a stray CR is caught below, not cut)."""
    if path == "-":
        text = _decode(sys.stdin.buffer.readline())
    elif path:
        try:
            with open(path, "rb") as handle:
                text = _decode(handle.readline())
        except OSError as err:
            raise UsageError(f"--password-file {path}: {err.strerror}") from err
    else:
        text = os.environ.get(PASSWORD_ENV, "")
        if not text:
            raise UsageError(
                f"--user needs a password: --password-file FILE, --password-file - or {PASSWORD_ENV}"
            )
    password = text.rstrip("\r\n")
    if not password:
        raise UsageError("the password is empty")
    if not _one_line(password):
        raise UsageError("the password contains CR, LF or NUL (FTP sends it as one line)")
    return password


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError("the password is not UTF-8 text") from err


def _one_line(text: str) -> bool:
    return bool(text) and not any(c in text for c in "\r\n\0")


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def options_from(args: argparse.Namespace) -> Options:
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port number")
    if args.timeout <= 0:
        raise UsageError("--timeout must be greater than 0")
    if (args.roundtrip or args.login_only) and not args.user:
        raise UsageError("--roundtrip and --login-only need --user")
    if args.roundtrip and args.login_only:
        raise UsageError("--roundtrip needs the data channel that --login-only leaves out")
    if args.user is not None and not _one_line(args.user):
        raise UsageError("--user must be one line (no CR, LF or NUL)")
    if args.masquerade is not None and not _is_ipv4(args.masquerade):
        raise UsageError(f"--masquerade {args.masquerade} is not an IPv4 address (PASV carries only IPv4)")
    if args.ca:
        verifying_context(args.ca)  # an unusable --ca is a usage error, not a server fault
    return Options(
        host=args.host,
        port=args.port or (990 if args.implicit else 21),
        implicit=args.implicit,
        user=args.user,
        password=read_password(args.password_file) if args.user else None,
        ca_file=args.ca,
        timeout=args.timeout,
        roundtrip=args.roundtrip,
        login_only=args.login_only,
        insecure=args.insecure,
        masquerade=args.masquerade,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from(args)
    except (UsageError, CaFileError) as err:
        parser.print_usage(sys.stderr)
        print(f"ftps-doctor: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    report = diagnose(options)
    print(to_json(report) if args.json else to_text(report, facts=not args.brief))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
