"""Dataset sources: the dSprites generator, Hub parquet datasets (offline), image folders."""
import base64
import hashlib
import io
import json
import os
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from vae_core import VAEError, load_dataset
from vae_core.data import dsprites as D
from vae_core.data import hub_parquet as HP
from vae_core.data.imageset import split_indices
from vae_core.settings import HUB_REQUEST_TIMEOUT, cache_dir


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """Every test gets its own disk cache (nothing is kept in memory between loads)."""
    monkeypatch.setenv("VAE_CACHE_DIR", str(tmp_path / "vae-cache"))


# ---------------------------------------------------------------------------------------------
# dSprites


def test_dsprites_factor_grid_matches_the_original_layout():
    assert D.DSPRITES_SIZES == (3, 6, 40, 32, 32) and D.DSPRITES_N == 737_280
    # The original: latents_bases = concat(sizes[::-1].cumprod()[::-1][1:], [1]) over (color=1, shape, ...)
    sizes = np.array([1, 3, 6, 40, 32, 32])
    original_bases = np.concatenate((sizes[::-1].cumprod()[::-1][1:], [1]))
    assert D.DSPRITES_BASES == tuple(original_bases[1:]) == (245760, 40960, 1024, 32, 1)
    values = D.dsprites_factors()
    assert list(values) == list(D.DSPRITES_FACTOR_NAMES) == ["shape", "scale", "orientation", "posX", "posY"]
    assert [len(v) for v in values.values()] == list(D.DSPRITES_SIZES)
    # The original metadata's latents_possible_values
    np.testing.assert_allclose(values["scale"], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    np.testing.assert_allclose(values["orientation"][[0, 1, 5, 39]], [0, 0.16110732, 0.80553658, 6.28318531], atol=1e-8)
    np.testing.assert_allclose(values["posX"][[1, 15, 31]], [0.03225806, 0.48387097, 1.0], atol=1e-8)
    np.testing.assert_array_equal(values["shape"], [1, 2, 3])
    # Index arithmetic both ways
    assert D.dsprites_index([[0, 0, 0, 0, 0], [2, 5, 39, 31, 31], [1, 2, 3, 4, 5]]).tolist() == \
        [0, 737_279, 245760 + 2 * 40960 + 3 * 1024 + 4 * 32 + 5]
    idx = np.random.default_rng(0).integers(0, D.DSPRITES_N, 1000)
    assert np.array_equal(D.dsprites_index(D.dsprites_factor_indices(idx)), idx)
    v = D.dsprites_factor_values([D.dsprites_index([[2, 3, 10, 31, 0]])[0]])
    np.testing.assert_allclose(v[0], [3, 0.8, values["orientation"][10], 1.0, 0.0])
    with pytest.raises(VAEError, match="out of range"):
        D.dsprites_index([[3, 0, 0, 0, 0]])
    with pytest.raises(VAEError, match="737279"):
        D.render_dsprites([D.DSPRITES_N])


def test_dsprites_square_is_exact():
    # At scale s the square is 19.2 s pixels wide around (16 + 32 posX, 16 + 32 posY): whole pixels here.
    img = D.render_dsprites(D.dsprites_index([[0, 5, 0, 0, 0], [0, 0, 0, 0, 0], [0, 5, 0, 31, 0], [0, 5, 0, 0, 31]]))
    assert img.shape == (4, 1, 64, 64) and img.dtype == torch.uint8
    expected = torch.zeros(4, 1, 64, 64, dtype=torch.uint8)
    expected[0, 0, 6:26, 6:26] = 255          # scale 1: 20 pixel centres inside [6.4, 25.6]
    expected[1, 0, 11:21, 11:21] = 255        # scale 0.5: 10 pixels
    expected[2, 0, 6:26, 38:58] = 255         # posX = 1: 32 pixels right
    expected[3, 0, 38:58, 6:26] = 255         # posY = 1: 32 pixels down
    assert torch.equal(img, expected)


# Frames of the real dataset, from deepmind/dsprites-dataset's dsprites.gif (Apache-2.0):
# (shape, scale, orientation, posX, posY) -> np.packbits of the 64x64 image, zlib, base64.
REAL_FRAMES = {
    (2, 5, 0, 0, 0): "eNpjYCAT1NhB6H/1YIrxX30DmP7/H0wz//9/AJmGicNohv//GVDo+n8Q2v4PhJb/AaH5P0Bo9gcQmvkAhGZsYBgFlAMABz4cKg==",
    (2, 2, 0, 0, 0): "eNpjYKAS4BCA0HY1ENr+D4Su/4dKw8RhtPwPCM3/AUKzP4DQzAcgNGMDKj0KqAoAyIsMQA==",
    (2, 5, 6, 0, 0): "eNpjYCAS8B+A0PIPoPQHCG0Po3+g0vKoNOP/P2CaGUqz46T/odDMUJrxP9TeGoZRQEUAAMOgGw0=",
    (2, 5, 13, 0, 0): "eNpjYKAS+AehGP8fANPM//+Dafb//3DQf6DqUGmG/z8gtDyUtkenP6DRD6DqIfYy8DcwjALiAQBPaRsx",
    (2, 5, 0, 16, 31): "eNpjYBgFZIIaeQj9z74BRDH+rz+ASv/HSjMgaLA+hvr/EHPs/0Fo+T8Qmv8HhGb/AKGZH0BoxgOoNEMDGk0KAAAXpR2J",
    (1, 5, 0, 0, 0): "eNpjYKASsP8Dof//B1PM//8fANHs//8/ANH8//9/QKbl////gUyjy8P0wcyBmQu3ZxRQBQAAG4Aj3Q==",
    (1, 5, 4, 0, 0): "eNpjYCAV8EHp/w1givn/ATDN/v8BmJaH0vZQuh5K/4fQjP8h6mE083+IOTCa/f9/qHH/oPQfKP0DxRqYtYz/oc4pYBgFZAAAw3wmLw==",
    (0, 5, 5, 0, 0): "eNrtj7ENgDAMBINSpMwIGYXRYDRGYQTKFIiL5NcjCtiAb06K4vM7pY9Mq5g3sexiPcTWxfkUl0sEjUMIMoSgQAgqhKBBf9Lv/uc5e+y993ive7iXe7q37/jzmgHzeS5d",
    (0, 5, 26, 0, 0): "eNpjYMABeKA0H5SWb4DQ9g+g9AcIXf8HSv+H0P//H4DSYIWM////ANHMCBqskR0qD6P5ofrkEXQDVJ4Bqg9q/j+o/VCaH2o/O5Rm/AF1cAGUNmAYBbgBAJyALXY=",
}


def test_dsprites_renders_real_frames_exactly():
    """Hearts, ellipses and squares, scaled, turned and moved, pixel for pixel as in the real data."""
    factors = list(REAL_FRAMES)
    ours = D.render_dsprites(D.dsprites_index(factors))[:, 0].numpy() > 0
    for k, f in enumerate(factors):
        real = np.unpackbits(np.frombuffer(zlib.decompress(base64.b64decode(REAL_FRAMES[f])), np.uint8)).reshape(64, 64)
        assert np.array_equal(ours[k], real.astype(bool)), f"{f}: {(ours[k] ^ real.astype(bool)).sum()} pixels differ"


def test_dsprites_rendering_is_deterministic_and_pinned():
    idx = np.array([0, 1, 1023, 40_000, 300_001, 512_345, 737_279])
    a, b = D.render_dsprites(idx), D.render_dsprites(idx[::-1].copy()).flip(0)
    assert torch.equal(a, b)                              # the same index, the same bytes, in any batch
    assert set(a.unique().tolist()) <= {0, 255}
    # Pinned: a change to the drawing must bump DSPRITES_RENDER_VERSION (the disk cache's name) and this hash.
    assert hashlib.sha256(a.numpy().tobytes()).hexdigest()[:16] == PINNED_HASH


PINNED_HASH = "7a822eed762bfe8b"


def test_every_sprite_fits_its_patch_and_the_canvas():
    # All shapes and orientations at scale 1 in both far corners: nothing is cut off.
    f = np.array([[s, 5, o, p, p] for s in range(3) for o in range(40) for p in (0, 31)])
    img = D.render_dsprites(D.dsprites_index(f))[:, 0] > 0
    for k, (shape, _, o, p, _) in enumerate(f):
        rows, cols = torch.nonzero(img[k], as_tuple=True)
        centre = 16 + 32 * p / 31
        assert len(rows) > 100
        assert (rows.float() + 0.5 - centre).abs().max() < 15 and (cols.float() + 0.5 - centre).abs().max() < 15
    # Each shape keeps its area as it turns (the axis-aligned square covers 400 pixels, turned about 368,
    # as in the real data), and a move keeps the pixels too.
    areas = img.flatten(1).sum(1).view(3, 40, 2).float()
    assert ((areas / areas.median(1, keepdim=True).values) - 1).abs().max() < 0.09
    assert areas[0, 0, 0] == 400 and areas[0, 1, 0] == 368


def test_dsprites_registry_subset_and_its_factors():
    train, test = load_dataset("dsprites", "train"), load_dataset("dsprites", "test")
    assert len(train) == 20_000 and len(test) == 5_000 and train.shape == (1, 64, 64)
    assert train.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert train.class_names == ("square", "ellipse", "heart") and train.num_classes == 3
    assert train.factors.shape == (20_000, 5) and train.factors.dtype == torch.float64
    assert torch.equal(train.labels, train.factors[:, 0].long() - 1)
    # The factors say which grid image each is: rendering them again gives the same bytes.
    values = D.dsprites_factors()
    fidx = np.stack([np.abs(values[n][None, :] - train.factors[:200, k].numpy()[:, None]).argmin(1)
                     for k, n in enumerate(D.DSPRITES_FACTOR_NAMES)], 1)
    assert torch.equal(D.render_dsprites(D.dsprites_index(fidx)), train.images[:200])
    # Fixed and disjoint
    key = lambda s: {tuple(r) for r in s.factors.numpy().round(6).tolist()}
    assert not key(train) & key(test)
    assert np.array_equal(D.dsprites_subset_indices(), D.dsprites_subset_indices())
    assert len(np.unique(D.dsprites_subset_indices())) == 25_000


def test_dsprites_cache_build_is_atomic_and_validated(tmp_path, monkeypatch):
    path = tmp_path / "ds" / "packed.npy"
    path.parent.mkdir()
    stale = path.parent / ".packed.npy.tmp-killed"                  # from a build killed outright, an hour ago
    stale.write_bytes(b"x")
    os.utime(stale, (stale.stat().st_atime - 3600, stale.stat().st_mtime - 3600))

    def stop(done, total):
        raise KeyboardInterrupt                    # the user stops the build after its first chunk

    with pytest.raises(KeyboardInterrupt):
        D.build_dsprites_cache(path, progress=stop)
    assert not path.exists() and not list(path.parent.iterdir())      # no half file, no temp file left
    # A cache of the wrong shape is refused with a fix, not silently used.
    bad = D.dsprites_cache_path()
    bad.parent.mkdir(parents=True)
    np.save(bad, np.zeros((10, 512), np.uint8))
    with pytest.raises(VAEError, match="delete it"):
        load_dataset("dsprites-full", "test")


@pytest.mark.slow
def test_dsprites_full_build_and_split(tmp_path):
    calls = []
    path = D.build_dsprites_cache(progress=lambda done, total: calls.append((done, total)))
    assert path.stat().st_size == 128 + D.DSPRITES_N * 512 and calls[-1] == (D.DSPRITES_N, D.DSPRITES_N)
    test = load_dataset("dsprites-full", "test")
    assert len(test) == 147_456 and test.factors.shape == (147_456, 5)
    idx = split_indices(D.DSPRITES_N, "test")
    assert torch.equal(test.images[::997], D.render_dsprites(idx[::997]))


# ---------------------------------------------------------------------------------------------
# Hub datasets, offline, from a hand-built huggingface_hub cache

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _write_parquet(path, images: list[bytes], labels: list[int] | None, names=None, column="image"):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {column: pa.array([{"bytes": b, "path": None} for b in images],
                             type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))}
    features = {column: {"_type": "Image"}}
    if labels is not None:
        cols["label"] = pa.array(labels, type=pa.int64())
        features["label"] = {"names": names, "_type": "ClassLabel"} if names else {"dtype": "int64", "_type": "Value"}
    table = pa.table(cols).replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _hub_repo(cache, repo: str, files: dict) -> None:
    """datasets--org--name/{refs/main, snapshots/<commit>/<file> -> blobs/<file>}, as huggingface_hub lays it out."""
    root = cache / f"datasets--{repo.replace('/', '--')}"
    snap = root / "snapshots" / COMMIT
    for rel, write in files.items():
        blob = root / "blobs" / hashlib.sha256(rel.encode()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        write(blob)
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, (snap / rel).parent), snap / rel)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)


