"""Every setting the service reads, from ``AGENTMESSAGE_*`` environment variables.

Nothing else in the code base reads the environment. The defaults suit a laptop:
an SQLite file under ``./var/`` and a secret generated once into that folder.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
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
    # POST /v1/consent/check served in two statements beside the framework on
    # PostgreSQL (decisions/fast.py); "false" sends every check through the route.
    fast_check: bool = True
    # Comma-separated IPs or CIDRs of the reverse proxies in front of us. Only a
    # request whose direct peer is one of them has its X-Forwarded-For read.
    trusted_proxies: str = ""

    # Messaging. The outbox dispatcher runs inside `agentmessage serve` ("inline")
    # unless turned "off" (then run `agentmessage worker` beside it).
    dispatcher: Literal["inline", "off"] = "inline"
    dispatcher_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    dispatcher_batch_size: int = Field(default=20, ge=1, le=500)
    # Transient provider errors are retried with exponential backoff from this
    # base (5 s, 10 s, 20 s...); after the last attempt the message is failed.
    dispatcher_max_attempts: int = Field(default=5, ge=1, le=20)
    dispatcher_retry_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    # The stand-in server of the tests (or a recording proxy) replaces this.
    twilio_api_base_url: str = "https://api.twilio.com"
    twilio_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    # Proof log. The Ed25519 key that signs checkpoints (PEM); generated there
    # when absent. Default: ``signing_key.pem`` in the data directory.
    signing_key_file: Path | None = None
    # While events arrive, a checkpoint is signed at least this often.
    checkpoint_interval_seconds: float = Field(default=30.0, gt=0, le=60)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        parse_networks(value)
        return value

    @model_validator(mode="after")
    def _twilio_needs_credentials(self) -> Settings:
        if self.sms_provider == "twilio" and not (
            self.twilio_account_sid and self.twilio_auth_token
        ):
            raise ValueError(
                "AGENTMESSAGE_SMS_PROVIDER=twilio needs AGENTMESSAGE_TWILIO_ACCOUNT_SID "
                "and AGENTMESSAGE_TWILIO_AUTH_TOKEN"
            )
        return self

    @property
    def twilio_status_callback_url(self) -> str:
        """Where Twilio reports delivery: the public base URL (as Twilio reaches us,
        through any proxy) + ``/webhooks/twilio/status``."""
        return f"{self.public_base_url.rstrip('/')}/webhooks/twilio/status"

    @cached_property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return parse_networks(self.trusted_proxies)

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL with the async driver the dialect needs."""
        from agentmessage.db.engine import async_url

        if self.database_url:
            return async_url(self.database_url)
        return async_url(f"sqlite:///{(self.data_dir / 'agentmessage.db').resolve()}")

    @property
    def resolved_signing_key_file(self) -> Path:
        return self.signing_key_file or self.data_dir / "signing_key.pem"

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


def parse_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"10.0.0.0/8, 192.0.2.7"`` -> networks; ValueError naming a bad entry."""
    networks = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def get_settings() -> Settings:
    return Settings()
