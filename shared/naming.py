"""The seed's naming and tagging scheme for Key Vault keys.

One Key Vault key per SPIRE key id, named ``spire-key-<server id>-<key id>`` and tagged with the
trust domain and the server id, so that every server of a trust domain can share one vault.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from shared.errors import InvalidArgument

KEY_NAME_PREFIX = "spire-key"
TAG_TRUST_DOMAIN = "spire-server-td"
TAG_SERVER_ID = "spire-server-id"
# Key Vault object names: letters, digits and dashes, at most 127 characters.
KEY_VAULT_NAME_MAX = 127
_KEY_ID_CHARS = re.compile(r"[A-Za-z0-9-]+")


@dataclass(frozen=True)
class KeyNaming:
    """Names and tags of one server's keys in one trust domain."""

    trust_domain: str
    server_id: str

    @functools.cached_property
    def _prefix(self) -> str:
        return f"{KEY_NAME_PREFIX}-{self.server_id}-"

    @property
    def max_key_id_length(self) -> int:
        return KEY_VAULT_NAME_MAX - len(self._prefix)

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_TRUST_DOMAIN: self.trust_domain, TAG_SERVER_ID: self.server_id}

    def key_name(self, key_id: str) -> str:
        """The Key Vault key name of a SPIRE key id; refuses ids that cannot be part of one."""
        validate_key_id(key_id, self.max_key_id_length)
        return self._prefix + key_id

    def key_id(self, key_name: str) -> str | None:
        """The SPIRE key id a Key Vault key name stands for, or None when it is not this server's."""
        # Key Vault names are case-insensitive; the server id part is compared the same way.
        if key_name.lower().startswith(self._prefix.lower()) and len(key_name) > len(self._prefix):
            return key_name[len(self._prefix):]
        return None

    def owns(self, tags: dict[str, str] | None) -> bool:
        """Whether a key's tags say it belongs to this server in this trust domain."""
        tags = tags or {}
        return tags.get(TAG_TRUST_DOMAIN) == self.trust_domain and tags.get(TAG_SERVER_ID) == self.server_id


def validate_key_id(key_id: str, max_length: int) -> None:
    if not key_id:
        raise InvalidArgument("key id is required")
    if not _KEY_ID_CHARS.fullmatch(key_id):
        raise InvalidArgument(
            f'key id "{_shorten(key_id)}" is invalid: Key Vault key names allow only letters, digits and "-"'
        )
    if len(key_id) > max_length:
        raise InvalidArgument(
            f"key id is {len(key_id)} characters long: at most {max_length} fit in a Key Vault key name "
            f'("{KEY_NAME_PREFIX}-<server id>-<key id>", {KEY_VAULT_NAME_MAX} characters at most)'
        )


def _shorten(text: str, limit: int = 64) -> str:
    """Echo at most ``limit`` characters of caller input back in an error message."""
    return text if len(text) <= limit else text[:limit] + "..."
