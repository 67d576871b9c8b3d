"""Data sets of ``bench_real.py``: ELPV solar cells, accessories on digits, grain textures.

* :func:`elpv_split`: electroluminescence images of solar cells from the
  ``elpv-dataset`` package (CC BY-NC-SA 4.0: read from the installed package,
  never copied into this repository), split by a fixed protocol.
* :func:`add_accessories`: an extended structural change on a varied normal
  class: a bar, ring or frame drawn over a digit, with its pixel mask.
* :func:`make_grain`: random-phase directional grain (brushed metal, wood),
  a texture family unlike :func:`anomalib_lite.datasets.make_textures`,
  with planted defects and their masks.
"""

import functools

import numpy as np
import torch
import torch.nn.functional as F

#: ELPV: defect probability of a normal cell and the least of an anomalous one.
ELPV_NORMAL, ELPV_ANOMALOUS = 0.0, 0.5
#: Fraction of each cell type's normal images used for training.
ELPV_TRAIN_FRACTION = 0.6
#: Seed of the fixed train/test split of the normal cells (not a training seed).
ELPV_SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _elpv():
    from elpv_dataset.utils import load_dataset

    images, probs, types = load_dataset()
    return images, np.asarray(probs, dtype=np.float64), np.asarray(types)


def area_resize(images, size):
    """uint8 ``(n, H, W)`` images to float32 ``(n, size, size)`` in [0, 1], by pixel area."""
    out = []
    for start in range(0, len(images), 256):
        x = torch.from_numpy(np.asarray(images[start : start + 256], dtype=np.float32) / 255.0)
        out.append(F.interpolate(x[:, None], size=(size, size), mode="area")[:, 0].numpy())
    return np.concatenate(out)


def elpv_split(cell_type, size, limit=None):
    """``(train, test, test_labels)`` of one ELPV cell type at ``size`` x ``size`` pixels.

    Normal: defect probability 0; anomalous: probability >= 0.5 (cells rated
    1/3 are left out). A fixed seeded permutation of the type's normal cells
    puts :data:`ELPV_TRAIN_FRACTION` of them in training; the test set holds
    the other normal cells and every anomalous cell of that type. ``limit``
    keeps at most that many training cells and that many test cells of each
    label (smoke runs).
    """
    images, probs, types = _elpv()
    of_type = types == cell_type
    normal = np.flatnonzero(of_type & (probs == ELPV_NORMAL))
    anomalous = np.flatnonzero(of_type & (probs >= ELPV_ANOMALOUS))
    normal = np.random.default_rng(ELPV_SPLIT_SEED).permutation(normal)
    n_train = round(ELPV_TRAIN_FRACTION * len(normal))
    train, held_out = np.sort(normal[:n_train])[:limit], np.sort(normal[n_train:])[:limit]
    anomalous = anomalous[:limit]
    test = np.r_[held_out, anomalous]
    labels = np.r_[np.zeros(len(held_out), np.int64), np.ones(len(anomalous), np.int64)]
    return area_resize(images[train], size), area_resize(images[test], size), labels


# ----------------------------------------------------------------- accessories
ACCESSORIES = ("bar", "ring", "frame")
#: Extent of an accessory, as a fraction of the image side: small and large.
ACCESSORY_SIZES = ((0.3, 0.5), (0.6, 0.9))
#: Grey level the accessory is drawn in (the digits are 0 on 1 ... 1 on 0).
ACCESSORY_CONTRASTS = (0.35, 0.65, 1.0)
#: A pixel belongs to the mask when the accessory changed it by more than this.
MASK_CHANGE = 0.05


def _outline_distance(kind, yy, xx, side, extent, rng):
    """Distance of every pixel to the accessory's centre line, in pixels."""
    cy, cx = rng.uniform(0.35 * side, 0.65 * side, 2)
    dy, dx = yy - cy, xx - cx
    if kind == "bar":
        angle = rng.uniform(0.0, np.pi)
        uy, ux = np.sin(angle), np.cos(angle)
        along = np.clip(dy * uy + dx * ux, -extent * side / 2, extent * side / 2)
        return np.hypot(dy - along * uy, dx - along * ux)
    if kind == "ring":
        return np.abs(np.hypot(dy, dx) - extent * side / 2)
    hy, hx = extent * side / 2 * rng.uniform(0.8, 1.2, 2)
    qy, qx = np.abs(dy) - hy, np.abs(dx) - hx
    outside = np.hypot(np.maximum(qy, 0.0), np.maximum(qx, 0.0))
    return np.where((qy <= 0) & (qx <= 0), -np.maximum(qy, qx), outside)


def add_accessories(images, random_state):
    """Draw one accessory on each image; ``(images, masks, kinds)``.

    Each image gets a bar, a ring or a frame (uniformly), small or large,
    in one of :data:`ACCESSORY_CONTRASTS`, drawn anti-aliased with a line
    width of 1 to 2 pixels per 28 pixels of side. The mask holds the pixels
    the drawing changed by more than :data:`MASK_CHANGE`; an accessory that
    changed none (drawn along a stroke of its own grey) is drawn again, so
    that every image labelled anomalous differs from its normal self.
    """
    rng = np.random.default_rng(random_state)
    out = np.array(images, dtype=np.float32, copy=True)
    n, side = out.shape[0], out.shape[-1]
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    kinds = rng.choice(ACCESSORIES, n)
    masks = np.zeros(out.shape, dtype=bool)
    for i in range(n):
        while not masks[i].any():
            extent = rng.uniform(*ACCESSORY_SIZES[rng.integers(len(ACCESSORY_SIZES))])
            level = ACCESSORY_CONTRASTS[rng.integers(len(ACCESSORY_CONTRASTS))]
            width = rng.uniform(1.0, 2.0) * side / 28
            dist = _outline_distance(kinds[i], yy, xx, side, extent, rng)
            alpha = np.clip(width / 2 + 0.5 - dist, 0.0, 1.0).astype(np.float32)
            new = out[i] + alpha * (np.float32(level) - out[i])
            masks[i] = np.abs(new - out[i]) > MASK_CHANGE
        out[i] = new
    return out, masks, kinds


