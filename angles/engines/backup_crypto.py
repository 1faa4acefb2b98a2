"""Optional client-side encryption of backup files (BACKUP_PASSPHRASE): AES-SIV per record, key from scrypt.

Each line of a table file is compressed and sealed on its own with AES-SIV (RFC 5297, deterministic
authenticated encryption, from `cryptography`), the table name as associated data. The same line under the
same key always gives the same bytes, so a backup where 1% of the rows changed rewrites 1% of the encrypted
file and git stores little more than those rows. Equal lines would show as equal ciphertext, but every line
holds its record's unique id. The key comes from the passphrase with scrypt and a salt kept in the manifest
(reused for every backup on the branch: a new salt would change every byte). The manifest itself stays
readable (counts, checksums, the ids reported as credential-like) and carries a key check and a tag over its
file list, so a wrong passphrase or an edited manifest is refused before anything is restored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from angles.engines.backup_format import line_key
from angles.errors import AnglesError

SCHEME = "aes-siv+scrypt/1"
SUFFIX = ".enc"
MAGIC = b"angles-encrypted-backup/1\n"
# scrypt's cost: about 32 MiB and a fraction of a second per run, once per backup or restore.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MAX_SCRYPT_N = 2**20
KEY_BYTES = 64  # AES-256-SIV
SALT_BYTES = 16
_KEY_CHECK = (b"angles backup key check", [b"key-check"])
_LENGTH = struct.Struct(">I")


class PassphraseError(AnglesError):
    """BACKUP_PASSPHRASE is missing, or is not the one the backup was encrypted with."""


class CorruptEncryptedBackupError(AnglesError):
    """An encrypted backup file or its manifest does not decrypt: damaged or altered; nothing was written."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (ValueError, TypeError):
        raise CorruptEncryptedBackupError("backup is corrupt: its manifest's encryption entry is unreadable") from None


