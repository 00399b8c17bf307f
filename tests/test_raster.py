"""The latent map's density raster (explorer/raster.py): what its pixels show, and the box selection."""
import numpy as np
import pytest

from explorer import figures, raster

pytest.importorskip("datashader")


SMALL = (64, 48)         # pixels of the test rasters: each dense pixel holds many points


def two_clusters(n=4000, seed=0):
    """Class 0 around (-2, 0), class 1 around (2, 1) (so a flipped image would show), three times as many of 1."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.75).astype(np.int64)
    points = np.stack([np.where(labels == 1, 2.0, -2.0), labels.astype(float)], 1) + rng.normal(0, 0.3, (n, 2))
    return points.astype(np.float32), labels


def pixel(img, points, xy, box=None):
    """The RGBA pixel of the raster at the data point ``xy``."""
    x0, x1, y0, y1 = box or raster.extent(points)
    w, h = img.size
    col = int((xy[0] - x0) / (x1 - x0) * (w - 1))
    row = int((y1 - xy[1]) / (y1 - y0) * (h - 1))           # the image's first row is the top of the map
    return np.asarray(img.convert("RGBA"))[row, col]


def rgb(hex_colour):
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def test_each_cluster_takes_its_class_colour_and_empty_space_stays_clear():
    points, labels = two_clusters()
    assert raster.shade(points, labels=labels)[0].size == raster.raster_size(len(points))
    img, meaning = raster.shade(points, labels=labels, size=SMALL)
    assert meaning == ("classes", None)
    for c, centre in ((0, (-2, 0)), (1, (2, 1))):
        px = pixel(img, points, centre)
        assert px[3] > 150, px                                          # dense: mostly opaque
        assert np.abs(px[:3].astype(int) - rgb(figures.class_colour(c))).max() < 40, (c, px)
    assert pixel(img, points, (0, 1.0))[3] == 0 and pixel(img, points, (2, -1.0))[3] == 0                         # nothing there: clear


def test_the_raster_has_about_a_pixel_a_point_up_to_its_finest():
    w, h = raster.raster_size(20_000)
    assert abs(w * h - 20_000) < 300 and abs(w / h - 4 / 3) < 0.02
    assert raster.raster_size(10**6) == raster.RASTER_PX and raster.raster_size(10) == raster.MIN_PX


def test_a_factor_raster_shades_its_mean_and_a_count_raster_its_density():
    points, labels = two_clusters()
    img, (kind, span) = raster.shade(points, factor=labels.astype(np.float32) * 10, size=SMALL)
    assert kind == "factor" and span == (0.0, 10.0)
    low, high = pixel(img, points, (-2, 0)), pixel(img, points, (2, 1))
    assert high[:3].sum() > low[:3].sum() + 200                         # Viridis: dark purple to light yellow
    img, (kind, (least, most)) = raster.shade(points, size=SMALL)
    assert kind == "count" and least == 1 and most > 10
    dense, sparse = pixel(img, points, (2, 1)), pixel(img, points, (2, 1.5))
    assert dense[3] > 0 and sparse[3] > 0 and dense[:3].sum() < sparse[:3].sum()     # more images: darker


def test_the_figure_sends_an_image_not_the_points_and_keeps_the_axes_and_legend():
    points, labels = two_clusters(n=50_000)
    fig = raster.figure(points, labels=labels, class_names=("zero", "one"), axes=("PC 1", "PC 2"))
    assert len(fig.layout.images) == 1 and fig.layout.images[0].source.startswith("data:image/png;base64,")
    x0, x1, y0, y1 = raster.extent(points)
    assert tuple(fig.layout.xaxis.range) == (x0, x1) and tuple(fig.layout.yaxis.range) == (y0, y1)
    assert [t.name for t in fig.data] == ["zero", "one"]                  # the legend: one empty trace a class
    assert all(list(t.x) == [None] for t in fig.data)
    assert fig.layout.xaxis.title.text == "PC 1" and fig.layout.yaxis.title.text == "PC 2"
    assert len(fig.to_json()) < 400_000                                   # 50,000 points as JSON are ~2 MB
    counts = raster.figure(points, axes=("a", "b"))
    bar = counts.data[0].marker.colorbar
    assert bar.title.text == "images per pixel" and "1" in bar.ticktext


def test_a_box_selects_the_points_inside_it_and_several_boxes_add_up():
    points = np.array([[0, 0], [1, 1], [2, 2], [3, 3], [1, 3]], np.float32)
    one = {"selection": {"points": [], "box": [{"xref": "x", "yref": "y", "x": [1.5, 0.5], "y": [0.5, 3.5]}]}}
    assert raster.in_box(points, one).tolist() == [1, 4]                  # drawn right to left: the same box
    two = {"selection": {"box": [{"x": [0.5, 1.5], "y": [0.5, 3.5]}, {"x": [2.5, 3.5], "y": [2.5, 3.5]}]}}
    assert raster.in_box(points, two).tolist() == [1, 3, 4]
    for nothing in ({"selection": {"points": [{"x": 1, "y": 1}], "box": []}}, {"selection": {}}, {},
                    {"selection": {"box": [{"x": [], "y": []}]}}):
        assert raster.in_box(points, nothing).tolist() == []
