"""Your own images: the lines to adapt to a folder of pictures.

Put your images in the MVTec AD layout (only ``train/good`` is required)::

    my_parts/train/good/*.png               normal images, to learn from
    my_parts/test/good/*.png                normal test images      (optional)
    my_parts/test/<defect>/*.png            defective test images   (optional)
    my_parts/ground_truth/<defect>/<name>_mask.png   defect masks   (optional)

and run::

    python examples/your_own_images.py --data my_parts [--size 128] [--output-dir DIR]

The script fits a ``ConvAutoencoderDetector`` on ``train/good``, holding a
tenth out to set the threshold on (``validation_fraction=0.1``: a threshold
on the training images would flag most new normal ones), prints the image
ROC-AUC (and the pixel ROC-AUC where masks exist), writes the input |
reconstruction | difference figure of the test images it ranks most
anomalous (of training images without a labelled ``test`` folder), and
saves the model to a file that holds no code (``io.save``); it keeps an
earlier figure and model unless given ``--overwrite``. Any folder of new
images is then scored with ``load_images`` (see ``score_new_images``).

Without ``--data`` it first writes a demonstration folder of woven textures
(``make_textures``) as PNG files into a temporary directory; ``--fast`` makes
it tiny.
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from anomalib_lite import ConvAutoencoderDetector, io
from anomalib_lite.datasets import load_folder_dataset, load_images, make_textures
from anomalib_lite.metrics import pixel_roc_auc_score
from anomalib_lite.visualization import reconstruction_figure


def fit_and_evaluate(root, size, max_iter, output_dir, overwrite=False, seed=0):
    """The lines to adapt: load the folder, fit on normal images, evaluate, save."""
    figure, model = output_dir / "your_own_images.png", output_dir / "your_model.model"
    if not overwrite and (figure.exists() or model.exists()):
        raise SystemExit(f"{figure} or {model} exists; pass --overwrite to replace them")
    if (root / "test").is_dir():
        data = load_folder_dataset(root, size=size)  # uint8, (n, H, W) grayscale
        train = data.train_images
    else:  # only train/good: nothing to evaluate on
        data, train = None, load_images(root / "train" / "good", size=size)
    epochs = {} if max_iter is None else {"max_iter": max_iter}  # None: the default
    # A tenth held out of training sets the threshold that predict uses.
    det = ConvAutoencoderDetector(validation_fraction=0.1, random_state=seed, **epochs)
    det.fit(train)  # normal images only
    print(f"fitted on {len(train)} images of {train.shape[1:]}")

    if data is not None and len(np.unique(data.test_labels)) == 2:
        scores = -det.score_samples(data.test_images)  # higher = more anomalous
        print(f"image ROC-AUC: {roc_auc_score(data.test_labels, scores):.3f}")
        if data.test_masks is not None:
            maps = det.anomaly_map(data.test_images)
            print(f"pixel ROC-AUC: {pixel_roc_auc_score(data.test_masks, maps):.3f}")
        worst = np.argsort(scores)[::-1][:4]
        reconstruction_figure(
            det,
            data.test_images[worst],
            masks=None if data.test_masks is None else data.test_masks[worst],
            row_titles=list(data.test_defect_types[worst]),
            path=figure,
            overwrite=overwrite,
        )
    else:  # no labelled test folder: show training images instead
        reconstruction_figure(det, train[:4], path=figure, overwrite=overwrite)
    io.save(det, model, overwrite=overwrite)
    return det


def score_new_images(det, folder, size):
    """Score a folder of new images with a fitted detector: +1 normal, -1 anomaly."""
    images, paths = load_images(folder, size=size, return_paths=True)
    for path, label in zip(paths, det.predict(images), strict=True):
        print(f"  {Path(path).name}: {'anomaly' if label == -1 else 'normal'}")


def write_demo_folder(root, n_train, image_size, seed=0):
    """A small data set in the MVTec AD layout, as PNG files, from make_textures."""
    train = make_textures(n_train, image_size=image_size, anomaly_ratio=0.0, random_state=seed)
    test = make_textures(
        max(8, n_train // 3), image_size=image_size, anomaly_ratio=0.5, random_state=seed + 1
    )
    for i, image in enumerate(train.images):
        _write_png(root / "train" / "good" / f"{i:04d}.png", image)
    for i, (image, kind, mask) in enumerate(
        zip(test.images, test.defect_types, test.masks, strict=True)
    ):
        _write_png(root / "test" / kind / f"{i:04d}.png", image)
        if kind != "good":
            _write_png(root / "ground_truth" / kind / f"{i:04d}_mask.png", mask)


def _write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.asarray(image, dtype=float) * 255).astype(np.uint8)).save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="folder in the MVTec AD layout")
    parser.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: max_iter's)")
    parser.add_argument("--fast", action="store_true", help="tiny demo folder, few epochs")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "output")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier figure and model"
    )
    args = parser.parse_args(argv)
    fast = args.fast or os.environ.get("ANOMALIB_LITE_FAST") == "1"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    epochs = args.epochs if args.epochs is not None else (3 if fast else None)
    size = None if args.size is None else (args.size, args.size)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            root = Path(tmp) / "demo_textures"
            write_demo_folder(root, n_train=24 if fast else 200, image_size=32 if fast else 64)
            print(f"wrote a demonstration folder to {root}")
        det = fit_and_evaluate(root, size, epochs, args.output_dir, args.overwrite)
        if (root / "test" / "good").is_dir():
            print(f"predictions for {root / 'test' / 'good'}:")
            score_new_images(det, root / "test" / "good", size)
    print(f"\nFigure and model written to {args.output_dir}/:")
    print("  your_own_images.png, your_model.model")


if __name__ == "__main__":
    main()
