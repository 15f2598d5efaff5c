"""Frozen-backbone embeddings, computed once per (weights, images, resolution, preprocessing).

`Embedder.embed(images)` is a generator: it yields progress events while the backbone runs and
returns the features (`features = yield from embedder.embed(images)`). Files are checked against
the weights, the data and a checksum of their own contents before they are trusted (the checksum once per
version of a file, sealed beside it). A file holds its images' content hashes, so an image another file
already holds is not forwarded again, whichever set it comes in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Generator
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F

from fmsteal import __version__
from fmsteal.engine.cache import atomic_save, cache_dir, keyed_file, load_or_none, mark_as_used, write_text_atomic
from fmsteal.cancel import check
from fmsteal.engine.data import ImageSet
from fmsteal.engine.zoo import BackboneSpec, load_backbone, weights_file

Progress = Generator[dict, None, torch.Tensor]
REMEMBERED_LOOKUPS = 4  # image tensors an embedder remembers where the features of are (`_lookup`)
HASH_BYTES = 12  # an image's content hash (`image_hashes`)


def preprocess(images: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """uint8 or [0, 1] float images -> resized, normalised float tensor for a backbone."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1])
    mean_t = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return ((x - mean_t) / std_t).contiguous(memory_format=torch.channels_last)  # as `load_backbone`'s models


def autocast(device: torch.device, fp32: bool = False):
    """bf16 autocast on CUDA unless `fp32`; nothing on CPU, where bf16 measured 10-30x slower."""
    if device.type == "cuda" and not fp32:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def image_hashes(images: torch.Tensor) -> list[bytes]:
    """A content hash per uint8 image: how the embedder recognises images it has seen."""
    flat = images.reshape(len(images), -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=HASH_BYTES).digest() for row in flat]


