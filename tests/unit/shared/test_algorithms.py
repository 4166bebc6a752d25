import pytest

from shared.algorithms import HashAlgorithm, KeyType, SignerOptions, signing_algorithm
from shared.errors import InvalidArgument

SHA256, SHA384, SHA512 = HashAlgorithm.SHA256, HashAlgorithm.SHA384, HashAlgorithm.SHA512


@pytest.mark.parametrize(
    "key_type, options, expected",
    [
        (KeyType.RSA_2048, SignerOptions(SHA256), "RS256"),
        (KeyType.RSA_2048, SignerOptions(SHA384), "RS384"),
        (KeyType.RSA_2048, SignerOptions(SHA512), "RS512"),
        (KeyType.RSA_4096, SignerOptions(SHA256), "RS256"),
        (KeyType.RSA_4096, SignerOptions(SHA512, pss=True), "PS512"),
        (KeyType.RSA_2048, SignerOptions(SHA256, pss=True), "PS256"),
        (KeyType.RSA_2048, SignerOptions(SHA384, pss=True), "PS384"),
        (KeyType.EC_P256, SignerOptions(SHA256), "ES256"),
        (KeyType.EC_P384, SignerOptions(SHA384), "ES384"),
    ],
)
def test_supported_combinations_map_to_key_vault_algorithms(key_type, options, expected):
    assert signing_algorithm(key_type, options) == expected


@pytest.mark.parametrize(
    "key_type, options",
    [
        (KeyType.EC_P256, SignerOptions(SHA384)),
        (KeyType.EC_P256, SignerOptions(SHA512)),
        (KeyType.EC_P384, SignerOptions(SHA256)),
        (KeyType.EC_P384, SignerOptions(SHA512)),
        (KeyType.EC_P256, SignerOptions(SHA256, pss=True)),
        (KeyType.EC_P384, SignerOptions(SHA384, pss=True)),
    ],
)
def test_other_combinations_are_invalid_arguments_naming_key_type_and_hash(key_type, options):
    with pytest.raises(InvalidArgument) as raised:
        signing_algorithm(key_type, options)
    message = raised.value.message
    assert message.startswith("unsupported combination of key type: ")
    assert key_type.value in message and options.hash_algorithm.value in message


def test_digest_sizes():
    assert [h.digest_size for h in HashAlgorithm] == [32, 48, 64]


@pytest.mark.parametrize("text", ["rsa-1024", "RSA-2048", "", "ec-p521"])
def test_unknown_key_types_are_invalid(text):
    with pytest.raises(InvalidArgument, match="unsupported key type"):
        KeyType.parse(text)


def test_unknown_hash_is_invalid():
    with pytest.raises(InvalidArgument, match="unsupported hash algorithm"):
        HashAlgorithm.parse("MD5")
