"""Pen strokes from an MNIST digit: thin the digit to a one-pixel skeleton, then walk the
skeleton into polylines. The browser test and `make screenshot` draw these with pointer
events, so the page sees a digit the way a person's pen would produce it.
"""

from __future__ import annotations

import numpy as np

# 8-neighbours in the order of the Zhang-Suen definition: P2..P9 (N, NE, E, SE, S, SW, W, NW)
_RING = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean image (vectorised over the image, iterated to a fixpoint)."""
    img = np.pad(np.asarray(mask, bool), 1).astype(np.uint8)
    while True:
        changed = False
        for step in (0, 1):
            p = [np.roll(img, (-dy, -dx), axis=(0, 1)) for dy, dx in _RING]  # p[k] = neighbour k
            count = sum(p)
            ring = p + [p[0]]
            transitions = sum(((ring[k] == 0) & (ring[k + 1] == 1)).astype(np.uint8) for k in range(8))
            p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
            if step == 0:
                cond = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                cond = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (img == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & cond
            if remove.any():
                img[remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def _neighbours(pt, pixels):
    y, x = pt
    return [(y + dy, x + dx) for dy, dx in _RING if (y + dy, x + dx) in pixels]


def skeleton_paths(skel: np.ndarray) -> list[list[tuple[int, int]]]:
    """Order skeleton pixels into polylines (row, col): start at line ends, then at loops."""
    pixels = {(int(y), int(x)) for y, x in zip(*np.nonzero(skel))}
    edges_done: set = set()
    paths = []

    def walk(start):
        path, cur = [start], start
        while True:
            nxt = [n for n in _neighbours(cur, pixels) if frozenset((cur, n)) not in edges_done]
            if not nxt:
                return path
            # prefer 4-neighbours, then the straightest continuation
            nxt.sort(key=lambda n: (abs(n[0] - cur[0]) + abs(n[1] - cur[1]), n))
            n = nxt[0]
            edges_done.add(frozenset((cur, n)))
            # skip the diagonal that closes a small triangle with the step just taken
            for m in _neighbours(cur, pixels):
                if m != n and max(abs(m[0] - n[0]), abs(m[1] - n[1])) == 1:
                    edges_done.add(frozenset((cur, m)))
            path.append(n)
            cur = n

    def degree(p):
        return sum(1 for n in _neighbours(p, pixels) if frozenset((p, n)) not in edges_done)

    while True:
        open_pts = [p for p in pixels if degree(p) > 0]
        if not open_pts:
            break
        ends = [p for p in open_pts if degree(p) == 1]
        start = min(ends or open_pts)  # line ends first; else anywhere on a loop
        path = walk(start)
        if len(path) > 1:
            paths.append(path)
    for p in pixels:  # isolated pixels: a dot
        if not _neighbours(p, pixels):
            paths.append([p, p])
    return paths


def digit_strokes(img28: np.ndarray, size: float = 280.0, margin: float = 0.12,
                  threshold: int = 100, min_len: int = 7) -> list[list[tuple[float, float]]]:
    """MNIST digit (28x28 uint8) -> strokes as lists of (x, y) points on a size x size canvas."""
    img = np.asarray(img28)
    mask = img >= threshold
    if not mask.any():
        return []
    from PIL import Image

    # thin at 3x a smooth upscale: keeps small loops open and the skeleton free of stair steps
    big = Image.fromarray(img).resize((3 * img.shape[1], 3 * img.shape[0]), Image.Resampling.BILINEAR)
    up = np.asarray(big) >= threshold
    skel = thin(up)
    scale = size * (1 - 2 * margin) / up.shape[0]
    off = size * margin
    strokes = []
    paths = skeleton_paths(skel)
    longest = max(len(p) for p in paths)
    for path in paths:
        if len(path) < min_len and len(path) < longest:  # a thinning spur, not a pen stroke
            continue
        pts = [(off + (x + 0.5) * scale, off + (y + 0.5) * scale) for y, x in path[::2] + path[-1:]]
        strokes.append(pts)
    return strokes
