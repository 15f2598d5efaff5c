"""What a benchmark's figures were measured on, for its results file."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["machine"]


def machine() -> dict:
    """CPU, cores, GPU, OS, library versions and how busy the machine was (load average now, 1/5/15 min)."""
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if cpuinfo.exists() else platform.processor()
    return {"cpu": cpu, "cpus": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available()
            else None, "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "load_average_at_end_1_5_15min": [round(x, 2) for x in os.getloadavg()]}
