import pytest

from shared.errors import InvalidArgument
from shared.naming import MAX_KEY_ID_LENGTH, KeyNaming, key_name_prefix

SERVER_ID = "0b1c3f0e-8a5e-4c1e-9a55-7bd0c1f7f0a1"
naming = KeyNaming("example.org", SERVER_ID)
PREFIX = key_name_prefix("example.org", SERVER_ID)


def test_key_name_is_the_prefix_a_fixed_namespace_and_the_key_id():
    name = naming.key_name("x509-CA-A")
    assert name.startswith("spire-key-") and name.endswith("-x509-CA-A")
    namespace = name.removeprefix("spire-key-").removesuffix("-x509-CA-A")
    assert len(namespace) == 32 and all(c in "0123456789abcdef" for c in namespace)


def test_the_namespace_hides_the_server_id():
    assert SERVER_ID not in naming.key_name("a") and "example.org" not in naming.key_name("a")


@pytest.mark.parametrize(
    "first, second",
    [
        # With the server id in the name, server "a" with key id "b-x" and server "a-b" with "x" collided.
        ((("example.org", "a"), "b-x"), (("example.org", "a-b"), "x")),
        # Two trust domains with one server id.
        ((("one.org", "server"), "x509-CA-A"), (("two.org", "server"), "x509-CA-A")),
        # Server ids are case-sensitive in their tags, Key Vault names are not.
        ((("example.org", "Server"), "k"), (("example.org", "server"), "k")),
    ],
)
def test_different_servers_never_share_a_key_name(first, second):
    (server_a, key_a), (server_b, key_b) = first, second
    assert KeyNaming(*server_a).key_name(key_a).lower() != KeyNaming(*server_b).key_name(key_b).lower()


def test_key_id_is_read_back_from_a_name_whatever_its_case():
    assert naming.key_id(naming.key_name("JWT-Signer-A")) == "JWT-Signer-A"
    assert naming.key_id(naming.key_name("a").upper()) == "A"


@pytest.mark.parametrize(
    "name", ["other-key", PREFIX, KeyNaming("example.org", "other").key_name("a"), KeyNaming("other.org", SERVER_ID).key_name("a")]
)
def test_names_outside_this_servers_namespace_or_without_a_key_id_have_no_key_id(name):
    assert naming.key_id(name) is None


@pytest.mark.parametrize(
    "key_id",
    # SPIRE's own key ids, and those its KeyManager contract suite uses (v1.13).
    ["x509-CA-A", "x509-CA-B", "JWT-Signer-A", "JWT-Signer-B", "ec-p256", "ec-p384", "rsa-2048", "rsa-4096", "id", "nope"],
)
def test_spire_key_ids_are_accepted(key_id):
    assert naming.key_id(naming.key_name(key_id)) == key_id


def test_longest_key_id_is_84_characters_and_fills_127():
    assert MAX_KEY_ID_LENGTH == 84
    assert len(naming.key_name("a" * 84)) == 127
    with pytest.raises(InvalidArgument, match="at most 84"):
        naming.key_name("a" * 85)


@pytest.mark.parametrize("key_id", ["with space", "dots.here", "under_score", "slash/x", "ümlaut", "a\nb"])
def test_key_ids_that_cannot_be_key_vault_names_are_refused(key_id):
    with pytest.raises(InvalidArgument, match="letters, digits"):
        naming.key_name(key_id)


def test_an_invalid_key_id_is_echoed_shortened():
    with pytest.raises(InvalidArgument) as refused:
        naming.key_name("_" * 10_000)
    assert len(refused.value.message) < 200


def test_empty_key_id_is_required():
    with pytest.raises(InvalidArgument, match="key id is required"):
        naming.key_name("")
