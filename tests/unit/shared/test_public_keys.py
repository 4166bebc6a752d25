import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from shared.algorithms import KeyType
from shared.public_keys import ecdsa_signature_to_der, fingerprint, signature_for_spire


@pytest.mark.parametrize("curve, size, hash_", [(ec.SECP256R1(), 32, hashes.SHA256()), (ec.SECP384R1(), 48, hashes.SHA384())])
def test_raw_ecdsa_signature_converts_to_der_that_verifies(curve, size, hash_):
    private = ec.generate_private_key(curve)
    digest = hashlib.new(hash_.name, b"payload").digest()
    r, s = decode_dss_signature(private.sign(digest, ec.ECDSA(Prehashed(hash_))))
    raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    der = ecdsa_signature_to_der(raw)
    private.public_key().verify(der, digest, ec.ECDSA(Prehashed(hash_)))
    assert decode_dss_signature(der) == (r, s)


def test_leading_zeros_of_r_and_s_survive_conversion():
    raw = bytes(31) + b"\x01" + bytes(31) + b"\x02"
    assert decode_dss_signature(ecdsa_signature_to_der(raw)) == (1, 2)


@pytest.mark.parametrize("raw", [b"", b"\x01\x02\x03"])
def test_malformed_raw_signature_is_refused(raw):
    with pytest.raises(ValueError):
        ecdsa_signature_to_der(raw)


def test_rsa_signatures_pass_unchanged():
    assert signature_for_spire(KeyType.RSA_2048, b"abc") == b"abc"


def test_fingerprint_is_lowercase_hex_sha256_of_der():
    assert fingerprint(b"der") == hashlib.sha256(b"der").hexdigest()
