"""Salvaging damaged recordings: an sqlite3 file cut short is read through a patched copy, an MCAP
file is scanned record by record (chunks opened, no summary section needed) up to its last
complete message."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

from .base import BagError, BagMessage

log = logging.getLogger(__name__)


class ClosingConnection:  # sqlite3.Connection's own context manager commits; it does not close
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def sqlite_patched(f: Path, tmpdir: Path) -> Path:
    """SQLite refuses a file shorter than the page count in its header ("database disk image is
    malformed") even for the pages that are there. A copy whose header counts only the whole pages
    present reads up to the first missing page; an intact file is used as it is."""
    with open(f, "rb") as fh:
        head = fh.read(100)
    size = f.stat().st_size
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        raise BagError(f"{f}: not an SQLite database (sqlite3 storage file expected)")
    page = struct.unpack(">H", head[16:18])[0]
    page = 65536 if page == 1 else page
    pages = struct.unpack(">I", head[28:32])[0]
    if pages * page <= size:
        return f
    whole = size // page
    dst = tmpdir / f.name
    log.warning("%s: %d of the %d pages its header announces are present; reading a patched copy", f, whole, pages)
    with open(f, "rb") as src, open(dst, "wb") as out:
        shutil.copyfileobj(src, out)
        out.truncate(whole * page)
        out.seek(28)
        out.write(struct.pack(">I", whole))
    return dst


# -- MCAP record scan (the salvage path) ---------------------------------------------------------
_MCAP_MAGIC = b"\x89MCAP0\r\n"


class _Truncated(Exception):
    pass


def _str(buf: memoryview, at: int) -> tuple[str, int]:
    n = int.from_bytes(buf[at : at + 4], "little")
    return bytes(buf[at + 4 : at + 4 + n]).decode(), at + 4 + n


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        try:
            import zstandard

            return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        except ImportError:
            try:  # the standard library's zstd (Python 3.14's `compression` package), then its backport
                zstd = importlib.import_module("compression.zstd")
            except ImportError:
                zstd = importlib.import_module("backports.zstd")
            return zstd.decompress(data)
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    raise BagError(f"MCAP chunk compression {compression!r} is not supported")


def _records(buf: memoryview, where: str) -> Iterator[tuple[int, memoryview]]:
    """(opcode, body) of the records in ``buf``; :class:`_Truncated` where one is cut short."""
    at = 0
    while at < len(buf):
        if at + 9 > len(buf):
            raise _Truncated(f"{where}: a record header is cut short")
        op, n = buf[at], int.from_bytes(buf[at + 1 : at + 9], "little")
        if at + 9 + n > len(buf):
            raise _Truncated(f"{where}: record 0x{op:02x} of {n} bytes is cut short after {len(buf) - at - 9}")
        yield op, buf[at + 9 : at + 9 + n]
        at += 9 + n


def _mapped(path: Path) -> memoryview:
    import mmap

    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise BagError(f"{path} is empty")
        data = memoryview(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))  # closed when collected
    if bytes(data[:8]) != _MCAP_MAGIC:
        raise BagError(f"{path}: not an MCAP file (bad magic)")
    return data


def _mcap_scan(path: Path) -> Iterator[tuple[int, memoryview]]:
    """Every data-section record of an MCAP file in file order, chunks opened, read without the
    summary section. A file cut short yields all it holds up to the cut (including the complete
    records of an uncompressed chunk cut in the middle), then raises :class:`_Truncated`."""
    data = _mapped(path)
    at = 8
    while True:
        if at + 9 > len(data):
            raise _Truncated(f"{path.name} ends at byte {len(data)} without the MCAP footer (cut short?)")
        op, n = data[at], int.from_bytes(data[at + 1 : at + 9], "little")
        body = data[at + 9 : at + 9 + n]
        cut = len(body) < n
        where = f"{path.name}: record 0x{op:02x} at byte {at}"
        if op in (0x02, 0x0F):  # footer / data end: the data section is complete
            return
        if op == 0x06:  # chunk: start, end, uncompressed size, crc, compression, records
            if len(body) < 32 or len(body) < 40 + int.from_bytes(body[28:32], "little"):
                raise _Truncated(f"{where}: a chunk header is cut short")
            comp, p = _str(body, 28)
            clen = int.from_bytes(body[p : p + 8], "little")
            if cut:
                if comp:
                    raise _Truncated(f"{where}: a {comp}-compressed chunk is cut short")
                yield from _records(body[p + 8 :], where)
                raise _Truncated(f"{where}: the chunk is cut short")
            inner = _decompress(bytes(body[p + 8 : p + 8 + clen]), comp, int.from_bytes(body[16:24], "little"))
            yield from _records(memoryview(inner), where)
        elif cut:
            raise _Truncated(f"{where} is cut short")
        else:
            yield op, body
        at += 9 + n


class _McapChannels:
    """Schema and channel records of an MCAP file, as a scan meets them."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.channels: dict[int, tuple[str, str]] = {}  # channel id -> (topic, message type)

    def feed(self, op: int, body: memoryview) -> bool:
        """Take a schema (0x03) or channel (0x04) record; False for any other record."""
        if op == 0x03:
            self.schemas[int.from_bytes(body[:2], "little")] = _str(body, 2)[0]
        elif op == 0x04:
            cid, sid = int.from_bytes(body[:2], "little"), int.from_bytes(body[2:4], "little")
            self.channels[cid] = (_str(body, 4)[0], self.schemas.get(sid, "?"))
        else:
            return False
        return True


def mcap_channels(path: Path) -> list[tuple[str, str]]:
    """(topic, type) of every channel found in a (possibly damaged) MCAP file."""
    table = _McapChannels()
    try:
        for op, body in _mcap_scan(path):
            table.feed(op, body)
    except _Truncated:
        pass
    return list(table.channels.values())


def mcap_messages(path: Path, wanted: set[str]) -> Iterator[BagMessage]:
    table = _McapChannels()
    try:
        for op, body in _mcap_scan(path):
            if not table.feed(op, body) and op == 0x05:
                topic, msgtype = table.channels.get(int.from_bytes(body[:2], "little"), ("", ""))
                if topic in wanted:
                    yield BagMessage(topic, msgtype, int.from_bytes(body[6:14], "little"), bytes(body[22:]))
    except _Truncated as e:
        raise BagError(str(e)) from None
