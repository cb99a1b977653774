"""Ed25519 keys that the database does not hold: checkpoints and the visitor's signed receipt.

``CONSENTKIT_SIGNING_KEY`` names the *current* key: a file holding an Ed25519
private key (PEM, PKCS#8, unencrypted; ``flask consent keygen PATH`` writes one
with mode 0600, and its public half beside it as ``PATH.pub``). It signs
:mod:`checkpoints <.checkpoints>` and the compact JWS that ``GET
/consent/receipt`` hands the visitor.

``CONSENTKIT_SIGNING_OLD_KEYS`` lists the files of keys that signed before a
rotation — their ``.pub`` files (a private key file is accepted too, and only
its public half is used). They sign nothing; they stay in the JWK Set and
verify the checkpoint lines and receipts they signed.

A key is named by its *key id* (``kid``): the RFC 7638 JWK thumbprint of its
public key (base64url SHA-256 of ``{"crv":"Ed25519","kty":"OKP","x":…}``), so
any JOSE library computes the same id from the published key.

:func:`keyring_of` loads the files once, in ``init_app``; a missing,
unreadable or wrong file raises :class:`~flask_consentkit.errors.ConsentConfigError`
naming the key and the fix. Nothing here reads the database.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configkeys import SIGNING_KEY, SIGNING_OLD_KEYS
from ..errors import ConsentConfigError, ConsentKitError

log = logging.getLogger("flask_consentkit.ledger")

KEY_SETTING = SIGNING_KEY
OLD_KEYS_SETTING = SIGNING_OLD_KEYS
#: The JWS ``alg`` of every signature (RFC 8037).
ALGORITHM = "EdDSA"
#: A key file is a few hundred bytes; anything much larger is not one.
MAX_KEY_FILE = 16 * 1024


class SigningError(ConsentKitError):
    """A key cannot be made or used as asked (the message says what to fix)."""


def _crypto() -> Any:
    """The ``cryptography`` modules used here, with a clear message when missing."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - a dependency of flask-consentkit
        raise SigningError("signing needs the 'cryptography' package: "
                           "pip install 'cryptography>=42'") from None
    return serialization, ed25519


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The inverse of :func:`b64url`; raises ``ValueError`` for anything else."""
    if not isinstance(text, str) or not text.isascii() or "=" in text:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same bytes for the same value, every time."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def _raw_public(public_key: Any) -> bytes:
    serialization, _ = _crypto()
    raw: bytes = public_key.public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)
    return raw


def public_jwk(public_key: Any) -> dict[str, str]:
    """The public key as a JWK (RFC 8037): ``kty`` OKP, ``crv`` Ed25519, ``x``, plus
    ``kid``, ``alg`` and ``use``."""
    x = b64url(_raw_public(public_key))
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": key_id(public_key),
            "alg": ALGORITHM, "use": "sig"}


def key_id(public_key: Any) -> str:
    """The RFC 7638 thumbprint of the public key: its ``kid``."""
    members = {"crv": "Ed25519", "kty": "OKP", "x": b64url(_raw_public(public_key))}
    return b64url(hashlib.sha256(canonical_json(members)).digest())


# -- key files ----------------------------------------------------------------------


def _read_key_file(setting: str, path: str) -> bytes:
    keygen = f"make one with `flask consent keygen {path}`, or correct the path"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConsentConfigError(setting, f"{path!r} does not exist; {keygen}.") from None
    except OSError as e:
        raise ConsentConfigError(setting, f"{path!r} cannot be read ({e.strerror}); "
                                 "check the path and its folders' permissions.") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConsentConfigError(setting, f"{path!r} is a folder; name the key file in it "
                                 "(e.g. consent-signing.key).")
    if info.st_size > MAX_KEY_FILE:
        raise ConsentConfigError(setting, f"{path!r} is {info.st_size} bytes, too large for a "
                                 f"key file; {keygen}.")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except PermissionError:
        raise ConsentConfigError(setting, f"{path!r} cannot be read by this process "
                                 "(permission denied): make it readable by the app's user "
                                 "(owned by it, mode 0600).") from None
    except OSError as e:
        raise ConsentConfigError(setting, f"{path!r} cannot be read ({e.strerror}).") from None
    if setting == KEY_SETTING and info.st_mode & 0o077:
        log.warning("%s: %s can be read by other users (mode %o); make it 0600 "
                    "(chmod 600 %s)", setting, path, stat.S_IMODE(info.st_mode), path)
    return data


def _kind(key: Any) -> str:
    """A key's type, as a person would name it."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x448, x25519

    for types, label in (((rsa.RSAPrivateKey, rsa.RSAPublicKey), "an RSA key"),
                         ((ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey),
                          "an EC (ECDSA) key"),
                         ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), "an Ed448 key"),
                         ((dsa.DSAPrivateKey, dsa.DSAPublicKey), "a DSA key"),
                         ((x25519.X25519PrivateKey, x25519.X25519PublicKey), "an X25519 key"),
                         ((x448.X448PrivateKey, x448.X448PublicKey), "an X448 key")):
        if isinstance(key, types):
            return label
    return f"a {type(key).__name__} key"