@pytest.fixture
def digits8():
    d = load_dataset("digits", "all")
    return d.images[:, 0].numpy(), d.labels.numpy()


@pytest.fixture
def hub(tmp_path, monkeypatch, digits8):
    """An offline Hub cache with acme/tiny-digits (data/train: 20 rows, data/test: 8 rows)."""
    import huggingface_hub.constants as c

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    x, y = digits8
    names = [f"digit {i}" for i in range(10)]
    _hub_repo(cache, "acme/tiny-digits", {
        "data/train-00000-of-00001.parquet": lambda p: _write_parquet(p, [_png(a) for a in x[:20]], y[:20].tolist(), names),
        "data/test-00000-of-00001.parquet": lambda p: _write_parquet(p, [_png(a) for a in x[20:28]], y[20:28].tolist(), names),
        "README.md": lambda p: p.write_text("tiny"),
    })
    return cache


def test_hub_dataset_offline_from_the_cache(hub, digits8):
    x, y = digits8
    train = load_dataset("hf:acme/tiny-digits", "train")
    assert len(train) == 20 and train.shape == (1, 8, 8) and train.name == "hf:acme/tiny-digits"
    assert np.array_equal(train.images[:, 0].numpy(), x[:20]) and train.labels.tolist() == y[:20].tolist()
    assert train.class_names == tuple(f"digit {i}" for i in range(10)) and train.warnings == ()
    test = load_dataset("hf:acme/tiny-digits", "test")
    assert np.array_equal(test.images[:, 0].numpy(), x[20:28])         # the Hub's own test split
    assert len(load_dataset("hf:acme/tiny-digits", "all")) == 28
    sized = load_dataset("hf:acme/tiny-digits", "train", image_size=16, channels=3)
    assert sized.shape == (3, 16, 16) and torch.equal(sized.images[:, 0], sized.images[:, 2])
    # Options in the name, or as keywords
    assert torch.equal(load_dataset("hf:acme/tiny-digits:image:label=label:max_images=5").images, train.images[:5])
    five = load_dataset("hf:acme/tiny-digits", "train", column="image", max_images=5)
    assert len(five) == 5 and "first 5 rows" in five.warnings[0]


