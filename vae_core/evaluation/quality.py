"""Reconstruction quality (MSE, PSNR, SSIM) and sample quality in a small classifier's feature space.

Inception weights cannot be downloaded here, so sample quality is measured in the feature space
of a small classifier that the project trains on the same data: a Fréchet distance between
Gaussian fits of real and generated features (named "classifier Fréchet distance", not FID,
since the features differ), and precision/recall by k-nearest-neighbour manifolds
(Kynkäänniemi et al., 2019). Where torch-fidelity, a matching torchvision and its Inception
weights are at hand, ``inception_fid`` gives the real FID.
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from ..data import ImageSet
from ..device import pick_device
from ..errors import VAEError
from ..io.files import atomic_file
from ..models import VAEBase
from ..settings import cache_dir


# ---------------------------------------------------------------------------------------------
# Reconstruction


def psnr(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per image, for images in [0, 1]."""
    mse = (x - x_hat).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(1.0 / mse)


def ssim(x: torch.Tensor, x_hat: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al., 2004) with a Gaussian window, images in [0, 1], (B, C, H, W)."""
    c = x.shape[1]
    window = min(window, x.shape[-1], x.shape[-2]) | 1
    coords = torch.arange(window, dtype=x.dtype, device=x.device) - window // 2
    g = torch.exp(-coords.pow(2) / (2 * sigma ** 2))
    g = (g / g.sum())
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window)
    blur = lambda t: F.conv2d(t, kernel, groups=c)
    mu_x, mu_y = blur(x), blur(x_hat)
    sxx = blur(x * x) - mu_x ** 2
    syy = blur(x_hat * x_hat) - mu_y ** 2
    sxy = blur(x * x_hat) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


@torch.inference_mode()
def reconstruction_quality(model: VAEBase, data: ImageSet, batch_size: int = 500, max_images: int = 2000) -> dict:
    dev = model.device
    sums = {"mse": 0.0, "psnr": 0.0, "ssim": 0.0}
    n = min(len(data), max_images)
    for x, y in data.batches(batch_size, dev, with_labels=bool(model.num_classes), limit=n):
        x_hat = model.decode(model.encode(x, y).mode(), y).clamp(0, 1)
        sums["mse"] += (x - x_hat).pow(2).flatten(1).mean(1).sum().item()
        sums["psnr"] += psnr(x, x_hat).sum().item()
        sums["ssim"] += ssim(x, x_hat).sum().item()
    return {k: v / n for k, v in sums.items()}


# ---------------------------------------------------------------------------------------------
# A small feature classifier, trained once per dataset and cached


class FeatureNet(nn.Module):
    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: int = 256, feat: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), width), nn.ReLU(),
                                  nn.Linear(width, feat), nn.ReLU())
        self.head = nn.Linear(feat, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def feature_classifier(data: ImageSet, epochs: int = 15, seed: int = 0) -> FeatureNet:
    """Train (or load from the cache) a classifier on labelled ``data``; its penultimate layer is the feature space."""
    if data.labels is None:
        raise ValueError("The feature classifier needs a labelled dataset.")
    head = data.images[:1_000_000 // math.prod(data.shape) + 1].numpy().tobytes()[:1_000_000]   # the first MB
    key = hashlib.sha256(head + bytes(str((data.shape, len(data), seed, epochs)), "utf8")).hexdigest()[:16]
    path = cache_dir() / "classifiers" / f"{data.name or 'data'}-{key}.safetensors"
    if path.is_file():
        net = FeatureNet(data.shape, data.num_classes)
        net.load_state_dict(load_file(str(path)), strict=True)
        return net.eval()
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureNet(data.shape, data.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x_all, y_all = data.float_images(), data.labels
    for _ in range(epochs):
        perm = torch.randperm(len(data), generator=g)
        for i in range(0, len(data), 128):
            idx = perm[i:i + 128]
            loss = F.cross_entropy(net(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    atomic_file(path, lambda tmp: save_file(state, str(tmp)))
    return net.eval()


@torch.inference_mode()
def classifier_accuracy(net: FeatureNet, data: ImageSet) -> float:
    return float((net(data.float_images()).argmax(1) == data.labels).float().mean())


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between Gaussian fits of two feature sets."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    # Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2): a symmetric PSD form, stable even when
    # dead ReLU features make the covariances singular.
    w, v = np.linalg.eigh(s1)
    s1_half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(s1_half @ s2 @ s1_half), 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al. (2019): the share of fakes inside the real manifold, and of reals inside the fake one."""
    def radii(a):
        d = torch.cdist(torch.from_numpy(a), torch.from_numpy(a))
        return d.kthvalue(k + 1, dim=1).values                   # the 0th neighbour is the point itself

    def coverage(ref, query):
        r = radii(ref)
        d = torch.cdist(torch.from_numpy(query), torch.from_numpy(ref))
        return float((d <= r[None]).any(1).float().mean())

    return coverage(real, fake), coverage(fake, real)


