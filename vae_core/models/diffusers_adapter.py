"""diffusers VAEs (``AutoencoderKL``, ``AutoencoderTiny``) behind the project's model interface.

An adapter, not a copy: the diffusers module does the work, ``DiffusersVAE`` translates.
- Images: our interface speaks [0, 1]; diffusers VAEs take and return [-1, 1].
- Latents: our ``z`` is in the *diffusion* scale, the one a Stable Diffusion pipeline hands its
  UNet: ``z = (z_raw - shift) * scaling_factor`` (``(z_raw - latents_mean) * scaling_factor /
  latents_std`` where the config gives per-channel statistics). ``scaling_factor`` was chosen by
  each model's authors to make that roughly N(0, I) (0.18215 for SD 1.x/2.x), so sampling from
  N(0, I), temperatures and traversals in prior standard deviations mean what they mean for our
  own models. AutoencoderTiny (TAESD) already emits latents in that scale (its scaling_factor is 1).
- Posterior: AutoencoderKL's ``latent_dist`` mean and log-variance, carried into that scale
  (log-variance + 2 log scale); AutoencoderTiny is deterministic, so a point mass (logvar None).
- Shapes: latents are spatial, (C, h, w) with h = H / downsample; the working image size S is
  chosen at load time (the models are fully convolutional), so ``in_shape`` is (3, S, S).

Loading goes through diffusers' own ``from_pretrained`` on a local folder that ``vae_core.io.hub``
fetched at a pinned revision, with ``use_safetensors=True`` (a pickled ``.bin`` is never opened)
and never ``trust_remote_code``; every weight must be found (no silently random layer).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from ..config import brief
from ..errors import VAEError
from ..io.files import load_json
from ..settings import MAX_WEIGHTS_BYTES, LoadPolicy
from .base import MAX_PARAMS, MAX_WIDTH, Likelihood, ModelConfig, Posterior, VAEBase, check_decode_cost

SUPPORTED = ("AutoencoderKL", "AutoencoderTiny")
DIFFUSERS_VERSION = "0.42.1"          # the version requirements-extras.txt pins and the tests run
INSTALL_HINT = (f"pip install diffusers=={DIFFUSERS_VERSION}  "
                "(or: pip install -r requirements-extras.txt)")
DEFAULT_IMAGE_SIZE = 128              # CPU-friendly: SD's VAE decodes a 128x128 image in ~0.3 s on 2 cores
MAX_IMAGE_SIZE = 1024
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PIXELS_PER_CHUNK = 2 ** 18            # images per forward pass = this / (H * W): bounds activation memory


def is_diffusers_config(d) -> bool:
    return isinstance(d, dict) and isinstance(d.get("_class_name"), str) and d["_class_name"].startswith("Autoencoder")


def import_diffusers():
    """The diffusers package, or a VAEError that says how to install it."""
    try:
        import diffusers
    except ImportError:
        raise VAEError("This is a diffusers VAE, and opening one needs the optional diffusers package: "
                       f"{INSTALL_HINT}") from None
    return diffusers


@dataclasses.dataclass(frozen=True)
class DiffusersConfig(ModelConfig):
    """What the explorer needs to know about a diffusers VAE; built by ``load_diffusers_vae``, never trained."""

    in_shape: tuple[int, ...] = (3, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
    latent_dim: int = 4                          # latent channels
    likelihood: Likelihood = "gaussian"          # decode() is the image itself: a Gaussian mean
    class_name: str = "AutoencoderKL"
    source: str = ""                             # where it was opened from (repo id or folder)
    revision: str = ""                           # the Hub commit it was fetched at, if any
    subfolder: str = ""                          # "vae" inside a Stable Diffusion pipeline repo
    downsample: int = 8                          # image side / latent side
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    latents_mean: tuple[float, ...] = ()         # per-channel statistics, where the config has them
    latents_std: tuple[float, ...] = ()
    widest_decode: int = 0                       # values one image's decode holds at its widest layer

    @property
    def model_type(self) -> str:                 # a property: one config class serves both families
        return "diffusers-tiny" if self.class_name == "AutoencoderTiny" else "diffusers-kl"

    def validate(self) -> None:
        super().validate()
        c, h, w = self.in_shape
        if self.class_name not in SUPPORTED:
            raise VAEError(f"DiffusersConfig.class_name must be one of {list(SUPPORTED)}, got {self.class_name!r}.")
        if h % self.downsample or w % self.downsample:
            raise VAEError(f"The image size {h}x{w} must be a multiple of this VAE's downsampling factor "
                           f"{self.downsample}.")
        if not self.scaling_factor > 0 or not math.isfinite(self.scaling_factor):
            raise VAEError(f"The VAE's scaling_factor must be a positive number, got {self.scaling_factor}.")
        for name in ("latents_mean", "latents_std"):
            v = getattr(self, name)
            if v and len(v) != self.latent_dim:
                raise VAEError(f"{name} has {len(v)} values but the VAE has {self.latent_dim} latent channels.")
        if self.latents_std and min(self.latents_std) <= 0:
            raise VAEError("latents_std must be positive.")

    def decode_values(self) -> int:
        return max(math.prod(self.in_shape), self.widest_decode)


class DiffusersVAE(VAEBase):
    """A diffusers AutoencoderKL or AutoencoderTiny that speaks encode / decode / sample / latent_shape."""

    def __init__(self, vae: torch.nn.Module, config: DiffusersConfig):
        super().__init__(config)
        self.vae = vae
        c = config.latent_dim
        mean = config.latents_mean or (config.shift_factor,) * c
        scale = [config.scaling_factor / s for s in config.latents_std] if config.latents_std \
            else [config.scaling_factor] * c
        # z = (z_raw - shift) * scale, per channel; not saved: they come from the config.
        self.register_buffer("shift", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, c, 1, 1), persistent=False)

    @property
    def is_tiny(self) -> bool:
        return self.config.class_name == "AutoencoderTiny"

    @property
    def latent_shape(self) -> tuple[int, ...]:
        _, h, w = self.config.in_shape
        d = self.config.downsample
        return (self.config.latent_dim, h // d, w // d)

    def _chunks(self, t: torch.Tensor, side_h: int, side_w: int):
        """Split a batch so one forward pass holds about PIXELS_PER_CHUNK pixels per channel."""
        return t.split(max(1, PIXELS_PER_CHUNK // (side_h * side_w)))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Posterior:
        c, h, w = x.shape[1:]                                   # x: (B, C, H, W) in [0, 1]
        if c != self.config.in_shape[0]:
            raise VAEError(f"This VAE takes {self.config.in_shape[0]}-channel images, got {c} channels.")
        d = self.config.downsample
        if h % d or w % d:
            raise VAEError(f"Image sides must be multiples of {d} for this VAE, got {h}x{w}.")
        mus, logvars = [], []
        for xb in self._chunks(x, h, w):
            xb = xb.to(self.device, torch.float32) * 2 - 1      # diffusers VAEs take [-1, 1]
            if self.is_tiny:
                mus.append(self.vae.encode(xb).latents)         # (b, C, h, w); TAESD's scale is 1
            else:
                dist = self.vae.encode(xb).latent_dist
                mus.append(dist.mean)
                logvars.append(dist.logvar)
        mu = (torch.cat(mus) - self.shift) * self.scale        # (B, C, h, w) in the diffusion scale
        if self.is_tiny:
            return Posterior(mu, None)                          # deterministic encoder: a point mass
        logvar = torch.cat(logvars) + 2 * torch.log(self.scale)
        return Posterior(mu, logvar)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The decoded image in [0, 1] (unclamped: the decoder may overshoot a little)."""
        lead = z.shape[:-3]                                     # (B,) or (k, B)
        z = z.reshape(-1, *z.shape[-3:])
        h, w = z.shape[-2] * self.config.downsample, z.shape[-1] * self.config.downsample
        out = []
        for zb in self._chunks(z, h, w):
            raw = zb.to(self.device, torch.float32) / self.scale + self.shift
            out.append((self.vae.decode(raw).sample + 1) / 2)   # diffusers VAEs return [-1, 1]
        x = torch.cat(out)
        return x.view(*lead, *x.shape[1:])

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1], shape (B, C, H, W): clamped, as diffusers' own image processor does."""
        return self.decode_logits(z, y).clamp(0, 1)


