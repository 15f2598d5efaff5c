"""Benchmark: peak memory decoding a folder of large photos, resize-as-read vs keep-all-then-resize.

Writes N (default 200) generated 2000x2000 JPEGs laid out train/<class>/, test/<class>/, then loads
them in a fresh process per approach and reports that process's peak RSS above its RSS after imports:
  (old) the previous decoder, reimplemented here: every image decoded to full size and kept, then
        each resized to the common stored size (128 px) and stacked;
  (new) fmsteal's `load_splits`: image headers first, then one image at a time, JPEGs decoded at a
        reduced scale (PIL's draft) and resized straight into the preallocated result;
  (new, no draft) the same with PIL's JPEG draft disabled: one full-size image at a time.
Prints MB, seconds and ratios to (old). Usage: python bench/bench_decode_memory.py [--images N] [--side PX]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_photos(folder: Path, count: int, side: int) -> int:
    """`count` smooth, noisy JPEGs (photo-like sizes on disk); their total bytes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    total = 0
    for i in range(count):
        split, label = ("train" if i % 4 else "test"), ("a" if (i // 4) % 2 else "b")
        path = folder / split / label / f"{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        phase = rng.uniform(0, 6, 3)
        channels = [np.sin(np.add.outer(ramp * (3 + c), ramp * (2 + c)) * 6 + phase[c]) for c in range(3)]
        pixels = (np.stack(channels, -1) * 100 + 128 + rng.normal(0, 6, (side, side, 3))).clip(0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
        total += path.stat().st_size
    return total


def old_decode(folder: Path):
    """The decoder before resize-as-read: every picture kept at full size, then resized and stacked."""
    import numpy as np
    import torch
    from PIL import Image

    pictures = [Image.open(io.BytesIO(p.read_bytes())).convert("RGB") for p in sorted(folder.rglob("*.jpg"))]
    (width, height), _ = Counter(p.size for p in pictures).most_common(1)[0]
    size = (width, height) if max(width, height) <= 128 else (min(128, width, height),) * 2
    arrays = [np.asarray(p if p.size == size else p.resize(size, Image.BILINEAR)) for p in pictures]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def child(approach: str, folder: Path) -> None:
    """Run one approach in this process and print its figures as JSON."""
    import torch  # noqa: F401  (imports count in the baseline, not the decoding)
    from PIL import JpegImagePlugin

    from fmsteal.engine.data import load_splits

    if approach == "new-nodraft":
        JpegImagePlugin.JpegImageFile.draft = lambda self, mode, size: None
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if approach == "old":
        images = old_decode(folder)
    else:
        splits = load_splits(str(folder))
        images = torch.cat([splits.train.images, splits.test.images])
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": (peak - baseline) / 1024, "seconds": seconds, "shape": list(images.shape)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--side", type=int, default=2000)
    parser.add_argument("--child", nargs=2, metavar=("APPROACH", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]))
    with tempfile.TemporaryDirectory(prefix="fmsteal-bench-") as scratch:
        folder = Path(scratch) / "photos"
        started = time.perf_counter()
        size = write_photos(folder, args.images, args.side)
        print(f"{args.images} JPEGs of {args.side}x{args.side} px ({size / 2**20:.0f} MB on disk, "
              f"{args.images * args.side**2 * 3 / 2**30:.2f} GB decoded) written in {time.perf_counter() - started:.0f} s")
        results = {}
        for approach in ("old", "new", "new-nodraft"):
            env = dict(os.environ, FMSTEAL_CACHE=str(Path(scratch) / f"cache-{approach}"))
            out = subprocess.run([sys.executable, __file__, "--child", approach, str(folder)], env=env,
                                 capture_output=True, text=True, check=True).stdout
            results[approach] = json.loads(out.strip().splitlines()[-1])
        old = results["old"]
        print(f"{'approach':<32}{'peak RSS above imports':>24}{'seconds':>10}{'memory ratio':>14}{'time ratio':>12}")
        labels = {"old": "(old) keep all, then resize", "new": "(new) resize as read",
                  "new-nodraft": "(new, no JPEG draft)"}
        for approach, figures in results.items():
            print(f"{labels[approach]:<32}{figures['peak_mb']:>21.0f} MB{figures['seconds']:>10.1f}"
                  f"{figures['peak_mb'] / old['peak_mb']:>14.3f}{figures['seconds'] / old['seconds']:>12.2f}")
        assert results["new"]["shape"] == old["shape"], (results["new"]["shape"], old["shape"])


if __name__ == "__main__":
    main()
