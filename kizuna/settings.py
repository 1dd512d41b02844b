"""Settings shared by every Kizuna process, read from ``KIZUNA_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_DATABASE_PORT = 54329
DEFAULT_DATABASE_URL = f"postgresql://postgres@127.0.0.1:{EMBEDDED_DATABASE_PORT}/kizuna"
INSECURE_SECRETS = frozenset({"dev-only-change-me", "change-me-in-production"})
MIN_SECRET_LENGTH = 32


class KizunaSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KIZUNA_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        description="PostgreSQL URL (postgresql://user:pass@host:port/db).",
    )
    bus_url: str = Field(
        default="postgres",
        description="'postgres' for the PostgreSQL event log, or kafka://host:9092[,host2:9092].",
    )
    topic_prefix: str = Field(default="kizuna.", description="Prefix of every topic name.")
    bus_partitions: int = Field(default=8, ge=1, le=1024, description="Partitions per topic.")
    kafka_replication_factor: int = Field(default=1, ge=1)
    consumer_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    consumer_batch_size: int = Field(default=500, ge=1)
    bus_publish_timeout_ms: int = Field(default=10_000, ge=100)
    bus_retention_hours: float = Field(
        default=168, gt=0, description="How long the bus keeps messages (Kafka: retention.ms)."
    )
    data_dir: Path = Field(default=Path(".kizuna"), description="Where `kizuna dev` keeps data.")
    embedded_pg_port: int = Field(
        default=EMBEDDED_DATABASE_PORT, description="Port of the embedded PostgreSQL (dev)."
    )
    host: str = Field(default="127.0.0.1")
    port: int | None = Field(default=None, description="HTTP port; each service has a default.")
    log_level: str = Field(default="INFO")
    log_format: str = Field(default="json", pattern="^(json|console)$")
    write_key: SecretStr | None = Field(default=None, description="Default workspace's write key.")
    admin_key: SecretStr | None = Field(default=None, description="Default workspace's admin key.")
    secret_key: SecretStr = Field(
        default=SecretStr("dev-only-change-me"),
        description="Signs tracking links and tokens; set a long random value in production.",
    )

    def database_dsn(self) -> str:
        return self.database_url.get_secret_value()

    def secret_key_problem(self) -> str | None:
        """Why the signing secret is unfit for a real deployment, or None."""
        secret = self.secret_key.get_secret_value()
        if secret in INSECURE_SECRETS or len(secret) < MIN_SECRET_LENGTH:
            return (
                f"KIZUNA_SECRET_KEY must be a random value of at least {MIN_SECRET_LENGTH}"
                " characters (e.g. `openssl rand -hex 32`): it signs tracking links"
            )
        return None


def redact(url: str) -> str:
    """A URL fit for logs: any password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@lru_cache
def get_settings() -> KizunaSettings:
    return KizunaSettings()
