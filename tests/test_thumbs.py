"""The latent map's hover thumbnails, server side (explorer/thumbs.py): the sheet's tile for each point, the data
block the script reads, the points budget, and one sheet per map however often the page reruns. The browser
side (the thumbnail under the pointer) is tests/test_browser.py's."""
import base64
import io
import json
import re

import numpy as np
import pytest
import streamlit as st
from PIL import Image

from explorer import thumbs
from tests.app_conftest_helpers import assert_clean, open_app


def sprite_of(sheet: thumbs.Sheet) -> np.ndarray:
    assert re.match(r"data:image/(png|jpeg);base64,", sheet.uri)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(sheet.uri.split(",", 1)[1]))))


def test_each_points_tile_is_its_own_image_found_by_its_dataset_index():
    gen = np.random.default_rng(0)
    images = gen.integers(0, 256, (30, 1, 8, 8), dtype=np.uint8)     # tiles of their own size (under TILE_PX)
    ids = gen.permutation(1000)[:30]                                # the map's order, not the dataset's
    sheet = thumbs.sheet(images, ids)
    assert sheet.tile == (8, 8) and sheet.per_row == 6 and sheet.ids == tuple(int(i) for i in ids)
    sprite = sprite_of(sheet)
    assert sprite.shape == (48, 48) and sheet.size == (48, 48)
    for k, index in enumerate(ids):
        col, row = sheet.position(int(index))
        assert (col, row) == (k % 6, k // 6)
        assert np.array_equal(sprite[row * 8:(row + 1) * 8, col * 8:(col + 1) * 8], images[k, 0])


def test_tiles_are_shrunk_to_at_most_tile_px_and_a_colour_sheet_is_a_jpeg():
    images = np.zeros((5, 3, 64, 48), dtype=np.uint8)
    sheet = thumbs.sheet(images, np.arange(5))
    assert max(sheet.tile) <= thumbs.TILE_PX and sheet.tile[0] > sheet.tile[1]      # the images' shape kept
    assert sheet.uri.startswith("data:image/jpeg;base64,")
    assert sprite_of(sheet).shape == (sheet.size[1], sheet.size[0], 3)
    assert thumbs.sheet(images[:, :1], np.arange(5)).uri.startswith("data:image/png;base64,")   # grey: a PNG


def test_many_points_get_smaller_tiles_within_the_sheets_side(monkeypatch):
    monkeypatch.setattr(thumbs, "SHEET_MAX_SIDE", 40)
    sheet = thumbs.sheet(np.zeros((25, 1, 28, 28), dtype=np.uint8), np.arange(25))      # 5 a row: 140 px at 28
    assert sheet.per_row == 5 and sheet.tile == (8, 8) and max(sheet.size) <= 40


def test_the_script_reads_its_data_from_a_json_block_that_no_text_can_end():
    sheet = thumbs.Sheet("data:image/png;base64,</script><script>alert(1)</script>&", (4, 9), (8, 8), 2, (16, 8))
    page = thumbs.page_html(sheet, "map_chart")
    assert page.count("</script>") == 2                   # the data block's and the script's own, nothing more
    block = re.match(r'<script type="application/json" id="config">(.*?)</script>', page, re.S).group(1)
    config = json.loads(block)
    assert config["sprite"] == sheet.uri and config["ids"] == [4, 9] and config["per_row"] == 2
    assert config["chart"] == ".st-key-map_chart .js-plotly-plot" and config["tip"] == thumbs.TIP_ID
    assert thumbs.SCRIPT.read_text() in page


def iframes(at) -> list:
    return [e for e in at.main if getattr(e, "type", None) == "iframe"]


def caption(at) -> str:
    return " ".join(c.value for c in at.caption)


@pytest.fixture
def public(monkeypatch):
    monkeypatch.setenv("VAE_EXPLORER_PUBLIC", "1")
    before = st.get_option("client.showErrorDetails")
    yield
    st.set_option("client.showErrorDetails", before)      # the option is process-wide: leave it as found


def test_a_public_map_above_the_thumbnail_budget_sends_no_sheet_and_says_so(monkeypatch, public):
    monkeypatch.setenv("VAE_EXPLORER_MAX_THUMB_POINTS", "900")
    built = []
    real = thumbs.sheet
    monkeypatch.setattr(thumbs, "sheet", lambda images, ids: built.append(len(ids)) or real(images, ids))
    at = open_app("latent_map")
    assert_clean(at)
    assert at.slider(key="map_points").value == 5000
    assert "No thumbnails on hover: this map has more than 900 points (VAE_EXPLORER_MAX_THUMB_POINTS)" in caption(at)
    assert not iframes(at) and not built
    at.slider(key="map_points").set_value(900).run()                # within the budget: thumbnails
    assert_clean(at)
    assert "No thumbnails" not in caption(at) and len(iframes(at)) == 1
    assert built == [900]


def test_one_sheet_per_map_however_often_the_page_reruns(monkeypatch):
    built = []
    real = thumbs.sheet
    monkeypatch.setattr(thumbs, "sheet", lambda images, ids: built.append(len(ids)) or real(images, ids))
    at = open_app("latent_map")
    built.clear()                                                   # (the first map's, unless kept already)
    at.slider(key="map_points").set_value(1300).run()               # a map no other test has drawn
    at.selectbox(key="map_colour").set_value("none").run()          # another figure of the same points
    at.text_input(key="map_pick").set_value("3").run()
    assert_clean(at)
    assert built == [1300] and len(iframes(at)) == 1
