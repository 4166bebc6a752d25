import pytest

from shared.naming import KeyNaming
from shared.ownership import Owner, owner_of, owner_tags

TD, ME, PEER = "example.org", "me-0000", "peer-1111"
MINE = KeyNaming(TD, ME).key_name("x509-CA-A")
PEERS = KeyNaming(TD, PEER).key_name("x509-CA-A")


def test_a_server_tags_its_keys_with_trust_domain_and_server_id():
    assert owner_tags(TD, ME) == {"spire-server-td": TD, "spire-server-id": ME}


@pytest.mark.parametrize(
    "name, tags, owner",
    [
        (MINE, owner_tags(TD, ME), Owner.THIS_SERVER),
        (MINE.upper(), owner_tags(TD, ME), Owner.THIS_SERVER),  # Key Vault names are case-insensitive
        (PEERS, owner_tags(TD, PEER), Owner.PEER),
        # Tags and name must agree: a key tagged for one server but named in another's namespace is no one's.
        (MINE, owner_tags(TD, PEER), Owner.NONE),
        (PEERS, owner_tags(TD, ME), Owner.NONE),
        ("hand-made-key", owner_tags(TD, ME), Owner.NONE),
        # Another trust domain, even with this server id and name.
        (MINE, owner_tags("other.org", ME), Owner.NONE),
        (KeyNaming("other.org", ME).key_name("x509-CA-A"), owner_tags("other.org", ME), Owner.NONE),
        # Missing tags.
        (MINE, {"spire-server-td": TD}, Owner.NONE),
        (MINE, {"spire-server-td": TD, "spire-server-id": ""}, Owner.NONE),
        (MINE, {"spire-server-id": ME}, Owner.NONE),
        (MINE, {}, Owner.NONE),
        (MINE, None, Owner.NONE),
    ],
)
def test_a_key_is_a_servers_only_when_its_tags_and_its_name_say_so(name, tags, owner):
    assert owner_of(name, tags, TD, ME) is owner


def test_server_ids_compare_exactly():
    assert owner_of(MINE, owner_tags(TD, ME.upper()), TD, ME) is Owner.NONE
