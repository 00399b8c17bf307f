"""Files written whole or not at all, JSON read with a size cap, and checksums.

A file is written to a temporary name beside its place, flushed and renamed (``atomic_file``); a folder is
built beside its place and swapped in under a lock (``atomic_folder``), so a crash never leaves half a file or
half a checkpoint. JSON from a folder a stranger made is read with a size cap, and every way it can be bad is
one VAEError (``load_json``). These are the bricks of the run-folder format (``vae_core.io.run_folder``) and of
every cache vae_core writes.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from ..errors import VAEError
from ..settings import MAX_JSON_BYTES

HASH_CHUNK = 1 << 20


def fsync_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to the disk (inside a folder that is swapped in whole)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_file(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)
    try:
        write(tmp)
        tmp.chmod(0o644)                       # a writer may have replaced the file (and its mode)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_folder(dest: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_dir)`` then swap tmp_dir into ``dest``.

    The old folder is moved aside before the new one is renamed in, and removed only after;
    ``recover_folder`` puts it back if a crash falls between the two renames. The whole swap holds
    the folder's lock (``.NAME.lock`` beside it), so two saves to one name, in one process or
    two, take turns and never remove each other's temporary folders.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(dest):
        _recover(dest)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        tmp.chmod(0o755)
        try:
            write(tmp)
            old = dest.parent / f".{dest.name}.old"
            if dest.exists():
                if old.exists():
                    shutil.rmtree(old)
                os.rename(dest, old)
            os.rename(tmp, dest)
            if old.exists():
                shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextlib.contextmanager
def folder_lock(dest: Path):
    """An exclusive lock on the folder ``dest`` (an flock on ``.NAME.lock`` beside it), held while
    the folder is swapped or recovered. Where the lock file cannot be made (a read-only place,
    where nothing can be swapped anyway), it goes on unlocked."""
    dest = Path(dest)
    try:
        fd = os.open(dest.parent / f".{dest.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                           # closing the file releases the lock


def recover_folder(dest: Path) -> None:
    """Undo an interrupted swap: if only the moved-aside copy exists, it is the last good one.
    Leftover temporary folders of writers that died are removed (under the lock, so no live
    writer's folder is touched)."""
    dest = Path(dest)
    if not (dest.parent / f".{dest.name}.old").exists() and not any(dest.parent.glob(f".{dest.name}.tmp-*")):
        return
    with folder_lock(dest):
        _recover(dest)


def _recover(dest: Path) -> None:
    old = dest.parent / f".{dest.name}.old"
    if old.exists() and not dest.exists():
        os.rename(old, dest)
    for stale in dest.parent.glob(f".{dest.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def read_json(path: Path):
    """A small JSON file's content, or None when it is missing, too large, or not JSON."""
    try:
        return load_json(path)
    except VAEError:
        return None


def load_json(path: Path):
    """A JSON file of a model folder, or a VAEError (never a traceback) for anything a hostile file can
    hold: more than MAX_JSON_BYTES, bad UTF-8 or JSON, nesting too deep to parse, integers too long."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise VAEError(f"{path} is {path.stat().st_size / 2**20:.0f} MB, more than a model folder's JSON "
                           f"file may be ({MAX_JSON_BYTES >> 20} MB); it is not one vae_core can use.")
        return json.loads(path.read_bytes())
    except RecursionError:
        raise VAEError(f"{path} is nested too deeply to be a model's config; it is not one vae_core can use.") from None
    except (ValueError, UnicodeDecodeError) as e:    # JSONDecodeError, and integers of more than 4,300 digits
        raise VAEError(f"{path} is not valid JSON ({str(e).splitlines()[0][:120]}); restore it from the run "
                       "that wrote it.") from None
    except OSError as e:
        raise VAEError(f"{path} cannot be read ({e.strerror or type(e).__name__}).") from None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def zip_folder(folder: str | Path) -> bytes:
    """A zip of a model folder's files inside one folder of the same name: unzipped, it opens with
    ``load_model("NAME")`` (a run trained in the app travels this way in public mode)."""
    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                zf.write(p, f"{folder.name}/{p.name}")
    return buf.getvalue()
