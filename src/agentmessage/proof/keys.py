"""The server's Ed25519 log key: loaded from ``AGENTMESSAGE_SIGNING_KEY_FILE``,
generated there on first start, and used to sign C2SP checkpoints."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from agentmessage.proof.verify import PublicKey

KEY_NAME = "agentmessage-consent"


class SigningKeyError(Exception):
    """The key file exists but is not an Ed25519 private key."""


@dataclass(frozen=True)
class Signer:
    private_key: Ed25519PrivateKey
    public: PublicKey

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign_note(self, text: str) -> str:
        """``text`` (ending in a newline) as a C2SP signed note."""
        if not text.endswith("\n"):
            raise ValueError("a note's text ends with a newline")
        signature = self.private_key.sign(text.encode())
        encoded = base64.b64encode(self.public.key_hash + signature).decode()
        return f"{text}\n\u2014 {self.public.name} {encoded}\n"

    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )


def signer_from_private_key(private_key: Ed25519PrivateKey) -> Signer:
    return Signer(private_key, PublicKey(KEY_NAME, private_key.public_key()))


def load_or_create(path: Path) -> Signer:
    """The key in ``path`` (PEM, PKCS #8), written there first (mode 0600) if absent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        # Written aside, then linked into place: of two processes starting at once,
        # one key wins and neither reads a half-written file.
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 private key")
    return signer_from_private_key(key)
