"""Secrets at rest: refresh tokens and private keys, encrypted with SFBRIDGE_ENCRYPTION_KEYS.

Keys are Fernet keys, newest first. The newest encrypts; every key decrypts, so an old key
stays listed until `sfbridge secrets rotate` has re-encrypted everything with the newest.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bridge.errors import ConfigError, PermanentError


def generate_key() -> str:
    """A new key for SFBRIDGE_ENCRYPTION_KEYS."""
    return Fernet.generate_key().decode()


class Vault:
    def __init__(self, keys: Sequence[str]):
        if not keys:
            raise ConfigError(
                "SFBRIDGE_ENCRYPTION_KEYS is empty: set it to one or more comma-separated keys, "
                "newest first (make one with `sfbridge secrets new-key`)"
            )
        fernets = []
        for i, key in enumerate(keys):
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError):
                raise ConfigError(
                    f"SFBRIDGE_ENCRYPTION_KEYS: key #{i + 1} is not a valid key "
                    "(32 url-safe base64-encoded bytes; make one with `sfbridge secrets new-key`)"
                ) from None
        self._fernet = MultiFernet(fernets)

    def encrypt(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise PermanentError(
                "a stored secret cannot be decrypted with any key in SFBRIDGE_ENCRYPTION_KEYS "
                "(was a key removed before `sfbridge secrets rotate` ran?)",
                code="secret_undecryptable",
            ) from None

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt with the newest key."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise PermanentError(
                "a stored secret cannot be decrypted with any key in SFBRIDGE_ENCRYPTION_KEYS",
                code="secret_undecryptable",
            ) from None
