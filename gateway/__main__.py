"""Command line: ``jmap-gateway [serve] [--flags]`` and small operator commands.

Every setting is a ``GATEWAY_*`` variable and a flag of the same name (``--imap-url`` for
``GATEWAY_IMAP_URL``); a flag wins over the environment.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic.fields import FieldInfo

from gateway.config import ConfigError, Settings, env_name, load_settings


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_bool(field: FieldInfo) -> bool:
    return field.annotation is bool


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jmap-gateway", description="JMAP gateway to IMAP/SMTP")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="serve JMAP over HTTP (the default)")
    commands.add_parser("config-table", help="print the settings as a Markdown table")
    commands.add_parser(
        "vapid-keys",
        help="print a new VAPID private key (for GATEWAY_WEBPUSH_VAPID_PRIVATE_KEY) and its "
        "public key",
    )
    for target in (parser, serve):
        for name, field in Settings.model_fields.items():
            # argparse %-formats help texts: a literal % (GATEWAY_USERNAME_FORMAT's) is %%.
            help_text = f"{field.description} [{env_name(name)}]".replace("%", "%%")
            if _is_bool(field):
                target.add_argument(
                    _flag(name),
                    dest=name,
                    action=argparse.BooleanOptionalAction,
                    default=argparse.SUPPRESS,
                    help=help_text,
                )
            else:
                target.add_argument(
                    _flag(name),
                    dest=name,
                    default=argparse.SUPPRESS,
                    metavar=name.upper(),
                    help=help_text,
                )
    return parser


def config_table() -> str:
    """The README's configuration table, generated from the settings themselves."""
    rows = ["| Variable | Flag | Default | Meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "required" if field.is_required() else _show_default(field.default)
        rows.append(f"| `{env_name(name)}` | `{_flag(name)}` | {default} | {field.description} |")
    return "\n".join(rows)


def vapid_keys() -> str:
    """A new VAPID key pair, so operators need no openssl: the private key as the setting
    takes it, the public key as push services and clients see it (applicationServerKey)."""
    from gateway.webpush.vapid import load_private_key, new_private_key, public_key_b64url

    private = new_private_key()
    return "\n".join(
        [
            f"GATEWAY_WEBPUSH_VAPID_PRIVATE_KEY={private}",
            f"# public key (applicationServerKey): {public_key_b64url(load_private_key(private))}",
        ]
    )


def _show_default(value: Any) -> str:
    return (
        "unset"
        if value is None
        else f"`{str(value).lower() if isinstance(value, bool) else value}`"
    )


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    command = args.pop("command", None) or "serve"
    if command == "config-table":
        print(config_table())
        return 0
    if command == "vapid-keys":
        print(vapid_keys())
        return 0
    try:
        settings = load_settings(**args)
    except ConfigError as exc:
        print(f"jmap-gateway: {exc}", file=sys.stderr)
        return 2
    return serve(settings)


def serve(settings: Settings) -> int:
    # Imported here: config-table and --help need none of the server's imports.
    from gateway import logs, server

    logs.configure(settings.log_level)
    try:
        sockets = server.listeners(settings)
    except OSError as exc:
        print(f"jmap-gateway: cannot listen on {settings.host}: {exc.strerror}", file=sys.stderr)
        return 1
    return server.run(settings, sockets)


if __name__ == "__main__":
    sys.exit(main())
