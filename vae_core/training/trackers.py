"""Trackers: TensorBoard and MLflow as sinks of the events ``train()`` yields.

``Tracking(specs).follow(events, config, model=..., images=...)`` passes every event through unchanged
and logs it to each sink on the way; the loop itself knows nothing of trackers. What is logged is
decided once, in ``event_metrics`` (the numbers) and ``Tracking._log`` (the images):

- every "step" event: each loss part (``train/loss``, ``train/recon``, ``train/kl`` and the family's own
  terms) and the throughput (``train/images_per_s``), at the global step;
- every "epoch" event: the learning rate (``train/lr``), the held-out metrics when evaluated
  (``test/elbo``, ``test/recon``, ``test/kl``, ``test/active_units``, ``test/log_likelihood`` where the
  IWAE estimate was computed, ...), KL per latent unit (``kl_per_unit/z0``...), the epoch's own
  training values (a VQ-VAE's codebook usage, ...) as ``epoch/...``, the fixed-noise sample grid and a
  grid of held-out images above their reconstructions;
- at the start the config as hyperparameters (``model.latent_dim``, ``train.beta``, ...); at the end
  the model card's metrics (``card/elbo``, ...) and, for MLflow, the run folder as the artifact ``run``
  (download it and open it with ``load_model``).

A sink that fails (an unreachable server, a bad URI, a full disk) is dropped with one line said through
``say``; the run goes on, and saves its checkpoints, without it.

The libraries are optional extras (``pip install 'vae-latent-explorer[tracking]'`` or
requirements-extras.txt) and imported only when a sink of theirs is asked for.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import re
import time
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterator, Literal

import torch

from ..errors import VAEError
from ..images import grid, to_pil

KINDS = ("tensorboard", "mlflow")
# What each sink imports, and the one line that says how to get it.
PACKAGES = MappingProxyType({"tensorboard": ("tensorboard", "pip install tensorboard"),
                             "mlflow": ("mlflow", "pip install mlflow-skinny sqlalchemy alembic")})
EXTRA_HINT = "(or all trackers: pip install 'vae-latent-explorer[tracking]', or pip install -r requirements-extras.txt)"
DEFAULT_MLFLOW_URI = "sqlite:///runs/mlflow.db"   # an embedded store: no server needed
DEFAULT_EXPERIMENT = "vae_core"
RECON_COUNT = 8           # held-out images shown above their reconstructions every epoch
MLFLOW_PARAMS_PER_CALL = 100
SERVER_TIMEOUT_S = 5.0    # how long an MLflow server's /health may take to answer before the sink is dropped
# counts and seeds that describe the evaluation, not the model
SKIP_EVAL = frozenset({"n_images", "latent_units", "iwae_k", "binarization_seed"})


@dataclasses.dataclass(frozen=True)
class TrackSpec:
    """One sink: ``tensorboard:DIR`` or ``mlflow[:URI]`` (a SQLite file by default, or a server's http:// URI)."""
    kind: Literal["tensorboard", "mlflow"]
    target: str

    @classmethod
    def parse(cls, text: str) -> "TrackSpec":
        kind, _, target = str(text).strip().partition(":")
        kind = kind.lower()
        if kind not in KINDS:
            raise VAEError(f"--track {text!r}: give tensorboard:DIR or mlflow:URI (e.g. mlflow:{DEFAULT_MLFLOW_URI}).")
        target = target.strip()
        if kind == "tensorboard" and not target:
            raise VAEError("--track tensorboard needs a directory: tensorboard:DIR (e.g. tensorboard:runs/tb).")
        return cls(kind, target or DEFAULT_MLFLOW_URI)

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


def missing_package(kind: str) -> str | None:
    """The one line to say when ``kind``'s library is not installed, else None."""
    module, install = PACKAGES[kind]
    if importlib.util.find_spec(module) is None:
        return f"--track {kind} needs the {module} package, which is not installed: {install} {EXTRA_HINT}."
    return None


def parse_tracks(text: str) -> list[TrackSpec]:
    """Comma- or space-separated sinks as a person types them (the app's Train tab), each checked and its
    library installed: ``tensorboard:runs/tb, mlflow:sqlite:///runs/mlflow.db``; empty text is no sink."""
    specs = [TrackSpec.parse(part) for part in re.split(r"[,\s]+", str(text).strip()) if part]
    for spec in specs:
        missing = missing_package(spec.kind)
        if missing:
            raise VAEError(missing.replace("--track ", "Tracking to ", 1))
    return specs


def hyperparameters(config) -> dict[str, str | int | float | bool]:
    """The run config as flat ``model.x`` / ``train.x`` hyperparameters (tuples and None as text)."""
    out: dict[str, str | int | float | bool] = {}
    for section, values in config.to_dict().items():
        for key, v in values.items():
            out[f"{section}.{key}"] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out


def event_metrics(ev, lr: float) -> dict[str, float]:
    """The numbers one event adds (the one place that says what a tracker logs)."""
    if ev.kind == "step":
        return {**{f"train/{k}": float(v) for k, v in ev.losses.items()}, "train/images_per_s": float(ev.images_per_s)}
    if ev.kind != "epoch":
        return {}
    out = {"train/lr": float(lr), **{f"epoch/{k}": float(v) for k, v in ev.losses.items()}}
    for k, v in (ev.eval or {}).items():
        if k == "kl_per_dim":
            out.update({f"kl_per_unit/z{i}": float(x) for i, x in enumerate(v)})
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and k not in SKIP_EVAL:
            out[f"test/{k}"] = float(v)
    return out


def card_metrics(last_eval: dict | None) -> dict[str, float]:
    """The model card's metrics (``summarize_metrics`` of the last evaluation) as ``card/...``."""
    from ..io.run_folder import summarize_metrics

    return {f"card/{k}": float(v) for k, v in summarize_metrics(last_eval).items()
            if isinstance(v, (int, float))} if last_eval else {}         # numbers: the card's words are not logged


@torch.inference_mode()
def reconstructions(model, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Held-out images (uint8, (n, C, H, W)) above their reconstructions from the posterior mean, as one grid."""
    was = model.training
    model.eval()
    try:
        x = images.to(model.device).float().div(255.0)
        y = labels.to(model.device) if labels is not None and model.num_classes else None
        x_hat = model.decode(model.encode(x, y).mode(), y).float().clamp(0, 1)
        return grid(torch.cat([x, x_hat]).cpu(), nrow=len(x))
    finally:
        model.train(was)


def shown_images(data, test_data) -> dict:
    """The ``images`` and ``labels`` ``Tracking.follow`` reconstructs: the first held-out images (training
    images where there are none held out), or none without data."""
    shown = test_data if test_data is not None and len(test_data) else data
    if shown is None:
        return {"images": None, "labels": None}
    return {"images": shown.images[:RECON_COUNT],
            "labels": shown.labels[:RECON_COUNT] if shown.labels is not None else None}


def _fresh_dir(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ... when a run of that name is already there."""
    path, k = root / name, 2
    while path.exists():
        path, k = root / f"{name}-{k}", k + 1
    return path


class TensorBoardSink:
    """A run as ``DIR/<run name>``: scalars, images, and the config with the card's metrics in the HParams tab."""

    def __init__(self, spec: TrackSpec, experiment: str, run_name: str, params: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.spec, self.params = spec, params
        self.logdir = _fresh_dir(Path(spec.target).expanduser(), _safe(run_name))
        self.writer = SummaryWriter(str(self.logdir))
        self.writer.add_text("config", "\n".join(f"    {k} = {v}" for k, v in params.items()), 0)

    def metrics(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, image, step)

    def finish(self, final: dict[str, float], step: int, out_dir: Path | None, status: str) -> None:
        from torch.utils.tensorboard.summary import hparams

        for k, v in final.items():
            self.writer.add_scalar(k, v, step)
        for summary in hparams(self.params, final):
            self.writer.file_writer.add_summary(summary)
        self.writer.close()

    def close(self) -> None:
        self.writer.close()


class MLflowSink:
    """A run in an MLflow experiment; on a SQLite store its artifacts go beside the database file."""

    def __init__(self, spec: TrackSpec, experiment: str, run_name: str, params: dict):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.spec = spec
        uri = spec.target
        artifacts = None
        if uri.startswith(("http://", "https://")):
            _check_server(uri)
        if uri.startswith("sqlite:///"):
            db = Path(uri.removeprefix("sqlite:///"))
            db.parent.mkdir(parents=True, exist_ok=True)
            artifacts = (db.parent.resolve() / "mlartifacts" / _safe(experiment)).as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment, artifact_location=artifacts)
        self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), MLFLOW_PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=items[i:i + MLFLOW_PARAMS_PER_CALL])

    def metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self.client.log_image(self.run_id, to_pil(image), artifact_file=f"{tag}/step_{step:08d}.png")

    def finish(self, final: dict[str, float], step: int, out_dir: Path | None, status: str) -> None:
        if final:
            self.metrics(final, step)
        if out_dir is not None and out_dir.is_dir():
            self.client.log_artifacts(self.run_id, str(out_dir), artifact_path="run")
        self.client.set_terminated(self.run_id, status)

    def close(self) -> None:
        """After a failure: the run marked FAILED in a local store; a server that just failed is not asked
        again (its client would retry for minutes)."""
        if not self.spec.target.startswith(("http://", "https://")):
            self.client.set_terminated(self.run_id, "FAILED")


