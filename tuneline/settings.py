"""Endpoints and secrets from the environment, with embedded local defaults under .tuneline/."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

HOME_ENV = "TUNELINE_HOME"
STATE_DIR = ".tuneline"
# Marks a TUNELINE_HOME that use_project derived (not the user's), so the next project wins.
_DERIVED_HOME_ENV = "_TUNELINE_HOME_FROM_ROOT"


class Settings(BaseSettings):
    """Where things live. Every field can be set as TUNELINE_<FIELD> in the environment."""

    model_config = SettingsConfigDict(env_prefix="TUNELINE_", frozen=True)

    home: Path = Path(STATE_DIR)  # relative to cwd; the CLI makes it follow --root (use_project)
    mlflow_tracking_uri: str = ""  # empty = sqlite store under home
    prefect_api_url: str = ""  # empty = Prefect's own default (local/ephemeral server)
    dvc_remote: str = ""  # empty = directory remote under home
    api_token: str = ""  # bearer token for the served endpoint; empty = no auth
    pypi_url: str = "https://pypi.org/simple"
    optuna_storage: str = ""  # `tuneline tune`'s study; empty = see study_storage

    @property
    def root(self) -> Path:
        return self.home.resolve()

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        service = self.running_service("mlflow")
        if service is not None:  # `tuneline up` is running: share its server
            return service
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def study_storage(self) -> str:
        """Optuna storage URL: TUNELINE_OPTUNA_STORAGE, else the tracking database when it is
        PostgreSQL (the server stack), else SQLite under home."""
        if self.optuna_storage:
            return self.optuna_storage
        if self.mlflow_tracking_uri.startswith(("postgresql", "postgres")):
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.root / 'optuna.db'}"

    def running_service(self, name: str) -> str | None:
        """URL of a service started by `tuneline up` that still answers, else None."""
        from tuneline.services import running, state_path

        if not state_path(self.root).exists():
            return None
        found = running(self.root).get(name)
        return found.url if found else None

    @property
    def artifact_root(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def remote_dir(self) -> str:
        return self.dvc_remote or str(self.root / "dvc-remote")

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"


def get_settings() -> Settings:
    """Read the settings now (never at import time)."""
    return Settings()


def use_project(root: Path | str) -> Path:
    """Make all state follow the project: `TUNELINE_HOME=<root>/.tuneline` unless the user set it.

    The CLI calls this first, with its --root. It writes the process environment rather than a
    setting, so every subprocess (DVC stages, torchrun, bentoml, and BENTOML_HOME derived from
    the home by tasks.release.package.bentoml_env) inherits the same state directory.

    Args:
        root: the project directory.

    Returns:
        The state directory now in effect (absolute).
    """
    home = Path(root).resolve() / STATE_DIR
    current = os.environ.get(HOME_ENV)
    if current and current != os.environ.get(_DERIVED_HOME_ENV):
        # the user's choice; made absolute so a subprocess in another directory agrees
        os.environ[HOME_ENV] = str(Path(current).resolve())
    else:
        os.environ[HOME_ENV] = os.environ[_DERIVED_HOME_ENV] = str(home)
    return get_settings().root