def accessory_split(train, test_normal, random_state):
    """Test set of the accessory benchmark: half of ``test_normal`` gets an accessory.

    Returns ``(test, labels, masks)``; the other half stays as it was.
    """
    rng = np.random.default_rng(random_state)
    picked = np.sort(rng.permutation(len(test_normal))[: len(test_normal) // 2])
    test = np.array(test_normal, dtype=np.float32, copy=True)
    masks = np.zeros(test.shape, dtype=bool)
    test[picked], masks[picked], _ = add_accessories(test[picked], rng)
    labels = np.zeros(len(test), np.int64)
    labels[picked] = 1
    return test, labels, masks


# ------------------------------------------------------------------- grain
GRAIN_DEFECTS = ("scratch", "knot", "dent", "smear")


def _grain_field(rng, size, angle):
    """Random-phase noise whose spectrum is a band around the direction ``angle``."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    radius = np.hypot(fy, fx)
    theta = np.arctan2(fy, fx)
    # across the grain: frequencies near the normal of the grain direction
    off = np.angle(np.exp(2j * (theta - angle - np.pi / 2))) / 2
    band = np.exp(-0.5 * (off / 0.12) ** 2) * np.exp(-0.5 * ((radius - 0.12) / 0.06) ** 2)
    band[0, 0] = 0.0
    noise = rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))
    field = np.real(np.fft.ifft2(noise * band))
    return field / max(field.std(), 1e-12)


def make_grain(n_samples, image_size, anomaly_ratio, random_state):
    """Directional grain textures with planted defects.

    Each image is random-phase noise band-passed around one direction (the
    grain, ±0.15 rad around a diagonal) with a random brightness, contrast
    and pixel noise, so that no two images share a phase. Defects:
    ``'scratch'`` (a thin bright line across the grain), ``'knot'`` (an
    ellipse whose grain runs crosswise, same brightness and contrast),
    ``'dent'`` (a disc 0.2 darker, its grain kept) and ``'smear'`` (a blob
    whose contrast is cut to 30% around its mean).

    Returns a dict with ``images`` (float32, ``(n, S, S)`` in [0, 1]),
    ``labels`` (1 = defect), ``masks`` and ``defect_types``.
    """
    rng = np.random.default_rng(random_state)
    size = image_size
    images = np.empty((n_samples, size, size), np.float32)
    angles = np.pi / 4 + rng.uniform(-0.15, 0.15, n_samples)
    contrast = rng.uniform(0.10, 0.14, n_samples)
    brightness = rng.uniform(0.4, 0.6, n_samples)
    for i in range(n_samples):
        images[i] = brightness[i] + contrast[i] * _grain_field(rng, size, angles[i])
    images += rng.normal(0.0, 0.02, images.shape).astype(np.float32)
    n_bad = round(anomaly_ratio * n_samples)
    bad = np.sort(rng.choice(n_samples, n_bad, replace=False))
    kinds = np.full(n_samples, "good", dtype="<U7")
    masks = np.zeros(images.shape, dtype=bool)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    s = size / 64
    for i in bad:
        kind = GRAIN_DEFECTS[rng.integers(len(GRAIN_DEFECTS))]
        kinds[i] = kind
        cy, cx = rng.uniform(0.25 * size, 0.75 * size, 2)
        dy, dx = yy - cy, xx - cx
        img = images[i]
        if kind == "scratch":
            a = angles[i] + np.pi / 2 + rng.uniform(-0.3, 0.3)
            half = rng.uniform(0.15, 0.3) * size
            along = np.clip(dy * np.sin(a) + dx * np.cos(a), -half, half)
            dist = np.hypot(dy - along * np.sin(a), dx - along * np.cos(a))
            mask = dist <= 0.75 * max(s, 1.0)
            img[mask] += 0.5 * (0.95 - img[mask])
        elif kind == "knot":
            r = rng.uniform(6.0, 10.0) * s
            mask = (dy / r) ** 2 + (dx / (0.7 * r)) ** 2 <= 1.0
            cross = brightness[i] + contrast[i] * _grain_field(rng, size, angles[i] + np.pi / 2)
            img[mask] = cross[mask]
        elif kind == "dent":
            r = rng.uniform(3.0, 6.0) * s
            mask = np.hypot(dy, dx) <= r
            img[mask] -= 0.2
        else:
            r = rng.uniform(6.0, 10.0) * s
            mask = np.hypot(dy, dx) <= r
            mean = img[mask].mean()
            img[mask] = mean + 0.3 * (img[mask] - mean)
        masks[i] = mask
    labels = np.zeros(n_samples, np.int64)
    labels[bad] = 1
    return {
        "images": np.clip(images, 0.0, 1.0),
        "labels": labels,
        "masks": masks,
        "defect_types": kinds,
    }
