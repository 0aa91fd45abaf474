"""Pretrain PART on a folder of your own images, then read its classes with a linear probe.

Your folder has one sub-folder per class (torchvision's ``ImageFolder`` layout:
``root/<class>/<image>``); without ``--root`` the script writes a small one of three synthetic
textures. ``load_image_folder`` reads it into memory when it fits (CIFAR-sized) and streams it
from disk otherwise (``--streaming true`` forces it, as the ImageNet preset does): either way the
decoding runs in the DataLoader's workers and the pixels are the same. PART pretrains on every
training image without labels; a linear probe on the frozen encoder then reads the classes, and
is compared with the same probe on an untrained encoder.

    python examples/image_folder.py [--root my_images] [--size 32] [--steps 300]

The same data on the command line:

    relpos pretrain --modality image --data my_images --data-option size=32 \\
        --data-option streaming=auto --set optim.epochs=20 --out runs/mine
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import relpos
from relpos.train.metrics import classification_report
from relpos.train.pretext_eval import pretext_scores
from relpos.vision.datasets import ImageDataset, train_test_split_indices
from relpos.vision.streaming import StreamingImageFolder, load_image_folder

CLASSES = ("stripes", "checks", "rings")


def make_folder(root: Path, per_class: int = 40, size: int = 40, seed: int = 0) -> Path:
    """``per_class`` PNGs of each of :data:`CLASSES` (random frequency, phase and tint) over a
    brightness ramp, so that where a patch lies can be read from its content."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            f, phase = rng.uniform(3, 6), rng.uniform(0, 2 * np.pi)
            cy, cx = rng.uniform(0.3, 0.7, 2)
            wave = {
                "stripes": np.sin(2 * np.pi * f * yy + phase),
                "checks": np.sin(2 * np.pi * f * yy + phase) * np.sin(2 * np.pi * f * xx),
                "rings": np.sin(2 * np.pi * f * np.hypot(yy - cy, xx - cx) + phase),
            }[name]
            tint = rng.uniform(0.5, 1.0, 3)
            img = (0.35 + 0.25 * wave)[..., None] * tint + 0.4 * yy[..., None] * (1 - xx[..., None])
            Image.fromarray((255 * img.clip(0, 1)).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def _config(size: int, token: int, steps: int, batch: int, workers: int) -> relpos.TrainConfig:
    return relpos.TrainConfig.model_validate(
        {
            "modality": {"name": "image", "channels": 3, "extent": [size, size],
                         "token_shape": [token, token]},
            "encoder": {"dim": 64, "depth": 2, "heads": 4},
            "pretext": {"sampler": {"kind": "boxes", "size": token, "count": 16},
                        "num_pairs": 64},
            "optim": {"epochs": 10_000, "max_steps": steps, "batch_size": batch, "lr": 1e-3,
                      "warmup_epochs": 0},
            "runtime": {"progress": False, "checkpoint_every": 0, "num_workers": workers},
        }
    )  # fmt: skip


def _probe(
    init: str | None, cfg: relpos.TrainConfig, train: ImageDataset, test: ImageDataset, out: Path
) -> float:
    """Test accuracy of a linear probe on the frozen encoder ``init`` (random when ``None``)."""
    ft = cfg.model_copy(deep=True)
    ft.task = "finetune"
    ft.finetune.num_classes = train.num_classes
    ft.finetune.linear_probe = True
    ft.finetune.init = init
    ft.optim.lr = 3e-3
    clf, _ = relpos.train(ft, train, out)
    pred = relpos.predict(clf, ft, test)
    return float(classification_report(pred["label"], pred["pred"], train.classes)["accuracy"])


def main(
    root: str | None = None,
    size: int = 32,
    token: int = 8,
    steps: int = 300,
    probe_steps: int = 200,
    streaming: bool | str = "auto",
    workers: int = 0,
    out: str | None = None,
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(out or tmp)
        folder = Path(root) if root else make_folder(Path(tmp) / "images")
        images = load_image_folder(folder, size, streaming=streaming, normalize="auto")  # type: ignore[arg-type]
        train_idx, test_idx = train_test_split_indices(len(images), 0.25, seed=0)
        train, test = images.subset(train_idx), images.subset(test_idx)
        print(f"{folder}: {images!r}; {len(train)} train, {len(test)} test")

        cfg = _config(size, token, steps, min(32, len(train)), workers)
        model, result = relpos.train(cfg, train, run / "pretrain")  # labels are not used
        err = pretext_scores(model, cfg, test, seed=0)["errors"]
        pretext = {"euclidean": err["euclidean"], "zero": err["zero_euclidean"]}
        print(f"pretrained {result.steps} steps: held-out Euclidean error {err['euclidean']:.3f} "
              f"(predicting zero: {err['zero_euclidean']:.3f})")  # fmt: skip
        cfg.optim.max_steps = probe_steps
        acc = {
            "part": _probe(str(result.encoder_path), cfg, train, test, run / "probe-part"),
            "random": _probe(None, cfg, train, test, run / "probe-random"),
        }
    print(f"linear probe accuracy: PART {acc['part']:.3f}, untrained encoder {acc['random']:.3f} "
          f"(chance {1 / images.num_classes:.3f})")  # fmt: skip
    streamed = isinstance(images, StreamingImageFolder)
    return {**acc, **pretext, "chance": 1 / images.num_classes, "streamed": float(streamed)}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=None, help="your image folder (root/<class>/<image>)")
    p.add_argument("--size", type=int, default=32, help="images are resized to size x size")
    p.add_argument("--steps", type=int, default=300, help="pretraining steps")
    p.add_argument("--streaming", default="auto", choices=["auto", "true", "false"])
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--out", default=None, help="keep the runs here")
    a = p.parse_args()
    stream = {"auto": "auto", "true": True, "false": False}[a.streaming]
    main(a.root, a.size, steps=a.steps, streaming=stream, workers=a.workers, out=a.out)