def test_hub_dataset_decodes_once_then_reads_its_disk_cache(hub, monkeypatch):
    first = load_dataset("hf:acme/tiny-digits", "train", image_size=12)
    cached = list((cache_dir() / "hf" / "acme--tiny-digits").glob("*.safetensors"))
    assert len(cached) == 1 and not list(cached[0].parent.glob(".*tmp*"))
    monkeypatch.setattr(HP, "_decode_parquet", lambda *a, **k: pytest.fail("decoded again"))
    again = load_dataset("hf:acme/tiny-digits", "train", image_size=12)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert again.class_names == first.class_names


def test_hub_layouts_configs_and_a_seeded_split(hub, digits8):
    x, y = digits8
    # As ylecun/mnist lays out its parquet files: <config>/<split>-00000-of-00001.parquet, no names.
    _hub_repo(hub, "ylecun/mnist", {
        "mnist/train-00000-of-00001.parquet": lambda p: _write_parquet(p, [_png(a) for a in x[:30]], y[:30].tolist()),
        "mnist/test-00000-of-00001.parquet": lambda p: _write_parquet(p, [_png(a) for a in x[30:35]], y[30:35].tolist()),
    })
    mnist = load_dataset("hf:ylecun/mnist", "test")
    assert len(mnist) == 5 and mnist.class_names == () and mnist.num_classes == int(y[30:35].max()) + 1
    # Two configs, train only, an image column of another name
    _hub_repo(hub, "acme/two", {
        "small/train-00000-of-00001.parquet": lambda p: _write_parquet(p, [_png(a) for a in x[:10]], None, column="img"),
        "large/train-00000-of-00002.parquet": lambda p: _write_parquet(p, [_png(a) for a in x[:25]], None, column="img"),
        "large/train-00001-of-00002.parquet": lambda p: _write_parquet(p, [_png(a) for a in x[25:40]], None, column="img"),
    })
    with pytest.raises(VAEError, match="several configs.*config=NAME"):
        load_dataset("hf:acme/two")
    train = load_dataset("hf:acme/two:config=large", "train")
    test = load_dataset("hf:acme/two", "test", config="large")
    assert len(train) == 32 and len(test) == 8 and train.labels is None            # 80/20 of 40 rows, 2 shards
    assert "fixed 20% share of its 'train' split" in test.warnings[0] and "80%" in train.warnings[0]
    rows = lambda d: {bytes(r) for r in d.images.flatten(1).numpy()}
    assert len(rows(train)) == 32 and not rows(train) & rows(test)
    assert len(load_dataset("hf:acme/two:config=large", "all")) == 40
    with pytest.raises(VAEError, match="no split 'validation'.*train"):
        load_dataset("hf:acme/two:config=small", "validation")