def sample_quality(model: VAEBase, train_data: ImageSet, test_data: ImageSet, n: int = 1000, seed: int = 0) -> dict:
    """Classifier Fréchet distance and precision/recall of n samples against n test images.

    The same numbers for the training images against the test images give the floor a perfect
    generator would reach.
    """
    net = feature_classifier(train_data)          # trains outside inference mode, once per dataset
    n = min(n, len(test_data))
    with torch.inference_mode():
        g = torch.Generator(device=model.device).manual_seed(seed)
        y = (torch.arange(n, device=model.device) % model.num_classes) if model.num_classes else None
        fake = model.sample(n, generator=g, y=y).clamp(0, 1).float().cpu()
        rng = np.random.default_rng(seed)          # random subsets: datasets may be sorted by class
        real = test_data.subset(np.sort(rng.choice(len(test_data), n, replace=False))).float_images()
        ref = train_data.subset(np.sort(rng.choice(len(train_data), n, replace=False))).float_images()
        fr, ff, fref = (net.features(t).double().numpy() for t in (real, fake, ref))
    p, r = precision_recall(fr, ff)
    p0, r0 = precision_recall(fr, fref)
    return {"classifier_frechet_distance": frechet_distance(fr, ff), "precision": p, "recall": r,
            "reference_frechet_distance": frechet_distance(fr, fref), "reference_precision": p0,
            "reference_recall": r0, "classifier_test_accuracy": classifier_accuracy(net, test_data), "n": n}


# ---------------------------------------------------------------------------------------------
# Real FID: Inception-v3 features through torch-fidelity, where the user's environment has it
#
# torch-fidelity imports torchvision, which needs a build matching the installed torch, and it
# downloads the Inception weights on first use; neither is available everywhere, so the import
# happens inside the function and every failure becomes a VAEError that says what to do.

FID_REQUIREMENTS = "requirements-fid.txt"
FID_FEATURE_EXTRACTOR = "inception-v3-compat"           # torch-fidelity's port of the TF Inception of FID


class _UInt8Images(Dataset):
    """In-memory images as torch-fidelity reads a Dataset: each item a uint8 tensor (3, H, W) in 0..255."""

    def __init__(self, images: torch.Tensor):
        self.images = images                                     # uint8 (N, 3, H, W)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def to_uint8_rgb(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images, uint8 or float in [0, 1], as uint8 (B, 3, H, W): grey repeated to RGB."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise VAEError(f"Real FID needs grey or RGB images (B, 1|3, H, W), got {tuple(x.shape)}.")
    if x.dtype != torch.uint8:
        x = x.float().mul(255).round_().clamp_(0, 255).to(torch.uint8)
    return x.expand(-1, 3, -1, -1).contiguous()                  # (B, 3, H, W)


