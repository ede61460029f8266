"""The credential cipher: AES-256-GCM round trip, tamper detection, key rotation, bad keys."""

from __future__ import annotations

import base64
import os

import pytest

from keyway_shared.cipher import CredentialCipher, DecryptionError, generate_key, key_id

AD = b"connection:dev:github:user-1"


def _flip(text: str, index: int) -> str:
    """The same ciphertext with one base64 character changed (so one decoded byte differs)."""
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def _flip_body_byte(token: str, byte_index: int) -> str:
    prefix, kid, body = token.split(":", 2)
    blob = bytearray(base64.b64decode(body))
    blob[byte_index] ^= 0x01
    return f"{prefix}:{kid}:{base64.b64encode(bytes(blob)).decode()}"


def test_round_trip_bytes_and_json(encryption_key: str) -> None:
    cipher = CredentialCipher(current_key=encryption_key)
    token = cipher.encrypt(b"s3cr3t-token", associated_data=AD)
    assert cipher.decrypt(token, associated_data=AD) == b"s3cr3t-token"

    creds = {"type": "OAUTH2", "access_token": "gho_abc", "raw": {"scope": "repo", "n": 1}}
    sealed = cipher.encrypt_json(creds, associated_data=AD)
    assert "gho_abc" not in sealed
    assert cipher.decrypt_json(sealed, associated_data=AD) == creds


def test_ciphertext_format_names_the_key(encryption_key: str) -> None:
    cipher = CredentialCipher(current_key=encryption_key)
    token = cipher.encrypt(b"x")
    prefix, kid, body = token.split(":", 2)
    assert prefix == "kw1"
    assert kid == key_id(base64.b64decode(encryption_key)) == cipher.current_key_id
    assert cipher.key_id_of(token) == kid
    blob = base64.b64decode(body)
    assert len(blob) == 12 + 1 + 16  # nonce, one byte of plaintext, GCM tag


def test_nonce_is_random(encryption_key: str) -> None:
    cipher = CredentialCipher(current_key=encryption_key)
    first = cipher.encrypt(b"same plaintext")
    second = cipher.encrypt(b"same plaintext")
    assert first != second
    nonce_1 = base64.b64decode(first.split(":", 2)[2])[:12]
    nonce_2 = base64.b64decode(second.split(":", 2)[2])[:12]
    assert nonce_1 != nonce_2
    assert cipher.decrypt(first) == cipher.decrypt(second) == b"same plaintext"


@pytest.mark.parametrize("byte_index", [0, 12, 14, -1], ids=["nonce", "ciphertext-start", "ciphertext", "tag"])
def test_tampered_body_is_rejected(encryption_key: str, byte_index: int) -> None:
    cipher = CredentialCipher(current_key=encryption_key)
    token = cipher.encrypt(b"a longer secret value", associated_data=AD)
    with pytest.raises(DecryptionError):
        cipher.decrypt(_flip_body_byte(token, byte_index), associated_data=AD)


def test_tampered_key_id_is_rejected(encryption_key: str) -> None:
    cipher = CredentialCipher(current_key=encryption_key)
    token = cipher.encrypt(b"secret")
    tampered = _flip(token, len("kw1:"))
    assert cipher.key_id_of(tampered) != cipher.current_key_id
    with pytest.raises(DecryptionError, match="no key with id"):
        cipher.decrypt(tampered)


def test_wrong_associated_data_is_rejected(encryption_key: str) -> None:
    cipher = CredentialCipher(current_key=encryption_key)
    token = cipher.encrypt(b"secret", associated_data=AD)
    with pytest.raises(DecryptionError):
        cipher.decrypt(token, associated_data=b"connection:dev:github:user-2")
    with pytest.raises(DecryptionError):
        cipher.decrypt(token)


@pytest.mark.parametrize(
    "token",
    ["", "plain text", "kw2:00000000:AAAA", "kw1:nokey", "kw1:{kid}:!!!notbase64!!!", "kw1:{kid}:AAAA"],
    ids=["empty", "no-separators", "other-version", "two-parts", "bad-base64", "too-short"],
)
def test_malformed_ciphertexts_are_rejected(encryption_key: str, token: str) -> None:
    cipher = CredentialCipher(current_key=encryption_key)
    with pytest.raises(DecryptionError):
        cipher.decrypt(token.format(kid=cipher.current_key_id))


def test_rotation_reads_old_and_writes_new() -> None:
    old_key, new_key = generate_key(), generate_key()
    before = CredentialCipher(current_key=old_key)
    old_token = before.encrypt(b"written before the rotation", associated_data=AD)

    during = CredentialCipher(current_key=new_key, old_keys=[old_key])
    assert during.decrypt(old_token, associated_data=AD) == b"written before the rotation"
    new_token = during.encrypt(b"written after", associated_data=AD)
    assert during.key_id_of(new_token) == key_id(base64.b64decode(new_key)) != before.current_key_id
    assert during.key_id_of(old_token) == before.current_key_id

    # The old key alone cannot read what the new key wrote.
    with pytest.raises(DecryptionError):
        before.decrypt(new_token, associated_data=AD)

    after = CredentialCipher(current_key=new_key)
    with pytest.raises(DecryptionError, match="no key with id"):
        after.decrypt(old_token, associated_data=AD)
    assert after.decrypt(new_token, associated_data=AD) == b"written after"


def test_old_key_equal_to_current_is_harmless(encryption_key: str) -> None:
    cipher = CredentialCipher(current_key=encryption_key, old_keys=[encryption_key])
    assert cipher.decrypt(cipher.encrypt(b"x")) == b"x"


@pytest.mark.parametrize(
    "bad_key",
    [
        "",
        "not base64 at all!",
        base64.b64encode(os.urandom(16)).decode(),  # AES-128, not AES-256
        base64.b64encode(os.urandom(31)).decode(),
        base64.b64encode(os.urandom(33)).decode(),
    ],
    ids=["empty", "not-base64", "16-bytes", "31-bytes", "33-bytes"],
)
def test_bad_keys_are_rejected(bad_key: str, encryption_key: str) -> None:
    with pytest.raises(ValueError, match="encryption key") as current_error:
        CredentialCipher(current_key=bad_key)
    with pytest.raises(ValueError, match="encryption key") as old_error:
        CredentialCipher(current_key=encryption_key, old_keys=[bad_key])
    # The error never repeats the key it rejected.
    for error in (current_error, old_error):
        if bad_key:
            assert bad_key not in str(error.value)


def test_generate_key_is_a_valid_fresh_key() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert len(base64.b64decode(first)) == 32
    CredentialCipher(current_key=first)