def test_hub_errors_are_one_line(hub, digits8):
    x, _ = digits8
    cases = {
        "hf:acme/absent": "not in the local cache",
        "hf:acme/tiny-digits:column=pixels": "no column 'pixels'",
        "hf:acme/tiny-digits:label=digit": "no label column 'digit'",
        "hf:acme/tiny-digits:colour=red": "Unknown option",
        "hf:acme/tiny-digits:max_images=lots": "positive whole number",
        "hf:not a repo": "not a Hub dataset name",
        "hf:acme/tiny-digits:config=other": "no config 'other'",
    }
    _hub_repo(hub, "acme/readme-only", {"README.md": lambda p: p.write_text("no data")})
    cases["hf:acme/readme-only"] = "no parquet files.*refs/convert/parquet"
    bad_rows = [_png(a) for a in x[:3]] + [b"\x89PNG\r\n\x1a\n garbage", _png(x[4])]
    _hub_repo(hub, "acme/broken", {"data/train-00000-of-00001.parquet": lambda p: _write_parquet(p, bad_rows, None)})
    cases["hf:acme/broken"] = r"hf:acme/broken \(data/train-00000-of-00001.parquet, row 3\): .*(corrupt|not an image)"
    for spec, message in cases.items():
        with pytest.raises(VAEError, match=message) as err:
            load_dataset(spec, "train")
        assert "\n" not in str(err.value), spec


