"""The codes of a dataset and the maps of them, shared by the Latent map and Analyze pages: encoding runs
in the session's turn on the server's job queue (explorer.jobs), a slow map as a job of its own, and both
are kept in the queue's result cache for every session."""
from __future__ import annotations

import threading

import streamlit as st

import vae_core
from explorer.jobs import Job, in_turn, queue
from vae_core import memory
from vae_core.latent import explore, projections as project


def codes_for(ctx, n: int):
    """The posterior means of ``n`` images of the dataset (a fixed random subset), and their indices."""
    results = queue().results
    key = ("codes", ctx.model_key, ctx.data_key, n)
    hit = results.get(key)
    if hit is not None:
        return hit
    sub, idx = ctx.data.seeded_subset(n, seed=0)
    bar = st.progress(0.0, text=f"Encoding {len(sub):,} images...")

    def tick(done, total):
        bar.progress(done / total, text=f"Encoding {len(sub):,} images... {done:,}/{total:,}")

    codes = in_turn("encoding", explore.encode_dataset, ctx.model, sub, progress=tick)
    memory.release()
    bar.empty()
    return results.put(key, (codes, idx))


def describe(job: Job, what: str, ahead: int = 0) -> str:
    """A line about a slow job for its progress bar: waiting its turn, or how far it has got and
    about how long it has left (extrapolated from its own progress so far)."""
    if job.state == "waiting":
        return f"{what} waits for {ahead} other map{'s' * (ahead != 1)} to finish" if ahead else f"{what} is starting"
    eta = job.eta
    left = f", about {eta:.0f} s left" if eta is not None else ""
    return f"{what}: {job.stage or 'running'} ({job.elapsed:.0f} s{left})"


def projection(ctx, session: str, codes, method: str, params: dict, after: threading.Event | None = None):
    """2-D points for ``codes``, and the Job of a slow method still on its way (else None).

    While t-SNE or UMAP runs (or waits its turn), the PCA map stands in for it. Results are kept
    for every session, so a map already computed comes back at once. A newer request of the same
    session replaces this one: waiting, it is cancelled; running, it stops at its next progress report.
    """
    base = ("map", ctx.model_key, ctx.data_key, len(codes))
    pca = lambda: queue().results.get_or_compute(                    # noqa: E731 (the page checked its budget)
        (*base, "pca"), lambda: project.pca(codes, max_points=len(codes)))
    if method == "pca":
        queue().forget(session)            # instant: a slow map this session asked for before is not wanted now
        return pca(), None
    key = (*base, method, tuple(sorted(params.items())))
    job = queue().submit(session, key, project.project, codes, method, after=after, progress=True, **params)
    if job.state == "cancelled":                       # stopped for another request a moment ago: ask again
        job = queue().submit(session, key, project.project, codes, method, after=after, progress=True, **params)
    if job.state == "failed":
        err = job.error
        if isinstance(err, vae_core.VAEError):
            raise err
        raise vae_core.VAEError(f"{project.METHODS[method]} failed ({type(err).__name__}: {err}); "
                                "try other parameters or PCA.")
    if job.state == "done":
        return job.result, None
    return pca(), job
