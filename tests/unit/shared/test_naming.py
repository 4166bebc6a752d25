import pytest

from shared.errors import InvalidArgument
from shared.naming import KeyNaming

SERVER_ID = "0b1c3f0e-8a5e-4c1e-9a55-7bd0c1f7f0a1"
naming = KeyNaming("example.org", SERVER_ID)


def test_key_name_follows_the_seed_scheme():
    assert naming.key_name("x509-CA-A") == f"spire-key-{SERVER_ID}-x509-CA-A"


def test_tags_name_trust_domain_and_server():
    assert naming.tags == {"spire-server-td": "example.org", "spire-server-id": SERVER_ID}


def test_key_id_is_read_back_from_a_name():
    assert naming.key_id(f"spire-key-{SERVER_ID}-JWT-Signer-A") == "JWT-Signer-A"
    assert naming.key_id(f"spire-key-{SERVER_ID.upper()}-a") == "a"


@pytest.mark.parametrize("name", ["other-key", f"spire-key-{SERVER_ID}-", "spire-key-11111111-2222-3333-4444-555555555555-a"])
def test_names_of_other_servers_or_no_key_id_are_not_ours(name):
    assert naming.key_id(name) is None


def test_longest_key_id_that_fits_127_characters():
    longest = "a" * naming.max_key_id_length
    assert len(naming.key_name(longest)) == 127
    with pytest.raises(InvalidArgument, match="at most 80"):
        naming.key_name(longest + "a")


@pytest.mark.parametrize("key_id", ["with space", "dots.here", "under_score", "slash/x", "ümlaut", "a\nb"])
def test_key_ids_that_cannot_be_key_vault_names_are_refused(key_id):
    with pytest.raises(InvalidArgument, match="letters, digits"):
        naming.key_name(key_id)


def test_empty_key_id_is_required():
    with pytest.raises(InvalidArgument, match="key id is required"):
        naming.key_name("")


@pytest.mark.parametrize(
    "tags, owned",
    [
        ({"spire-server-td": "example.org", "spire-server-id": SERVER_ID}, True),
        ({"spire-server-td": "other.org", "spire-server-id": SERVER_ID}, False),
        ({"spire-server-td": "example.org", "spire-server-id": "someone-else"}, False),
        ({"spire-server-td": "example.org"}, False),
        ({}, False),
        (None, False),
    ],
)
def test_ownership_needs_both_tags(tags, owned):
    assert naming.owns(tags) is owned
