"""Whose key a Key Vault key is: the one rule every operation asks before it touches a key.

A key belongs to a server when its tags name that server and trust domain and its name lies in that
server's namespace (``naming``). Tags alone are not enough (anyone who can write tags could claim a
key), nor is the name alone (a key of the right name may have been created by hand).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from shared.naming import KeyNaming

TAG_TRUST_DOMAIN = "spire-server-td"
TAG_SERVER_ID = "spire-server-id"


class Owner(enum.Enum):
    THIS_SERVER = "this server"
    PEER = "another server of this trust domain"
    NONE = "no server of this trust domain"


def owner_tags(trust_domain: str, server_id: str) -> dict[str, str]:
    """The tags a server writes on each key it creates."""
    return {TAG_TRUST_DOMAIN: trust_domain, TAG_SERVER_ID: server_id}


def owner_of(key_name: str, tags: Mapping[str, str] | None, trust_domain: str, server_id: str) -> Owner:
    """Whose key ``key_name`` is, as seen by server ``server_id`` of ``trust_domain``."""
    tags = tags or {}
    tagged_server = tags.get(TAG_SERVER_ID)
    if tags.get(TAG_TRUST_DOMAIN) != trust_domain or not tagged_server:
        return Owner.NONE
    if KeyNaming(trust_domain, tagged_server).key_id(key_name) is None:
        return Owner.NONE  # tagged for a server whose name it does not bear
    return Owner.THIS_SERVER if tagged_server == server_id else Owner.PEER