class BackupCipher:
    """One key (passphrase + salt) sealing and opening the records of backup files."""

    def __init__(self, passphrase: str, salt: bytes, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P):
        self.salt = salt
        self.params = {"n": n, "r": r, "p": p}
        key = Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))
        self._siv = AESSIV(key)

    @classmethod
    def create(cls, passphrase: str) -> BackupCipher:
        """A new key with a fresh salt: the first encrypted backup on a branch."""
        return cls(passphrase, os.urandom(SALT_BYTES))

    @classmethod
    def for_manifest(cls, passphrase: str | None, manifest: dict, where: str) -> BackupCipher:
        """The key an encrypted manifest was written with; PassphraseError when it cannot be had."""
        meta = manifest.get("encryption") or {}
        if meta.get("scheme") != SCHEME:
            raise CorruptEncryptedBackupError(
                f"backup {where} is encrypted with {meta.get('scheme')!r}, which this version does not know"
            )
        if not passphrase:
            raise PassphraseError(
                f"backup {where} is encrypted: set BACKUP_PASSPHRASE to the passphrase it was made with"
            )
        try:
            n, r, p = (int(meta[k]) for k in ("n", "r", "p"))
            # An edited manifest must not make this process spend gigabytes on the key.
            if not (2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CorruptEncryptedBackupError(
                f"backup {where}: the manifest's scrypt parameters are unreadable"
            ) from None
        cipher = cls(passphrase, _unb64(meta.get("salt")), n=n, r=r, p=p)
        try:
            cipher._siv.decrypt(_unb64(meta.get("key_check")), _KEY_CHECK[1])
        except InvalidTag:
            raise PassphraseError(
                f"BACKUP_PASSPHRASE is not the passphrase backup {where} was encrypted with"
            ) from None
        return cipher

    def same_key(self, manifest: dict | None) -> bool:
        """Whether an encrypted manifest was written with this key (salt and key check agree)."""
        meta = (manifest or {}).get("encryption") or {}
        return meta.get("salt") == _b64(self.salt) and meta.get("key_check") == self._key_check()

    def _key_check(self) -> str:
        return _b64(self._siv.encrypt(*_KEY_CHECK))

    def meta(self, files: dict) -> dict:
        """The manifest's encryption entry: how to derive the key, a key check, and a tag over the file list."""
        return {
            "scheme": SCHEME,
            "kdf": "scrypt",
            **self.params,
            "salt": _b64(self.salt),
            "key_check": self._key_check(),
            "files_tag": _b64(self._siv.encrypt(b"files", [_canonical(files)])),
        }

    def check_files(self, manifest: dict, where: str) -> None:
        """Refuse a manifest whose file list (checksums, counts) was changed after it was sealed."""
        tag = _unb64((manifest.get("encryption") or {}).get("files_tag"))
        try:
            self._siv.decrypt(tag, [_canonical(manifest.get("files") or {})])
        except InvalidTag:
            raise CorruptEncryptedBackupError(
                f"backup {where} is corrupt: its manifest's file list was altered after it was encrypted"
            ) from None

    def seal(self, table: str, line: bytes) -> bytes:
        sealed = self._siv.encrypt(zlib.compress(line, 1), [table.encode("utf-8")])
        return _LENGTH.pack(len(sealed)) + sealed

    def seal_lines(
        self, table: str, lines: Iterable[bytes], target: Path, reuse: Iterable[tuple[bytes, bytes]] = ()
    ) -> str:
        """Write lines as a sealed file (a temporary file renamed over the target); returns its sha256.

        `reuse` pairs each line of the file's previous version with its record, in id order: an unchanged line
        takes its old record, the very bytes sealing it again would give, without the work.
        """
        old = iter(reuse)
        current = next(old, None)
        tmp = target.with_name(target.name + ".tmp")
        digest = hashlib.sha256(MAGIC)
        with open(tmp, "wb") as out:
            out.write(MAGIC)
            for line in lines:
                record = None
                if current is not None:
                    key = line_key(line)
                    while current is not None and line_key(current[0]) < key:
                        current = next(old, None)
                    if current is not None and current[0] == line:
                        record = current[1]
                if record is None:
                    record = self.seal(table, line)
                digest.update(record)
                out.write(record)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
        return digest.hexdigest()

    def open_lines(self, table: str, stream: BinaryIO, name: str) -> Iterator[bytes]:
        """The lines of a sealed file read from a binary stream, in order; an error at the first bad record."""
        associated = [table.encode("utf-8")]
        for number, record in enumerate(iter_records(stream, name), 1):
            try:
                yield zlib.decompress(self._siv.decrypt(record[_LENGTH.size :], associated))
            except (InvalidTag, zlib.error):
                raise CorruptEncryptedBackupError(
                    f"backup is corrupt: record {number} of {name} does not decrypt (damaged or altered)"
                ) from None


def iter_records(stream: BinaryIO, name: str) -> Iterator[bytes]:
    """The records of a sealed file as stored (length and sealed bytes), without decrypting them."""
    if stream.read(len(MAGIC)) != MAGIC:
        raise CorruptEncryptedBackupError(f"backup is corrupt: {name} is not an encrypted backup file")
    number = 0
    while header := stream.read(_LENGTH.size):
        number += 1
        size = _LENGTH.unpack(header)[0] if len(header) == _LENGTH.size else -1
        sealed = stream.read(size) if size >= 0 else b""
        if size < 0 or len(sealed) != size:
            raise CorruptEncryptedBackupError(f"backup is corrupt: {name} ends inside record {number}")
        yield header + sealed


def _canonical(files: dict) -> bytes:
    return json.dumps(files, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sealed_name(name: str) -> str:
    return name + SUFFIX


def open_directory(directory: Path, manifest: dict, passphrase: str | None, where: str) -> None:
    """Decrypt every sealed file a manifest lists into its plain name beside it (a restore's scratch clone)."""
    if not manifest.get("encryption"):
        return
    cipher = BackupCipher.for_manifest(passphrase, manifest, where)
    cipher.check_files(manifest, where)
    tables = {name: meta.get("table") or name for name, meta in manifest["files"].items()}
    for name, table in sorted(tables.items()):
        sealed = directory / sealed_name(name)
        if "/" in name or name.startswith(".") or not sealed.is_file():
            continue  # snapshot.verify names the missing file
        with open(sealed, "rb") as stream, open(directory / name, "wb") as out:
            for line in cipher.open_lines(table, stream, sealed.name):
                out.write(line)
