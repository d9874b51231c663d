"""Image encoding 3 ("context"): static context models and a binary rANS coder for 28x28 digits.

An image is coded as binary decisions, each with a static probability from a table built once
from the MNIST *training* images (docs/protocol.md):
    1. the zero map, row-major: is pixel (r, c) non-zero? The context is 8 already-coded
       neighbours of the map: W, N, NW, NE, WW, NN, NWW, NEE (bit 0..7; outside the image = 0).
    2. then each non-zero pixel's value 1..255, row-major, as 8 bits MSB first down a binary
       tree (node 1, then node*2+bit). The context is the number of non-zero pixels among its
       8 neighbours in the *whole* zero map (0..8: interior pixels are near 255, edge pixels
       are the anti-aliased ones); the first 4 levels (nodes 1..15) have a table per count,
       the last 4 (nodes 16..255) one shared table.
Probabilities are 8 bits: p1 = P(bit = 1) * 256, 1..255. The coder is rANS with 8-bit
probabilities, a 32-bit state in [2^23, 2^31) and byte renormalisation; the payload is the
final encoder state (4 bytes, little endian), then the renormalisation bytes in decoding order.
The decoder must end with the state back at 2^23 and every byte read: anything else is damage.

Zero map ~15 bytes, values ~109 bytes: about 128 bytes per MNIST test image instead of the
retired Huffman code's 145 (encoding 2, protocol version 3). The tables are 631 bytes.
The encoder works on many images at once (numpy, one step per decision position over all
images), so a test set costs about a second, not a Python loop per bit.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

SIDE = 28
SIZE = SIDE * SIDE
RANS_L = 1 << 23            # the state's lower bound; the encoder starts and the decoder ends here
MASK_NEIGHBOURS = ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-1, -2), (-1, 2))
CTX_LEVELS = 4              # tree levels with a table per neighbour count (nodes 1..15)
CTX_NODES = (1 << CTX_LEVELS) - 1
VALUE_TABLE = 9 * CTX_NODES + (255 - CTX_NODES)  # 135 per-count entries + 240 shared
TABLES_JSON = Path(__file__).with_name("image_codec_tables.json")
HEADER = Path(__file__).resolve().parents[2] / "firmware" / "app" / "image_tables.h"


class CodecError(ValueError):
    pass


# ------------------------------------------------------------------ contexts (vectorised)

def _shifted(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """mask[:, r+dy, c+dx] with zeros outside the image; mask is [N, 28, 28] of 0/1."""
    p = np.pad(mask, ((0, 0), (2, 2), (2, 2)))
    return p[:, 2 + dy:2 + dy + SIDE, 2 + dx:2 + dx + SIDE]


def mask_contexts(mask: np.ndarray) -> np.ndarray:
    """[N, 784] context of each zero-map decision (bits from MASK_NEIGHBOURS)."""
    m = mask.reshape(-1, SIDE, SIDE).astype(np.int32)
    ctx = np.zeros_like(m)
    for bit, (dy, dx) in enumerate(MASK_NEIGHBOURS):
        ctx |= _shifted(m, dy, dx) << bit
    return ctx.reshape(len(m), SIZE)


def neighbour_counts(mask: np.ndarray) -> np.ndarray:
    """[N, 784] non-zero neighbours (0..8) of each pixel in the whole zero map."""
    m = mask.reshape(-1, SIDE, SIDE).astype(np.int32)
    n = np.zeros_like(m)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                n += _shifted(m, dy, dx)
    return n.reshape(len(m), SIZE)


def value_index(count, node):
    """Index into the value table of tree node 1..255 for a pixel with `count` neighbours."""
    return np.where(node <= CTX_NODES, count * CTX_NODES + node - 1, 9 * CTX_NODES + node - CTX_NODES - 1)


def _decisions(images: np.ndarray):
    """Per image, its decisions in coding order as (table index, bit) arrays, left-aligned in
    [N, width] arrays, with the count per image. Table indices: 0..255 mask, 256.. value."""
    n = len(images)
    mask = images > 0
    nnz = mask.sum(axis=1)
    width = SIZE + 8 * int(nnz.max(initial=0))
    table = np.zeros((n, width), np.int32)
    bits = np.zeros((n, width), np.uint8)
    table[:, :SIZE] = mask_contexts(mask)
    bits[:, :SIZE] = mask
    rows, cols = np.nonzero(mask)          # raster order within each image
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(nnz) - nnz, nnz)
    values = images[rows, cols].astype(np.int32)
    counts = neighbour_counts(mask)[rows, cols]
    for level in range(8):
        node = (values >> (8 - level)) | (1 << level)  # the tree node before this level's bit
        col = SIZE + rank * 8 + level
        table[rows, col] = 256 + value_index(counts, node)
        bits[rows, col] = (values >> (7 - level)) & 1
    return table, bits, SIZE + 8 * nnz


# ------------------------------------------------------------------ encode / decode

def encode_many(images, chunk: int = 2048) -> list[bytes]:
    """Encoding-3 payloads (without the encoding byte) of many 28x28 images [N, 784]."""
    images = np.asarray(images, np.uint8).reshape(-1, SIZE)
    out: list[bytes] = []
    for start in range(0, len(images), chunk):
        out += _encode_chunk(images[start:start + chunk])
    return out


def encode(pixels) -> bytes:
    return encode_many(np.asarray(pixels, np.uint8).reshape(1, SIZE))[0]


def _probabilities() -> np.ndarray:
    t = tables()
    return np.array(t["mask"] + t["value"], np.int64)


def _encode_chunk(images: np.ndarray) -> list[bytes]:
    table, bits, lengths = _decisions(images)
    p1 = _probabilities()[table]
    freq = np.where(bits == 1, p1, 256 - p1)
    start = np.where(bits == 1, 256 - p1, 0)
    # rANS codes backwards: sort images by length so that, at step j, the images still
    # coding are a prefix (a view, not a mask)
    order = np.argsort(-lengths, kind="stable")
    freq, start, lengths = freq[order], start[order], lengths[order]
    active = np.searchsorted(-lengths, -np.arange(freq.shape[1]), side="left")  # images with > j decisions
    x = np.full(len(images), RANS_L, np.int64)
    emitted = np.zeros((len(images), freq.shape[1]), np.uint8)  # at most one byte per decision
    n_out = np.zeros(len(images), np.int64)
    for j in range(freq.shape[1] - 1, -1, -1):
        a = active[j]
        f, xs = freq[:a, j], x[:a]
        spill = np.flatnonzero(xs >= RANS_L * f)
        if len(spill):
            emitted[spill, n_out[spill]] = xs[spill] & 0xFF
            n_out[spill] += 1
            xs[spill] >>= 8
        q, r = np.divmod(xs, f)
        x[:a] = (q << 8) + r + start[:a, j]
    result: list[bytes] = [b""] * len(images)
    for k, i in enumerate(order):
        result[i] = int(x[k]).to_bytes(4, "little") + emitted[k, :n_out[k]][::-1].tobytes()
    return result


def decode_prefix(data: bytes, size: int = SIZE) -> tuple[bytes, int]:
    """The device's decoder in Python (tests, fakes; same checks as firmware/app/image.c): the
    image at the start of `data` -> (pixels, bytes it took). The image ends at its last decision,
    where the state is back at 2^23 (INFER_BATCH puts images back to back); protocol.decode_image
    refuses bytes after it."""
    if size != SIZE:
        raise CodecError(f"context: defined for {SIZE} pixels, not {size}")
    if len(data) < 4:
        raise CodecError("context: shorter than the 4-byte state")
    probs = _probabilities().tolist()
    x, pos = int.from_bytes(data[:4], "little"), 4

    def bit(p1: int) -> int:
        nonlocal x, pos
        slot, f0 = x & 0xFF, 256 - p1
        b = int(slot >= f0)
        x = p1 * (x >> 8) + slot - f0 if b else f0 * (x >> 8) + slot
        if x < RANS_L:
            if pos >= len(data):
                raise CodecError("context: data ends inside the image")
            x = (x << 8) | data[pos]
            pos += 1
        return b

    px = [0] * SIZE

    def on(r, c):
        return 0 <= r < SIDE and 0 <= c < SIDE and px[r * SIDE + c] != 0

    for i in range(SIZE):
        r, c = divmod(i, SIDE)
        ctx = sum(on(r + dy, c + dx) << k for k, (dy, dx) in enumerate(MASK_NEIGHBOURS))
        px[i] = bit(probs[ctx])
    for i in range(SIZE):
        if not px[i]:
            continue
        r, c = divmod(i, SIDE)
        count = sum(on(r + dy, c + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
        node = 1
        for _ in range(8):
            node = node * 2 + bit(probs[256 + int(value_index(count, node))])
        if node == 256:
            raise CodecError("context: a non-zero pixel decoded to 0")
        px[i] = node - 256
    if x != RANS_L:
        raise CodecError("context: damaged data (the state does not end at 2^23)")
    return bytes(px), pos


# ------------------------------------------------------------------ building the tables

def build_tables(images: np.ndarray) -> dict[str, list[int]]:
    """8-bit probabilities of a 1 per table entry, counted on `images` [N, 784] (deterministic)."""
    images = np.asarray(images, np.uint8).reshape(-1, SIZE)
    ones = np.zeros(256 + VALUE_TABLE, np.int64)
    total = np.zeros(256 + VALUE_TABLE, np.int64)
    for start in range(0, len(images), 4096):
        table, bits, lengths = _decisions(images[start:start + 4096])
        used = np.arange(table.shape[1]) < lengths[:, None]
        np.add.at(ones, table[used], bits[used])
        np.add.at(total, table[used], 1)
    # a small prior keeps unseen contexts at 1/2 and no probability at 0 or 1
    p1 = np.clip(np.rint(256 * (ones + 0.4) / (total + 0.8)), 1, 255).astype(int).tolist()
    return {"mask": p1[:256], "value": p1[256:]}


def write_tables(built: dict[str, list[int]], path: Path = TABLES_JSON):
    path.write_text(json.dumps(built, separators=(",", ":")) + "\n")


@lru_cache(maxsize=1)
def tables() -> dict[str, list[int]]:
    data = json.loads(TABLES_JSON.read_text())
    return {"mask": data["mask"], "value": data["value"]}


def c_header() -> str:
    """firmware/app/image_tables.h: the same tables for the device's decoder."""
    t = tables()

    def rows(values):
        return ",\n".join("    " + ", ".join(f"{v:3d}" for v in values[i:i + 16]) for i in range(0, len(values), 16))

    return "\n".join([
        "/* Generated by `python -m mnist_mcu.image_codec --write` from",
        " * tools/mnist_mcu/image_codec_tables.json; do not edit (a test checks it is current).",
        " * Image encoding 3: P(bit = 1) * 256 per context (docs/protocol.md). */",
        "#ifndef IMAGE_TABLES_H", "#define IMAGE_TABLES_H", "", "#include <stdint.h>", "",
        f"#define IMG_CTX_NODES {CTX_NODES}u /* value-tree nodes with a table per neighbour count */", "",
        f"static const uint8_t img_mask_p1[256] = {{\n{rows(t['mask'])}\n}};", "",
        f"static const uint8_t img_value_p1[{VALUE_TABLE}] = {{\n{rows(t['value'])}\n}};", "",
        "#endif", ""])


def main(argv=None):
    import argparse

    from .data import load_mnist

    ap = argparse.ArgumentParser(description="rebuild image encoding 3's tables from the MNIST training set")
    ap.add_argument("--write", action="store_true", help="write the JSON tables and the C header")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    images, _ = load_mnist("train", args.data_dir)
    built = build_tables(images.reshape(len(images), -1))
    if args.write:
        write_tables(built)
        tables.cache_clear()
        HEADER.write_text(c_header())
        print(f"wrote {TABLES_JSON} and {HEADER}")
    else:
        print("tables are current" if built == tables() else "tables differ from the committed ones")


if __name__ == "__main__":
    main()
