"""Every setting fmsteal reads from the environment, in one place (documented in the README).

`current()` reads the environment each time it is called (cheap), so tests and a Space's variables
take effect without re-importing anything. Imports no torch.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "current", "max_run_seconds", "REPO", "GPU_MARGIN", "GPU_OVERHEAD_SECONDS"]

REPO = Path(__file__).resolve().parents[1]  # the checkout (precomputed/, runs/ and the shared data sit beside it)
_SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
GPU_MARGIN = 1.5  # a ZeroGPU run asks for 1.5x its estimated duration (estimates are rough) ...
GPU_OVERHEAD_SECONDS = 30  # ... plus the time to start the GPU worker and move the weights over
PUBLIC_MAX_SECONDS = 900  # public runs estimated longer are refused: 6 queued runs then wait at most 90 minutes


@dataclass(frozen=True)
class Settings:
    """fmsteal's settings; each field names its environment variable in the README's table."""

    cache: Path  # FMSTEAL_CACHE: decoded datasets, embeddings, trained victims, measured speeds
    runs: Path  # FMSTEAL_RUNS: run cards and curves written by the app
    data_dir: str  # FMSTEAL_DATA_DIR: the data folder the page starts with ("" = a hub dataset)
    data_roots: tuple[Path, ...]  # FMSTEAL_DATA_ROOTS: folders a local page may read data from (empty: any)
    public: bool  # FMSTEAL_PUBLIC=1 or SPACE_ID set: anonymous visitors, uploads only, strict limits
    max_seconds: float  # FMSTEAL_MAX_SECONDS: estimated duration above which a run is refused (public 900, local 7200)
    gpu_seconds: int  # FMSTEAL_GPU_SECONDS: the spaces.GPU duration of one run on ZeroGPU
    zero_gpu: bool  # SPACES_ZERO_GPU: running on a ZeroGPU Space
    imagenet32: str | None  # FMSTEAL_IMAGENET32: folder of ImageNet32's train_data_batch_* files
    cache_max_bytes: int  # FMSTEAL_CACHE_MAX_GB: the cache is trimmed oldest-first above this size
    hub_offline: bool  # HF_HUB_OFFLINE: never try the Hugging Face Hub
    warm_pack: str  # FMSTEAL_WARM_PACK: a pack of precomputed features the app unpacks into the cache at launch ("" none)
    # Bounds on reading data (fmsteal.engine.safe_fs, fmsteal.engine.data) and on uploads (fmsteal.service.uploads):
    max_files: int  # FMSTEAL_MAX_FILES: most entries one data folder or archive may hold (public default 100,000)
    max_data_bytes: int  # FMSTEAL_MAX_DATA_GB: most bytes of images read from one folder or archive (public: 2)
    max_image_pixels: int  # FMSTEAL_MAX_IMAGE_PIXELS: largest image (width x height) decoded or accepted in an upload
    walk_seconds: float  # FMSTEAL_WALK_SECONDS: time limit for listing a data folder or archive (counts, stamps)
    read_seconds: float  # FMSTEAL_READ_SECONDS: time limit for reading + decoding a dataset, extracting an upload
    uploads: Path  # FMSTEAL_UPLOADS: where visitors' archives are extracted, one folder per visitor
    upload_max_files: int  # FMSTEAL_UPLOAD_MAX_FILES: most entries an uploaded archive may hold
    upload_max_bytes: int  # FMSTEAL_UPLOAD_MAX_MB: most bytes an upload may hold, compressed or extracted
    upload_seconds: float  # FMSTEAL_UPLOAD_HOURS: an upload is deleted this long after it was extracted
    max_jobs_per_visitor: int  # FMSTEAL_MAX_JOBS_PER_VISITOR: one visitor's queued+running runs (public 2: a scenario's pair; local 4)
    max_queue: int  # FMSTEAL_MAX_QUEUE: queued+running runs on the whole server (public 6, local 32)
    runs_ttl_hours: float  # FMSTEAL_RUNS_TTL_HOURS: run files deleted after this long (public 24, local 0 = kept)
    job_memory_minutes: float  # FMSTEAL_JOB_MEMORY_MINUTES: finished runs kept in memory (30); cards stay on disk
    abandon_seconds: float  # FMSTEAL_ABANDON_SECONDS: a run whose page stopped polling this long is dropped
    #   when its turn comes (public 120, local 0 = never)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def current() -> Settings:
    """The settings as the environment has them now."""
    env = os.environ
    cache = env.get("FMSTEAL_CACHE") or str(Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fmsteal")
    public = _flag("FMSTEAL_PUBLIC") or bool(env.get("SPACE_ID"))
    roots = tuple(Path(p).expanduser() for p in env.get("FMSTEAL_DATA_ROOTS", "").split(os.pathsep) if p.strip())
    return Settings(
        cache=Path(cache).expanduser(),
        runs=Path(env.get("FMSTEAL_RUNS") or REPO / "runs"),
        data_dir=env.get("FMSTEAL_DATA_DIR", str(_SHARED_CIFAR) if _SHARED_CIFAR.exists() else ""),
        data_roots=roots,
        public=public,
        max_seconds=float(env.get("FMSTEAL_MAX_SECONDS") or (PUBLIC_MAX_SECONDS if public else 2 * 3600)),
        gpu_seconds=int(env.get("FMSTEAL_GPU_SECONDS", 600)),
        zero_gpu=bool(env.get("SPACES_ZERO_GPU")),
        imagenet32=env.get("FMSTEAL_IMAGENET32") or None,
        cache_max_bytes=int(float(env.get("FMSTEAL_CACHE_MAX_GB", 20)) * 2**30),
        hub_offline=_flag("HF_HUB_OFFLINE"),
        warm_pack=env.get("FMSTEAL_WARM_PACK", "").strip(),
        max_files=int(env.get("FMSTEAL_MAX_FILES", 100_000 if public else 1_500_000)),
        max_data_bytes=int(float(env.get("FMSTEAL_MAX_DATA_GB", 2 if public else 16)) * 2**30),
        max_image_pixels=int(env.get("FMSTEAL_MAX_IMAGE_PIXELS", 40_000_000)),
        walk_seconds=float(env.get("FMSTEAL_WALK_SECONDS", 30)),
        read_seconds=float(env.get("FMSTEAL_READ_SECONDS", 600 if public else 4 * 3600)),
        uploads=Path(env.get("FMSTEAL_UPLOADS") or Path(tempfile.gettempdir()) / "fmsteal-uploads").expanduser(),
        upload_max_files=int(env.get("FMSTEAL_UPLOAD_MAX_FILES", 70_000)),
        upload_max_bytes=int(float(env.get("FMSTEAL_UPLOAD_MAX_MB", 1024)) * 2**20),
        upload_seconds=float(env.get("FMSTEAL_UPLOAD_HOURS", 2)) * 3600,
        max_jobs_per_visitor=int(env.get("FMSTEAL_MAX_JOBS_PER_VISITOR") or (2 if public else 4)),
        max_queue=int(env.get("FMSTEAL_MAX_QUEUE") or (6 if public else 32)),
        runs_ttl_hours=float(env.get("FMSTEAL_RUNS_TTL_HOURS") or (24 if public else 0)),
        job_memory_minutes=float(env.get("FMSTEAL_JOB_MEMORY_MINUTES") or 30),
        abandon_seconds=float(env.get("FMSTEAL_ABANDON_SECONDS") or (120 if public else 0)),
    )


def max_run_seconds(settings: Settings | None = None) -> float:
    """The longest estimated run accepted: FMSTEAL_MAX_SECONDS and, on ZeroGPU, what fits in one
    `spaces.GPU` call of FMSTEAL_GPU_SECONDS once the margin and the worker's start-up are counted."""
    settings = settings or current()
    if settings.zero_gpu:
        return max(0.0, min(settings.max_seconds, (settings.gpu_seconds - GPU_OVERHEAD_SECONDS) / GPU_MARGIN))
    return settings.max_seconds
