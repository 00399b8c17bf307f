"""Training in motion: the codes of a fixed subset of the data, kept at every epoch of a run.

A run trained with ``TrainConfig.snapshots = n`` (``--snapshots n`` on the command line; the app
always keeps them) encodes the same ``n`` training images (a seeded subset) before the first
epoch and after every epoch. The run folder keeps them in ``snapshots.safetensors``:

    codes    (E, n, D) float32   the posterior means, one row of n codes per saved epoch
    epochs   (E,) int64          which epoch each row is (0: before training)
    indices  (n,) int64          the images' indices in the training set
    labels   (n,) int64          their labels, where the dataset has them

It is written with the rest of the run folder (vae_core.io.run_folder.write_run_folder swaps the
whole folder in atomically), so it always agrees with the weights beside it.

``aligned_maps`` turns the epochs into 2-D maps that move rather than jump: each epoch's codes
are projected on their own two leading principal axes, then turned (an orthogonal Procrustes
rotation, reflections allowed, no scaling) to best match the previous epoch's map.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from ..config import MAX_SNAPSHOT_IMAGES as MAX_IMAGES
from ..errors import VAEError
from ..latent.projections import pca

FILE = "snapshots.safetensors"


@dataclasses.dataclass
class Snapshots:
    codes: list[torch.Tensor]           # one (n, D) float32 tensor per saved epoch
    epochs: list[int]
    indices: torch.Tensor               # (n,) int64
    labels: torch.Tensor | None = None  # (n,) int64

    def add(self, epoch: int, codes: torch.Tensor) -> None:
        codes = codes.detach().float().cpu().reshape(len(self.indices), -1)
        if self.epochs and epoch <= self.epochs[-1]:
            raise VAEError(f"Snapshot epochs must increase; got epoch {epoch} after {self.epochs[-1]}.")
        self.codes.append(codes)
        self.epochs.append(int(epoch))

    def copy(self) -> "Snapshots":
        return Snapshots(list(self.codes), list(self.epochs), self.indices, self.labels)

    def to_bytes(self) -> bytes:
        tensors = {"codes": torch.stack(self.codes) if self.codes else torch.zeros(0, len(self.indices), 0),
                   "epochs": torch.tensor(self.epochs, dtype=torch.int64), "indices": self.indices.long()}
        if self.labels is not None:
            tensors["labels"] = self.labels.long()
        return save({k: v.contiguous() for k, v in tensors.items()}, metadata={"format": "vae-snapshots-1"})

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "the snapshots") -> "Snapshots":
        try:
            t = load(data)
        except (SafetensorError, ValueError, OSError) as e:
            raise VAEError(f"{where} cannot be read ({str(e).splitlines()[0]}); it is not a snapshot file "
                           "written by vae_core train.") from None
        if not {"codes", "epochs", "indices"} <= set(t) or t["codes"].dim() != 3 or \
                len(t["epochs"]) != len(t["codes"]) or t["codes"].shape[1] != len(t["indices"]):
            raise VAEError(f"{where} does not hold codes (epochs, images, D), epochs and indices that agree.")
        return cls(list(t["codes"].float()), t["epochs"].tolist(), t["indices"], t.get("labels"))


def start(data, n: int, seed: int) -> Snapshots:
    """An empty record for a seeded subset of at most ``n`` images of ``data`` (an ImageSet)."""
    if not 1 <= n <= MAX_IMAGES:
        raise VAEError(f"snapshots keeps between 1 and {MAX_IMAGES:,} images' codes, got {n:,}.")
    _, idx = data.seeded_subset(n, seed=seed)
    labels = data.labels[idx].long() if data.labels is not None else None
    return Snapshots([], [], idx.long(), labels)


@torch.inference_mode()
def encode(model, data, snaps: Snapshots, batch_size: int = 500) -> torch.Tensor:
    """The posterior means of the snapshot's images under ``model`` (its train/eval mode is kept)."""
    was = model.training
    model.eval()
    out = []
    try:
        for s in range(0, len(snaps.indices), batch_size):
            idx = snaps.indices[s:s + batch_size]
            x = data.images[idx].to(model.device).float().div_(255.0)
            y = data.labels[idx].to(model.device) if model.num_classes and data.labels is not None else None
            out.append(model.encode(x, y).mode().float().cpu().reshape(len(idx), -1))
    finally:
        model.train(was)
    return torch.cat(out)


def read(folder: str | Path) -> Snapshots | None:
    """A run folder's snapshots, or None when it kept none."""
    from ..io.run_folder import verify_files

    path = Path(folder) / FILE
    if not path.is_file():
        return None
    verify_files(path.parent, [FILE])              # against the run folder's checksums, as the weights are
    return Snapshots.from_bytes(path.read_bytes(), str(path))


# ---------------------------------------------------------------------------------------------
# Maps that move rather than jump


def procrustes(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``x`` (n, 2) centred and turned (rotation or reflection, no scaling) to best match ``target``
    (n, 2) centred: the orthogonal Procrustes problem, solved by an SVD."""
    xc, tc = x - x.mean(0), target - target.mean(0)
    u, _, vt = np.linalg.svd(xc.T @ tc)
    return xc @ (u @ vt)


def aligned_maps(snaps: Snapshots) -> np.ndarray:
    """(E, n, 2) float32: each epoch's PCA map, Procrustes-aligned to the previous epoch's."""
    if not snaps.codes:
        raise VAEError("This run kept no snapshots yet.")
    maps = []
    for codes in snaps.codes:
        if codes.shape[1] < 2:
            m = np.concatenate([codes.numpy(), np.zeros((len(codes), 1), np.float32)], 1)
        elif float(codes.var(0).sum()) == 0:              # every code the same (e.g. a collapsed start)
            m = np.zeros((len(codes), 2), np.float32)
        else:
            m = pca(codes)
        maps.append(procrustes(m, maps[-1]) if maps else m - m.mean(0))
    return np.stack(maps).astype(np.float32)


__all__ = ["FILE", "MAX_IMAGES", "Snapshots", "aligned_maps", "encode", "procrustes", "read", "start"]
