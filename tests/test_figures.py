"""explorer.figures: the palette, the figure style, tile sizes and the shared figures, each legible."""
import itertools

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from explorer import figures


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)


def _luminance(rgb) -> float:
    c = np.asarray(rgb) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(lin @ [0.2126, 0.7152, 0.0722])


def _lab(rgb) -> np.ndarray:
    c = np.asarray(rgb) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    f = np.cbrt(xyz / [0.95047, 1.0, 1.08883])
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_ten_class_colours_are_clearly_visible_on_white_and_apart_from_each_other():
    assert len(figures.CLASS_COLOURS) == 10 and len(set(figures.CLASS_COLOURS)) == 10
    for colour in figures.CLASS_COLOURS:
        shown = figures.MARKER_OPACITY * _rgb(colour) + (1 - figures.MARKER_OPACITY) * 255   # over white
        contrast = 1.05 / (_luminance(shown) + 0.05)
        assert contrast >= 3.0, (colour, contrast)             # WCAG's minimum for graphics
    for a, b in itertools.combinations(figures.CLASS_COLOURS, 2):
        assert np.linalg.norm(_lab(_rgb(a)) - _lab(_rgb(b))) >= 25, (a, b)


def test_the_style_keeps_the_toolbar_band_clear_of_the_legend_and_the_title():
    fig = figures.style(go.Figure(go.Scatter(x=[0, 1], y=[0, 1], name="a")), height=300, x="step", y="nats",
                        title="A title")
    m = fig.layout.margin
    assert m.t >= figures.MODEBAR_PX + figures.TITLE_PX
    # The legend hangs from the plot's top edge and the title sits on it: both below the top margin's band.
    assert fig.layout.legend.y == 1 and fig.layout.legend.yanchor == "top" and fig.layout.legend.x > 1
    assert fig.layout.title.yref == "paper" and fig.layout.title.yanchor == "bottom" and fig.layout.title.y == 1
    assert fig.layout.xaxis.title.text == "step" and fig.layout.yaxis.title.text == "nats"
    below = figures.style(go.Figure([go.Scatter(name="a"), go.Scatter(name="b")]), height=300, legend="below")
    # Stacked under the plot, in a bottom margin that holds both entries (clear of the x-axis title).
    assert below.layout.legend.yref == "container" and below.layout.legend.y == 0
    assert below.layout.margin.b >= 2 * figures.LEGEND_ROW_PX


def test_log_ticks_are_written_in_full():
    values, text = figures.log_ticks(95, 540)
    assert values == [100, 200, 500] and text == ["100", "200", "500"]
    values, text = figures.log_ticks(0.03, 0.9)
    assert text == ["0.05", "0.1", "0.2", "0.5"]
    values, text = figures.log_ticks(101, 180)                 # no 1-2-5 tick inside: every digit, in full
    assert text and all(len(t) >= 3 for t in text)
    with pytest.raises(ValueError):
        figures.log_ticks(0, 10)


@pytest.mark.parametrize("count, per_row, span", [(36, None, 1.0), (100, None, 1.0), (24, 24, 1.0), (20, None, 1.0),
                                                  (1, None, 0.5), (16, 4, 0.4), (12, 6, 0.6)])
def test_grids_of_small_images_get_readable_crisp_tiles(count, per_row, span):
    g = figures.grid_layout(count, 28, per_row, span=span)
    avail = span * figures.CONTENT_PX
    shown = (avail if g.width == "stretch" else g.width) / g.per_row
    assert shown >= figures.MIN_TILE                          # readable
    assert 28 * g.scale >= min(shown, figures.MIN_TILE)       # drawn at least that big: never blown up blurred
    assert g.per_row * figures.MIN_TILE <= max(avail, figures.MIN_TILE)


def test_a_wide_grid_fills_its_column_and_a_narrow_one_keeps_its_tiles_bounded():
    assert figures.grid_layout(100, 28).width == "stretch" and figures.grid_layout(100, 28).per_row == 10
    square = figures.grid_layout(36, 28)                                      # by default a square grid
    assert square.per_row == 6 and square.width == 6 * figures.MAX_TILE
    narrow = figures.grid_layout(2, 28)
    assert narrow.width == 2 * figures.MAX_TILE
    assert figures.grid_layout(24, 28, 24).per_row == figures.CONTENT_PX // figures.MIN_TILE     # wrapped like text
    assert figures.grid_layout(12, 28, 12, wrap=False).per_row == 12                           # a kept row


def test_paired_rows_put_each_reconstruction_under_its_original():
    top, bottom = torch.zeros(5, 1, 2, 2), torch.full((5, 1, 2, 2), 0.5)
    out = figures.paired_rows(top, bottom, 3)
    assert out.shape == (12, 1, 2, 2)
    assert (out[:3] == 0).all() and (out[3:6] == 0.5).all()
    assert (out[6:8] == 0).all() and (out[8] == 1).all() and (out[9:11] == 0.5).all() and (out[11] == 1).all()


