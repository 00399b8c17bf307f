"""Public mode (VAE_EXPLORER_PUBLIC=1, what the Docker Space runs): anonymous visitors reach no file of
the server, no token of the server, and no run of another visitor; nothing internal reaches a page."""
from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import streamlit as st
import torch

import vae_core
from explorer.limits import Settings
from explorer.private_runs import PrivateRuns
from tests.app_conftest_helpers import ROOT, assert_clean, errors, open_app
from tests.waiting import wait_for
from vae_core.io import hub
from vae_core.settings import LoadPolicy, checkpoints_dir


@pytest.fixture
def public(monkeypatch, tmp_path):
    """A public server whose runs folder (where a local user's saves go) is watched: nothing may land there."""
    runs = tmp_path / "shared-runs"
    runs.mkdir()
    monkeypatch.setenv("VAE_EXPLORER_PUBLIC", "1")
    monkeypatch.setenv("VAE_EXPLORER_RUNS_DIR", str(runs))
    monkeypatch.setenv("VAE_EXPLORER_MAX_EPOCHS", "5")
    before = st.get_option("client.showErrorDetails")
    yield SimpleNamespace(runs=runs)
    st.set_option("client.showErrorDetails", before)      # the option is process-wide: leave it as found


def sidebar_message(at) -> str:
    return " ".join(e.value for e in at.sidebar.error)


# Everything a visitor might type to reach the server's disk: existing and missing files and folders,
# home, parents, a real model folder, the shipped checkpoints by path, URLs and other spellings.
LOCAL_PATHS = ["/etc/passwd", "/etc", "/etc/no-such-file", "~", "~/.cache", "..", "../..", "./runs", ".",
               "/tmp", "/proc/self/environ", "file:///etc/passwd", "C:\\Windows\\win.ini", "\\\\server\\share",
               "mnist-mlp/../mnist-conv", str(ROOT), str(checkpoints_dir() / "mnist-mlp"), "/root/.cache/huggingface"]


def test_a_visitor_who_tries_every_local_path_reaches_nothing_and_learns_nothing(public, tmp_path):
    folder = vae_core.save_pretrained(vae_core.build_model({"model_type": "mlp", "in_shape": [1, 8, 8],
                                                            "hidden_dims": [8], "latent_dim": 2}), tmp_path / "model")
    at = open_app("sample")
    assert at.sidebar.radio(key="model_kind").options == ["Shipped", "Hub"]           # no Folder source
    at.sidebar.radio(key="model_kind").set_value("Hub").run()
    messages = {}
    for path in LOCAL_PATHS + [str(folder), str(folder / "config.json")]:
        at.sidebar.text_input(key="model_hub").set_value(path).run()
        assert not at.exception, path
        assert at.session_state["_ctx"].model is None, f"{path} opened a model"
        messages[path] = sidebar_message(at)
    for path, msg in messages.items():
        assert "is not a model this server can open" in msg, (path, msg)
        for hint in ("is a file", "No folder", "config.json", "exists", "No such", "Permission"):
            assert hint not in msg, (path, msg)
    # One message for all of them: whether a path exists, and what it holds, changes nothing.
    assert len(set(messages.values())) == 1, set(messages.values())
    # A revision is a name, never a path in the Hub cache.
    at.sidebar.text_input(key="model_hub").set_value("acme/tiny-vae").run()
    at.sidebar.text_input(key="model_revision").set_value("../../../../etc").run()
    assert "is not a revision" in sidebar_message(at)


def test_folder_paths_still_open_for_a_local_user(tmp_path):
    folder = vae_core.save_pretrained(vae_core.build_model({"model_type": "mlp", "in_shape": [1, 28, 28],
                                                            "hidden_dims": [8], "latent_dim": 2}), tmp_path / "model")
    at = open_app("sample")
    assert "Folder" in at.sidebar.radio(key="model_kind").options
    at.sidebar.radio(key="model_kind").set_value("Folder").run()
    at.sidebar.text_input(key="model_folder").set_value(str(folder)).run()
    assert_clean(at)
    assert at.session_state["_ctx"].model is not None


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """snapshot_download and model_info replaced: what they were asked (with which token), and what they hold."""
    import huggingface_hub
    from huggingface_hub import constants

    calls = SimpleNamespace(download=[], info=[])
    state = SimpleNamespace(files={"config.json": 100, "model.safetensors": 1000}, folder=tmp_path / "snap")
    state.folder.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def snapshot_download(repo_id, revision=None, allow_patterns=None, token=None, **kw):
        calls.download.append({"repo": repo_id, "patterns": list(allow_patterns or []), "token": token})
        return str(state.folder)

    def model_info(self, repo_id, revision=None, files_metadata=False, token=None, **kw):
        calls.info.append({"repo": repo_id, "token": token})
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=n, size=s) for n, s in state.files.items()])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    return SimpleNamespace(calls=calls, state=state)


