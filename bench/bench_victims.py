"""Benchmark: what a remote victim costs per query, against the same model called in-process.

Serves one cheap model (a fixed random linear map of the pixels, so the model's own time is
negligible and the figures are the transport's) with examples/serve_victim.py in its own process
on localhost, then
answers the same real CIFAR-10 images (random ones without the archive) as
  (a) an in-process callable victim (the baseline),
  (b) a `url` victim at several batch sizes, without an answer log,
  (c) a `url` victim with the answer log written (batch 32), and
  (d) the same images replayed from that log (a resumed attack).
Prints images per second and each one's ratio to (a). Usage: python bench/bench_victims.py [--images N]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def images(n: int) -> torch.Tensor:
    if not ARCHIVE.exists():
        return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    pictures = []
    with tarfile.open(ARCHIVE) as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".jpg"):
                picture = Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB")
                pictures.append(torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1))
                if len(pictures) == n:
                    break
    return torch.stack(pictures)


def rate(victim, batch: torch.Tensor) -> float:
    started = time.perf_counter()
    victim.probabilities(batch)
    return len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args()
    from fmsteal.victims import open_victim

    pictures = images(args.images)
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "bench_model.py").write_text(
            "import torch\n"
            "torch.manual_seed(0)\n"
            "WEIGHTS = torch.randn(3 * 32 * 32, 10) / 30\n"
            "def predict(images):\n"
            "    return images.flatten(1) @ WEIGHTS\n")
        sys.path.insert(0, folder)
        model = open_victim("api:bench_model:predict")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, str(ROOT / "examples" / "serve_victim.py"), "api:bench_model:predict", "--port", "0"]
        server = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, text=True)
        try:
            url = server.stdout.readline().split(" at ")[1].strip()
            rows = [("in-process callable", rate(model, pictures))]
            for batch_size in (1, 8, 32, 128):
                victim = open_victim(f"url:{url}", {"answer_log": "off", "batch_size": batch_size})
                rows.append((f"url, batch {batch_size}, no log", rate(victim, pictures)))
            log = str(Path(folder) / "answers.jsonl")
            with open_victim(f"url:{url}", {"answer_log": log, "batch_size": 32}) as victim:
                rows.append(("url, batch 32, answer log written", rate(victim, pictures)))
            with open_victim(f"url:{url}", {"answer_log": log, "batch_size": 32}) as victim:
                rows.append(("url, replayed from the answer log", rate(victim, pictures)))
                assert victim.accounting()["sent"] == 0
            log_bytes = Path(log).stat().st_size
        finally:
            server.terminate()
            server.wait()
    baseline = rows[0][1]
    print(f"{len(pictures)} {'CIFAR-10' if ARCHIVE.exists() else 'random'} images, 32 px, "
          f"{torch.get_num_threads()} threads; answer log {log_bytes / len(pictures):.0f} bytes per image")
    print(f"{'victim':38} {'images/s':>10} {'vs in-process':>14}")
    for name, value in rows:
        print(f"{name:38} {value:10.0f} {value / baseline:14.3f}")


if __name__ == "__main__":
    main()
