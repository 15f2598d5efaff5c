"""Benchmark: backbone passes in channels-last memory format (what `load_backbone` and `preprocess` now use)
against the contiguous (NCHW) format they used before, in the same process.

For each backbone and size: a forward pass (embedding) and a forward+backward pass to the pixels (what every
PGD/FGSM step costs), over one batch of 32 random images, best of 3 repeats. Prints ms per image and the
speed-up (contiguous / channels-last), and writes bench/results/bench_embed.json with the machine's details.
Usage: python bench/bench_embed.py [--sizes 32 96] [--backbones ...] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fmsteal.engine.embed import preprocess  # noqa: E402
from fmsteal.engine.zoo import ZOO, load_backbone  # noqa: E402

BATCH = 32


def best_ms_per_image(step, repeats: int = 3) -> float:
    step()  # warm-up: kernels and allocations
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    return min(times) / BATCH * 1000


def passes(model: torch.nn.Module, images: torch.Tensor, size: int, spec, layout: torch.memory_format) -> dict:
    model = model.to(memory_format=layout)
    head = torch.nn.Linear(spec.feature_dim, 10)
    labels = torch.zeros(len(images), dtype=torch.long)

    def inputs(x: torch.Tensor) -> torch.Tensor:
        return preprocess(x, size, spec.mean, spec.std).contiguous(memory_format=layout)

    def forward() -> None:
        with torch.inference_mode():
            model(inputs(images))

    def gradient() -> None:
        x = images.float().div(255).requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(head(model(inputs(x))), labels), x)

    return {"forward": best_ms_per_image(forward), "gradient": best_ms_per_image(gradient)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 96])
    parser.add_argument("--backbones", nargs="+", default=["tf_efficientnet_lite0", "scratch_cnn", "resnet18"])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "bench_embed.json"))
    args = parser.parse_args()
    rows = []
    images = torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}; ms per image, best of 3")
    for name in args.backbones:
        spec = ZOO[name]
        for size in args.sizes:
            model = load_backbone(spec, size, pretrained=False).eval()
            for p in model.parameters():
                p.requires_grad_(False)
            old = passes(model, images, size, spec, torch.contiguous_format)
            new = passes(model, images, size, spec, torch.channels_last)
            for kind in ("forward", "gradient"):
                speedup = old[kind] / new[kind]
                print(f"{name:22s} {size:4d} px {kind:8s}  contiguous {old[kind]:7.2f}  channels-last "
                      f"{new[kind]:7.2f}  speed-up {speedup:.2f}x")
                rows.append({"backbone": name, "size": size, "pass": kind, "contiguous_ms": round(old[kind], 3),
                             "channels_last_ms": round(new[kind], 3), "speedup": round(speedup, 2)})
    Path(args.out).write_text(json.dumps({
        "benchmark": "bench_embed", "when": time.strftime("%Y-%m-%d %H:%M:%S"), "batch": BATCH,
        "threads": torch.get_num_threads(), "rows": rows, "load_average": os.getloadavg(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
