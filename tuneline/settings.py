"""Endpoints and secrets from the environment, with embedded local defaults under .tuneline/."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where things live. Every field can be set as TUNELINE_<FIELD> in the environment."""

    model_config = SettingsConfigDict(env_prefix="TUNELINE_", frozen=True)

    home: Path = Path(".tuneline")
    mlflow_tracking_uri: str = ""  # empty = sqlite store under home
    prefect_api_url: str = ""  # empty = Prefect's own default (local/ephemeral server)
    dvc_remote: str = ""  # empty = directory remote under home
    api_token: str = ""  # bearer token for the served endpoint; empty = no auth
    pypi_url: str = "https://pypi.org/simple"

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
