"""Fill, at image build time, the caches a fresh container would otherwise fill on its first request.

`PYTHONPATH=. python docker/warm_caches.py` from the app folder (the Dockerfile runs it as the app's user,
so the files are its own):
- numba: umap-learn's jitted functions compiled into NUMBA_CACHE_DIR (``vae_core.latent.projections.warm_up``);
- the shipped checkpoints and the datasets the app offers, opened once (imports, bytecode, data files);
- Hub VAEs named in VAE_PREFETCH (space-separated repo ids, e.g. "madebyollin/taesd"), fetched
  into the Hugging Face cache (HF_HOME) so the first visitor does not wait for the download.
A prefetch that fails is reported and skipped: the cache only saves time.
"""
from __future__ import annotations

import os
import time


def main() -> int:
    from vae_core import VAEError, load_dataset, load_model, shipped_checkpoints
    from vae_core.data import app_datasets
    from vae_core.latent.projections import warm_up

    t0 = time.perf_counter()
    w = warm_up()
    print(f"numba cache for umap: import {w['import_s']:.1f} s, first fit {w['fit_s']:.1f} s "
          f"(into {os.environ.get('NUMBA_CACHE_DIR', 'the default cache folder')})")
    for name in shipped_checkpoints():
        load_model(name, device="cpu")
    for name in app_datasets():                  # not dsprites-full: the app never offers it
        load_dataset(name, "train")
    print(f"opened {len(shipped_checkpoints())} checkpoints and {len(app_datasets())} datasets")
    for repo in os.environ.get("VAE_PREFETCH", "").split():
        try:
            model = load_model(repo, device="cpu")
            print(f"prefetched {repo} ({model.config.model_type}, latent {list(model.latent_shape)})")
        except VAEError as e:
            print(f"warning: could not prefetch {repo}: {e}")
    print(f"caches warm in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
