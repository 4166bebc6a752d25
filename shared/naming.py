"""Key Vault key names: one name per (trust domain, server id, key id), and no two alike.

A key is named ``spire-key-<namespace>-<key id>``, where the namespace is 32 lowercase hex digits
(128 bits of SHA-256) of the trust domain and server id. Its fixed length makes the name parse one
way only, so no key id of one server can spell another server's name, whatever dashes either holds;
and two trust domains with the same server id get different namespaces. Hex is lowercase because
Key Vault compares names case-insensitively.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass

from shared.errors import InvalidArgument, shortened

KEY_NAME_PREFIX = "spire-key"
NAMESPACE_LENGTH = 32
# Key Vault object names: letters, digits and dashes, at most 127 characters.
KEY_VAULT_NAME_MAX = 127
MAX_KEY_ID_LENGTH = KEY_VAULT_NAME_MAX - len(f"{KEY_NAME_PREFIX}--") - NAMESPACE_LENGTH
_KEY_ID_CHARS = re.compile(r"[A-Za-z0-9-]+")
# A server name: what a SPIRE server calls itself in its plugin configuration. It becomes part of a
# blob name, so it is kept to characters that need no escaping anywhere.
SERVER_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?")
SERVER_NAME_RULE = "1 to 63 lowercase letters, digits, '-', '.' or '_', starting and ending with a letter or digit"


def server_label(server_name: str | None) -> str:
    """A server as logs and reports name it: its name, or "(default)" for the server that names none."""
    return "(default)" if server_name is None else server_name


def validate_server_name(name: str) -> str:
    if not SERVER_NAME.fullmatch(name):
        raise InvalidArgument(f"the server name (X-SPIRE-Server-Name) must be {SERVER_NAME_RULE}")
    return name


@functools.lru_cache(maxsize=1024)
def key_name_prefix(trust_domain: str, server_id: str) -> str:
    """``spire-key-<namespace>-``: the start of every key name of one server in one trust domain."""
    # JSON encodes the pair unambiguously, whatever characters either part holds.
    pair = json.dumps([trust_domain, server_id]).encode("utf-8")
    return f"{KEY_NAME_PREFIX}-{hashlib.sha256(pair).hexdigest()[:NAMESPACE_LENGTH]}-"


@dataclass(frozen=True)
class KeyNaming:
    """The Key Vault names of one server's keys in one trust domain."""

    trust_domain: str
    server_id: str

    @functools.cached_property
    def _prefix(self) -> str:
        return key_name_prefix(self.trust_domain, self.server_id)

    def key_name(self, key_id: str) -> str:
        """The Key Vault key name of a SPIRE key id; refuses ids that cannot be part of one."""
        validate_key_id(key_id)
        return self._prefix + key_id

    def key_id(self, key_name: str) -> str | None:
        """The SPIRE key id a Key Vault key name stands for, or None when the name is not in this namespace."""
        if key_name[: len(self._prefix)].lower() == self._prefix and len(key_name) > len(self._prefix):
            return key_name[len(self._prefix) :]
        return None


def validate_key_id(key_id: str) -> None:
    if not key_id:
        raise InvalidArgument("key id is required")
    if not _KEY_ID_CHARS.fullmatch(key_id):
        raise InvalidArgument(f'key id "{shortened(key_id)}" is invalid: Key Vault key names allow only letters, digits and "-"')
    if len(key_id) > MAX_KEY_ID_LENGTH:
        raise InvalidArgument(
            f"key id is {len(key_id)} characters long: at most {MAX_KEY_ID_LENGTH} fit in a Key Vault key name "
            f'("{KEY_NAME_PREFIX}-<{NAMESPACE_LENGTH} hex digits>-<key id>", {KEY_VAULT_NAME_MAX} characters at most)'
        )
