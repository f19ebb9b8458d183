"""Secrets given twice: as a systemd credential and in the environment.

Under systemd a secret may arrive as a file in ``$CREDENTIALS_DIRECTORY`` named like its
setting. The environment would silently win over it; :func:`refuse_conflicting_credentials`
makes the operator choose instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from videoworker.errors import ConfigError

#: Secret settings that may come as systemd credentials (a file named like the setting), and their env names.
CREDENTIALS = {
    "openrouter_api_key": ("OPENROUTER_API_KEY", "VIDEOWORKER_OPENROUTER_API_KEY"),
    "amqp_url": ("VIDEOWORKER_AMQP_URL",),
    "ledger_url": ("VIDEOWORKER_LEDGER_URL",),
    "openrouter_webhook_secret": ("OPENROUTER_WEBHOOK_SECRET", "VIDEOWORKER_OPENROUTER_WEBHOOK_SECRET"),
}


def refuse_conflicting_credentials(directory: Path, overrides: dict[str, Any]) -> None:
    """A secret set both as a credential and in the environment, differently, is refused at start.

    The environment would silently win, and an example env file's placeholder has replaced a
    real key that way; which one is meant is the operator's call, so say so and stop.
    """
    for setting, env_names in CREDENTIALS.items():
        if setting in overrides:
            continue
        files = [directory / name for name in (setting, *env_names) if (directory / name).is_file()]
        envs = [name for name in env_names if os.environ.get(name, "").strip()]
        if not files or not envs:
            continue
        if files[0].read_text().strip() != os.environ[envs[0]].strip():
            raise ConfigError(
                f"{setting} is set twice, differently: as the systemd credential {files[0].name} and in the "
                f"environment as {envs[0]}. Remove one of them (the credential is the safer place for a secret)."
            )