# ---------------------------------------------------------------------------------------------
# Loading


def _ints(d: dict, key: str, default: list[int], where: Path) -> list[int]:
    v = d.get(key, default)
    if not isinstance(v, list) or not 1 <= len(v) <= 16 or any(isinstance(c, bool) or not isinstance(c, int) for c in v):
        raise VAEError(f"{where}: {key} must be a list of 1 to 16 integers, got {brief(v)}.")
    return v


def _check_sizes(d: dict, where: Path) -> None:
    """Refuse absurd configs before diffusers allocates anything (a rough parameter count)."""
    if d.get("in_channels", 3) not in (1, 3) or d.get("out_channels", 3) != d.get("in_channels", 3):
        raise VAEError(f"{where}: only VAEs for 1- or 3-channel images with as many output channels are supported.")
    latent = d.get("latent_channels", 4)
    if isinstance(latent, bool) or not isinstance(latent, int) or not 1 <= latent <= 256:
        raise VAEError(f"{where}: latent_channels must be between 1 and 256, got {brief(latent)}.")
    if d["_class_name"] == "AutoencoderKL":
        per = d.get("layers_per_block", 1)
        if isinstance(per, bool) or not isinstance(per, int) or not 1 <= per <= 16:
            raise VAEError(f"{where}: layers_per_block must be between 1 and 16, got {brief(per)}.")
        blocks = [(c, 2 * per + 2) for c in _ints(d, "block_out_channels", [64], where)] * 2   # encoder and decoder
    else:
        blocks = [(c, 2 * n + 1) for c, n in zip(_ints(d, "encoder_block_out_channels", [64] * 4, where),
                                                  _ints(d, "num_encoder_blocks", [1, 3, 3, 3], where))]
        blocks += [(c, 2 * n + 1) for c, n in zip(_ints(d, "decoder_block_out_channels", [64] * 4, where),
                                                   _ints(d, "num_decoder_blocks", [3, 3, 3, 1], where))]
        up = d.get("upsampling_scaling_factor", 2)
        if isinstance(up, bool) or not isinstance(up, int) or not 1 <= up <= 8:
            raise VAEError(f"{where}: upsampling_scaling_factor must be between 1 and 8, got {brief(up)}.")
    if any(not 1 <= c <= MAX_WIDTH or not 0 < k <= 64 for c, k in blocks) or len(blocks) > 32:
        raise VAEError(f"{where}: block widths must be between 1 and {MAX_WIDTH}, at most 16 blocks.")
    n = sum(9 * c * c * k for c, k in blocks)                       # 3x3 convolutions dominate
    if n > MAX_PARAMS:
        raise VAEError(f"{where}: this VAE would have about {n:,} parameters (limit {MAX_PARAMS:,}).")


