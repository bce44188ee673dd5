"""Shared-token authentication for the policy server.

A robot presents ``Authorization: Bearer <token>`` in the websocket opening handshake (or
``Api-Key <token>``, the scheme openpi's ``WebsocketClientPolicy`` sends); the server compares the token
in constant time (``hmac.compare_digest``) and answers HTTP 401 otherwise, before any model work happens. Running without a token is allowed only on a loopback address, because anyone who can
reach the port can otherwise drive the robot.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

DEFAULT_TOKEN_ENV = "QT_SERVE_TOKEN"
AUTH_SCHEMES = frozenset({"bearer", "api-key"})
"""Accepted ``Authorization`` schemes (case-insensitive): ours, and openpi-client's ``Api-Key``."""


class AuthConfigError(ValueError):
    """The server was asked to start with an unsafe or incomplete authentication setup."""


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``; False for ``0.0.0.0``, ``""`` and real addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token(token_env: str = DEFAULT_TOKEN_ENV, token_file: str | os.PathLike | None = None) -> str | None:
    """The token from ``token_file`` if given (its first line), else from the ``token_env`` variable."""
    if token_file is not None:
        path = Path(token_file).expanduser()
        try:
            lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except OSError as e:
            raise AuthConfigError(f"could not read the token file {str(path)!r}: {e}") from e
        token = lines[0] if lines else ""
        if not token:
            raise AuthConfigError(f"the token file {str(path)!r} is empty")
        return token
    token = os.environ.get(token_env, "").strip()
    return token or None


def resolve_auth(
    host: str,
    no_auth: bool,
    force_no_auth: bool,
    token_env: str = DEFAULT_TOKEN_ENV,
    token_file: str | os.PathLike | None = None,
) -> str | None:
    """The token to require, or None when authentication is (safely) off. Raises on unsafe setups."""
    if no_auth:
        if not is_loopback(host) and not force_no_auth:
            raise AuthConfigError(
                f"refusing --no-auth on {host!r}: without a token anyone who can reach this address can "
                "drive the robot. Bind to 127.0.0.1, set a token, or pass --force-no-auth deliberately."
            )
        return None
    token = load_token(token_env, token_file)
    if token is None:
        raise AuthConfigError(
            f"no auth token: set the {token_env} environment variable or pass --token-file, "
            "or pass --no-auth when serving on localhost only"
        )
    if len(token) < 16:
        raise AuthConfigError("the auth token must be at least 16 characters long")
    return token


def bearer_ok(header: str | None, token: str) -> bool:
    """Constant-time check of an ``Authorization: Bearer <token>`` (or ``Api-Key <token>``) header."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in AUTH_SCHEMES:
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def token_ok(candidate: object, token: str) -> bool:
    """Constant-time check of a token sent inside a message (admin commands)."""
    return isinstance(candidate, str) and hmac.compare_digest(candidate.encode(), token.encode())
