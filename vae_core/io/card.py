"""The model card: the README.md of a model folder, written for the Hub and read back for its metrics.

Hub front matter (library, tags, dataset), how to load the model, the command that reproduces it, its
held-out metrics as a table, and its configs. ``read_card_metrics`` reads that table back for display.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..models import VAEBase
from ..settings import MAX_JSON_BYTES
from .files import read_json

LIBRARY_NAME = "vae-latent-explorer"


def model_card(model: VAEBase, *, training: dict | None = None, metrics: dict | None = None,
               command: str | None = None, sample_image: str | None = None, extra: str = "",
               scored_as: str | None = None, metrics_note: str = "") -> str:
    """The README.md of a model folder: Hub front matter, how to load it, its metrics and configs.
    ``scored_as`` (evaluation.metrics.scored_as: the grey-level cross-entropy, a binarized log p(x), a density)
    heads the metrics table, so the figures are never read as what they are not; ``metrics_note`` follows it."""
    cfg = model.config
    dataset = (training or {}).get("dataset")
    front = ["---", f"library_name: {LIBRARY_NAME}", "tags:", "- vae", "- variational-autoencoder",
             "- pytorch", f"- {LIBRARY_NAME}", f"- {cfg.model_type}"]
    if dataset and str(dataset).startswith("hf:"):
        front += ["datasets:", f"- {str(dataset)[3:].split(':')[0].split('@')[0]}"]   # the bare Hub id
    front.append("---")
    n_params = sum(p.numel() for p in model.parameters())
    lines = [*front, "", f"# {cfg.model_type.upper()} VAE", "",
             f"A `{cfg.model_type}` variational autoencoder with latent shape `{list(model.latent_shape)}` "
             f"on `{list(cfg.in_shape)}` images ({n_params:,} parameters), trained with "
             "VAE Latent Explorer (`vae_core`)" + (f" on `{dataset}`." if dataset else "."), ""]
    if sample_image:
        lines += [f"![samples]({sample_image})", ""]
    lines += ["## Load", "", "```python", "from vae_core import load_model",
              "model = load_model(\"<this folder or org/name>\")", "```", ""]
    if command:
        lines += ["## Reproduce", "", "```bash", command, "```", ""]
    if metrics:
        lines += ["## Metrics (held-out test split)", "", "| metric | value |", "|---|---|"]
        lines += [f"| scored_as | {scored_as} |"] if scored_as else []
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]
        lines += ["", f"Images scored: {metrics_note}."] if metrics_note else []
        lines.append("")
    lines += ["## Model config", "", "```json", json.dumps(cfg.to_dict(), indent=2), "```", ""]
    if training:
        lines += ["## Training config", "", "```json", json.dumps(training, indent=2), "```", ""]
    if extra:
        lines += [extra, ""]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def read_card_metrics(folder: Path) -> dict[str, str]:
    """The metrics table of a model card, as text, for display."""
    card = Path(folder) / "README.md"
    if not card.is_file() or card.stat().st_size > MAX_JSON_BYTES:     # a card is text for people, never megabytes
        return {}
    out, in_table = {}, False
    for line in card.read_text(errors="replace").splitlines():
        if line.startswith("## Metrics"):
            in_table = True
            continue
        if in_table and line.startswith("## "):
            break
        m = re.match(r"^\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|$", line)
        if in_table and m and m.group(1) not in ("metric", "---"):
            out[m.group(1)] = m.group(2)
    return out


def read_trained_on(folder: Path) -> str:
    """The dataset a run folder was trained on, from its training_config.json ('' when unknown)."""
    d = read_json(Path(folder) / "training_config.json")
    try:
        dataset = d["train"]["dataset"]
    except (KeyError, TypeError):
        return ""
    return dataset if isinstance(dataset, str) else ""