def split_hashes(hashes: bytes) -> list[bytes]:
    """The per-image hashes an embedding file holds end to end (`HASH_BYTES` each), in its rows' order."""
    return [hashes[start:start + HASH_BYTES] for start in range(0, len(hashes), HASH_BYTES)]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats back to the uint8 pixels they were made from."""
    if images.dtype == torch.uint8:
        return images
    return (images.detach().float().cpu() * 255).round().clamp(0, 255).to(torch.uint8)


class Embedder:
    """Features of one frozen backbone at one resolution, served from the cache where possible."""

    def __init__(self, spec: BackboneSpec, image_size: int, device: torch.device, batch_size: int | None = None,
                 fp32: bool = False):
        self.spec = spec
        self.fp32 = fp32  # no bf16 autocast on CUDA (CPU features are fp32 either way)
        self.image_size = image_size
        self.device = device
        self.batch_size = batch_size or (256 if device.type == "cuda" else 64)
        self.images_forwarded = 0  # images that went through the backbone (cache misses)
        self.forward_seconds = 0.0  # time spent in those passes alone (no loading, hashing or cache files)
        self.cache_rebuilt = 0  # cache files found corrupt or stale and rebuilt
        self.files: list[Path] = []  # the cache files of everything embedded so far
        self._model: torch.nn.Module | None = None
        self._fingerprint: str | None = None
        self._index: dict[bytes, tuple[torch.Tensor, int]] = {}
        self._derived: dict[tuple, torch.Tensor] = {}  # (image hash, tag) -> features of a derived image
        self._lookups: OrderedDict[int, tuple] = OrderedDict()  # recent tensors: (tensor, state, where their features are)

    @property
    def model(self) -> torch.nn.Module:
        """The backbone, loaded on first use: outside inference mode even when first asked for within it (the
        first forward pass), so that attacks can take gradients through its weights later."""
        if self._model is None:
            with torch.inference_mode(False):
                self._model = load_backbone(self.spec, self.image_size).to(self.device).eval()
        return self._model

    @property
    def weights_fingerprint(self) -> str:
        """A hash of a sample of every weight tensor: tells apart any two sets of weights. Remembered in the cache
        per weights file (its path, size and modification time), versions and size, so that a run whose features
        are all cached never loads the backbone."""
        if self._fingerprint is not None:
            return self._fingerprint
        memo = _fingerprint_memo(self.spec, self.image_size)
        if memo is not None:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                self._fingerprint = str(json.loads(memo.read_text())["fingerprint"])
                return self._fingerprint
        digest = hashlib.blake2b(digest_size=12)
        for name, tensor in self.model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().flatten()[:4096].float().cpu().numpy().tobytes())
        self._fingerprint = digest.hexdigest()
        if memo is not None:
            with contextlib.suppress(OSError):
                write_text_atomic(memo, json.dumps({"backbone": self.spec.name, "fingerprint": self._fingerprint}))
        return self._fingerprint

    def embed(self, images: ImageSet, label: str = "images") -> Progress:
        """Features of every image of `images`, from the cache or the backbone."""
        features, _ = yield from self._embed(images, label)
        return features

    def _embed(self, images: ImageSet, label: str) -> Generator[dict, None, tuple[torch.Tensor, bytes | None]]:
        """`embed`, and the images' hashes where the cache file holds them (files written since it does)."""
        bf16 = self.device.type == "cuda" and not self.fp32  # fp32 features, from a CPU or a GPU, share files
        file = cache_dir("embeddings") / self.spec.name / f"{self.image_size}px-{images.fingerprint}{'-bf16' * bf16}.pt"
        meta = {"backbone": self.spec.name, "weights": self.weights_fingerprint, "data": images.fingerprint,
                "size": self.image_size, "mean": list(self.spec.mean), "std": list(self.spec.std), "n": len(images),
                **({"precision": "bf16"} if bf16 else {})}
        self.files.append(file)
        before = file.stat() if file.exists() else None  # loading marks it used: its times change
        stored = load_or_none(file)
        if stored is not None and stored.get("meta") == meta and _trusted(file, stored, before):
            return stored["features"], stored.get("hashes")
        if stored is not None or file.exists():
            self.cache_rebuilt += 1
            yield {"kind": "log", "level": "warning", "message": f"Embedding cache {file.name} was corrupt or stale: rebuilding it."}
        keys = image_hashes(images.images)
        features, missing = self._known(file, meta, keys)
        if missing:
            rows = torch.tensor(missing)
            features.index_copy_(0, rows, (yield from self.forward(images.images[rows], label)))
        hashes = b"".join(keys)
        checksum = _checksum(features)
        atomic_save({"meta": meta, "features": features, "checksum": checksum, "hashes": hashes,
                     "hashes_checksum": _checksum(hashes)}, file)
        _seal(file, checksum)
        return features, hashes

    def _known(self, file: Path, meta: dict, keys: list[bytes]) -> tuple[torch.Tensor, list[int]]:
        """Features of the images (by their hashes `keys`) that other trusted cache files of this backbone, size,
        weights and preprocessing already hold (those that carry their images' hashes), and the rows still to
        compute: an image is embedded once, whichever sets it comes in."""
        out = torch.empty(len(keys), self.spec.feature_dim)
        wanted: dict[bytes, list[int]] = {}
        for row, key in enumerate(keys):
            wanted.setdefault(key, []).append(row)
        kind = {k: v for k, v in meta.items() if k not in ("data", "n")}
        for sibling in sorted(file.parent.glob(f"{self.image_size}px-*.pt")):
            if not wanted:
                break
            if sibling == file:
                continue
            before = sibling.stat()
            stored = load_or_none(sibling, mark_used=False)  # marked used below, and only if it gives features
            if (stored is None or not isinstance(stored.get("hashes"), bytes) or not isinstance(stored.get("meta"), dict)
                    or {k: v for k, v in stored["meta"].items() if k not in ("data", "n")} != kind):
                continue
            matches = [(row, key) for row, key in enumerate(split_hashes(stored["hashes"])) if key in wanted]
            if not matches:
                continue
            mark_as_used(sibling)
            if not _trusted(sibling, stored, before):  # checked against its state before the mark, then sealed
                continue
            rows, places = [], []
            for row, key in matches:
                for place in wanted.pop(key, ()):
                    rows.append(row)
                    places.append(place)
            out.index_copy_(0, torch.tensor(places), stored["features"].index_select(0, torch.tensor(rows)))
        return out, sorted(place for places in wanted.values() for place in places)

    def forward(self, images: torch.Tensor, label: str = "images") -> Progress:
        """Run the backbone over uint8 `images` in batches, yielding progress."""
        chunks = []
        total = len(images)
        for start in range(0, total, self.batch_size):
            chunks.append(self._forward_batch(images[start:start + self.batch_size]))
            done = min(start + self.batch_size, total)
            yield {"kind": "progress", "phase": "embed", "done": done, "total": total,
                   "message": f"{self.spec.label} @ {self.image_size}px: {label}"}
        return torch.cat(chunks) if chunks else torch.empty(0, self.spec.feature_dim)

    def register(self, images: ImageSet, label: str = "images") -> Progress:
        """Embed `images` (cached) and remember them by content for `features_of`."""
        features, hashes = yield from self._embed(images, label)
        keys = (split_hashes(hashes) if hashes is not None and len(hashes) == HASH_BYTES * len(images)
                else image_hashes(images.images))
        for row, key in enumerate(keys):
            self._index[key] = (features, row)
        return features

    def features_of(self, images: torch.Tensor) -> torch.Tensor:
        """Features of arbitrary images: registered ones from memory, others through the backbone."""
        pixels = to_uint8(images)
        gathers, missing = self._lookup(pixels)
        if len(gathers) == 1 and not missing:  # all from one registered set, in order: a single copy
            source, rows, _ = gathers[0]
            return source.index_select(0, rows)
        out = torch.empty(len(pixels), self.spec.feature_dim)
        for source, rows, targets in gathers:
            out.index_copy_(0, targets, source.index_select(0, rows))
        for start in range(0, len(missing), self.batch_size):
            check()
            rows = missing[start:start + self.batch_size]
            out[rows] = self._forward_batch(pixels[rows])
        return out

    def _lookup(self, pixels: torch.Tensor) -> tuple[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], list[int]]:
        """Where each image's features are: a (registered set, its rows, their places) gather per set, and the
        places of images never registered. Remembered for the few tensors asked last while neither they nor the
        registrations change (a thief scores the same test images at every rung); each such tensor is held, so
        its memory cannot pass to another."""
        state = (pixels._version, len(self._index))
        seen = self._lookups.get(id(pixels))
        if seen is not None and seen[0] is pixels and seen[1] == state:
            self._lookups.move_to_end(id(pixels))
            return seen[2]
        found = [self._index.get(key) for key in image_hashes(pixels)]
        groups: dict[int, tuple[torch.Tensor, list[int], list[int]]] = {}
        for place, hit in enumerate(found):
            if hit is not None:
                _, rows, places = groups.setdefault(id(hit[0]), (hit[0], [], []))
                rows.append(hit[1])
                places.append(place)
        lookup = ([(source, torch.tensor(rows), torch.tensor(places)) for source, rows, places in groups.values()],
                  [place for place, hit in enumerate(found) if hit is None])
        self._lookups[id(pixels)] = (pixels, state, lookup)
        if len(self._lookups) > REMEMBERED_LOOKUPS:
            self._lookups.popitem(last=False)
        return lookup

    def derived_features(self, images: torch.Tensor, tag: tuple,
                         derive: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Features of `derive(images)` (e.g. an augmented view of each), remembered per source image and
        `tag`: only images not seen before under this tag are derived and forwarded."""
        pixels = to_uint8(images)
        keys = [(key, tag) for key in image_hashes(pixels)]
        if not keys:
            return torch.empty(0, self.spec.feature_dim)
        missing = [i for i, key in enumerate(keys) if key not in self._derived]
        if missing:
            features = self.features_of(derive(pixels[torch.tensor(missing)]))
            for row, i in enumerate(missing):
                self._derived[keys[i]] = features[row]
        return torch.stack([self._derived[key] for key in keys])

    @torch.inference_mode()
    def _forward_batch(self, images: torch.Tensor) -> torch.Tensor:
        model = self.model  # loaded before the clock starts
        began = time.perf_counter()
        x = preprocess(images.to(self.device), self.image_size, self.spec.mean, self.spec.std)
        with autocast(self.device, self.fp32):
            features = model(x).float().cpu()
        self.forward_seconds += time.perf_counter() - began
        self.images_forwarded += len(images)
        return features


def _checksum(content: object) -> str | None:
    """The checksum of a file's features (a tensor) or of its images' hashes (bytes)."""
    if isinstance(content, torch.Tensor):
        content = content.contiguous().numpy().tobytes()
    return hashlib.blake2b(content, digest_size=16).hexdigest() if isinstance(content, bytes) else None


def _trusted(file: Path, stored: dict, before: os.stat_result | None) -> bool:
    """The file's features (and its images' hashes, in files that hold them) match their checksums. Checked once
    and then sealed beside it (`.<name>.sealed`: its inode, size, modification time and checksum, as the file was
    when last loaded; `before` is its state before this load marked it used), so that later loads of the same,
    untouched file skip reading every byte again; a file written anew or in place fails the seal."""
    checksum, sealed = stored.get("checksum"), None
    with contextlib.suppress(OSError, ValueError):
        sealed = json.loads(_seal_path(file).read_text())
    if before is None or sealed != [before.st_ino, before.st_size, before.st_mtime_ns, checksum]:
        hashes = stored.get("hashes")
        if _checksum(stored.get("features")) != checksum:
            return False
        if hashes is not None and _checksum(hashes) != stored.get("hashes_checksum"):
            return False
    _seal(file, checksum)  # as this load left it
    return True


def _seal(file: Path, checksum: str | None) -> None:
    """Record that `file`, as it is now, holds contents matching `checksum`."""
    with contextlib.suppress(OSError):
        info = file.stat()
        write_text_atomic(_seal_path(file), json.dumps([info.st_ino, info.st_size, info.st_mtime_ns, checksum]))


def _fingerprint_memo(spec: BackboneSpec, image_size: int) -> Path | None:
    """Where the weights fingerprint of `spec` at `image_size` is remembered, keyed by its weights file (path, size,
    modification time) and the versions of fmsteal, timm and torch; None without a weights file to key it by."""
    file = weights_file(spec)
    if file is None:
        return None
    info = os.stat(file)
    key = [spec.name, image_size, file, info.st_size, info.st_mtime_ns, __version__, version("timm"), torch.__version__]
    return keyed_file("weights", key, ".json")


def _seal_path(file: Path) -> Path:
    return file.with_name(f".{file.name}.sealed")
