"""The package installs like any other: `pip install .`, then the library and its shipped checkpoints
work from any folder, and so does `python -m vae_core`."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pip_install_then_load_a_shipped_checkpoint_from_another_folder(tmp_path):
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):              # the checkout as a clone has it
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    # Installed with the running interpreter into a folder of its own, put first on the path: inside a virtual
    # environment or outside one, torch and the rest come from where the suite itself finds them (a venv made
    # from a venv's python with system_site_packages sees the base interpreter's packages, not the venv's).
    target = tmp_path / "installed"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                              str(src)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = ("import vae_core; m = vae_core.load_model('mnist-mlp'); "
             "print(vae_core.__file__); print(vae_core.shipped_checkpoints()); print(tuple(m.latent_shape))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    where, names, shape = out.stdout.strip().splitlines()
    assert Path(where).is_relative_to(target)                           # the installed copy, not the checkout
    assert "mnist-mlp" in names and "dsprites-beta4" in names and shape == "(20,)"
    cli = subprocess.run([sys.executable, "-m", "vae_core", "--help"], cwd=elsewhere, env=env, capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 0 and "train" in cli.stdout and "evaluate" in cli.stdout