def test_the_heatmap_scale_runs_to_the_largest_value_and_is_titled():
    fig = figures.heatmap(np.array([[0.1, 0.4], [0.0, 0.2]]), ["z0", "z1"], ["a", "b"], height=300,
                          x="latent unit", y="factor", colour_title="I / H")
    hm = fig.data[0]
    assert hm.zmin == 0 and hm.zmax == pytest.approx(0.4)
    assert hm.colorbar.title.text == "I / H"
    assert fig.layout.xaxis.title.text == "latent unit" and fig.layout.yaxis.title.text == "factor"


def test_map_axes_say_what_their_units_are():
    pts = np.random.default_rng(0).normal(size=(50, 2)) * [3, 1]
    x, y = figures.map_axis_titles("pca", pts, np.hstack([pts, np.zeros((50, 3))]))
    assert x.startswith("principal component 1 (") and "% of the variance" in y
    assert figures.map_axis_titles("codes", pts) == ("z0 (posterior mean)", "z1 (posterior mean)")
    assert "no unit" in figures.map_axis_titles("tsne", pts)[0] and figures.map_axis_titles("umap", pts)[1] == "UMAP 2"


def test_the_latent_map_has_a_trace_per_class_with_the_palette_and_dataset_indices():
    pts = np.zeros((6, 2))
    fig = figures.latent_map(pts, np.arange(10, 16), labels=np.array([0, 1, 9, 9, 1, 0]),
                             class_names=[str(i) for i in range(10)], axes=("a", "b"))
    assert [t.name for t in fig.data] == ["0", "1", "9"]
    assert [t.marker.color for t in fig.data] == [figures.CLASS_COLOURS[i] for i in (0, 1, 9)]
    assert list(fig.data[2].customdata) == [12, 13]
    assert fig.layout.dragmode == "lasso" and fig.layout.xaxis.title.text == "a"


HISTORY = [{"step": s, "epoch": 1, "recon": 500 / s ** 0.3, "kl": 2 + s / 100, "loss": 500 / s ** 0.3 + 0.5 * (2 + s / 100),
            "total": 500 / s ** 0.3 + 2 + s / 100, "kl_weight": 0.5} for s in range(1, 400, 20)]


def test_the_loss_chart_names_each_part_and_puts_the_kl_on_its_own_axis():
    fig = figures.loss_figure(HISTORY)
    names = {t.name: t for t in fig.data}
    assert set(names) == {figures.LOSS_PARTS[k] for k in ("total", "recon", "loss", "kl")}
    assert "negative ELBO" in figures.LOSS_PARTS["total"] and "minimises" in figures.LOSS_PARTS["loss"]
    kl = names[figures.LOSS_PARTS["kl"]]
    assert kl.yaxis == "y2" and names[figures.LOSS_PARTS["total"]].yaxis == "y"      # a panel of its own
    assert fig.layout.yaxis.title.text and fig.layout.yaxis2.title.text
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.tickmode == "array"
    assert all(len(t) > 1 for t in fig.layout.yaxis.ticktext)                        # no bare "2" or "5"
    assert fig.layout.xaxis2.title.text == "training step"
    assert fig.layout.legend.yref == "container"                                      # below: never under the toolbar


def test_the_loss_chart_draws_one_line_where_the_objective_is_the_elbo():
    plain = [dict(h, loss=h["total"]) for h in HISTORY]
    names = [t.name for t in figures.loss_figure(plain).data]
    assert figures.LOSS_PARTS["loss"] not in names and figures.LOSS_PARTS["total"] in names
    vq = [{"step": s, "epoch": 1, "recon": 80.0 / s, "kl": 14.5, "codebook": 0.3, "commitment": 0.1,
           "perplexity": 30.0, "codebook_usage": 0.8, "loss": 80.4 / s, "total": 80.0 / s + 14.5} for s in (1, 2, 3)]
    names = [t.name for t in figures.loss_figure(vq).data]
    assert not any("perplexity" in n or "usage" in n for n in names)                  # not losses


def test_plural_and_selection_summaries():
    assert figures.plural(1, "sample") == "1 sample" and figures.plural(1000, "image") == "1,000 images"
    fig = figures.class_histogram(np.array([3, 0, 1]), np.array([10, 10, 10]), ["a", "b", "c"])
    assert fig.layout.xaxis.title.text == "class" and fig.layout.yaxis.title.text == "selected images"
    sel, everything = np.array([[0, 0.5], [1, 0.6]]), np.array([[0, 0.5], [2, 1.0], [1, 0.7]])
    fig = figures.factor_ranges(sel, everything, ["shape", "scale"])
    bar = fig.data[1]
    assert list(bar.base) == [0.0, 0.0] and bar.x[0] == pytest.approx(0.5) and bar.x[1] == pytest.approx(0.2)
    assert bar.customdata.tolist() == [[0, 1], [0.5, 0.6]]