def _check_server(uri: str) -> None:
    """Fail at once when an MLflow server does not answer: its client retries a refused connection for minutes."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=SERVER_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise ConnectionError(f"the MLflow server at {uri} does not answer ({reason}); start it, or check the URI") from None


SINKS = MappingProxyType({"tensorboard": TensorBoardSink, "mlflow": MLflowSink})


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "_", name).strip("._") or "run"


class Tracking:
    """The sinks of one run. A sink that fails is dropped, ``say`` tells it once, and the run goes on."""

    def __init__(self, specs: list[TrackSpec], *, experiment: str = DEFAULT_EXPERIMENT, run_name: str = "",
                 say: Callable[[str], None] = print):
        self.specs, self.experiment, self.say = list(specs), experiment, say
        self.run_name = run_name or time.strftime("run-%Y%m%d-%H%M%S")
        self.sinks: list = []
        self.problems: list[str] = []     # one line per sink that failed

    def __bool__(self) -> bool:
        return bool(self.specs)

    def _guard(self, sink, what: str, call: Callable[[], None]) -> None:
        if sink not in self.sinks:     # dropped earlier in this event: told once already
            return
        try:
            call()
        except Exception as e:         # any failure of a tracker's library: drop it, never the run
            self._drop(sink, what, e)

    def _drop(self, sink, what: str, e: Exception) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
            try:
                sink.close()
            except Exception:          # it is already failing; its first error is the one worth telling
                pass
        spec = sink.spec if hasattr(sink, "spec") else sink
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        line = (f"tracking: could not {what} {spec} ({type(e).__name__}: {detail}); "
                "the run goes on without it")
        self.problems.append(line)
        self.say(line)

    def open(self, config) -> None:
        params = hyperparameters(config)
        for spec in self.specs:
            try:
                self.sinks.append(SINKS[spec.kind](spec, self.experiment, self.run_name, params))
            except Exception as e:     # a bad URI, an unwritable directory, a server that is down
                self._drop(spec, "open", e)

    def _log(self, ev, config, model, images, labels) -> None:
        values = event_metrics(ev, config.train.lr)
        for sink in list(self.sinks):
            if values:
                self._guard(sink, "log to", lambda: sink.metrics(values, ev.step))
        if ev.kind != "epoch" or not self.sinks or (ev.eval is None and ev.samples is None):
            return                           # pictures at the checkpoints' pace (checkpoint_seconds), not every epoch
        pictures = {}
        if ev.samples is not None:
            pictures["samples"] = grid(ev.samples, nrow=8)
        if model is not None and images is not None:
            pictures["reconstructions"] = reconstructions(model, images, labels)
        for sink in list(self.sinks):
            for tag, picture in pictures.items():
                self._guard(sink, f"log {tag} to", lambda: sink.image(tag, picture, ev.step))

    def follow(self, events: Iterator, config, *, model=None, images: torch.Tensor | None = None,
               labels: torch.Tensor | None = None, out_dir: str | Path | None = None) -> Iterator:
        """Yield ``events`` unchanged, logging each to every sink; finish the sinks when they end.

        ``model`` (the object being trained) and ``images`` (uint8 held-out images, with their ``labels``
        for a conditional model) give the reconstructions; ``out_dir`` is the run folder MLflow keeps."""
        self.open(config)
        status, last_eval, step = "FAILED", None, 0
        try:
            for ev in events:
                self._log(ev, config, model, images, labels)
                last_eval = ev.eval or last_eval
                step = ev.step
                if ev.kind == "done":
                    status = "FINISHED"
                yield ev
        except GeneratorExit:
            status = "KILLED"
            raise
        finally:
            if hasattr(events, "close"):
                events.close()
            final = card_metrics(last_eval)
            out = Path(out_dir) if out_dir else None
            for sink in list(self.sinks):
                self._guard(sink, "finish", lambda: sink.finish(final, step, out, status))
            self.sinks.clear()


def tracked_train(config, tracking: Tracking, *, out_dir=None, resume: bool = False, **kw) -> Iterator:
    """``train(config, ...)`` with its events logged to ``tracking``'s sinks (just ``train`` without any).

    Loads the data here (as train would), so the trackers' reconstructions use held-out images without a
    second copy, and builds the model here (as train would, from the same seed) so they can reach it."""
    from ..data import load_dataset
    from .loop import init_model, train

    if not tracking:
        return train(config, out_dir=out_dir, resume=resume, **kw)
    t = config.train
    data = load_dataset(t.dataset, "train", image_size=t.image_size)
    test = load_dataset(t.dataset, "test", image_size=t.image_size)
    model = init_model(config.model, t.seed)
    events = train(config, data, test, out_dir=out_dir, resume=resume, model=model, **kw)
    return tracking.follow(events, config, model=model, out_dir=out_dir, **shown_images(data, test))


__all__ = ["DEFAULT_EXPERIMENT", "DEFAULT_MLFLOW_URI", "KINDS", "TrackSpec", "Tracking", "card_metrics",
           "event_metrics", "hyperparameters", "missing_package", "parse_tracks", "reconstructions", "shown_images", "tracked_train"]
