"""Image datasets on the Hugging Face Hub, read from their parquet files.

``hf:org/name[@revision][:option...]``: options are ``column=`` (the image column; a bare word
means the same), ``label=``, ``config=`` and ``max_images=``. Online, only the parquet shards a
split needs are downloaded; offline (HF_HUB_OFFLINE, or the Hub unreachable), the local Hub cache
is read. Decoded images are cached on disk as safetensors, keyed by the commit and the options.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import VAEError
from ..io.files import atomic_file
from ..io.hub import hub_error, hub_name
from ..settings import DEFAULT_MAX_IMAGES, HUB_REQUEST_TIMEOUT, cache_dir
from .decode import ImageCollector
from .imageset import ImageSet, Progress, split_indices

HF_SPEC = re.compile(r"^hf:(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96})(?:@(?P<rev>[^:@\s]{1,128}))?(?::(?P<opts>.*))?$")
HF_OPTIONS = ("column", "label", "config", "max_images")
_HF_DECODE_VERSION = 1          # part of the decoded cache's key: bump when decoding changes


def parse_hf_spec(spec: str) -> dict:
    """``hf:org/name[@rev][:opt...]`` -> {repo, revision, column, label, config, max_images}.

    Each option is ``key=value`` (key one of column, label, config, max_images) or a bare word,
    which names the image column: ``hf:ylecun/mnist:image``, ``hf:org/name:config=cifar10:img``.
    """
    m = HF_SPEC.match(spec.strip())
    if not m:
        raise VAEError(f"{spec!r} is not a Hub dataset name; write hf:org/name[@revision][:column][:key=value...].")
    out = {"repo": m["repo"], "revision": m["rev"], "column": None, "label": None, "config": None, "max_images": None}
    for opt in filter(None, (m["opts"] or "").split(":")):
        key, eq, value = opt.partition("=")
        if not eq:
            key, value = "column", opt
        if key not in HF_OPTIONS or not value:
            raise VAEError(f"Unknown option {opt!r} in {spec!r}; options are {', '.join(HF_OPTIONS)} (key=value).")
        if key == "max_images":
            if not value.isdigit() or int(value) < 1:
                raise VAEError(f"max_images must be a positive whole number, got {value!r} in {spec!r}.")
            value = int(value)
        out[key] = value
    return out


@dataclasses.dataclass
class _ParquetFile:
    path: str                  # inside the repo
    config: str                # the folder that holds it ("" at the root)
    split: str


def _parquet_layout(path: str) -> _ParquetFile:
    # data/train-00000-of-00002.parquet, mnist/test-00000-of-00001.parquet, train.parquet,
    # and the Hub's converted branch (refs/convert/parquet): config/train/0000.parquet
    parts = path.split("/")
    stem = parts[-1][:-len(".parquet")]
    if re.fullmatch(r"\d+", stem) and len(parts) >= 2:
        split = parts[-2].removeprefix("partial-")
        config = "/".join(parts[:-2])
    else:
        split = re.sub(r"-\d{5}-of-\d{5}.*$", "", stem)
        config = "/".join(parts[:-1])
    return _ParquetFile(path, config, split)


def _hub_parquet_files(repo: str, revision: str | None) -> tuple[str, list[str], Callable[[str], Path], list[str]]:
    """(commit, parquet paths in the repo, fetch(path) -> local file, warnings).

    Online, lists the repo and downloads only the files asked for; offline (HF_HUB_OFFLINE, or the
    Hub unreachable) uses what the huggingface_hub cache holds for that revision.
    """
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        infos = snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=["*.parquet"], dry_run=True,
                                  etag_timeout=HUB_REQUEST_TIMEOUT)
        if not infos:
            return "", [], lambda p: Path(p), []
        commit = infos[0].commit_hash

        def fetch(p: str) -> Path:
            try:
                return Path(hf_hub_download(repo, p, repo_type="dataset", revision=commit,
                                            etag_timeout=HUB_REQUEST_TIMEOUT))
            except (OSError, ValueError) as e:
                raise hub_error(e, repo, revision, kind="dataset") from None

        return commit, sorted(i.filename for i in infos), fetch, []
    except hf_errors.DryRunError as e:
        # The Hub could not list the repo: offline, unreachable, or it refused. Only a refusal
        # that names the repo is final; otherwise the local cache may still hold it.
        cause = e.__cause__
        if isinstance(cause, (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError)) or \
                getattr(getattr(cause, "response", None), "status_code", None) == 401:
            raise hub_error(cause, repo, revision, kind="dataset") from None
    except (OSError, ValueError) as e:
        raise hub_error(e, repo, revision, kind="dataset") from None
    notes = []
    try:
        folder = snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=["*.parquet"],
                                   local_files_only=True)
    except hf_errors.IncompleteSnapshotError as e:
        folder = e.snapshot_path
        notes.append(f"Offline, and the Hub cache holds only some of {repo}'s parquet files; read those it holds.")
    except (OSError, ValueError) as e:
        raise hub_error(e, repo, revision, kind="dataset") from None
    root = Path(folder)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    return root.name, files, lambda p: root / p, notes


def _pick_files(repo: str, files: list[str], config: str | None) -> tuple[str, dict[str, list[str]]]:
    """The chosen config and its parquet files by Hub split."""
    layout = [_parquet_layout(f) for f in files]
    configs = sorted({f.config for f in layout})
    if config is not None:
        chosen = [c for c in configs if c == config or c.split("/")[0] == config]
        if not chosen:
            raise VAEError(f"Dataset {repo!r} has no config {config!r}; it has {', '.join(repr(c) for c in configs)}.")
    elif len(configs) == 1:
        chosen = configs
    else:
        chosen = [c for c in configs if c in ("data", "default", "")]
        if len(chosen) != 1:
            raise VAEError(f"Dataset {repo!r} has several configs ({', '.join(repr(c) for c in configs)}); "
                           "choose one, e.g. hf:org/name:config=NAME.")
    by_split: dict[str, list[str]] = {}
    for f in layout:
        if f.config in chosen:
            by_split.setdefault(f.split, []).append(f.path)
    return "+".join(chosen), {k: sorted(v) for k, v in sorted(by_split.items())}


def _hf_features(schema) -> dict:
    meta = (schema.metadata or {}).get(b"huggingface")
    try:
        return json.loads(meta)["info"]["features"] if meta else {}
    except (ValueError, KeyError, TypeError):
        return {}


def _pick_columns(repo: str, schema, column: str | None, label: str | None) -> tuple[str, str | None, tuple[str, ...]]:
    import pyarrow as pa

    names = list(schema.names)
    features = _hf_features(schema)
    if column is None:
        typed = [n for n in names if isinstance(features.get(n), dict) and features[n].get("_type") == "Image"]
        bytes_structs = [n for n in names if pa.types.is_struct(schema.field(n).type)
                         and schema.field(n).type.get_field_index("bytes") >= 0]
        guess = typed or [n for n in ("image", "img") if n in names] or bytes_structs
        if not guess:
            raise VAEError(f"Dataset {repo!r} has no image column among {names}; name one, e.g. hf:{repo}:COLUMN.")
        column = guess[0]
    if column not in names:
        raise VAEError(f"Dataset {repo!r} has no column {column!r}; its columns are {names}.")
    if label is None:
        label = "label" if "label" in names else None
    elif label not in names:
        raise VAEError(f"Dataset {repo!r} has no label column {label!r}; its columns are {names}.")
    class_names: tuple[str, ...] = ()
    feat = features.get(label) if label else None
    if isinstance(feat, dict) and isinstance(feat.get("names"), list):
        class_names = tuple(str(n) for n in feat["names"])
    return column, label, class_names


def _cell_bytes(cell) -> bytes | None:
    if isinstance(cell, dict):                  # {"bytes": ..., "path": ...}, as `datasets` writes images
        return cell.get("bytes")
    return cell if isinstance(cell, (bytes, bytearray)) else None


def _hub_decoded_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "hf" / key["repo"].replace("/", "--") / f"{digest}.safetensors"


def _labels_tensor(values: list, class_names: tuple[str, ...], column: str):
    """Labels as int64 and class names; None (with a warning) when they are missing or not classes."""
    if any(v is None for v in values):
        return None, (), [f"Some rows have no {column!r}; labels were dropped."]
    if all(isinstance(v, (bool, int, np.integer)) for v in values):
        t = torch.tensor([int(v) for v in values], dtype=torch.int64)
        if len(t) and int(t.min()) < 0:
            return None, (), [f"Column {column!r} has negative labels (unlabelled rows); labels were dropped."]
        return t, class_names, []
    if all(isinstance(v, str) for v in values):
        names = tuple(sorted(set(values)))
        lookup = {n: i for i, n in enumerate(names)}
        return torch.tensor([lookup[v] for v in values], dtype=torch.int64), names, []
    return None, (), [f"Column {column!r} does not hold class labels (whole numbers or names); labels were dropped."]


def load_hub(spec: str, split: str, image_size: int, channels: int, *, column, label_column, config, revision,
              max_images, progress) -> ImageSet:
    opts = parse_hf_spec(spec)
    if not split or not re.fullmatch(r"[\w.-]+", split):
        raise VAEError(f"Unknown split {split!r}; choose train, test, all or a split the dataset has.")
    key = (opts["repo"], revision or opts["revision"], split, column or opts["column"], label_column or opts["label"],
           config or opts["config"], int(max_images or opts["max_images"] or DEFAULT_MAX_IMAGES), image_size, channels)
    return _read_hub(*key, progress=progress)


def _read_hub(repo: str, revision: str | None, split: str, column: str | None, label: str | None,
              config: str | None, max_images: int, image_size: int, channels: int,
              progress: Progress | None) -> ImageSet:
    """One split of a Hub dataset: the Hub's own split of that name (``all``: every split, in name
    order). Train and test are the Hub's where it has both; otherwise a fixed 80/20 share of its
    train (or only) split, so they never overlap."""
    commit, files, fetch, notes = _hub_parquet_files(repo, revision)
    if not files:
        raise VAEError(f"Dataset repo {hub_name(repo, revision)!r} has no parquet files; "
                       f"try its converted branch, hf:{repo}@refs/convert/parquet.")
    config_name, by_split = _pick_files(hub_name(repo, revision), files, config)
    source, share = split, None
    own = split not in ("train", "test") or {"train", "test"} <= set(by_split)
    if split == "all":
        chosen = [f for s in by_split for f in by_split[s]]
    elif own and split in by_split:
        chosen = by_split[split]
    elif not own and ("train" in by_split or len(by_split) == 1):
        source, share = ("train" if "train" in by_split else next(iter(by_split))), split
        chosen = by_split[source]
        notes.append(f"The Hub dataset has no train and test splits; this {split} split is a fixed "
                     f"{'80' if split == 'train' else '20'}% share of its {source!r} split.")
    else:
        raise VAEError(f"Dataset {hub_name(repo, revision)!r} has no split {split!r}; it has {', '.join(by_split)}.")
    key = {"repo": repo, "commit": commit, "config": config_name, "split": source, "column": column, "label": label,
           "max_images": max_images, "image_size": image_size, "channels": channels, "version": _HF_DECODE_VERSION}
    data = _read_cached_decode(key)
    if data is None:
        data = _decode_parquet(key, chosen, fetch, progress)
    data = dataclasses.replace(data, warnings=tuple(notes) + data.warnings)
    return data.subset(split_indices(len(data), share)) if share else data


def _read_cached_decode(key: dict) -> ImageSet | None:
    from safetensors import SafetensorError, safe_open

    path = _hub_decoded_path(key)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
            if json.loads(meta.get("key", "{}")) != key:
                return None
            images = fh.get_tensor("images")
            labels = fh.get_tensor("labels") if "labels" in fh.keys() else None
        return ImageSet(images, labels, class_names=tuple(json.loads(meta["class_names"])), name=f"hf:{key['repo']}",
                        warnings=tuple(json.loads(meta["warnings"])))
    except (SafetensorError, OSError, ValueError, KeyError, VAEError):
        return None                                   # unreadable: decode again, and overwrite it


def _decode_parquet(key: dict, files: list[str], fetch: Callable[[str], Path], progress: Progress | None) -> ImageSet:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.torch import save_file

    repo, max_images = key["repo"], key["max_images"]
    name = f"hf:{repo}"
    collector = ImageCollector(key["image_size"], key["channels"])
    labels: list = []
    class_names: tuple[str, ...] = ()
    label_col = None
    more_rows = False
    for k, path in enumerate(files):
        if len(collector.arrays) >= max_images:
            more_rows = True
            break
        try:
            pf = pq.ParquetFile(fetch(path))
            column, label_col, class_names = _pick_columns(repo, pf.schema_arrow, key["column"], key["label"])
            total = min(max_images, len(collector.arrays) + pf.metadata.num_rows)
            row = 0
            for batch in pf.iter_batches(batch_size=256, columns=[column] + ([label_col] if label_col else [])):
                cells = batch.column(0).to_pylist()
                room = max_images - len(collector.arrays)
                more_rows = more_rows or len(cells) > room
                for i, cell in enumerate(cells[:room]):
                    data = _cell_bytes(cell)
                    if not data:
                        raise VAEError(f"{name} ({path}, row {row + i}): column {column!r} holds no image bytes; "
                                       f"name the image column, e.g. hf:{repo}:COLUMN.")
                    try:
                        collector.add(data)
                    except VAEError as e:
                        raise VAEError(f"{name} ({path}, row {row + i}): {e}") from None
                if label_col:
                    labels.extend(batch.column(1).to_pylist()[:min(room, len(cells))])
                row += len(cells)
                if progress is not None:
                    progress(len(collector.arrays), total)
                if len(collector.arrays) >= max_images:
                    more_rows = more_rows or row < pf.metadata.num_rows or k < len(files) - 1
                    break
        except (pa.ArrowException, OSError) as e:
            raise VAEError(f"{name}: {path} is not a readable parquet file ({str(e).splitlines()[0]}).") from None
    if not collector.arrays:
        raise VAEError(f"{name} split {key['split']!r} has no rows.")
    images, notes = collector.finish()
    if more_rows:
        notes.append(f"Read the first {len(images):,} rows of the split (max_images={max_images:,}).")
    label_tensor = None
    if label_col:
        label_tensor, class_names, more = _labels_tensor(labels, class_names, label_col)
        notes += more
    meta = {"key": json.dumps(key, sort_keys=True), "class_names": json.dumps(list(class_names)),
            "warnings": json.dumps(notes)}
    tensors = {"images": images.contiguous()}
    if label_tensor is not None:
        tensors["labels"] = label_tensor
    atomic_file(_hub_decoded_path(key), lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return ImageSet(images, label_tensor, class_names=class_names, name=name, warnings=tuple(notes))