def widest_decode(d: dict, size: int) -> int:
    """Values one image's decode holds at its widest layer, at the working size ``size``: each decoder
    block's channels times its resolution (an estimate that the budgets use; checked on _check_sizes' config)."""
    if d["_class_name"] == "AutoencoderKL":
        widths = list(reversed(d.get("block_out_channels", [64])))            # the decoder runs from low to full resolution
        return max(c * (size // 2 ** (len(widths) - 1 - i)) ** 2 for i, c in enumerate(widths))
    widths = d.get("decoder_block_out_channels", [64] * 4)
    up = d.get("upsampling_scaling_factor", 2)
    return max(c * (size // up ** (len(widths) - 1 - i)) ** 2 for i, c in enumerate(widths))


def _downsample(vae) -> int:
    cfg = vae.config
    if type(vae).__name__ == "AutoencoderKL":
        return 2 ** (len(cfg.block_out_channels) - 1)
    enc = 2 ** (len(cfg.encoder_block_out_channels) - 1)
    dec = cfg.upsampling_scaling_factor ** (len(cfg.decoder_block_out_channels) - 1)
    if enc != dec:
        raise VAEError(f"This AutoencoderTiny downsamples by {enc} but upsamples by {dec}; "
                       "its reconstructions would not match its inputs.")
    return enc


def load_diffusers_vae(folder: str | Path, subfolder: str = "", *, image_size: int | None = None,
                       source: str = "", revision: str = "", policy: LoadPolicy | None = None) -> DiffusersVAE:
    """Open the diffusers VAE in ``folder`` (or ``folder/subfolder``) as a ``DiffusersVAE`` on the CPU, in eval mode.

    ``image_size`` is the working side S of square images (default ``DEFAULT_IMAGE_SIZE``); it
    must be a multiple of the VAE's downsampling factor (8 for Stable Diffusion's).
    """
    diffusers = import_diffusers()
    folder = Path(folder)
    where = folder / subfolder if subfolder else folder
    d = load_json(where / "config.json")
    if not is_diffusers_config(d):
        raise VAEError(f"{where}/config.json is not a diffusers autoencoder config.")
    if d["_class_name"] not in SUPPORTED:
        raise VAEError(f"{where} holds a diffusers {d['_class_name']}; the explorer opens "
                       f"{' and '.join(SUPPORTED)} (image VAEs with a 2-D latent grid).")
    weights = where / WEIGHTS_NAME
    if not weights.is_file():
        pickles = sorted(p.name for p in where.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise VAEError(f"{where} has no {WEIGHTS_NAME}" + (f", only pickled weights ({', '.join(pickles)}), which are "
                       "refused since unpickling can run code" if pickles else "") + ".")
    if weights.stat().st_size > MAX_WEIGHTS_BYTES:
        raise VAEError(f"{weights} is larger than {MAX_WEIGHTS_BYTES >> 30} GiB; refusing to load it.")
    _check_sizes(d, where)
    size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
    if not isinstance(size, int) or not 8 <= size <= MAX_IMAGE_SIZE:
        raise VAEError(f"image_size must be an integer between 8 and {MAX_IMAGE_SIZE}, got {size!r}.")
    probe = DiffusersConfig(in_shape=(d.get("in_channels", 3), size, size), latent_dim=d.get("latent_channels", 4),
                            class_name=d["_class_name"], downsample=1, widest_decode=widest_decode(d, size))
    check_decode_cost(probe, policy or LoadPolicy(), f"This {d['_class_name']} at {size}x{size}")

    cls = getattr(diffusers, d["_class_name"])
    level = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()          # its notes on unused config keys are not ours to show
    try:
        vae, info = cls.from_pretrained(str(folder), subfolder=subfolder or None, use_safetensors=True,
                                        torch_dtype=torch.float32, low_cpu_mem_usage=False,
                                        output_loading_info=True)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
        raise VAEError(f"diffusers could not open {where} ({type(e).__name__}: {str(e).splitlines()[0]}).") from None
    finally:
        diffusers.utils.logging.set_verbosity(level)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "mismatched_keys", "error_msgs") and v}
    if bad:
        raise VAEError(f"{weights} does not match its config.json: "
                       + "; ".join(f"{k.replace('_', ' ')} {list(v)[:5]}" for k, v in bad.items()))

    cfg = vae.config
    config = DiffusersConfig(
        in_shape=(cfg.in_channels, size, size), latent_dim=cfg.latent_channels, class_name=d["_class_name"],
        source=source or str(folder), revision=revision, subfolder=subfolder, downsample=_downsample(vae),
        scaling_factor=float(cfg.scaling_factor), shift_factor=float(getattr(cfg, "shift_factor", None) or 0.0),
        latents_mean=tuple(float(v) for v in (getattr(cfg, "latents_mean", None) or ())),
        latents_std=tuple(float(v) for v in (getattr(cfg, "latents_std", None) or ())),
        widest_decode=widest_decode(d, size))
    config.validate()
    vae.requires_grad_(False)                                # the explorer never trains these
    return DiffusersVAE(vae.eval(), config).eval()


__all__ = ["DEFAULT_IMAGE_SIZE", "DiffusersConfig", "DiffusersVAE", "INSTALL_HINT", "SUPPORTED",
           "import_diffusers", "is_diffusers_config", "load_diffusers_vae"]
