"""Budgets: every cost a visitor's input sets is checked against a configured limit before anything is
allocated, and a hostile file or size is refused quickly and cheaply, with a message naming the limit.

Allocation is measured two ways around each refusal: the process's peak resident memory (Linux's
VmHWM, reset through /proc/self/clear_refs, which sees torch's and numpy's allocations too) and
tracemalloc's peak of Python allocations.
"""
from __future__ import annotations

import gc
import json
import re
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

import vae_core
from explorer import limits as limits_module
from explorer import usage as usage_module
from explorer.limits import Settings
from tests.app_conftest_helpers import assert_clean, errors, open_app
from vae_core import VAEError
from vae_core.models import ConvConfig, MLPConfig, build_model

PUBLIC = Settings(public=True)
MB = 2 ** 20


def _status_kb(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")      # resets VmHWM to the current VmRSS (Linux 4.0+)
        return True
    except OSError:
        return False


def refused_cheaply(fn, match: str, seconds: float = 1.0, megabytes: float = 100.0):
    """``fn()`` raises a VAEError matching ``match`` within ``seconds``, the process's peak memory grows by
    under ``megabytes`` and Python allocates under that too. Where Linux does not let the peak be reset, the
    rest is checked and the test is then skipped, saying the memory half did not run (never passed unseen)."""
    gc.collect()
    measured = _reset_peak()
    rss0 = _status_kb("VmRSS")
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(VAEError, match=match) as info:
            fn()
        elapsed = time.perf_counter() - t
        _, py_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    peak = _status_kb("VmHWM") if measured else None
    assert elapsed < seconds, f"refused after {elapsed:.2f} s"
    assert py_peak < megabytes * MB, f"Python allocated {py_peak / MB:.0f} MB before the refusal"
    assert len(str(info.value)) < 600 and "\n" not in str(info.value)       # one line, nothing echoed whole
    if peak is None or rss0 is None:
        pytest.skip("the process's peak memory cannot be reset here (/proc/self/clear_refs is not writable), so "
                    "the memory half of this check did not run; its time and Python allocations passed")
    grown = (peak - rss0) / 1024
    assert grown < megabytes, f"the process's peak grew by {grown:.0f} MB before the refusal"
    return str(info.value)


def test_the_allocation_measure_sees_what_it_should():
    """The measure itself: 300 MB made by torch (invisible to tracemalloc) is seen through the peak."""
    if not _reset_peak():
        pytest.skip("this system cannot reset the peak resident memory")

    def allocate():
        x = torch.ones(300 * MB // 4)
        del x
        raise VAEError("allocated first")

    with pytest.raises(AssertionError, match="peak grew"):
        refused_cheaply(allocate, "allocated first", seconds=30)


def test_where_the_peak_cannot_be_reset_the_memory_half_is_skipped_not_passed(monkeypatch):
    def refuse():
        raise VAEError("refused")

    monkeypatch.setitem(globals(), "_reset_peak", lambda: False)
    with pytest.raises(pytest.skip.Exception, match="memory half of this check did not run"):
        refused_cheaply(refuse, "refused")


# ---------------------------------------------------------------------------------------------
# Hostile model folders, opened as a public server opens a Hub repo's files


def _folder(tmp_path: Path, name: str, config, weights: bytes | None = None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
    return folder


def _open(folder):
    return lambda: vae_core.open_model(folder, device="cpu",
                                       policy=vae_core.settings.LoadPolicy(**{**PUBLIC.load_policy.__dict__,
                                                                              "local_paths": True}))


def _tiny_weights() -> bytes:
    from safetensors.torch import save

    return save({"w": torch.zeros(4)})


HOSTILE = {
    "100,000-deep nesting": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "a 5,000-digit integer": ('{"model_type": "mlp", "latent_dim": ' + "9" * 5000 + "}", "not valid JSON"),
    "a 4,000-digit integer": ('{"model_type": "mlp", "latent_dim": ' + "9" * 4000 + "}", "latent_dim must be"),
    "model_type a list": ({"model_type": ["mlp"]}, "Unknown model type"),
    "model_type a mapping": ({"model_type": {"a": 1}}, "Unknown model type"),
    "in_shape a mapping": ({"model_type": "mlp", "in_shape": {"c": 1}}, "list of integers"),
    "in_shape floats": ({"model_type": "mlp", "in_shape": [1e308, 1, 1]}, "list of integers"),
    "sigma a huge integer": ({"model_type": "mlp", "sigma": 10 ** 400}, "finite number"),
    "10,000 unknown fields": ({"model_type": "mlp", **{f"f{'x' * 200}{i}": i for i in range(10_000)}},
                              "Unknown field"),
    "a JSON list": ("[1, 2, 3]", "not the mapping"),
    "3x1024x1024 output, hidden width 1": ({"model_type": "mlp", "in_shape": [3, 1024, 1024], "hidden_dims": [1],
                                            "latent_dim": 2}, r"makes 3x1024x1024 images.*at most 196,608"),
    "190M parameters promised, 16 bytes of weights": ({"model_type": "mlp", "in_shape": [1, 28, 28],
                                                      "hidden_dims": [8192, 8192], "latent_dim": 2},
                                                     "does not match its config"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_configs_are_refused_in_under_a_second_with_under_100_mb(tmp_path, case):
    config, match = HOSTILE[case]
    folder = _folder(tmp_path, "hostile", config, _tiny_weights())
    refused_cheaply(_open(folder), match)


def test_a_huge_config_file_and_a_huge_weights_header_are_refused_unread(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "config.json", "wb") as fh:
        fh.truncate(500 * MB)                               # sparse: 500 MB that a reader would allocate
    refused_cheaply(_open(big), "more than a model folder's JSON file may be")
    header = _folder(tmp_path, "header", {"model_type": "mlp", "in_shape": [1, 8, 8], "hidden_dims": [8],
                                          "latent_dim": 2})
    with open(header / "model.safetensors", "wb") as fh:
        fh.write((2 ** 40).to_bytes(8, "little"))          # a header "a terabyte long"
        fh.write(b"{}")
    refused_cheaply(_open(header), "corrupt or truncated")


def test_a_diffusers_vae_at_a_large_working_size_is_refused_before_it_is_built(tmp_path):
    pytest.importorskip("diffusers")
    cfg = {"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
           "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2}
    folder = _folder(tmp_path, "sd", cfg)
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(_tiny_weights())
    policy = PUBLIC.load_policy
    refused_cheaply(lambda: vae_core.open_model(folder, image_size=1024, policy=vae_core.settings.LoadPolicy(
        **{**policy.__dict__, "local_paths": True})), r"AutoencoderKL at 1024x1024 makes 3x1024x1024 images")
    # Its own cap at the app's working size: the decoder's full-resolution layers count, not only the pixels.
    from vae_core.models.diffusers_adapter import widest_decode
    assert widest_decode(cfg, 128) == 128 * 128 * 128


# ---------------------------------------------------------------------------------------------
# Per-request budgets, at the sizes the issue found (the checks are arithmetic on the config: a model
# built on the meta device stands in, so not even the model is allocated)


def meta_model(config):
    with torch.device("meta"):
        return build_model(config)


WIDE_DECODER = ConvConfig(in_shape=(3, 64, 64), channels=(2048,), fc_dim=1, latent_dim=2)   # 2M values an image


@pytest.mark.parametrize("what, check, match", [
    ("Sample, count 100", lambda s, m: s.check_images(m, 100, "samples"), "VAE_EXPLORER_MAX_REQUEST_PIXELS"),
    ("Traverse, 20 rows x 15", lambda s, m: s.check_images(m, 300, "traversal images"), "at most 16 traversal"),
    ("a 30 x 30 manifold", lambda s, m: s.check_images(m, 900, "manifold images"), "MAX_REQUEST_PIXELS"),
    ("a 24-step GIF of 256-pixel images", lambda s, m: s.check_animation(46, (3, 256, 256), 4), "animation"),
    ("resize mnist-5k to 3x256x256", lambda s, m: s.check_resize(5000, (3, 256, 256)), "VAE_EXPLORER_MAX_DATASET_MB"),
    ("t-SNE of 20,000 points", lambda s, m: s.check_points(m, 20_000, "tsne"), "VAE_EXPLORER_MAX_TSNE_POINTS"),
    ("UMAP of 50,000 points", lambda s, m: s.check_points(m, 50_000, "umap"), "VAE_EXPLORER_MAX_MAP_POINTS"),
    ("a PCA raster of 300,000 points", lambda s, m: s.check_points(m, 300_000, "pca"), "VAE_EXPLORER_MAX_RASTER_POINTS"),
    ("a 20,000-point map of 2 M-value images", lambda s, m: s.check_points(m, 20_000, "pca"),
     "VAE_EXPLORER_MAX_ENCODE_VALUES"),
    ("IWAE n=5,000, k=500", lambda s, m: s.check_iwae(m, 5000, 500), "VAE_EXPLORER_MAX_IWAE_VALUES"),
    ("disentanglement at full counts", lambda s, m: s.check_disentanglement(1.0),
     "VAE_EXPLORER_MAX_DISENTANGLEMENT_IMAGES"),
    ("the Train page's dsprites-full", lambda s, m: s.check_dataset("dsprites-full"), "VAE_EXPLORER_MAX_DATASET_MB"),
])
def test_request_budgets_refuse_the_issues_sizes_in_under_a_second_with_under_100_mb(what, check, match):
    model = meta_model(WIDE_DECODER)
    refused_cheaply(lambda: check(PUBLIC, model), match)


def test_ordinary_requests_fit_the_default_budgets():
    s = Settings()
    mlp, conv = meta_model(MLPConfig()), meta_model(ConvConfig())
    s.check_images(mlp, 100, "samples")
    s.check_images(mlp, 30 * 30, "manifold images")
    s.check_images(conv, 64 * 15, "traversal images")
    s.check_points(mlp, 20_000, "umap")
    s.check_points(conv, 20_000, "pca")             # a conv model's map of 20,000 points, encoded in batches
    s.check_points(mlp, 200_000, "pca")             # above the WebGL budget: a raster
    s.check_points(mlp, 5_000, "tsne")
    s.check_iwae(conv, 1000, 100)                   # 100,000 decodes of the conv model
    s.check_disentanglement(0.05)
    s.check_animation(46, (1, 28, 28), 4)
    assert {"mnist-5k", "digits", "dsprites"} <= set(s.datasets()) and "dsprites-full" not in s.datasets()
    assert s.max_images(mlp) > 20_000


def test_the_iwae_budget_scales_with_the_model():
    """The issue's 7 CPU-minute click (conv, n = 5,000, k = 500) is refused; the same n x k on the small MLP
    costs 8x less a decode and a smaller n x k fits."""
    s = Settings()
    conv, mlp = meta_model(ConvConfig()), meta_model(MLPConfig())
    with pytest.raises(VAEError, match="n x k at most 171,196"):
        s.check_iwae(conv, 5000, 500)
    s.check_iwae(mlp, 5000, 100)


# ---------------------------------------------------------------------------------------------
# Settings: every number validated, every budget configurable

BUDGETS = ["VAE_EXPLORER_MAX_OUTPUT_PIXELS", "VAE_EXPLORER_MAX_REQUEST_PIXELS", "VAE_EXPLORER_MAX_MAP_POINTS",
           "VAE_EXPLORER_MAX_TSNE_POINTS", "VAE_EXPLORER_MAX_RASTER_POINTS", "VAE_EXPLORER_MAX_THUMB_POINTS", "VAE_EXPLORER_MAX_ENCODE_VALUES", "VAE_EXPLORER_MAX_IWAE_VALUES", "VAE_EXPLORER_MAX_DISENTANGLEMENT_IMAGES",
           "VAE_EXPLORER_MAX_DATASET_MB", "VAE_EXPLORER_MAX_DOWNLOAD_MB", "VAE_EXPLORER_MAX_CACHE_MB",
           "VAE_EXPLORER_MAX_MODELS_MB"]


@pytest.mark.parametrize("name", BUDGETS)
@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "many", "1e400"])
def test_every_budget_is_validated(name, value):
    with pytest.raises(VAEError, match=name):
        Settings.from_env({name: value})


def test_budgets_and_public_mode_come_from_the_environment():
    s = Settings.from_env({"VAE_EXPLORER_PUBLIC": "1", "VAE_EXPLORER_MAX_REQUEST_PIXELS": "1000",
                           "VAE_EXPLORER_MAX_DATASET_MB": "50", "VAE_EXPLORER_MAX_DOWNLOAD_MB": "10",
                           "VAE_EXPLORER_MAX_CACHE_MB": "20", "VAE_EXPLORER_MAX_OUTPUT_PIXELS": "784"})
    assert s.public and s.max_request_pixels == 1000 and s.max_dataset_bytes == 50 * MB
    assert "dsprites" not in s.datasets()                                # 102 MB in memory
    policy = s.load_policy
    assert (policy.local_paths, policy.use_token, policy.max_output_pixels, policy.max_download_bytes,
            policy.max_cache_bytes) == (False, False, 784, 10 * MB, 20 * MB)
    assert Settings.from_env({}).public is False and Settings.from_env({}).load_policy.local_paths
    with pytest.raises(VAEError, match="VAE_EXPLORER_PUBLIC"):
        Settings.from_env({"VAE_EXPLORER_PUBLIC": "maybe"})
    with pytest.raises(VAEError, match="MAX_DOWNLOAD_MB is larger than VAE_EXPLORER_MAX_CACHE_MB"):
        Settings.from_env({"VAE_EXPLORER_MAX_DOWNLOAD_MB": "100", "VAE_EXPLORER_MAX_CACHE_MB": "50"})
    with pytest.raises(VAEError, match="MAX_DOWNLOAD_MB is larger than VAE_EXPLORER_MAX_MODELS_MB"):
        Settings.from_env({"VAE_EXPLORER_MAX_DOWNLOAD_MB": "100", "VAE_EXPLORER_MAX_MODELS_MB": "50"})


def test_the_servers_loaded_models_stay_within_their_budget_and_load_once():
    import threading

    from explorer.loaders import ModelCache

    loads = []

    def loader(width):
        def load():
            loads.append(width)
            return build_model(MLPConfig(in_shape=(1, 8, 8), hidden_dims=(width,), latent_dim=2)), width
        return load

    cache = ModelCache(max_bytes=3 * 64 * 1024 * 4)          # room for about three of the models below
    barrier = threading.Barrier(4)
    out = []
    threads = [threading.Thread(target=lambda: (barrier.wait(), out.append(cache.get("a", loader(1024)))))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == [1024] and all(m is out[0][0] for m, _ in out)       # four sessions, one load
    for key in "bcde":
        cache.get(key, loader(1024))
    assert cache.nbytes <= cache.max_bytes and "a" not in cache and "e" in cache     # the oldest went first


def test_the_library_refuses_a_disentanglement_run_above_its_limit_before_it_starts():
    from vae_core.evaluation.disentanglement import evaluate_disentanglement, images_needed

    assert images_needed(scale=1.0) == 2_945_000                       # disentanglement_lib's defaults
    refused_cheaply(lambda: evaluate_disentanglement(meta_model(MLPConfig(in_shape=(1, 64, 64))), scale=1.0,
                                                     max_images=150_000), "encode 2,945,000 images")


# ---------------------------------------------------------------------------------------------
# The pages check before they decode


@pytest.fixture
def decodes(monkeypatch):
    """Every batch the pages decode, by size."""
    from vae_core.latent import explore

    sizes, real = [], explore.decode

    def spy(model, z, y=None):
        sizes.append(int(z.shape[0]))
        return real(model, z, y)

    monkeypatch.setattr(explore, "decode", spy)
    return sizes


def test_sample_refuses_a_count_above_the_request_budget(monkeypatch, decodes):
    monkeypatch.setenv("VAE_EXPLORER_MAX_REQUEST_PIXELS", str(784 * 50))
    at = open_app("sample")
    assert_clean(at)
    decodes.clear()
    at.slider(key="sample_count").set_value(100).run()
    assert any("VAE_EXPLORER_MAX_REQUEST_PIXELS" in e and "at most 50 samples" in e for e in errors(at))
    assert not at.exception and decodes == []
    at.slider(key="sample_count").set_value(40).run()
    assert_clean(at)


def test_traverse_and_the_manifold_refuse_grids_above_the_budget(monkeypatch, decodes):
    monkeypatch.setenv("VAE_EXPLORER_MAX_REQUEST_PIXELS", str(784 * 60))
    at = open_app("traverse", model="mnist-mlp-2d")                    # the default 10 x 10 plane: 100 images
    assert any("manifold images" in e and "VAE_EXPLORER_MAX_REQUEST_PIXELS" in e for e in errors(at))
    assert max(decodes, default=0) <= 60
    at.slider(key="traverse_manifold").set_value(7).run()              # 49 fit
    assert_clean(at)
    at = open_app("traverse")                                          # 8 rows x 7 columns fit
    assert_clean(at)
    at.slider(key="traverse_cols").set_value(9).run()
    at.slider(key="traverse_rows").set_value(10).run()                  # 90 images
    assert any("traversal images" in e for e in errors(at))
    assert not at.exception


def test_interpolate_refuses_an_animation_above_the_budget(monkeypatch):
    monkeypatch.setenv("VAE_EXPLORER_MAX_REQUEST_PIXELS", str(784 * 16 * 40))
    at = open_app("interpolate")
    at.slider(key="interp_steps").set_value(24).run()                  # 46 frames of 112x112
    assert any("animation" in e and "Use fewer steps" in e for e in errors(at))
    at.slider(key="interp_steps").set_value(10).run()
    assert_clean(at)


def test_the_latent_map_refuses_too_many_points_for_tsne_without_queueing_a_job(monkeypatch):
    from explorer import jobs

    monkeypatch.setenv("VAE_EXPLORER_MAX_TSNE_POINTS", "1000")
    submitted = []
    real = jobs.JobQueue.submit
    monkeypatch.setattr(jobs.JobQueue, "submit", lambda self, *a, **k: submitted.append(a) or real(self, *a, **k))
    at = open_app("latent_map")
    at.slider(key="map_points").set_value(2000).run()
    at.radio(key="map_method").set_value("t-SNE").run()
    assert any("VAE_EXPLORER_MAX_TSNE_POINTS" in e for e in errors(at))
    maps = [key for _, key, *_ in submitted if key[0] == "map"]
    assert not any("tsne" in key for key in maps) and not at.exception


def test_analyze_refuses_the_7_cpu_minute_iwae_click(decodes):
    at = open_app("analyze", model="mnist-conv")
    at.multiselect(key="an_pick").set_value(["Latent units"]).run()
    at.select_slider(key="an_n").set_value(5000).run()
    decodes.clear()
    t = time.perf_counter()
    at.select_slider(key="an_iwae_k").set_value(500).run()
    assert any("VAE_EXPLORER_MAX_IWAE_VALUES" in e and "n x k at most" in e for e in errors(at))
    assert time.perf_counter() - t < 30 and not at.exception


def test_resizing_a_dataset_above_the_budget_is_refused(monkeypatch):
    monkeypatch.setenv("VAE_EXPLORER_MAX_DATASET_MB", "1")
    at = open_app("analyze", model="dsprites-beta4")                   # 64x64 images; the model brings dsprites
    at.sidebar.selectbox(key="dataset").set_value("digits").run()        # the one set within 1 MB
    at.sidebar.checkbox(key="resize_data").check().run()               # 1,797 images at 64x64: 7 MB
    assert not at.exception
    assert any("VAE_EXPLORER_MAX_DATASET_MB" in e for e in errors(at))


def test_the_train_page_offers_only_datasets_within_the_budget(monkeypatch):
    monkeypatch.setenv("VAE_EXPLORER_MAX_DATASET_MB", "50")
    at = open_app("train")
    options = at.selectbox(key="train_dataset").options
    assert "dsprites-full" not in options and "dsprites" not in options and "mnist-5k" in options
    assert limits_module.settings().datasets() == options


# ---------------------------------------------------------------------------------------------
# Training slots: per visitor, and in turn (issue 30: one visitor's two tabs held both slots, renewably)


class _Run:
    """A stand-in for a training job: TrainingSlots asks only whether it is alive."""

    def __init__(self):
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive


def test_a_visitors_address_is_the_proxys_entry_not_one_the_client_wrote():
    assert usage_module.visitor_address("6.6.6.6, 1.2.3.4", "10.0.0.1", 1) == "1.2.3.4"
    assert usage_module.visitor_address("1.2.3.4", "10.0.0.1", 1) == "1.2.3.4"
    assert usage_module.visitor_address(None, "10.0.0.1", 0) == "10.0.0.1"
    assert usage_module.visitor_address("6.6.6.6", "10.0.0.1", 0) == "10.0.0.1"
    assert usage_module.visitor_address(None, None, 1) is None
    assert Settings.from_env({"VAE_EXPLORER_PROXY_HOPS": "0"}).proxy_hops == 0


def test_one_visitors_tabs_share_its_slots_and_a_renewal_waits_for_those_refused_before():
    from vae_core.training.live import TrainingSlots

    slots = TrainingSlots(max_jobs=2, max_per_owner=1)
    a = _Run()
    slots.acquire(a, "address 1.2.3.4")                                # tab 1
    with pytest.raises(VAEError, match="VAE_EXPLORER_MAX_JOBS_PER_SESSION"):
        slots.acquire(_Run(), "address 1.2.3.4")                       # tab 2 of the same visitor
    slots.acquire(_Run(), "address 5.5.5.5")
    with pytest.raises(VAEError, match="VAE_EXPLORER_MAX_JOBS"):
        slots.acquire(_Run(), "address 7.7.7.7")                       # refused: now waits its turn
    a.alive = False                                                    # the first visitor's run ends...
    with pytest.raises(VAEError, match="1 visitor asked before you"):
        slots.acquire(_Run(), "address 1.2.3.4")                       # ...and its renewal waits
    slots.acquire(_Run(), "address 7.7.7.7")                           # the one who waited goes first
    assert slots.running() == 2


# ---------------------------------------------------------------------------------------------
# Memory the server holds across sessions (issue 30: a resize took ~10x its budget, tabs resized in parallel,
# and four resized sets and four 470 MB models stayed after the visitor left)


def test_a_resize_peaks_at_its_result_plus_a_few_megabytes():
    from vae_core.data import ImageSet, conform

    if not _reset_peak():
        pytest.skip("this system cannot reset the peak resident memory")
    source = ImageSet(torch.randint(0, 256, (4000, 1, 28, 28), dtype=torch.uint8))
    result_mb = 4000 * 3 * 64 * 64 / MB                                # 47 MB, grey to RGB and 28 -> 64
    gc.collect()
    _reset_peak()
    rss0 = _status_kb("VmRSS")
    out = conform(source, image_size=64, channels=3)
    grown = (_status_kb("VmHWM") - rss0) / 1024
    assert out.images.shape == (4000, 3, 64, 64)
    assert grown < result_mb + 48, f"the resize peaked {grown:.0f} MB above the start for a {result_mb:.0f} MB result"


def test_one_resize_at_a_time_and_the_servers_datasets_within_their_bytes(monkeypatch):
    import threading

    import vae_core.data
    from explorer import loaders
    from vae_core.data import ImageSet

    monkeypatch.setenv("VAE_EXPLORER_MAX_DATASET_MB", "1")
    monkeypatch.setenv("VAE_EXPLORER_MAX_DATASETS_MB", "3")           # room for three 0.8 MB sets
    monkeypatch.setattr(loaders.vae_core, "load_dataset",
                        lambda name, split: ImageSet(torch.zeros(800, 1, 32, 32, dtype=torch.uint8), name=name))
    now, peak, lock = [0], [0], threading.Lock()
    real = vae_core.data.conform

    def counted(data, image_size=0, channels=0):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        try:
            time.sleep(0.05)                 # (work standing in for a resize, not a wait for the test)
            return real(data, image_size=image_size, channels=channels)
        finally:
            with lock:
                now[0] -= 1

    monkeypatch.setattr(vae_core.data, "conform", counted)
    threads = [threading.Thread(target=loaders.resized_data, args=(f"set{i}", "train", 30, 1)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1, f"{peak[0]} resizes at once"
    cache = loaders.data_cache(3 * MB, Settings().session_timeout)
    assert 0 < cache.nbytes <= 3 * MB                                  # 4 sets and 4 resized ones: 5.8 MB


# ---------------------------------------------------------------------------------------------
# Budgets on work, not only on values (issue 30: IWAE n=1,000, k=500 on an MLP with wide layers passed its
# budget and took ~13 min of one core)


def test_a_wide_models_iwae_within_the_value_budget_is_refused_by_its_work():
    model = build_model(MLPConfig(in_shape=(1, 28, 28), hidden_dims=(2048, 2048), latent_dim=16))
    s = Settings()
    assert 1000 * 500 * limits_module._cost(model) <= s.max_iwae_values          # the values pass, as before
    cost = usage_module.work_cost(model)
    assert cost.decode >= 2 * (2048 * 2048 + 2048 * 784)                           # measured: its layers' FLOPs
    assert usage_module.work_cost(model) is cost                                 # once per model
    with pytest.raises(VAEError, match="VAE_EXPLORER_MAX_REQUEST_GFLOP"):
        s.check_iwae(model, 1000, 500)
    s.check_iwae(model, 100, 50)                                                  # a modest estimate goes on


def test_the_loader_measures_a_models_work_once_on_load():
    from explorer import loaders

    model, _ = loaders.load_model("mnist-mlp", "", "cpu", 0.0)
    assert isinstance(model.explorer_work_cost, usage_module.WorkCost) and min(model.explorer_work_cost) > 0


def test_a_sessions_cpu_seconds_over_a_sliding_window_stop_work_that_would_pass_them(monkeypatch):
    now = [1000.0]
    ledger = usage_module.CpuLedger(clock=lambda: now[0])
    monkeypatch.setattr(usage_module, "cpu_ledger", lambda: ledger)
    monkeypatch.setattr(usage_module, "server_flops_per_second", lambda: 1e9)   # 1 GFLOP a CPU-second
    s = Settings(session_cpu_seconds=100, cpu_window=600)
    ledger.add("heavy", 90.0)
    ledger.add("light", 5.0)
    with pytest.raises(VAEError, match="VAE_EXPLORER_SESSION_CPU_SECONDS"):
        s.check_work(20 * 10 ** 9, "this view", session="heavy")                # 90 + 20 > 100
    s.check_work(20 * 10 ** 9, "this view", session="light")                    # another session's own budget
    now[0] += 601                                                                # the window slides past it
    s.check_work(20 * 10 ** 9, "this view", session="heavy")
    assert ledger.used("heavy", 600) == 0


def test_a_background_jobs_cpu_seconds_count_for_its_session():
    from explorer.jobs import JobQueue

    spent = []
    q = JobQueue(workers=1, spent=lambda session, seconds: spent.append((session, seconds)))
    job = q.submit("alice", "busy", lambda: sum(i * i for i in range(200_000)))
    assert job.wait(30) and job.state == "done"
    assert q.wait_idle(5) and len(spent) == 1 and spent[0][0] == "alice" and spent[0][1] > 0


def test_the_widest_model_a_visitor_can_open_is_decided_by_its_work_per_image(monkeypatch):
    from explorer import loaders

    monkeypatch.setenv("VAE_EXPLORER_MAX_REQUEST_GFLOP", "1")          # 1 GFLOP: 16 images of at most 62 MFLOP
    wide = build_model(MLPConfig(in_shape=(1, 28, 28), hidden_dims=(4096, 4096), latent_dim=16))   # ~41 MFLOP
    wider = meta_model(MLPConfig(in_shape=(1, 28, 28), hidden_dims=(8192, 8192), latent_dim=16))   # ~148 MFLOP
    Settings.from_env().check_model_work(wide)
    with pytest.raises(VAEError, match="VAE_EXPLORER_MAX_REQUEST_GFLOP"):
        Settings.from_env().check_model_work(wider)
    monkeypatch.setattr(loaders.vae_core, "open_model", lambda *a, **k: (wider, None))
    with pytest.raises(VAEError, match="Choose a smaller model"):
        loaders.load_model("someone/wider", "", "cpu", 0.0)


def test_what_no_session_has_asked_for_in_the_session_time_out_is_dropped():
    """Four 470 MB models and four resized sets stayed after the visitor left: now they go once idle."""
    from explorer.loaders import ModelCache

    now = [0.0]
    cache = ModelCache(max_bytes=10 ** 9, size=lambda v: 1, idle_s=120, clock=lambda: now[0])
    cache.get("left", lambda: "a model of a visitor who left")
    now[0] = 100.0
    cache.get("here", lambda: "a model in use")
    now[0] = 200.0                                           # "left" idle 200 s, "here" 100 s
    assert cache.get("here", lambda: "reloaded") == "a model in use"
    assert "left" not in cache and "here" in cache


def test_the_most_images_a_request_may_take_is_bounded_by_their_work_too():
    wide = build_model(MLPConfig(in_shape=(1, 28, 28), hidden_dims=(2048, 2048), latent_dim=16))
    s = Settings(max_request_flops=10 ** 9)
    most = s.max_images(wide)
    assert most * max(usage_module.work_cost(wide)) <= 10 ** 9 < (most + 1) * max(usage_module.work_cost(wide))
    s.check_images(wide, most)
    with pytest.raises(VAEError, match="VAE_EXPLORER_MAX_REQUEST_GFLOP"):
        s.check_images(wide, most + 1)
