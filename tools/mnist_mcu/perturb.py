"""Deterministic perturbed copies of MNIST images (numpy only: no PyTorch needed).

Each family draws its parameters from numpy's Generator seeded by (seed, family), so a copy is
the same on every run and is generated on the fly, never stored.
"""

from __future__ import annotations

import numpy as np

CENTRE = 13.5  # the middle of a 28x28 image in pixel-centre coordinates
FAMILIES = {
    "clean": "the test set unchanged",
    "rotation": "rotated by a uniform angle in [-20, 20] degrees about the image centre",
    "shift": "shifted by whole pixels, uniform in [-4, 4] on each axis",
    "scale": "scaled by a uniform factor in [0.7, 1.3] about the image centre",
    "thickness": "strokes one pixel thicker or thinner (2x2 grey-level dilation / erosion, half each)",
    "bbox_centre": "re-centred by the bounding box of the ink instead of the centre of mass",
}


def warp(images: np.ndarray, inv: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Bilinear resampling: output pixel p reads input at inv @ (p - c) + c + offset.
    images uint8 [N,28,28]; inv [N,2,2] acting on (x, y); offset [N,2]. Returns uint8."""
    n, h, w = images.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    px, py = xs - CENTRE, ys - CENTRE
    sx = inv[:, 0, 0, None, None] * px + inv[:, 0, 1, None, None] * py + CENTRE + offset[:, 0, None, None]
    sy = inv[:, 1, 0, None, None] * px + inv[:, 1, 1, None, None] * py + CENTRE + offset[:, 1, None, None]
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = sx - x0, sy - y0
    src = images.astype(np.float64)
    idx = np.arange(n)[:, None, None]

    def at(yy, xx):
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        return np.where(ok, src[idx, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 0.0)

    out = ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
           + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def shift_whole(images: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Integer shifts (content moves by +dx right, +dy down); what leaves the frame is lost."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    for i, (x, y) in enumerate(zip(dx.tolist(), dy.tolist())):
        src = images[i, max(0, -y):h - max(0, y), max(0, -x):w - max(0, x)]
        out[i, max(0, y):max(0, y) + src.shape[0], max(0, x):max(0, x) + src.shape[1]] = src
    return out


def thickness(images: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Grey-level dilation (sign > 0) or erosion (sign < 0) with a 2x2 element."""
    p = np.pad(images, ((0, 0), (0, 1), (0, 1)))
    views = [p[:, :-1, :-1], p[:, :-1, 1:], p[:, 1:, :-1], p[:, 1:, 1:]]
    dil, ero = np.maximum.reduce(views), np.minimum.reduce(views)
    s = sign[:, None, None]
    return np.where(s > 0, dil, np.where(s < 0, ero, images)).astype(np.uint8)


def bbox_centre(images: np.ndarray) -> np.ndarray:
    """Move each digit so that its ink bounding box is centred (MNIST centres by mass)."""
    dx, dy = np.zeros(len(images), np.int64), np.zeros(len(images), np.int64)
    for i, im in enumerate(images):
        rows, cols = np.nonzero(im.any(1))[0], np.nonzero(im.any(0))[0]
        if len(rows):
            dy[i] = int(np.rint(CENTRE - (rows[0] + rows[-1]) / 2))
            dx[i] = int(np.rint(CENTRE - (cols[0] + cols[-1]) / 2))
    return shift_whole(images, dx, dy)


def perturb(images: np.ndarray, family: str, seed: int = 0) -> np.ndarray:
    """A perturbed copy of uint8 images [N,28,28] (or [N,784]); same shape and dtype back."""
    if family not in FAMILIES:
        raise ValueError(f"unknown perturbation family {family!r}")
    shape = images.shape
    ims = images.reshape(-1, 28, 28)
    n = len(ims)
    rng = np.random.default_rng([seed, list(FAMILIES).index(family)])
    if family == "clean":
        out = ims.copy()
    elif family == "rotation":
        a = np.deg2rad(rng.uniform(-20, 20, n))
        c, s = np.cos(a), np.sin(a)
        out = warp(ims, np.stack([np.stack([c, s], 1), np.stack([-s, c], 1)], 1), np.zeros((n, 2)))
    elif family == "shift":
        d = rng.integers(-4, 5, (n, 2))  # one draw per image: a --limit subset is a prefix of the full set
        out = shift_whole(ims, d[:, 0], d[:, 1])
    elif family == "scale":
        k = 1 / rng.uniform(0.7, 1.3, n)
        out = warp(ims, np.eye(2)[None] * k[:, None, None], np.zeros((n, 2)))
    elif family == "thickness":
        out = thickness(ims, np.where(rng.random(n) < 0.5, -1, 1))
    else:
        out = bbox_centre(ims)
    return out.reshape(shape)