def test_hub_loads_in_public_mode_never_send_the_servers_token(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_server_owner_token")
    with pytest.raises(vae_core.VAEError):
        vae_core.open_model("someone/model", policy=Settings(public=True).load_policy)   # the fake repo is empty
    assert fake_hub.calls.download and fake_hub.calls.info
    assert all(c["token"] is False for c in fake_hub.calls.download + fake_hub.calls.info)   # False: send none
    fake_hub.calls.download.clear()
    with pytest.raises(vae_core.VAEError):
        vae_core.open_model("someone/model")                         # a local user: huggingface_hub finds theirs
    assert all(c["token"] is None for c in fake_hub.calls.download)


def test_only_config_card_and_safetensors_are_fetched_and_pickles_are_refused_before_download(fake_hub):
    hub.download_repo("someone/model")
    fetched = fake_hub.calls.download[-1]["patterns"]
    assert set(fetched) == {"config.json", "model.safetensors", "README.md", "training_config.json", "checksums.json",
                            "prior_config.json", "prior.safetensors"}      # a VQ-VAE's code prior: JSON + safetensors
    # A repo whose weights are only pickles: refused by name from the Hub's file list; no weights fetched.
    (fake_hub.state.folder / "config.json").write_text(json.dumps({"model_type": "mlp"}))
    fake_hub.state.files = {"config.json": 100, "pytorch_model.bin": 10 ** 6, "README.md": 10}
    fake_hub.calls.download.clear()
    with pytest.raises(vae_core.VAEError, match=r"only pickled weights \(pytorch_model.bin\).*never downloaded"):
        hub.fetch_model_repo("someone/pickled")
    assert all(not any(p.endswith((".bin", ".pt", ".pkl", ".ckpt", ".pth")) or p == "model.safetensors"
                       for p in c["patterns"]) for c in fake_hub.calls.download)
    assert len(fake_hub.calls.download) == 1                        # the metadata only


def test_a_repo_larger_than_the_download_budget_is_refused_before_download(fake_hub):
    fake_hub.state.files = {"config.json": 100, "model.safetensors": 300 * 2 ** 20, "big.bin": 9 * 2 ** 30}
    policy = LoadPolicy(max_download_bytes=200 * 2 ** 20)
    with pytest.raises(vae_core.VAEError, match="0.3 GiB of files to fetch.*at most 0.2 GiB"):
        hub.download_repo("someone/big", policy=policy)
    assert not fake_hub.calls.download


def _cached_repo(cache: Path, repo: str, size: int, accessed: float) -> None:
    """One model repo in a Hub cache laid out as huggingface_hub writes it, last read at ``accessed``."""
    import os

    d = cache / f"models--{repo.replace('/', '--')}"
    commit = f"{abs(hash(repo)):040x}"[:40]
    (d / "blobs").mkdir(parents=True)
    (d / "snapshots" / commit).mkdir(parents=True)
    (d / "refs").mkdir()
    (d / "refs" / "main").write_text(commit)
    blob = d / "blobs" / f"{abs(hash(repo + 'w')):064x}"[:64]
    blob.write_bytes(b"\0" * size)
    os.utime(blob, (accessed, accessed))
    os.symlink(os.path.relpath(blob, d / "snapshots" / commit), d / "snapshots" / commit / "model.safetensors")


def test_the_hub_cache_is_kept_within_its_budget_least_recently_used_first(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    for i, repo in enumerate(["a/oldest", "b/middle", "c/newest"]):
        _cached_repo(cache, repo, 100_000, accessed=1_000_000 + i * 1000)
    removed = hub.trim_cache(250_000, keep="c/newest", incoming=50_000)
    assert removed == ["a/oldest"]
    assert not (cache / "models--a--oldest").exists() and (cache / "models--b--middle").exists()
    with pytest.raises(vae_core.VAEError, match="more than this server's whole model cache"):
        hub.trim_cache(250_000, keep="d/huge", incoming=300_000)


def test_public_mode_turns_streamlits_error_details_off(public):
    at = open_app("sample")
    assert_clean(at)
    assert st.get_option("client.showErrorDetails") == "none"


# ---------------------------------------------------------------------------------------------
# Runs belong to their session


def train_once(at):
    at.selectbox(key="train_dataset").set_value("digits")
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_latent").set_value(2)
    at.button(key="train_start").click().run()
    job = at.session_state["train_job"]
    job.join(120)
    assert not job.is_alive()
    at.run()
    return job


def test_two_visitors_runs_stay_private_and_leave_as_zips_that_load(public, tmp_path, monkeypatch):
    from explorer import session

    # AppTest gives every app the same session id; a real server gives each browser tab its own.
    current = {"id": "first"}
    monkeypatch.setattr(session, "session_id", lambda: current["id"])
    first = open_app("train")
    train_once(first)
    current["id"] = "second"
    second = open_app("train")
    train_once(second)
    current["id"] = "first"
    kept = [at.session_state["train_private"] for at in (first, second)]
    folders = [k[2] for k in kept]
    assert folders[0] != folders[1] and folders[0].parent != folders[1].parent      # a folder per session
    for folder in folders:
        assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700                  # this server's user only
        assert stat.S_IMODE(folder.parent.parent.stat().st_mode) == 0o700
        assert (folder / "model.safetensors").is_file()
    assert not any(public.runs.iterdir())                        # nothing in the shared runs folder
    for at in (first, second):
        assert_clean(at)
        assert "train_save" not in [b.key for b in at.button]      # no "save as run folder": a download instead
        assert at.get("download_button")
    # The zip is the run folder, ready for load_model once unzipped.
    for (job, name, folder, archive), out in zip(kept, (tmp_path / "a", tmp_path / "b")):
        zipfile.ZipFile(io.BytesIO(archive)).extractall(out)
        loaded = vae_core.load_model(out / name, device="cpu")
        for (k, v), (k2, v2) in zip(sorted(loaded.state_dict().items()), sorted(job.model.state_dict().items())):
            assert k == k2 and torch.equal(v, v2.cpu())
    # One visitor cannot open the other's run: no path reaches the server's disk.
    first.sidebar.radio(key="model_kind").set_value("Hub").run()
    first.sidebar.text_input(key="model_hub").set_value(str(folders[1])).run()
    assert first.session_state["_ctx"].model is None
    assert "is not a model this server can open" in sidebar_message(first)


def test_public_push_needs_a_typed_token_even_with_hf_token_on_the_server(public, monkeypatch):
    import huggingface_hub

    made = []
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: made.append(token))
    monkeypatch.setenv("HF_TOKEN", "hf_server_owner_token")
    at = open_app("train")
    train_once(at)
    at.text_input(key="train_repo").input("me/tiny-vae").run()
    at.button(key="train_push").click().run()
    assert any("token" in e for e in errors(at))
    assert made == []                                            # nothing was pushed, with any token


def test_a_sessions_private_folder_is_removed_once_the_session_has_gone():
    here = {"a", "b"}
    runs = PrivateRuns(timeout=0.2, alive=lambda s: s in here, sweep_every=0.05)
    a, b = runs.folder("a"), runs.folder("b")
    (b / "model.safetensors").write_bytes(b"x")
    assert stat.S_IMODE(runs.root.stat().st_mode) == 0o700
    here.discard("b")                                            # b closed its tab
    wait_for(lambda: not b.exists(), 10, "the gone session's folder to be removed")
    assert a.is_dir() and runs.sessions() == ["a"]
    here.clear()
    wait_for(lambda: not a.exists(), 10, "the last folder to be removed")
    wait_for(lambda: not runs.sweeping, 10, "the sweeper to end once no folder is left")


def test_hostile_hub_repos_get_the_loaders_one_line_message_in_the_app(public, tmp_path, monkeypatch):
    """The configs that used to reach the page as RecursionError, ValueError and TypeError tracebacks."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    configs = {"evil/deep": "[" * 100_000 + "]" * 100_000,
               "evil/digits": '{"model_type": "mlp", "latent_dim": ' + "9" * 5000 + "}",
               "evil/types": json.dumps({"model_type": ["mlp"]}),
               "evil/huge": json.dumps({"model_type": "mlp", "in_shape": [3, 1024, 1024], "hidden_dims": [1]})}
    for repo, text in configs.items():
        d = cache / f"models--{repo.replace('/', '--')}"
        snap = d / "snapshots" / ("c" * 40)
        snap.mkdir(parents=True)
        (snap / "config.json").write_text(text)
        (d / "refs").mkdir()
        (d / "refs" / "main").write_text("c" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = open_app("sample")
    at.sidebar.radio(key="model_kind").set_value("Hub").run()
    for repo, match in (("evil/deep", "nested too deeply"), ("evil/digits", "not valid JSON"),
                        ("evil/types", "Unknown model type"), ("evil/huge", "makes 3x1024x1024 images")):
        at.sidebar.text_input(key="model_hub").set_value(repo).run()
        assert not at.exception, repo
        msg = sidebar_message(at)
        assert match in msg and "\n" not in msg and "Traceback" not in msg, (repo, msg)
        assert str(cache) not in msg and str(tmp_path) not in msg, msg           # the repo is named, not the disk


def test_hub_in_a_link_answers_the_same_whether_or_not_a_server_folder_has_that_name(public, monkeypatch):
    """Public mode's loader never looks at the file system for a Hub id, so the link must not either:
    'checkpoints/mnist-mlp' (a folder of the server) and 'explorer/x' (inside one) read like any other id."""
    from explorer import links
    from explorer.page_settings import SIDEBAR

    monkeypatch.chdir(ROOT)
    answers = []
    for raw in ("checkpoints/mnist-mlp", "explorer/x", "nosuch-org/nosuch-model"):
        state: dict = {}
        problems = links.restore(SIDEBAR, query={"hub": raw}, state=state)
        answers.append((problems, state.get("model_kind")))
    assert answers == [([], "Hub")] * 3


def test_a_full_disk_in_public_mode_names_no_server_path(public, monkeypatch):
    """Saving a session's run when the disk is full: the message says so, without the private folder's path."""
    from vae_core.io import run_folder as checkpoint

    def full(folder, write):
        raise OSError(28, "No space left on device", str(folder / "model.safetensors"))

    monkeypatch.setattr(checkpoint, "atomic_folder", full)
    runs = PrivateRuns(60)
    model = vae_core.build_model({"model_type": "mlp", "in_shape": [1, 8, 8], "latent_dim": 2, "hidden_dims": [8]})
    with pytest.raises(vae_core.VAEError) as e:
        runs.save("s1", "run-1", lambda f: checkpoint.write_run_folder(f, model), 3, 2 ** 30)
    assert "No space left on device" in str(e.value)
    assert str(runs.root) not in str(e.value) and "/tmp" not in str(e.value)
    # and any other message a page shows in public mode (session.guard runs them through public_text)
    from explorer.limits import public_text
    shown = public_text(Settings(public=True), f"[Errno 28] No space left on device: '{runs.root}/session-x/a'")
    assert str(runs.root) not in shown and "No space left on device" in shown


def test_a_sessions_saved_runs_replace_beyond_the_count_and_stop_at_the_byte_budget(public):
    """Every run name saved another full copy (40 names filled 8 MB in 38 s): now the oldest is replaced."""
    runs = PrivateRuns(60)

    def write(folder: Path, size: int = 1000) -> Path:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x" * size)
        return folder

    for i in range(10):
        runs.save("s1", f"run-{i}", write, 3, 10_000)
    assert sorted(p.name for p in runs.folder("s1").iterdir()) == ["run-7", "run-8", "run-9"]
    with pytest.raises(vae_core.VAEError, match="VAE_EXPLORER_MAX_SESSION_DISK_MB"):
        runs.save("s1", "big", lambda f: write(f, 20_000), 3, 10_000)
    assert not (runs.folder("s1") / "big").exists()
    assert sorted(p.name for p in runs.folder("s1").iterdir()) == ["run-8", "run-9"]
