"""The Hugging Face Hub client: turn a model source into a local folder and fetch repos (``push`` publishes).

Only what loading reads is fetched: config files, the model card and safetensors weights. A
pickle is never downloaded: a repo whose weights are only pickles is refused by name from the
Hub's file list. ``hub_error`` is the one mapping of huggingface_hub's exceptions to messages,
for model and dataset repos alike. A ``LoadPolicy`` (vae_core.settings) says whether local paths
may be named, whether this machine's token is sent, and the download and cache budgets.
Reading and writing the folders themselves is ``vae_core.io.run_folder``'s job.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import fnmatch
import re
from pathlib import Path
from typing import Literal

from ..config import brief
from ..errors import VAEError
from ..settings import LoadPolicy, checkpoints_dir
from .files import recover_folder
from .formats import diffusers_subfolder, is_pythae_folder
from .run_folder import MANIFEST, PRIOR_FILES
from .weights import PICKLE_SUFFIXES

REPO_ID = re.compile(r"^(hub:)?([A-Za-z0-9][\w.-]{0,95})/([\w.-]{1,96})(@[\w./-]{1,128})?$")
# A branch, a tag or a commit: path parts of word characters, dots and dashes, never '..' nor a leading dot.
REVISION = re.compile(r"[A-Za-z0-9_][\w.-]{0,127}(/[A-Za-z0-9_][\w.-]{0,127}){0,3}")
# Fetched first, to learn what kind of repo it is before any weights travel.
META_FILES = ("config.json", "model_index.json", "vae/config.json", "model_config.json", "README.md")
# What loading one of our model repos reads; nothing else of a repo is ever fetched.
MODEL_REPO_FILES = ("config.json", "model.safetensors", "README.md", "training_config.json", *PRIOR_FILES, MANIFEST)

SourceKind = Literal["shipped", "folder", "hub"]


@dataclasses.dataclass(frozen=True)
class Resolved:
    """Where a model source points on this machine."""

    folder: Path
    kind: SourceKind
    repo_id: str = ""               # the Hub repo, for kind "hub"
    commit: str = ""                # the commit the Hub files were fetched at


def shipped_checkpoints() -> list[str]:
    """Names of the checkpoints shipped with the package."""
    root = checkpoints_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


def parse_repo_id(source: str) -> tuple[str, str | None] | None:
    """'org/name[@rev]' (or 'hub:org/name[@rev]') -> (repo id, revision or None); None if it is not one."""
    m = REPO_ID.match(source)
    if not m or source.startswith((".", "/", "~")) or ".." in m.group(2) + m.group(3) \
            or m.group(3).startswith(".") or m.group(3).endswith("."):
        return None
    rev = m.group(4)[1:] if m.group(4) else None
    check_revision(rev)
    return f"{m.group(2)}/{m.group(3)}", rev


def check_revision(revision: str | None) -> None:
    """A revision must be a branch, tag or commit name: no '..', no leading dot or slash (it becomes a path
    in the Hub cache)."""
    if revision is None:
        return
    if not isinstance(revision, str) or not REVISION.fullmatch(revision) or ".." in revision \
            or revision.endswith(".lock"):
        raise VAEError(f"{brief(revision)} is not a revision: give a branch, a tag or a commit hash "
                       "(letters, digits, '.', '_', '-' and '/').")


def resolve_source(source: str | Path, revision: str | None = None, policy: LoadPolicy | None = None) -> Resolved:
    """Turn a shipped name, a local folder, or a Hub repo id into a local folder.

    With ``policy.local_paths`` off (the app's public mode) only shipped names and Hub ids are
    accepted, and the file system is never consulted about what was typed."""
    policy = policy or LoadPolicy()
    s = str(source).strip()
    check_revision(revision or None)
    if not policy.local_paths:
        return _resolve_public(s, revision, policy)
    if not s:
        raise VAEError("No model given: name a shipped checkpoint, a local run folder, or a Hub repo id (org/name).")
    path = Path(s).expanduser()
    if path.parent.is_dir() and (path.parent / f".{path.name}.old").is_dir():
        recover_folder(path)                     # a crash fell between the two renames of a save
    if path.exists():
        if not path.is_dir():
            raise VAEError(f"{s} is a file; give the folder that holds config.json and model.safetensors.")
        return Resolved(path, "folder")
    if s in shipped_checkpoints():
        return Resolved(checkpoints_dir() / s, "shipped")
    repo = parse_repo_id(s)
    if repo is not None:
        return _resolve_hub(*repo, revision, policy)
    if (path.parent.exists() and path.parent != Path(".")) or s.startswith((".", "/", "~")):
        raise VAEError(f"No folder at {s}; check the path (a run folder holds config.json and model.safetensors).")
    raise VAEError(f"{brief(s)} is not a shipped checkpoint ({', '.join(shipped_checkpoints()) or 'none found'}), "
                   "a local folder, or a Hub repo id of the form org/name[@revision].")


def _resolve_public(s: str, revision: str | None, policy: LoadPolicy) -> Resolved:
    """Shipped names and Hub ids only: one message for anything else, which says nothing about this machine."""
    shipped = shipped_checkpoints()
    if s in shipped:
        return Resolved(checkpoints_dir() / s, "shipped")
    repo = parse_repo_id(s) if s else None
    if repo is None:
        raise VAEError(f"{'That' if s else 'Nothing'} is not a model this server can open: choose a shipped "
                       f"checkpoint ({', '.join(shipped)}) or a Hugging Face Hub repo id written org/name or "
                       "org/name@revision. (Folders on the server cannot be opened here.)")
    return _resolve_hub(*repo, revision, policy)


def _resolve_hub(repo_id: str, rev: str | None, revision: str | None, policy: LoadPolicy) -> Resolved:
    folder = fetch_model_repo(repo_id, revision or rev, policy)
    commit = folder.name if folder.parent.name == "snapshots" else (revision or rev or "")
    return Resolved(folder, "hub", repo_id, commit)


# ---------------------------------------------------------------------------------------------
# Fetching


def hub_name(repo: str, revision: str | None = None) -> str:
    """A repo as the user wrote it: 'org/name@rev' when a revision was given, so messages keep it."""
    return f"{repo}@{revision}" if revision else repo


def hub_error(e: BaseException, repo: str, revision: str | None = None, kind: str = "model") -> VAEError:
    """The one translation of huggingface_hub's errors into a message that says what to do.

    ``kind`` is "model" or "dataset"; the revision a user typed stays in the message."""
    from huggingface_hub import errors as hf_errors

    name = hub_name(repo, revision)
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    instead = "pick a shipped checkpoint or a local folder" if kind == "model" else \
        "use a built-in dataset or a local image folder"
    if isinstance(e, hf_errors.RevisionNotFoundError):
        return VAEError(f"The {kind} repo {repo!r} has no revision {revision!r}; use a branch, tag or commit it has.")
    if isinstance(e, (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError)):
        return VAEError(f"The Hub has no {kind} repo {name!r} (or it is private or gated): check the spelling; "
                        "a private repo needs a token.")
    if isinstance(e, hf_errors.LocalEntryNotFoundError):
        return VAEError(f"Cannot reach the Hugging Face Hub and the {kind} repo {name!r} is not in the local cache: "
                        f"connect to the network, or {instead}.")
    if isinstance(e, hf_errors.HfHubHTTPError):
        return VAEError(f"The Hub refused the {kind} repo {name!r}: {first}")
    return VAEError(f"Could not fetch the {kind} repo {name!r} from the Hub ({type(e).__name__}: {first}); "
                    f"check the network, or {instead}.")


def fetch_model_repo(repo_id: str, revision: str | None = None, policy: LoadPolicy | None = None) -> Path:
    """Fetch what loading a repo needs: its metadata first, then only the weights that will be read.

    A diffusers VAE (or a Stable Diffusion pipeline's ``vae/``) gets its config and safetensors
    weights only, so a pipeline's UNet and a ``.bin`` copy never download; a pythae repo gets
    nothing more, since its pickle is refused; one of ours gets ``MODEL_REPO_FILES``. Where the
    Hub lists the repo's files, a repo whose weights are only pickles is refused before any
    weights travel. The second fetch is pinned to the commit of the first.
    """
    policy = policy or LoadPolicy()
    meta = download_repo(repo_id, revision, META_FILES, policy)
    commit = meta.name if meta.parent.name == "snapshots" else revision
    sub = diffusers_subfolder(meta)
    if is_pythae_folder(meta):
        return meta
    prefix = f"{sub}/" if sub else ""
    weights = f"{prefix}diffusion_pytorch_model.safetensors" if sub is not None else "model.safetensors"
    listing = _remote_files(repo_id, commit, policy)
    if listing is not None and weights not in listing:
        pickles = sorted(n for n in listing if n.startswith(prefix) and n.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise VAEError(f"{repo_id} has no {weights}, only pickled weights ({', '.join(pickles[:4])}); unpickling "
                           "can run any code hidden in a file, so they are never downloaded. Ask its author for "
                           "safetensors weights, or convert a copy you trust: python -m vae_core convert SRC OUT")
    if sub is not None:
        return download_repo(repo_id, commit, [f"{prefix}config.json", weights], policy)
    return download_repo(repo_id, commit, list(MODEL_REPO_FILES), policy)


def _token(policy: LoadPolicy):
    """What huggingface_hub is given as ``token``: False sends none (not even HF_TOKEN); None lets it find one."""
    return None if policy.use_token else False


def _remote_files(repo_id: str, revision: str | None, policy: LoadPolicy) -> dict[str, int] | None:
    """{file name: size} of a repo from the Hub's metadata; None offline or when the Hub will not say
    (snapshot_download then reports the problem with the right message)."""
    from huggingface_hub import HfApi
    from huggingface_hub import constants as hf_constants

    if hf_constants.HF_HUB_OFFLINE:
        return None
    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, token=_token(policy),
                                  timeout=policy.request_timeout)
    except Exception:      # offline or refused: snapshot_download reports it with the right message
        return None
    return {f.rfilename: int(getattr(f, "size", None) or 0) for f in (info.siblings or [])}


def _too_large(repo_id: str, revision: str | None, total: int, limit: int, before: bool) -> VAEError:
    what = "files to fetch" if before else "files"
    return VAEError(f"{hub_name(repo_id, revision)} holds {total / 2**30:.1f} GiB of {what}; this server loads at most "
                    f"{limit / 2**30:.1f} GiB of a model's files. Pick a smaller model.")


def download_repo(repo_id: str, revision: str | None = None, allow_patterns=None,
                  policy: LoadPolicy | None = None) -> Path:
    """Fetch the files of a model repo that match ``allow_patterns`` (default: ``MODEL_REPO_FILES``)
    through huggingface_hub (its cache works offline).

    Each metadata request waits at most ``policy.request_timeout`` seconds (default 10), passed to
    huggingface_hub with the call, and the whole fetch ``policy.fetch_timeout`` (default 120). More than ``policy.max_download_bytes`` of
    files is refused, from the Hub's metadata before the download where it can be had; with
    ``policy.max_cache_bytes`` the least recently used other repos are removed from the cache to
    make room. ``trust_remote_code`` is never used: nothing fetched is executed, only JSON and
    safetensors are read.
    """
    from huggingface_hub import snapshot_download

    policy = policy or LoadPolicy()
    check_revision(revision)
    fetch_timeout = policy.fetch_timeout
    patterns = list(MODEL_REPO_FILES if allow_patterns is None else allow_patterns)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-fetch")
    try:
        listing = _remote_files(repo_id, revision, policy)
        if listing is not None:
            total = sum(size for name, size in listing.items() if any(fnmatch.fnmatch(name, p) for p in patterns))
            if total > policy.max_download_bytes:
                raise _too_large(repo_id, revision, total, policy.max_download_bytes, before=True)
            if policy.max_cache_bytes:
                trim_cache(policy.max_cache_bytes, keep=repo_id, incoming=total)
        fut = pool.submit(snapshot_download, repo_id, revision=revision, repo_type="model",
                          allow_patterns=patterns, token=_token(policy), etag_timeout=policy.request_timeout)
        try:
            local = fut.result(timeout=fetch_timeout)
        except concurrent.futures.TimeoutError:
            raise VAEError(f"The Hugging Face Hub did not deliver {hub_name(repo_id, revision)!r} within {fetch_timeout:g} s; it may be slow "
                           "or unreachable. Try again later, or pick a shipped checkpoint.") from None
    except VAEError:
        raise
    except (OSError, ValueError) as e:           # huggingface_hub's errors are OSErrors or ValueErrors
        raise hub_error(e, repo_id, revision) from None
    finally:
        pool.shutdown(wait=False)      # a fetch past its time-out finishes (or fails) on its own thread
    total = sum(p.stat().st_size for p in Path(local).rglob("*") if p.is_file())
    if total > policy.max_download_bytes:
        raise _too_large(repo_id, revision, total, policy.max_download_bytes, before=False)
    if policy.max_cache_bytes:
        trim_cache(policy.max_cache_bytes, keep=repo_id)
    return Path(local)


def trim_cache(max_bytes: int, keep: str = "", incoming: int = 0) -> list[str]:
    """Remove the least recently used model repos (never ``keep``) from the Hub cache until it holds at
    most ``max_bytes`` with ``incoming`` more bytes on the way; returns the repos removed."""
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import scan_cache_dir

    if incoming > max_bytes:
        raise VAEError(f"{keep or 'This repo'} needs {incoming / 2**30:.1f} GiB, more than this server's whole model "
                       f"cache ({max_bytes / 2**30:.1f} GiB). Pick a smaller model.")
    try:
        info = scan_cache_dir(hf_constants.HF_HUB_CACHE)
    except Exception:                 # no cache yet, or one being written: nothing to trim
        return []
    repos = sorted((r for r in info.repos if r.repo_type == "model" and r.repo_id != keep),
                   key=lambda r: r.last_accessed)
    used, removed, hashes = info.size_on_disk + incoming, [], []
    for repo in repos:
        if used <= max_bytes:
            break
        hashes += [rev.commit_hash for rev in repo.revisions]
        used -= repo.size_on_disk
        removed.append(repo.repo_id)
    if hashes:
        info.delete_revisions(*hashes).execute()
    return removed


__all__ = ["META_FILES", "MODEL_REPO_FILES", "REPO_ID", "Resolved", "check_revision", "download_repo",
           "fetch_model_repo", "hub_error", "hub_name", "parse_repo_id", "resolve_source",
           "shipped_checkpoints", "trim_cache"]