def load_private_key(path: str, setting: str = KEY_SETTING) -> Any:
    """The Ed25519 private key in ``path`` (PEM PKCS#8 or OpenSSH), or ConsentConfigError."""
    serialization, ed25519 = _crypto()
    data = _read_key_file(setting, path)
    how = "`flask consent keygen NEW_PATH` makes an Ed25519 key file"
    if b"PUBLIC KEY" in data[:64] or data.startswith(b"ssh-"):
        raise ConsentConfigError(setting, f"{path!r} holds a public key; {setting} needs the "
                                 "private key file (a retired key's .pub file belongs in "
                                 f"{OLD_KEYS_SETTING}).")
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY"):
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConsentConfigError(setting, f"{path!r} is encrypted with a passphrase; give an "
                                 "unencrypted key file readable only by the app (mode 0600); "
                                 f"{how}.") from None
    except Exception:  # noqa: BLE001 - ValueError, UnsupportedAlgorithm …
        raise ConsentConfigError(setting, f"{path!r} is not a PEM private key (its text does "
                                 f"not parse as one); {how}.") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConsentConfigError(setting, f"{path!r} holds {_kind(key)}; signatures here are "
                                 f"Ed25519 (JWS alg EdDSA): {how}.")
    return key


def load_public_key(path: str, setting: str = OLD_KEYS_SETTING) -> Any:
    """The Ed25519 public key in ``path``: a public key file, or a private one (its half)."""
    serialization, ed25519 = _crypto()
    data = _read_key_file(setting, path)
    if b"PRIVATE KEY" in data[:64]:
        return load_private_key(path, setting).public_key()
    try:
        if data.startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(data)
        else:
            key = serialization.load_pem_public_key(data)
    except Exception:  # noqa: BLE001
        raise ConsentConfigError(setting, f"{path!r} is not a PEM public key; give the "
                                 "PATH.pub file that `flask consent keygen PATH` wrote for the "
                                 "retired key.") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConsentConfigError(setting, f"{path!r} holds {_kind(key)}, not an Ed25519 key.")
    return key


def generate(path: str | os.PathLike[str]) -> tuple[str, Path]:
    """Write a new Ed25519 key to ``path`` (mode 0600) and its public half to ``path.pub``.

    Refuses to overwrite either file. Returns ``(kid, public key path)``.
    """
    serialization, ed25519 = _crypto()
    target = Path(path)
    public_path = target.with_name(target.name + ".pub")
    for p in (target, public_path):
        if p.exists() or p.is_symlink():
            raise SigningError(f"{p} exists already; it is not overwritten (a key that signed "
                               "checkpoints must stay as it is). Choose a new file for a new key.")
    if not target.parent.is_dir():
        raise SigningError(f"the folder {target.parent} does not exist; create it first "
                           "(somewhere only the app's user can read).")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(target, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return key_id(key.public_key()), public_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise SigningError(f"{path} exists already; it is not overwritten.") from None
    except OSError as e:
        raise SigningError(f"cannot create {path}: {e.strerror}.") from None
    try:
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the keyring of an app ------------------------------------------------------------


@dataclass
class Keyring:
    """The app's signing key (if any) and every public key that may have signed.

    ``public`` is ordered: the current key first, then the old keys as listed.
    """

    private: Any | None = None
    kid: str | None = None
    public: dict[str, Any] = field(default_factory=dict)
    #: where each key came from, by kid (for messages and ``status``)
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def can_sign(self) -> bool:
        return self.private is not None

    def sign(self, data: bytes) -> tuple[str, bytes]:
        """``(kid, signature)`` of ``data`` with the current key."""
        if self.private is None or self.kid is None:
            raise SigningError(f"nothing signs without a key: set {KEY_SETTING} to an Ed25519 "
                               "key file (`flask consent keygen PATH` makes one).")
        return self.kid, self.private.sign(data)

    def verify(self, kid: str, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is the signature of ``data`` by key ``kid`` (KeyError: unknown)."""
        from cryptography.exceptions import InvalidSignature

        key = self.public[kid]
        try:
            key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set of every key, the current one first (RFC 7517 §5)."""
        return {"keys": [public_jwk(k) for k in self.public.values()]}

    def jws(self, payload: Mapping[str, Any]) -> str:
        """``payload`` (a JSON object) as a compact JWS (RFC 7515 §7.1), alg EdDSA, with kid.

        The payload is canonical JSON, so one receipt always gives the same token.
        """
        if self.kid is None:
            raise SigningError(f"set {KEY_SETTING} to sign receipts")
        header = {"alg": ALGORITHM, "kid": self.kid, "typ": "JOSE"}
        signing_input = f"{b64url(canonical_json(header))}.{b64url(canonical_json(payload))}"
        _, signature = self.sign(signing_input.encode("ascii"))
        return f"{signing_input}.{b64url(signature)}"


def receipt_jws(keyring: Keyring, consent_id: str | None, receipt: Mapping[str, Any]) -> str:
    """The signed form of one receipt of ``consent_id``: a compact JWS whose payload is the
    receipt (as the export shows it) and its ``consent_id``."""
    return keyring.jws({**receipt, "consent_id": consent_id})


def keyring_of(key_path: str | None, old_paths: tuple[str, ...] = ()) -> Keyring | None:
    """Load the keys the settings name; ``None`` when they name none."""
    if key_path is None and not old_paths:
        return None
    ring = Keyring()
    if key_path is not None:
        private = load_private_key(key_path)
        ring.private = private
        ring.kid = key_id(private.public_key())
        ring.public[ring.kid] = private.public_key()
        ring.paths[ring.kid] = key_path
    for path in old_paths:
        public = load_public_key(path)
        kid = key_id(public)
        if kid not in ring.public:
            ring.public[kid] = public
            ring.paths[kid] = path
    return ring
