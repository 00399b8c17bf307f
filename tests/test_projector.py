"""Maps that open elsewhere: TensorBoard's Projector (codes, metadata, sprite) and Embedding Atlas (the parquet)."""
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vae_core import load_dataset, load_model
from vae_core.cli import main
from vae_core.latent.bigmap import map_dataset, stream_of
from vae_core.latent.projector import sprite_image, write_projector

TINY = ["--model", "mlp", "--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "3",
        "--epochs", "1", "--batch-size", "64", "--quiet"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("projector") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def _table(path):
    lines = path.read_text().splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def test_map_writes_a_projector_embedding_tensorboard_reads(run_folder, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    tb, parquet = tmp_path / "tb", tmp_path / "map.parquet"
    assert main(["map", str(run_folder), "--dataset", "digits", "--split", "test", "--out", str(parquet),
                 "--tensorboard", str(tb), "--quiet", "--max-seconds", "600"]) == 0
    assert "TensorBoard Projector" in capsys.readouterr().out
    data = load_dataset("digits", "test")
    n = len(data)

    config = text_format.Parse((tb / "projector_config.pbtxt").read_text(), ProjectorConfig())
    [emb] = config.embeddings
    assert (tb / emb.tensor_path).is_file() and (tb / emb.metadata_path).is_file()
    assert list(emb.sprite.single_image_dim) == [8, 8]

    codes = np.loadtxt(tb / emb.tensor_path, delimiter="\t", ndmin=2)
    table = pq.read_table(parquet)
    assert codes.shape == (n, 3)
    np.testing.assert_allclose(codes, np.stack([table[f"z{k}"].to_numpy() for k in range(3)], 1), rtol=1e-5, atol=1e-6)

    header, rows = _table(tb / emb.metadata_path)
    assert header == ["label", "class_name", "index", "pca_x", "pca_y"] and len(rows) == n
    assert [int(r[0]) for r in rows] == data.labels.tolist() and [int(r[2]) for r in rows] == list(range(n))

    sprite = Image.open(tb / emb.sprite.image_path)
    per_row = math.ceil(math.sqrt(n))
    assert sprite.size == (per_row * 8, per_row * 8)
    first = np.asarray(sprite)[:8, 8:16]                                 # the second thumbnail is image 1
    np.testing.assert_array_equal(first, data.images[1, 0].numpy())


def test_a_large_map_is_cut_to_the_limit_and_the_sprite_to_its_side(run_folder, tmp_path):
    model = load_model(run_folder)
    data = load_dataset("digits", "train")
    bigmap = map_dataset(model, stream_of(data))
    export = write_projector(bigmap, stream_of(data), tmp_path, max_points=100, seed=3)
    assert export.points == 100 and export.total == len(data) and export.per_row == 10
    header, rows = _table(tmp_path / "metadata.tsv")
    index = [int(r[header.index("index")]) for r in rows]
    assert len(set(index)) == 100 and index == sorted(index)
    sprite = Image.open(tmp_path / "sprite.png")
    assert sprite.size == (80, 80)
    r, c = divmod(7, 10)
    np.testing.assert_array_equal(np.asarray(sprite)[r * 8:r * 8 + 8, c * 8:c * 8 + 8], data.images[index[7], 0].numpy())

    sheet, tile, per_row = sprite_image(np.zeros((10, 1, 8, 8), np.uint8), max_side=16)
    assert per_row == 4 and tile == (4, 4) and sheet.size == (16, 16)


def test_the_map_parquet_has_what_embedding_atlas_reads(run_folder, tmp_path):
    """`embedding-atlas map.parquet --x x --y y`: numeric x and y columns for the points, and metadata columns
    (the label, the index) it shows and filters by; the codes as numeric columns for its nearest neighbours."""
    parquet = tmp_path / "map.parquet"
    assert main(["map", str(run_folder), "--dataset", "digits", "--out", str(parquet), "--quiet",
                 "--max-seconds", "600"]) == 0
    frame = pq.read_table(parquet).to_pandas()
    for column in ("x", "y", "label", "index", "z0", "z1", "z2"):
        assert column in frame and frame[column].dtype.kind in "fiu", column
    assert frame[["x", "y"]].notna().all().all() and frame["x"].std() > 0
