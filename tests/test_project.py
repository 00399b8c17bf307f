"""vae_core.latent.projections: PCA / t-SNE / UMAP maps, exact kNN, nearest neighbours, warm-up."""
import gc

import numpy as np
import pytest
import torch

import vae_core
from vae_core.latent import projections as project


@pytest.fixture(scope="module")
def codes():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 6, generator=g) * 5
    return (centres.repeat_interleave(40, 0) + torch.randn(120, 6, generator=g)).float()


def test_pca_shape_and_variance_order(codes):
    pts = project.pca(codes)
    assert pts.shape == (120, 2) and pts.dtype == np.float32
    assert pts[:, 0].var() >= pts[:, 1].var()


def test_knn_is_exact_with_each_point_first(codes):
    idx, dist = project.knn(codes, 5, chunk=32)                 # several chunks
    brute = torch.cdist(codes, codes)
    assert (idx[:, 0] == np.arange(120)).all() and (dist[:, 0] == 0).all()
    want = brute.topk(5, largest=False).values.numpy()
    assert np.allclose(np.sort(dist, 1)[:, 1:], np.sort(want, 1)[:, 1:], atol=1e-3)
    assert idx.dtype == np.int32


def test_nearest_neighbours_excludes_the_point_itself(codes):
    near = project.nearest_neighbours(codes, [0, 50], k=3)
    assert near.shape == (2, 3) and 0 not in near[0] and 50 not in near[1]
    assert all(n < 40 for n in near[0])                          # same cluster
    with pytest.raises(vae_core.VAEError):
        project.nearest_neighbours(codes, [500])


def test_umap_separates_clusters(codes):
    pts = project.umap(codes, n_neighbors=10)
    assert pts.shape == (120, 2) and np.isfinite(pts).all()
    centre = [pts[i * 40:(i + 1) * 40].mean(0) for i in range(3)]
    spread = max(pts[i * 40:(i + 1) * 40].std(0).max() for i in range(3))
    assert min(np.linalg.norm(centre[i] - centre[j]) for i in range(3) for j in range(i)) > spread


def test_tsne_and_dispatch(codes):
    assert project.project(codes, "tsne", perplexity=10).shape == (120, 2)
    assert project.project(codes, "pca").shape == (120, 2)
    with pytest.raises(vae_core.VAEError, match="Unknown projection"):
        project.project(codes, "mds")


def test_bad_input_is_refused(codes):
    bad = codes.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(vae_core.VAEError, match="NaN"):
        project.pca(bad)
    with pytest.raises(vae_core.VAEError, match="n_neighbors"):
        project.umap(codes[:5], n_neighbors=15)
    with pytest.raises(vae_core.VAEError, match="perplexity"):
        project.tsne(codes[:5], perplexity=30)


def test_spatial_codes_are_flattened():
    x = torch.randn(30, 4, 3, 3)
    assert project.pca(x).shape == (30, 2)


def test_umap_epochs_scale_down_for_large_maps():
    assert project.umap_epochs(5_000) == 200 and project.umap_epochs(20_000) == 100


def test_warm_up_reports_and_turns_numba_caching_on_once():
    timings = project.warm_up(n=60)
    assert set(timings) == {"import_s", "fit_s"}
    assert project.enable_numba_cache() is project.enable_numba_cache()     # done once per process
    assert project.enable_numba_cache.cache_info().misses == 1


def test_the_servers_warm_up_runs_in_its_own_thread_and_says_when_it_is_done(monkeypatch):
    from explorer import startup

    monkeypatch.setattr(startup, "WARM_UP_DELAY_S", 0.0)
    warm = startup.WarmUp(run=True)
    assert warm.thread is not None and warm.thread.name == "warm-up"
    try:
        assert warm.wait(120) and not warm.error
    finally:
        gc.unfreeze()                                            # the warm-up froze this test process's heap
    assert set(warm.timings) == {"import_s", "fit_s"}
    warm.thread.join(5)
    assert not warm.thread.is_alive()
    off = startup.WarmUp(run=False)                              # VAE_EXPLORER_WARMUP=0: nothing runs
    assert off.thread is None and off.wait(0)


def test_tsne_reports_its_progress_and_stops_when_its_progress_callback_raises(codes):
    seen = []
    pts = project.tsne(codes, perplexity=10, progress=lambda f, what: seen.append((f, what)))
    assert pts.shape == (120, 2) and np.isfinite(pts).all()
    fractions = [f for f, _ in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert any(w == f"iteration 500 of {project.TSNE_EARLY_ITERATIONS + project.TSNE_ITERATIONS}" for _, w in seen)

    class Enough(Exception):
        pass

    def stop_halfway(f, what):
        if f > 0.5:
            raise Enough(what)

    with pytest.raises(Enough, match="iteration"):
        project.tsne(codes, perplexity=10, progress=stop_halfway)
    assert np.array_equal(project.tsne(codes, perplexity=10, seed=3), project.tsne(codes, perplexity=10, seed=3))


def test_tsne_separates_clusters(codes):
    pts = project.tsne(codes, perplexity=10)
    centre = [pts[i * 40:(i + 1) * 40].mean(0) for i in range(3)]
    spread = max(pts[i * 40:(i + 1) * 40].std(0).max() for i in range(3))
    assert min(np.linalg.norm(centre[i] - centre[j]) for i in range(3) for j in range(i)) > spread


@pytest.mark.slow          # pynndescent compiles its numba code on first use (20 s and more)
def test_above_the_exact_limit_neighbours_come_from_nn_descent(codes, monkeypatch):
    monkeypatch.setattr(project, "EXACT_KNN_MAX", 50)
    idx, dist = project.neighbours(codes, 5)
    exact = project.knn(codes, 5)[0]
    assert idx.dtype == np.int32 and (idx[:, 0] == np.arange(120)).all() and (dist[:, 0] == 0).all()
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(idx, exact)]) > 0.9