def _import_torch_fidelity():
    """torch_fidelity, or a VAEError that says how to install it."""
    try:
        import torch_fidelity
    except (ImportError, OSError, RuntimeError) as err:
        # torchvision built for another torch fails in several ways: a missing module, an
        # undefined symbol in its extension, an unregistered operator.
        reason = str(err).splitlines()[0] if str(err) else "import failed"
        raise VAEError(
            f"Real FID needs torch-fidelity and a torchvision that matches your torch {torch.__version__} "
            f"({type(err).__name__}: {reason}). "
            f"Install both: pip install -r {FID_REQUIREMENTS} (with torchvision from your torch's index); "
            f"on this machine use the classifier-feature Fréchet distance (sample_quality) instead.") from err
    return torch_fidelity


def inception_fid(model: VAEBase, data: ImageSet, n: int = 10_000, seed: int = 0, batch_size: int = 64,
                  device: str | torch.device | None = None, weights_path: str | os.PathLike | None = None) -> dict:
    """FID (Heusel et al., 2017) of n model samples against n random images of ``data``.

    torch-fidelity's "inception-v3-compat" reproduces the TensorFlow Inception of the original
    FID code (it resizes to 299x299 itself), so the number compares with published FIDs of the
    same n; FID is biased upwards for small n, so compare only numbers with equal n. Grey images
    are repeated to three channels. n is capped at ``len(data)``. ``device`` runs the feature
    extractor (default: the model's device; torch-fidelity uses CUDA or the CPU). Without
    network access, ``weights_path`` names a downloaded copy of torch-fidelity's Inception weights.
    """
    fidelity = _import_torch_fidelity()
    dev = model.device if device is None else pick_device(device)
    n = min(n, len(data))
    if n < 2:
        raise VAEError(f"Real FID needs at least 2 images to fit a covariance, got n={n}.")
    with torch.inference_mode():
        g = torch.Generator(device=model.device).manual_seed(seed)
        fake = []
        for start in range(0, n, batch_size):                   # batches: n may be 10,000 decodes
            m = min(batch_size, n - start)
            y = (torch.arange(start, start + m, device=model.device) % model.num_classes
                 if model.num_classes else None)                # classes in turn, as in sample_quality
            x = model.sample(m, generator=g, y=y).clamp(0, 1).cpu()          # (m, C, H, W) in [0, 1]
            if tuple(x.shape[1:]) != data.shape:
                raise VAEError(f"The model draws images of shape {tuple(x.shape[1:])} but {data.name or 'the dataset'} "
                               f"holds {data.shape}; load the dataset at the model's size and channels.")
            fake.append(to_uint8_rgb(x))
        fake = torch.cat(fake)                                   # (n, 3, H, W)
        rng = np.random.default_rng(seed)              # a random subset: datasets may be sorted by class
        real = to_uint8_rgb(data.images[torch.from_numpy(np.sort(rng.choice(len(data), n, replace=False)))])
    kwargs = {"feature_extractor_weights_path": os.fspath(weights_path)} if weights_path is not None else {}
    try:
        metrics = fidelity.calculate_metrics(
            input1=_UInt8Images(fake), input2=_UInt8Images(real), fid=True,
            feature_extractor=FID_FEATURE_EXTRACTOR, cuda=dev.type == "cuda", batch_size=batch_size,
            verbose=False, cache=False,
            save_cpu_ram=True,                         # in-memory tensors: no DataLoader worker processes
            **kwargs)
    except OSError as err:                             # urllib's URLError, socket errors, a missing file
        where = (f"the file {weights_path}" if weights_path is not None else
                 f"a download into {Path(torch.hub.get_dir()) / 'checkpoints'} (needs the internet once)")
        raise VAEError(
            f"Real FID could not load the Inception weights from {where}: {err}. Connect once so "
            f"torch-fidelity can download them, or pass weights_path= a copy fetched elsewhere; offline, "
            f"use the classifier-feature Fréchet distance (sample_quality) instead.") from err
    return {"fid": float(metrics["frechet_inception_distance"]), "n": n,
            "feature_extractor": f"{FID_FEATURE_EXTRACTOR} (torch-fidelity)"}
