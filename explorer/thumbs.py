"""The latent map's hover thumbnails: the image of the point under the pointer, beside it.

Streamlit's chart sends no hover events, and a round trip to the server on every hover would slow
the map, so it all happens in the browser. ``sheet`` lays the images of the map's points into one
sprite (vae_core.latent.projector.sprite_image, the TensorBoard Projector's sheet), tiles at most
``TILE_PX`` a side, as a PNG (or a colour JPEG) data URI; ``show`` sends it with our script (map_thumbs.js) in a
one-pixel-high iframe of the page's own origin. The script finds the map's Plotly chart in the page,
listens to its hover and unhover events, and shows the hovered point's tile (found by the point's
customdata, its dataset index) in a small box beside the point. The sheet is built once per
(model, dataset, points) and kept in the job queue's result cache; a map of more points than
VAE_EXPLORER_MAX_THUMB_POINTS gets no sheet (a caption beside it says so).
"""
from __future__ import annotations

import base64
import hashlib
import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import streamlit as st

from explorer import jobs, limits
from vae_core.latent.projector import sprite_image

TILE_PX = 28                   # the largest side of a tile in the sheet
SHEET_MAX_SIDE = 2048          # pixels of the sheet's side: 10,000 points get tiles of 20 px (about 1.3 MB sent)
JPEG_QUALITY = 80              # of a colour sheet
SHOWN_PX = 84                  # about the side of the thumbnail on the page (a tile drawn at a whole multiple)
SCRIPT = Path(__file__).with_name("map_thumbs.js")
TIP_ID = "vae-map-thumb"       # the thumbnail's element in the page


@dataclasses.dataclass(frozen=True)
class Sheet:
    """The thumbnails of a map's points: ``ids[i]`` (a dataset index) is tile ``i``, row by row."""
    uri: str                    # the sprite, a PNG data URI
    ids: tuple[int, ...]
    tile: tuple[int, int]       # (height, width) of a tile, in the sprite's pixels
    per_row: int                # tiles a row
    size: tuple[int, int]       # (width, height) of the sprite

    def position(self, index: int) -> tuple[int, int]:
        """(column, row) of dataset image ``index``'s tile."""
        return divmod(self.ids.index(index), self.per_row)[::-1]


def sheet(images: np.ndarray, ids: np.ndarray, tile_px: int = TILE_PX) -> Sheet:
    """The sheet of ``images`` (uint8 (n, C, H, W), the map's points in the order of ``ids``): tiles of at most
    ``tile_px`` a side, smaller where the sheet would pass ``SHEET_MAX_SIDE``; grey images as a PNG (sharp
    strokes, small), colour ones as a JPEG (a PNG of 5,000 colour thumbnails is several MB)."""
    n, c, h, w = images.shape
    per_row = max(1, math.ceil(math.sqrt(n)))
    sprite, tile, per_row = sprite_image(images, max_side=min(SHEET_MAX_SIDE, per_row * min(tile_px, max(h, w))))
    buf = io.BytesIO()
    fmt = "png" if c == 1 else "jpeg"
    sprite.save(buf, format=fmt, **({} if c == 1 else {"quality": JPEG_QUALITY}))
    uri = f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return Sheet(uri, tuple(int(i) for i in ids), tile, per_row, sprite.size)


def page_html(s: Sheet, chart_key: str) -> str:
    """The iframe's document: our script, and the sheet as JSON in a data block (never spliced into code)."""
    scale = max(1, round(SHOWN_PX / max(s.tile)))
    config = {"chart": f".st-key-{chart_key} .js-plotly-plot", "tip": TIP_ID, "sprite": s.uri, "ids": s.ids,
              "tile": s.tile, "per_row": s.per_row, "size": s.size, "scale": scale}
    # json.dumps leaves '<', '>' and '&' as they are: as \\u escapes no "</script>" in the data can end the block
    data = json.dumps(config).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (f'<script type="application/json" id="config">{data}</script>\n'
            f"<script>{SCRIPT.read_text(encoding='utf-8')}</script>")


def show(ctx, data, idx, chart_key: str) -> None:
    """Send the hover thumbnails of the map of ``data``'s images ``idx`` (drawn as points, not as a raster)
    by the chart ``chart_key``; above the server's budget, a caption saying why there are none."""
    cap = limits.settings().max_thumb_points
    if len(idx) > cap:
        st.caption(f"No thumbnails on hover: this map has more than {cap:,} points (VAE_EXPLORER_MAX_THUMB_POINTS); "
                   "choose fewer points to see them.")
        return
    ids = np.asarray(idx)
    key = ("hover thumbnails", ctx.model_key, ctx.data_key, hashlib.sha256(ids.tobytes()).hexdigest())  # these points
    built = jobs.queue().results.get_or_compute(key, lambda: page_html(
        sheet(data.images[ids].numpy(), ids), chart_key))
    st.iframe(built, height=1, alt="thumbnails shown on hover over the latent map")
