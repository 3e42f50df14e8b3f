"""gzip content encoding of text answers (JSON, CSV), whole or made of bands.

Level, strategy and threshold were chosen by measurement (benchmarks/web.py). Level 1
compresses a 2,000-child group's metadata to 1.7% of its size at ~1.4 GB/s. JSON of
measured numbers is another matter: its digits are close to random, so deflate's string
matching finds almost nothing to reuse, and Huffman coding alone (``Z_HUFFMAN_ONLY``) makes
it smaller than level 1 does (0.46 against 0.49 of a 1e6-value line) at 1.8 times the speed
(~235 MB/s against ~133 MB/s; level 6: 21 MB/s), which a 1 Gbit/s link needs. Big answers
are therefore sampled first and compressed with Huffman coding alone unless string matching
pays on the sample (repeated values, masks, metadata). An answer read in bands by several
workers is compressed in bands too, each worker making a piece of one deflate stream
(:func:`deflate_piece`), which :func:`gzip_pieces` wraps in one gzip member: browsers read
a single member only.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from .encoders import Body

LEVEL = 1
"""zlib level: compressing must not be slower than a 1 Gbit/s link (125 MB/s)."""

SAMPLED_BYTES = 1024 * 1024
"""Answers from this size on are sampled to choose the strategy (below, level 1 takes a few
milliseconds whatever the data)."""

SAMPLES = 4
SAMPLE_BYTES = 16 * 1024
"""Spots of the answer, spread over it, compressed both ways to choose."""

MATCHING_GAIN = 1.1
"""String matching is kept when it makes the sample this much smaller than Huffman coding
alone does."""

MIN_BYTES = 4096
"""Smallest answer compressed: below, it fits TCP's first round trip anyway (about 14 KB)
and the saving is under a millisecond at 20 Mbit/s."""

COMPRESSIBLE = {"application/json", "text/csv"}
"""Content types compressed (binary formats never: numbers compress little and fast paths
send them without a copy)."""

_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
"""A gzip member header: deflate, no name, no time, unknown OS."""


def compressible(headers: dict[str, str], length: int) -> bool:
    """Whether an answer of this type and length is worth compressing."""
    return length >= MIN_BYTES and headers.get("Content-Type", "").split(";")[0] in COMPRESSIBLE


def strategy(parts: Sequence[Body]) -> int:
    """The zlib strategy for a body: Huffman coding alone, if string matching does not make
    a sample of it clearly smaller (see the module's docstring)."""
    length = sum(len(part) for part in parts)
    if length < SAMPLED_BYTES:
        return zlib.Z_DEFAULT_STRATEGY
    body = parts[0] if len(parts) == 1 else b"".join(parts)
    view = memoryview(body)
    step = (length - SAMPLE_BYTES) // (SAMPLES - 1)
    sample = b"".join(view[n * step : n * step + SAMPLE_BYTES] for n in range(SAMPLES))
    matched = len(_deflate(sample, zlib.Z_DEFAULT_STRATEGY))
    coded = len(_deflate(sample, zlib.Z_HUFFMAN_ONLY))
    return zlib.Z_DEFAULT_STRATEGY if matched * MATCHING_GAIN < coded else zlib.Z_HUFFMAN_ONLY


def _deflate(data: bytes, how: int) -> bytes:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, 8, how)
    return compressor.compress(data) + compressor.flush()


def gzip_body(parts: Sequence[Body]) -> bytes:
    """One gzip member holding the parts, in order."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, 8, strategy(parts))
    crc = 0
    size = 0
    out = [_HEADER]
    for part in parts:
        crc = zlib.crc32(part, crc)
        size += len(part)
        out.append(compressor.compress(part))
    out.append(compressor.flush(zlib.Z_FINISH))
    out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(out)


class Piece(bytes):
    """A piece of a deflate stream (bytes) with the CRC-32 and length of what it holds."""

    crc: int
    size: int

    def headers(self) -> dict[str, str]:
        """The CRC and length, as headers of the band's answer to the server process."""
        return {PIECE_CRC: str(self.crc), PIECE_SIZE: str(self.size)}


PIECE_CRC = "X-H5grove-Piece-CRC"
PIECE_SIZE = "X-H5grove-Piece-Size"
"""Headers of a band's answer carrying its piece's CRC-32 and length (never sent to clients)."""


def deflate_piece(parts: Sequence[Body], last: bool) -> Piece:
    """The parts as a piece of a raw deflate stream that other pieces may follow: it ends on
    a byte boundary without closing the stream, unless it is the `last`. Each piece has its
    own strategy (deflate blocks may differ)."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, 8, strategy(parts))
    crc = 0
    size = 0
    out = []
    for part in parts:
        crc = zlib.crc32(part, crc)
        size += len(part)
        out.append(compressor.compress(part))
    out.append(compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
    piece = Piece(b"".join(out))
    piece.crc = crc
    piece.size = size
    return piece


def gzip_pieces(pieces: Sequence[tuple[Body, dict[str, str]]]) -> list[Body]:
    """One gzip member from consecutive deflate pieces (the last one closing the stream),
    each with the headers its band's answer came with (its CRC and length)."""
    crc = 0
    size = 0
    for _, headers in pieces:
        crc = crc32_combine(crc, int(headers[PIECE_CRC]), int(headers[PIECE_SIZE]))
        size += int(headers[PIECE_SIZE])
    return [_HEADER, *(body for body, _ in pieces), struct.pack("<II", crc, size & 0xFFFFFFFF)]


_POLYNOMIAL = 0xEDB88320
"""CRC-32's polynomial, bit-reversed (as zlib computes it)."""


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """CRC-32 of A + B from CRC-32(A), CRC-32(B) and len(B) (zlib has it in C; Python's zlib
    module does not expose it). Appending a byte to A multiplies its CRC register by a
    constant matrix over GF(2); appending len(B) zero bytes applies that matrix to the power
    len(B), computed by squaring."""
    if length2 <= 0:
        return crc1
    one_bit = [_POLYNOMIAL] + [1 << n for n in range(31)]
    operator = _square(_square(_square(one_bit)))  # one zero byte
    while length2:
        if length2 & 1:
            crc1 = _apply(operator, crc1)
        length2 >>= 1
        if length2:
            operator = _square(operator)
    return crc1 ^ crc2


def _apply(matrix: list[int], vector: int) -> int:
    """A 32x32 GF(2) matrix (columns as ints) times a vector."""
    result = 0
    column = 0
    while vector:
        if vector & 1:
            result ^= matrix[column]
        vector >>= 1
        column += 1
    return result


def _square(matrix: list[int]) -> list[int]:
    """The matrix times itself."""
    return [_apply(matrix, column) for column in matrix]
