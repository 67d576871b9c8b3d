"""A folder in the layout of the CelebA release, with drawn faces.

CelebA cannot be downloaded here, so the loader's tests, the glasses example's
test and the loader benchmark read a folder written by
:func:`make_celeba_layout`: the four files and the folder of the real release,
in their formats, with 178x218 JPEGs of drawn faces (hair, skin and
background vary) of which a share wear drawn glasses, marked in the
``Eyeglasses`` column. The eye, nose and mouth positions drawn are the ones
written to the landmark file.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
)
#: The 40 attribute names of ``list_attr_celeba.txt``, in the release's order.
ATTRIBUTES = _NAMES.split()
LANDMARK_HEADER = (
    "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
    "leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
)
WIDTH, HEIGHT = 178, 218
#: Mean landmarks of the aligned release: eyes, nose, mouth corners (x, y).
MEAN_LANDMARKS = np.array([[69, 111], [108, 111], [88, 134], [72, 152], [105, 152]])


def _face(rng, landmarks, glasses):
    """One RGB picture of a face with the given landmarks."""
    background = tuple(int(v) for v in rng.integers(0, 256, 3))
    img = Image.new("RGB", (WIDTH, HEIGHT), background)
    draw = ImageDraw.Draw(img)
    for _ in range(2):  # background clutter
        x0, y0 = rng.integers(-40, WIDTH, 2)
        w, h = rng.integers(30, 120, 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
    eyes = landmarks[:2]
    cx = eyes[:, 0].mean()
    top = eyes[:, 1].mean()
    half_w, half_h = rng.uniform(42, 52), rng.uniform(58, 68)
    cy = top + rng.uniform(12, 18)
    hair = tuple(int(v) for v in rng.integers(10, 200) * np.array([1.0, 0.8, 0.6]))
    hair_w = half_w + rng.uniform(4, 20)
    draw.ellipse(
        [cx - hair_w, cy - half_h - rng.uniform(8, 30), cx + hair_w, cy + half_h * 0.6], fill=hair
    )
    skin = tuple(int(v) for v in rng.uniform(90, 240) * np.array([1.0, 0.8, 0.68]))
    draw.ellipse([cx - half_w, cy - half_h, cx + half_w, cy + half_h], fill=skin)
    for x, y in eyes:
        draw.ellipse([x - 7, y - 4, x + 7, y + 4], fill=(245, 245, 245))
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(40, 30, 20))
    nose, mouth = landmarks[2], landmarks[3:]
    draw.line([nose[0], nose[1] - 14, nose[0] - 3, nose[1]], fill=(120, 80, 70), width=2)
    draw.line([*mouth[0], *mouth[1]], fill=(150, 40, 50), width=4)
    if glasses:
        frame = tuple(int(v) for v in rng.integers(0, 60, 3))
        r = rng.uniform(11, 14)
        for x, y in eyes:
            draw.ellipse([x - r, y - r * 0.8, x + r, y + r * 0.8], outline=frame, width=3)
        (lx, ly), (rx, ry) = eyes
        draw.line([lx + r, ly, rx - r, ry], fill=frame, width=3)
        draw.line([lx - r, ly, cx - half_w, ly - 2], fill=frame, width=3)
        draw.line([rx + r, ry, cx + half_w, ry - 2], fill=frame, width=3)
    # Sensor grain, so that the JPEGs hold about as many bytes as photos of
    # this size (9 kB; CelebA's average 7 kB) and take as long to decode.
    grain = rng.integers(-6, 7, (HEIGHT, WIDTH, 3), dtype=np.int16)
    return Image.fromarray(np.clip(np.asarray(img) + grain, 0, 255).astype(np.uint8))


def make_celeba_layout(
    root,
    n_images=200,
    *,
    glasses_ratio=0.25,
    nested=False,
    partition_sizes=None,
    images_of=None,
    random_state=0,
    quality=90,
):
    """Write a CelebA-layout folder of ``n_images`` drawn faces; return its path.

    ``nested=True`` writes it under ``root/celeba/``, as torchvision's
    ``CelebA(root)`` keeps it. The partitions are contiguous, as in the
    release: ``partition_sizes`` (train, valid, test) images, by default the
    first 80% of the images ``train``, the next 10% ``valid``, the rest
    ``test``. ``images_of='test'`` (or another partition) writes the JPEGs of
    that partition only, while the annotation files list every image, as a
    quick stand-in for the full release. Exactly
    ``round(glasses_ratio * n_images)`` faces wear glasses; the other 39
    attributes are random.
    """
    rng = np.random.default_rng(random_state)
    folder = Path(root) / "celeba" if nested else Path(root)
    images = folder / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n_images)]
    glasses = np.zeros(n_images, dtype=bool)
    glasses[rng.permutation(n_images)[: round(glasses_ratio * n_images)]] = True
    attributes = np.where(rng.random((n_images, len(ATTRIBUTES))) < 0.3, 1, -1)
    attributes[:, ATTRIBUTES.index("Eyeglasses")] = np.where(glasses, 1, -1)
    landmarks = np.rint(MEAN_LANDMARKS + rng.normal(0, 2.0, (n_images, 5, 2))).astype(int)
    if partition_sizes is None:
        cuts = [round(0.8 * n_images), round(0.9 * n_images)]
    else:
        if sum(partition_sizes) != n_images:
            raise ValueError(f"partition_sizes={partition_sizes} must add up to {n_images}.")
        cuts = np.cumsum(partition_sizes)[:2]
    split = np.searchsorted(cuts, np.arange(n_images), side="right")
    write = np.ones(n_images, dtype=bool)
    if images_of is not None:
        write = split == ("train", "valid", "test").index(images_of)
    for i in np.flatnonzero(write):
        _face(rng, landmarks[i], glasses[i]).save(images / names[i], quality=quality)

    def table(header, rows):
        return "\n".join([str(n_images), header, *rows]) + "\n"

    (folder / "list_attr_celeba.txt").write_text(
        table(
            " ".join(ATTRIBUTES) + " ",
            (
                f"{n} " + " ".join(f"{v:>2}" for v in row)
                for n, row in zip(names, attributes, strict=True)
            ),
        )
    )
    (folder / "list_landmarks_align_celeba.txt").write_text(
        table(
            LANDMARK_HEADER,
            (
                f"{n:<10}" + "".join(f"{v:>6}" for v in row.ravel())
                for n, row in zip(names, landmarks, strict=True)
            ),
        )
    )
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{n} {s}\n" for n, s in zip(names, split, strict=True))
    )
    return folder
