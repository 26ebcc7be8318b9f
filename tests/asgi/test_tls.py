"""The ``tls`` extension's values: RFC 4514 subject names, checked against cryptography's."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from asgisock.asgi.tls import DERError, der_to_pem, subject_name, tls_extension

KEY = ec.generate_private_key(ec.SECP256R1())
NAMED = [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
         NameOID.LOCALITY_NAME, NameOID.STATE_OR_PROVINCE_NAME, NameOID.STREET_ADDRESS,
         NameOID.DOMAIN_COMPONENT, NameOID.USER_ID]
"""The attribute types RFC 4514 writes by name (besides C, which must be two letters)."""


def certificate(name: x509.Name) -> bytes:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(KEY.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(KEY, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


values = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20)
ascii_values = st.text(st.characters(codec="ascii"), min_size=1, max_size=20)
attributes = st.sampled_from(NAMED).flatmap(
    # DC is an IA5String: ASCII only (cryptography would encode other text as UTF-8 in it)
    lambda oid: st.builds(x509.NameAttribute, st.just(oid),
                          ascii_values if oid == NameOID.DOMAIN_COMPONENT else values))
rdns = st.lists(attributes, min_size=1, max_size=3, unique_by=lambda a: a.oid).map(x509.RelativeDistinguishedName)


@given(st.lists(rdns, min_size=1, max_size=5))
def test_names_match_cryptography(rdn_list: list[x509.RelativeDistinguishedName]) -> None:
    name = x509.Name(rdn_list)
    ours = subject_name(certificate(name))
    if any(len(rdn) > 1 for rdn in rdn_list):
        # cryptography sorts the members of a multi-valued RDN; RFC 4514 leaves their order open
        assert ours.count(",") == name.rfc4514_string().count(",")
    else:
        assert ours == name.rfc4514_string()


@pytest.mark.parametrize(("attribute", "expected"), [
    (x509.NameAttribute(NameOID.COMMON_NAME, " #lead, trail "), "CN=\\ #lead\\, trail\\ "),
    (x509.NameAttribute(NameOID.COMMON_NAME, "#lead"), "CN=\\#lead"),
    (x509.NameAttribute(NameOID.COMMON_NAME, 'a"b+c;d<e>f\\g'), 'CN=a\\"b\\+c\\;d\\<e\\>f\\\\g'),
    (x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"), "C=GB"),
    # §2.4: a type without a short name is written as its OID, its value as hex of the BER encoding
    (x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ada@example.org"),
     "1.2.840.113549.1.9.1=#160f" + b"ada@example.org".hex()),
    (x509.NameAttribute(NameOID.SERIAL_NUMBER, "42"), "2.5.4.5=#13023432"),
    (x509.NameAttribute(NameOID.COMMON_NAME, "Zoë", _type=_ASN1Type.BMPString), "CN=Zoë"),
    (x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "x" * 60), "OU=" + "x" * 60),
])
def test_escaping_and_oid_forms(attribute: x509.NameAttribute[str], expected: str) -> None:
    assert subject_name(certificate(x509.Name([attribute]))) == expected


@pytest.mark.parametrize("der", [b"", b"\x30", b"\x30\x05\x00", b"\x04\x00", b"\x30\x00", b"\x30\x84\xff\xff\xff\xff"])
def test_not_a_certificate(der: bytes) -> None:
    with pytest.raises(DERError):
        subject_name(der)


def test_extension_values() -> None:
    der = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")]))
    value = tls_extension(server_cert="PEM", client_chain=[der], version="TLSv1.2", cipher_suite=0xC02F)
    assert value == {
        "server_cert": "PEM", "client_cert_chain": [der_to_pem(der)], "client_cert_name": "CN=client",
        "client_cert_error": None, "tls_version": 0x0303, "cipher_suite": 0xC02F,
    }
    assert x509.load_pem_x509_certificate(der_to_pem(der).encode()).subject.rfc4514_string() == "CN=client"
    none = tls_extension(server_cert=None, client_chain=[], version="TLSv1.3", cipher_suite=None)
    assert none["client_cert_chain"] == [] and none["client_cert_name"] is None and none["tls_version"] == 0x0304
    junk = tls_extension(server_cert=None, client_chain=[b"junk"], version=None, cipher_suite=None)
    assert junk["client_cert_name"] is None and junk["tls_version"] is None
