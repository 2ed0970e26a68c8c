"""Org connections in the store: secrets kept encrypted, one connection per Salesforce org."""

from __future__ import annotations

from sqlalchemy import select

from bridge.store import Store
from bridge.store.models import OrgConnection
from bridge.vault import Vault


def rotate_secrets(store: Store, vault: Vault) -> int:
    """Re-encrypt every stored secret with the newest key; returns how many were rewritten."""
    count = 0
    with store.session() as session:
        for org in session.scalars(select(OrgConnection)):
            if org.private_key_enc:
                org.private_key_enc = vault.rotate(org.private_key_enc)
                count += 1
            if org.refresh_token_enc:
                org.refresh_token_enc = vault.rotate(org.refresh_token_enc)
                count += 1
    return count
