"""The webhook secrets of a TUNELINE_HOME: the receiver's HMAC secret and what the MLflow
server of `tuneline up` needs to deliver webhooks. Apart from tuneline/webhooks.py so that
tuneline/services.py (which the data stages import) does not depend on the registry code.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def _private_file(path: Path, make: Callable[[], str]) -> str:
    """Read `path`, creating it (mode 0600) with `make()` when missing."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(make())
    return path.read_text(encoding="utf-8").strip()


def webhook_secret(home: Path) -> str:
    """The shared HMAC secret of this TUNELINE_HOME (made on first use, mode 0600)."""
    return _private_file(home / "services" / "webhook.secret", lambda: secrets.token_urlsafe(32))


def mlflow_server_env(home: Path) -> dict[str, str]:
    """What `tuneline up`'s MLflow server needs to deliver webhooks to a loopback receiver.

    MLflow refuses http:// and private addresses for webhooks by default (SSRF protection);
    this server binds 127.0.0.1 and delivers only to the receiver `tuneline up` registers.
    Stored webhook secrets are encrypted with a key kept under the home, so they survive a
    restart of the server.
    """
    from cryptography.fernet import Fernet

    key = _private_file(
        home / "services" / "mlflow-webhook.key", lambda: Fernet.generate_key().decode()
    )
    return {
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": key,
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    }
