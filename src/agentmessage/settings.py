"""Every setting the service reads, from ``AGENTMESSAGE_*`` environment variables.

Nothing else in the code base reads the environment. The defaults suit a laptop:
an SQLite file under ``./var/`` and a secret generated once into that folder.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTMESSAGE_", extra="ignore")

    data_dir: Path = Path("var")
    database_url: str = ""
    secret_key: SecretStr | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    sms_provider: Literal["sandbox", "twilio"] = "sandbox"
    redis_url: str | None = None
    log_level: str = "INFO"
    # Larger pools only help PostgreSQL; SQLite serialises writers anyway.
    db_pool_size: int = Field(default=10, ge=1, le=200)

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL with the async driver the dialect needs."""
        from agentmessage.db.engine import async_url

        if self.database_url:
            return async_url(self.database_url)
        return async_url(f"sqlite:///{(self.data_dir / 'agentmessage.db').resolve()}")

    @cached_property
    def signing_secret(self) -> bytes:
        """The HMAC secret for cursors and tokens.

        ``AGENTMESSAGE_SECRET_KEY`` when set (required when several processes serve
        one database); otherwise a random secret generated once and kept in
        ``data_dir`` so that cursors and tokens survive a restart.
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            candidate = path.with_name(f".secret_key.{os.getpid()}")
            candidate.write_text(secrets.token_urlsafe(48))
            candidate.chmod(0o600)
            # link() creates the file only if absent: two processes starting at
            # once agree on the first one's secret, and nobody reads half a file.
            try:
                os.link(candidate, path)
            except FileExistsError:
                pass
            finally:
                candidate.unlink()
        return path.read_text().strip().encode()


def get_settings() -> Settings:
    return Settings()