def test_hub_online_path_downloads_only_the_shards_it_needs(tmp_path, monkeypatch, digits8):
    """The online code path, with huggingface_hub's two calls stood in for: list, then fetch lazily."""
    import types

    import huggingface_hub
    from huggingface_hub import errors as hf_errors
    from huggingface_hub.file_download import DryRunFileInfo

    x, y = digits8
    shards = {f"data/train-0000{i}-of-00003.parquet": tmp_path / f"s{i}.parquet" for i in range(3)}
    for i, local in enumerate(shards.values()):
        _write_parquet(local, [_png(a) for a in x[10 * i:10 * i + 10]], y[10 * i:10 * i + 10].tolist())
    fetched = []

    def listing(repo_id, *, repo_type, revision, allow_patterns, dry_run, **kw):
        assert repo_type == "dataset" and dry_run and allow_patterns == ["*.parquet"]
        if repo_id == "acme/gone":
            response = types.SimpleNamespace(headers={}, status_code=404, request=None, url="")
            raise hf_errors.DryRunError("cannot list") from hf_errors.RepositoryNotFoundError("404", response=response)
        return [DryRunFileInfo(COMMIT, 1, f, "", False, True) for f in shards]

    def download(repo_id, filename, *, repo_type, revision, etag_timeout):
        assert revision == COMMIT and etag_timeout == HUB_REQUEST_TIMEOUT     # a time-out per call
        fetched.append(filename)
        return str(shards[filename])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", listing)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    data = load_dataset("hf:acme/online:max_images=24", "all")
    assert len(data) == 24 and np.array_equal(data.images[:, 0].numpy(), x[:24])
    assert fetched == list(shards)[:3] and "first 24 rows" in data.warnings[0]
    fetched.clear()
    assert len(load_dataset("hf:acme/online", "all", max_images=10)) == 10 and fetched == list(shards)[:1]
    with pytest.raises(VAEError, match="no dataset repo 'acme/gone'"):
        load_dataset("hf:acme/gone")


def test_parquet_layouts_and_specs():
    L = HP._parquet_layout
    assert (L("data/train-00000-of-00003.parquet").config, L("data/train-00000-of-00003.parquet").split) == ("data", "train")
    assert (L("mnist/test-00000-of-00001.parquet").config, L("mnist/test-00000-of-00001.parquet").split) == ("mnist", "test")
    assert (L("plain_text/train/0000.parquet").config, L("plain_text/train/0000.parquet").split) == ("plain_text", "train")
    assert L("default/partial-train/0003.parquet").split == "train"
    assert (L("validation.parquet").config, L("validation.parquet").split) == ("", "validation")
    spec = HP.parse_hf_spec("hf:zalando-datasets/fashion_mnist@refs/convert/parquet:image:label=label:config=fashion_mnist")
    assert spec == {"repo": "zalando-datasets/fashion_mnist", "revision": "refs/convert/parquet", "column": "image",
                    "label": "label", "config": "fashion_mnist", "max_images": None}


# ---------------------------------------------------------------------------------------------
# Image folders and the safe decoder


def _save(path, img: Image.Image, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)


