"""Maps of a whole dataset, streamed (vae_core.latent.bigmap and `python -m vae_core map`): the Parquet it writes,
the streamed PCA against the in-memory one, chunks read only when asked for, and UMAP's placing of the
codes it was not fitted on."""
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from vae_core import VAEError, build_model, load_dataset, save_pretrained
from vae_core.latent import bigmap
from vae_core.cli import main
from vae_core.data import ImageSet, conform
from vae_core.data import dsprites as ds
from vae_core.latent.explore import encode_dataset
from vae_core.models import MLPConfig
from vae_core.latent.projections import pca


def _model(in_shape=(1, 8, 8), latent_dim=3):
    torch.manual_seed(0)
    return build_model(MLPConfig(in_shape=in_shape, hidden_dims=(16,), latent_dim=latent_dim)).eval()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_pretrained(_model(), tmp_path_factory.mktemp("models") / "tiny")


def test_cli_map_writes_one_row_per_image_with_its_code_label_and_pca_position(tiny_folder, tmp_path, capsys):
    out = tmp_path / "map.parquet"
    assert main(["map", str(tiny_folder), "--dataset", "digits", "--method", "pca", "--batch-size", "100",
                 "--out", str(out), "--quiet"]) == 0
    assert "wrote 1,797 codes (3-D)" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.column_names == ["index", "label", "class_name", "x", "y", "z0", "z1", "z2"]
    data = load_dataset("digits", "all")
    codes = encode_dataset(_model(), data).numpy()
    got = np.stack([table[f"z{k}"].to_numpy() for k in range(3)], 1)
    np.testing.assert_allclose(got, codes, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(table["index"].to_numpy(), np.arange(len(data)))
    np.testing.assert_array_equal(table["label"].to_numpy(), data.labels.numpy())
    assert table["class_name"].to_pylist()[:3] == [data.class_names[int(y)] for y in data.labels[:3]]
    xy = np.stack([table["x"].to_numpy(), table["y"].to_numpy()], 1)
    np.testing.assert_allclose(xy, pca(codes), rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob(".map.parquet.tmp-*"))          # written atomically, nothing left behind


def test_cli_map_with_umap_fits_a_subsample_and_places_the_rest(tiny_folder, tmp_path, capsys):
    out = tmp_path / "umap.parquet"
    assert main(["map", str(tiny_folder), "--dataset", "digits", "--split", "test", "--method", "umap",
                 "--fit-points", "200", "--out", str(out), "--quiet"]) == 0
    assert "wrote 359 codes (3-D) and their UMAP positions" in capsys.readouterr().out
    table = pq.read_table(out)
    xy = np.stack([table["x"].to_numpy(), table["y"].to_numpy()], 1)
    assert xy.shape == (359, 2) and np.isfinite(xy).all() and len(np.unique(xy, axis=0)) == 359


def test_cli_map_bad_dataset_is_one_line(tiny_folder, tmp_path, capsys):
    assert main(["map", str(tiny_folder), "--dataset", "nope", "--out", str(tmp_path / "m.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown dataset") and "Traceback" not in err
    assert not (tmp_path / "m.parquet").exists()


def test_streamed_pca_in_small_blocks_equals_the_in_memory_pca():
    rng = np.random.default_rng(0)
    codes = (rng.normal(size=(3001, 6)) * [5, 3, 2, 1, 0.5, 0.1] + 7).astype(np.float32)
    np.testing.assert_allclose(bigmap.streamed_pca(codes, block=256), pca(codes), rtol=1e-4, atol=1e-4)


def test_streamed_pca_takes_more_codes_than_the_apps_limit():
    codes = np.random.default_rng(1).normal(size=(60_000, 3)).astype(np.float32)
    with pytest.raises(VAEError, match="too many"):
        pca(codes)
    assert bigmap.streamed_pca(codes).shape == (60_000, 2)


def test_encoding_consumes_the_stream_one_chunk_at_a_time():
    data = load_dataset("digits", "all")
    model = _model()
    log = []

    def chunks(size):
        for chunk in bigmap.stream_of(data).chunks(size):
            log.append(("read", len(chunk.index)))
            yield chunk

    stream = bigmap.Stream("digits", len(data), chunks, has_labels=True)
    enc = bigmap.encode_stream(model, stream, batch_size=500,
                               progress=lambda f, what: log.append(("encoded", round(f * len(data)))))
    assert log == [("read", 500), ("encoded", 500), ("read", 500), ("encoded", 1000), ("read", 500),
                   ("encoded", 1500), ("read", 297), ("encoded", 1797)]
    np.testing.assert_allclose(enc.codes, encode_dataset(model, data).numpy(), rtol=1e-5, atol=1e-6)


def test_a_stream_that_gives_fewer_images_than_it_announced_is_refused():
    data = load_dataset("digits", "test")
    stream = bigmap.Stream("short", len(data) + 1, bigmap.stream_of(data).chunks)
    with pytest.raises(VAEError, match="not the"):
        bigmap.encode_stream(_model(), stream)


class RenderedPacked:
    """Stands in for dsprites-full's 377 MB packed cache: rows are drawn when read, and the reads counted."""

    shape, dtype = (ds.DSPRITES_N, ds.PACKED_ROW_BYTES), np.uint8

    def __init__(self):
        self.rows_read = 0

    def __getitem__(self, rows):
        self.rows_read += len(rows)
        return np.packbits(ds.render_dsprites(rows).reshape(len(rows), -1).numpy() > 0, axis=1)


def test_dsprites_full_streams_chunks_with_their_factors_reading_only_what_is_asked(monkeypatch):
    packed = RenderedPacked()
    monkeypatch.setattr(ds, "_open_dsprites_cache", lambda progress: packed)
    stream = bigmap.open_stream("dsprites-full", "all", image_size=32, channels=1)
    assert stream.n == ds.DSPRITES_N and stream.factor_names == ds.DSPRITES_FACTOR_NAMES
    chunks = stream.chunks(100)
    first = next(chunks)
    assert packed.rows_read == 100                                     # one chunk read, not the set
    second = next(chunks)
    assert packed.rows_read == 200
    np.testing.assert_array_equal(second.index, np.arange(100, 200))
    assert second.images.shape == (100, 1, 32, 32) and second.images.dtype == torch.uint8
    np.testing.assert_array_equal(second.factors, ds.dsprites_factor_values(np.arange(100, 200)))
    np.testing.assert_array_equal(second.labels, ds.dsprites_factor_indices(np.arange(100, 200))[:, 0])
    torch.testing.assert_close(first.images, conform(ImageSet(ds.render_dsprites(np.arange(100))), 32, 1).images)


def test_unpack_chunks_gives_the_rendered_images():
    idx = np.array([0, 5, 70_000, 400_000, ds.DSPRITES_N - 1])
    packed = np.packbits(ds.render_dsprites(idx).reshape(len(idx), -1).numpy() > 0, axis=1)
    got = torch.cat([imgs for _, imgs in ds.unpack_chunks(packed, np.arange(len(idx)), 2)])
    torch.testing.assert_close(got, ds.render_dsprites(idx))


def _blobs(n_per, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [12, 0, 0, 0], [0, 12, 0, 0]], np.float32)
    x = np.concatenate([c + rng.normal(size=(n_per, 4)).astype(np.float32) for c in centres])
    return x, np.repeat(np.arange(3), n_per)


def test_umap_on_a_subsample_places_the_other_codes_beside_their_own_cluster():
    codes, labels = _blobs(700)
    pos = bigmap.big_umap(codes, "subsample", fit_points=600, seed=0)
    assert pos.shape == (2100, 2) and np.isfinite(pos).all()
    fit_idx = np.sort(np.random.default_rng(0).choice(len(codes), 600, replace=False))
    placed = np.setdiff1d(np.arange(len(codes)), fit_idx)
    centres = np.stack([pos[fit_idx][labels[fit_idx] == c].mean(0) for c in range(3)])
    nearest = np.linalg.norm(pos[placed][:, None] - centres[None], axis=2).argmin(1)
    assert (nearest == labels[placed]).mean() > 0.99
