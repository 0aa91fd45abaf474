"""Peak memory of the two image-folder readers on the same generated folder, in one run.

Generates (once, then reuses) a folder of ``--n`` small random JPEGs (``--size`` pixels square,
10 class sub-folders) under ``--root``, then reads it in two fresh processes, one per reader:

- ``in-memory``: :class:`relpos.vision.datasets.ImageFolderDataset` (decodes every image into
  one float32 tensor at construction);
- ``streaming``: :class:`relpos.vision.streaming.StreamingImageFolder` (lists the files,
  decodes one image per item in the DataLoader's workers).

Each process builds its reader (``normalize="auto"``, as the ``image_folder`` data source does)
and reads one pass with a DataLoader (``--workers`` workers, batch 256). It reports its peak
resident memory (``resource.getrusage``: ``ru_maxrss`` of the process, and of its largest
worker, whose count includes pages shared with the parent), the resident memory after the
imports (the floor), and the wall times. The script prints both rows and their ratio.

    python benchmarks/image_folder_memory.py [--n 20000] [--size 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

READERS = ("in-memory", "streaming")
CLASSES = 10


def make_folder(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` random ``size`` x ``size`` RGB JPEGs in ``CLASSES`` sub-folders (kept when the
    folder already holds ``n`` images)."""
    from PIL import Image
    from tqdm.auto import tqdm

    done = root / f".complete-{n}-{size}"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (CLASSES, 8, 8, 3), dtype=np.uint8)  # one colour pattern per class
    for k in range(CLASSES):
        (root / f"class{k:02d}").mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(n), desc="writing images", unit="img"):
        k = i % CLASSES
        small = np.clip(base[k] + rng.integers(-40, 41, (8, 8, 3)), 0, 255).astype(np.uint8)
        im = Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR)
        im.save(root / f"class{k:02d}" / f"{i:06d}.jpg", quality=90)
    done.touch()
    return root


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(reader: str, root: Path, size: int, workers: int) -> dict[str, float | str]:
    """Build ``reader`` on ``root`` and read one pass; peak memory and times (run in a fresh
    process)."""
    import torch
    from torch.utils.data import DataLoader

    from relpos.vision.datasets import ImageFolderDataset
    from relpos.vision.streaming import StreamingImageFolder

    torch.set_num_threads(1)
    floor = _rss_now_mb()
    t0 = time.perf_counter()
    if reader == "in-memory":
        ds = ImageFolderDataset(root, size, normalize="auto", progress=False)
    else:
        ds = StreamingImageFolder(root, size, normalize="auto", num_workers=workers)
    t1 = time.perf_counter()
    seen = 0
    for x, _ in DataLoader(ds, batch_size=256, shuffle=True, num_workers=workers):
        seen += x.shape[0]
    t2 = time.perf_counter()
    assert seen == len(ds)
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "reader": reader,
        "images": seen,
        "floor_mb": floor,
        "peak_mb": self_kb / 1024,
        "worker_peak_mb": kids_kb / 1024,
        "build_s": t1 - t0,
        "pass_s": t2 - t1,
    }


def main(n: int = 20000, size: int = 64, workers: int = 2, root: str | None = None) -> dict:
    folder = make_folder(Path(root or f"/tmp/relpos-images-{n}-{size}"), n, size)
    rows = {}
    for reader in READERS:
        cmd = [sys.executable, __file__, "--child", reader, "--root", str(folder),
               "--size", str(size), "--workers", str(workers)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        rows[reader] = json.loads(out.strip().splitlines()[-1])
    print(f"{n} images of {size}x{size} (JPEG, {CLASSES} classes) in {folder}; one pass, "
          f"DataLoader batch 256, {workers} workers; peak RSS from getrusage")  # fmt: skip
    print(f"{'reader':<11}{'floor MB':>10}{'peak MB':>10}{'peak-floor':>12}{'worker peak':>13}"
          f"{'build s':>9}{'pass s':>8}")  # fmt: skip
    for r in rows.values():
        print(f"{r['reader']:<11}{r['floor_mb']:>10.0f}{r['peak_mb']:>10.0f}"
              f"{r['peak_mb'] - r['floor_mb']:>12.0f}{r['worker_peak_mb']:>13.0f}"
              f"{r['build_s']:>9.1f}{r['pass_s']:>8.1f}")  # fmt: skip
    mem, lazy = rows["in-memory"], rows["streaming"]
    ratio = mem["peak_mb"] / lazy["peak_mb"]
    above = (mem["peak_mb"] - mem["floor_mb"]) / max(lazy["peak_mb"] - lazy["floor_mb"], 1.0)
    print(f"in-memory / streaming: peak x{ratio:.1f}; above the import floor x{above:.1f}")
    return {"rows": rows, "ratio": ratio, "ratio_above_floor": above}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20000, help="images to generate")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--root", default=None, help="folder to generate into (default under /tmp)")
    p.add_argument("--child", choices=READERS, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, Path(a.root), a.size, a.workers)))
    else:
        main(a.n, a.size, a.workers, a.root)