def test_image_folder_with_classes_modes_and_bad_files(tmp_path, digits8):
    x, _ = digits8
    root = tmp_path / "pets"
    big = lambda a: Image.fromarray(a).resize((16, 16), Image.NEAREST)
    for i in range(6):
        _save(root / "cats" / f"{i}.png", big(x[i]))
    _save(root / "cats" / "nested" / "deep.png", big(x[6]))                  # deeper files count for their class
    rgba = Image.fromarray(np.dstack([np.repeat(x[7][..., None], 3, 2), np.full((8, 8), 128, np.uint8)]), "RGBA")
    _save(root / "dogs" / "rgba.png", rgba.resize((16, 16)))
    _save(root / "dogs" / "palette.gif", big(x[8]).convert("P"))
    _save(root / "dogs" / "cmyk.jpg", big(x[9]).convert("CMYK"), quality=95)
    _save(root / "dogs" / "wide.png", Image.new("L", (32, 16), 200))           # another size: cropped, resized
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "dogs" / "notes.txt").write_text("not an image")
    _save(root / "loose.png", big(x[10]))                                     # no class: skipped, said so
    _save(root / ".hidden" / "x.png", big(x[11]))

    seen = []
    data = load_dataset(f"folder:{root}", "all", progress=lambda d, t: seen.append((d, t)))
    assert data.class_names == ("cats", "dogs") and len(data) == 11 and seen[-1] == (12, 12)
    assert data.labels.tolist() == [0] * 7 + [1] * 4
    assert data.shape == (3, 16, 16)                                          # colour present: RGB for all
    assert torch.equal(data.images[0, 0], torch.from_numpy(np.array(big(x[0]))))
    notes = " ".join(data.warnings)
    assert "Skipped 1 unreadable" in notes and "broken.png" in notes and "1 images directly" in notes
    assert "1 of 11 images had another size" in notes
    # In sorted order dogs are cmyk, palette, rgba, wide. Half-transparent pixels composite onto white.
    assert int(data.images[9].min()) >= 127 and int(data.images[7].float().std(0).max()) < 8   # CMYK: grey stays grey
    # As a bare path, resized and grey; a fixed split
    grey = load_dataset(str(root), "train", image_size=32, channels=1)
    assert grey.shape == (1, 32, 32) and len(grey) + len(load_dataset(str(root), "test")) == 11
    capped = load_dataset(f"folder:{root}", "all", max_images=3)
    assert len(capped) == 3 and any("first 3" in w for w in capped.warnings)


def test_flat_folder_bombs_and_failures(tmp_path):
    flat = tmp_path / "flat"
    _save(flat / "a.png", Image.new("L", (10, 20), 9))
    _save(flat / "b.png", Image.new("L", (10, 20), 200))
    _save(flat / "bomb.png", Image.new("1", (5000, 5000)))                   # 25 Mpx in a few kB: skipped, named
    data = load_dataset(f"folder:{flat}", "all")
    assert data.labels is None and data.class_names == () and data.shape == (1, 20, 10) and len(data) == 2
    assert "bomb.png" in data.warnings[0] and "pixels" in data.warnings[0]

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"nope")
    with pytest.raises(VAEError, match="None of the 1 images"):
        load_dataset(f"folder:{tmp_path / 'junk'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VAEError, match="holds no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(VAEError, match="No folder"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    with pytest.raises(VAEError, match="Unknown dataset.*hf:org/name.*folder:PATH"):
        load_dataset("cifar-100")


@pytest.mark.parametrize("spec", ["folder:", "folder:   "])
def test_an_empty_folder_spec_is_refused_not_read_as_the_working_directory(spec, tmp_path, monkeypatch):
    _save(tmp_path / "here.png", Image.new("L", (8, 8), 255))
    monkeypatch.chdir(tmp_path)                     # the working directory holds an image
    with pytest.raises(VAEError, match="folder: needs the path of a folder"):
        load_dataset(spec, "all")


def test_16_bit_images_decode_to_8_bit_keeping_their_range(tmp_path):
    root = tmp_path / "deep"
    ramp = (np.arange(64, dtype=np.uint16) * 1024).reshape(8, 8)             # 0 .. 64512
    _save(root / "ramp.png", Image.fromarray(ramp))
    data = load_dataset(f"folder:{root}", "all")
    assert data.shape == (1, 8, 8) and data.images.dtype == torch.uint8
    assert np.abs(data.images[0, 0].numpy().astype(int) - (ramp >> 8)).max() <= 1
