"""The package installs like any other: `pip install .`, then the library and its shipped checkpoints
work from any folder, and so does `python -m vae_core`."""
import shutil
import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pip_install_then_load_a_shipped_checkpoint_from_another_folder(tmp_path):
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):              # the checkout as a clone has it
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)     # torch and the rest come from here
    python = env_dir / "bin" / "python"
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(src)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = ("import vae_core; m = vae_core.load_model('mnist-mlp'); "
             "print(vae_core.__file__); print(vae_core.shipped_checkpoints()); print(tuple(m.latent_shape))")
    out = subprocess.run([python, "-c", probe], cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    where, names, shape = out.stdout.strip().splitlines()
    assert Path(where).is_relative_to(env_dir)                          # the installed copy, not the checkout
    assert "mnist-mlp" in names and "dsprites-beta4" in names and shape == "(20,)"
    cli = subprocess.run([python, "-m", "vae_core", "--help"], cwd=elsewhere, capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0 and "train" in cli.stdout and "evaluate" in cli.stdout
