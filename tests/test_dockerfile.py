"""The Dockerfile for the Hugging Face Space: its invariants, and (slow) its install and start steps.

CI cannot run Docker, so the slow test replays the Dockerfile's own RUN steps as the app user
would: in a fresh virtual environment (no system site-packages), on a copy of the build
context filtered by .dockerignore, then starts the CMD's server on a free port and waits for
Streamlit's health endpoint.
"""
import fnmatch
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.waiting import wait_for
import yaml

ROOT = Path(__file__).resolve().parent.parent
PORT = 7860
HOME = "/home/user"
CPU_INDEX = re.compile(r"\s--(extra-)?index-url\s+https://download\.pytorch\.org/whl/cpu\b")


def instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue                                   # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        full = (buf + line).strip()
        buf = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def env_of(instrs) -> dict[str, str]:
    env = {}
    for word, rest in instrs:
        if word == "ENV":
            for item in shlex.split(rest):
                k, _, v = item.partition("=")
                env[k] = v
    return env


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    """.dockerignore matching, enough for our patterns: a path is out if it or a parent folder matches."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pat in patterns:
        pat = pat.rstrip("/")
        for p in prefixes:
            if fnmatch.fnmatch(p, pat) or (pat.startswith("**/") and fnmatch.fnmatch(p.split("/")[-1], pat[3:])):
                return True
    return False


# ---------------------------------------------------------------------------------------------
# Fast: what the Dockerfile promises


def test_dockerfile_invariants():
    ins = instructions()
    words = [w for w, _ in ins]
    assert ins[0] == ("FROM", "python:3.11-slim")
    # a user with uid 1000 and HOME set, and everything after the user switch runs as it
    useradd = next(rest for w, rest in ins if w == "RUN" and "useradd" in rest)
    assert re.search(r"(--uid|-u) 1000\b", useradd) and "--create-home" in useradd
    users = [rest for w, rest in ins if w == "USER"]
    assert users and users[-1] in ("user", "1000") and words.index("USER") < words.index("CMD")
    assert all(words.index("USER") < i for i, (w, rest) in enumerate(ins) if w == "RUN" and "pip" in rest)
    env = env_of(ins)
    assert env["HOME"] == HOME and env["NUMBA_CACHE_DIR"].startswith(HOME) and env["HF_HOME"].startswith(HOME)
    # settings that make uploads work inside the Space's iframe
    assert env["STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION"] == "false"
    assert env["STREAMLIT_SERVER_ENABLE_CORS"] == "false"
    assert env["STREAMLIT_SERVER_HEADLESS"] == "true"
    # the Space is public: anonymous visitors, so public mode is on (explorer.limits reads it)
    assert env["VAE_EXPLORER_PUBLIC"] == "1"
    from explorer.limits import Settings
    assert Settings.from_env(env).public
    # CPU torch at requirements.txt's pin, then the pins and the extras
    runs = [rest for w, rest in ins if w == "RUN"]
    torch_step = next(r for r in runs if "torch" in r)
    assert CPU_INDEX.search(torch_step) and "requirements.txt" in torch_step
    assert any("-r requirements.txt" in r and "-r requirements-extras.txt" in r for r in runs)
    assert "torch==" in (ROOT / "requirements.txt").read_text()
    # caches warmed at build, with the project's own warm-up
    assert any("docker/warm_caches.py" in r for r in runs)
    assert "from vae_core.latent.projections import warm_up" in (ROOT / "docker" / "warm_caches.py").read_text()
    assert runs.index(next(r for r in runs if "warm_caches" in r)) > runs.index(torch_step)
    # served on 7860 from every interface
    assert ("EXPOSE", str(PORT)) in ins
    cmd = json.loads(next(rest for w, rest in ins if w == "CMD"))
    assert cmd[:3] == ["streamlit", "run", "app.py"]
    assert cmd[cmd.index("--server.port") + 1] == str(PORT) and cmd[cmd.index("--server.address") + 1] == "0.0.0.0"


def test_no_secrets_in_the_image_definition():
    text = (ROOT / "Dockerfile").read_text()
    ins = instructions()
    names = list(env_of(ins)) + [rest.split("=")[0] for w, rest in ins if w == "ARG"]
    assert not [n for n in names if re.search(r"TOKEN|SECRET|PASSWORD|API_KEY|CREDENTIAL", n, re.I)]
    assert not re.search(r"hf_[A-Za-z0-9]{20,}", text)
    assert "login" not in text and "HF_TOKEN" not in text


def test_build_context_keeps_what_the_app_needs():
    pats = dockerignore()
    for needed in ("app.py", "explorer/sidebar.py", "explorer/pages/sample.py", "vae_core/io/hub.py",
                   "vae_core/data/registry.py", "checkpoints/mnist-mlp/model.safetensors",
                   "docker/warm_caches.py", "requirements.txt", "requirements-extras.txt", ".streamlit/config.toml"):
        assert not ignored(needed, pats), needed
    for dropped in (".git/config", "vae_core/__pycache__/hub.cpython-311.pyc", "runs/x/model.safetensors"):
        assert ignored(dropped, pats), dropped
    for word, rest in instructions():
        if word == "COPY" and not rest.endswith(". ."):
            for f in rest.split()[1:-1]:
                assert (ROOT / f).is_file(), f


def test_space_front_matter():
    text = (ROOT / "README.md").read_text()          # a Space reads its settings from README.md's front matter
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["sdk"] == "docker" and meta["app_port"] == PORT
    assert {"title", "emoji", "colorFrom", "colorTo", "pinned"} <= set(meta)
    colours = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert meta["colorFrom"] in colours and meta["colorTo"] in colours
    assert len(meta.get("short_description", "")) <= 60


# ---------------------------------------------------------------------------------------------
# Slow: replay the install and start steps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_context(dest: Path) -> None:
    pats = dockerignore()

    def ignore(folder, names):
        rel = Path(folder).relative_to(ROOT)
        return [n for n in names if ignored(str(rel / n) if str(rel) != "." else n, pats)]

    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)


@pytest.mark.slow
@pytest.mark.network            # pip needs the package index
@pytest.mark.timeout(1800)
def test_install_and_start_in_a_fresh_venv(tmp_path, request):
    ins = instructions()
    home = tmp_path / "home"
    home.mkdir()
    request.addfinalizer(lambda: shutil.rmtree(home / "venv", ignore_errors=True))   # ~2 GB
    app = tmp_path / "app"
    _copy_context(app)

    def local(s: str) -> str:
        return s.replace(HOME + "/app", str(app)).replace(HOME, str(home))

    env = {k: local(v).replace("$PATH", os.environ["PATH"]) for k, v in env_of(ins).items()}
    env = {**os.environ, **env, "HOME": os.environ["HOME"],   # keep this machine's pip configuration
           "VAE_PREFETCH": "", "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    timings = {}
    user = False
    for word, rest in ins:
        if word == "USER":
            user = True
        if word != "RUN" or not user:
            continue                                           # root steps (useradd) are the image's, not ours
        cmd = local(CPU_INDEX.sub("", rest))                   # this machine installs torch from its own index
        if cmd.startswith("python -m venv"):
            cmd = cmd.replace("python -m venv", f"{shlex.quote(sys.executable)} -m venv", 1)
        t0 = time.perf_counter()
        r = subprocess.run(["bash", "-c", cmd], cwd=app, env=env, capture_output=True, text=True, timeout=1200)
        timings[cmd[:60]] = round(time.perf_counter() - t0, 1)
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    venv_python = home / "venv" / "bin" / "python"
    assert venv_python.is_file()
    probe = subprocess.run([str(venv_python), "-c", "import sys, torch; print(sys.prefix != sys.base_prefix, "
                            "torch.__version__)"], env=env, capture_output=True, text=True, timeout=120)
    assert probe.stdout.split()[0] == "True" and probe.stdout.split()[1].startswith("2.13.0"), probe
    assert any(Path(env["NUMBA_CACHE_DIR"]).rglob("*.nbi")), "the numba cache was not written"
    # the health endpoint answers before any script runs: run the app's first page once, in the venv
    t0 = time.perf_counter()
    script = ("from streamlit.testing.v1 import AppTest\n"
              "at = AppTest.from_file('app.py', default_timeout=120).run()\n"
              "assert not at.exception, [e.message for e in at.exception]\n")
    r = subprocess.run([str(venv_python), "-c", script], cwd=app, env=env, capture_output=True, text=True, timeout=300)
    timings["app first run"] = round(time.perf_counter() - t0, 1)
    assert r.returncode == 0, r.stderr[-3000:]

    cmd = json.loads(next(rest for w, rest in ins if w == "CMD"))
    port = _free_port()
    cmd[cmd.index("--server.port") + 1] = str(port)
    cmd[cmd.index("--server.address") + 1] = "127.0.0.1"
    t0 = time.perf_counter()
    server = subprocess.Popen(cmd + ["--server.headless", "true"], cwd=app, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    def healthy() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"the server exited with {server.poll()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                return resp.read().decode() == "ok"
        except OSError:
            return False

    try:
        wait_for(healthy, 120, "the server's health answer")
        timings["server start"] = round(time.perf_counter() - t0, 1)
    finally:
        server.terminate()
        try:
            out, _ = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
    print("timings (s):", timings)
    assert "Traceback" not in out, out[-3000:]
