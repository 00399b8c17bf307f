"""Publishing a model folder to the Hugging Face Hub: it must load first, and the token is used for the upload only.

Fetching is ``vae_core.io.hub``; this module sits above loading (it opens the folder before it uploads it), so
the two never import each other.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import VAEError
from .hub import REPO_ID
from .loading import load_model
from .run_folder import MANIFEST, MODEL_FILES, PRIOR_FILES, RESUME_FILES, TRAINING_FILES

# The files a push uploads (a VQ-VAE's code prior with it); a run's optimizer and trainer state only when asked.
PUSH_FILES = MODEL_FILES + PRIOR_FILES + TRAINING_FILES + (MANIFEST,)


def push_to_hub(folder: str | Path, repo_id: str, token: str | None, *, private: bool = False,
                with_optimizer: bool = False, message: str = "Upload VAE with vae_core") -> str:
    """Upload a model folder (its config, weights, card and sample grid) to a Hub model repo; returns the commit URL.

    The folder must load first, so nothing broken is published. ``token`` is used for this
    upload only: it is never printed, logged, written to disk or cached (no ``huggingface_hub.login``).
    """
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf_errors

    folder = Path(folder)
    m = REPO_ID.match(repo_id or "")
    if not m or repo_id.startswith("hub:") or m.group(4):
        raise VAEError(f"{repo_id!r} is not a Hub repo id to push to; write it as org/name.")
    if not token:
        raise VAEError("Pushing needs a Hugging Face token with write access.")
    load_model(folder, device="cpu")             # refuse to publish something that does not load
    files = [f for f in PUSH_FILES if (folder / f).is_file()]
    if with_optimizer:
        missing = [f for f in RESUME_FILES if not (folder / f).is_file()]
        if missing:
            raise VAEError(f"{folder} has no {', '.join(missing)}; only a training run folder can be pushed "
                           "with its optimizer state.")
        files += list(RESUME_FILES)

    def scrub(text: str) -> str:                 # an error message must never carry the token
        return text.replace(token, "***")

    try:
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=files,
                                 commit_message=message)
    except hf_errors.HfHubHTTPError as e:
        raise VAEError(scrub(f"The Hub refused the upload to {repo_id}: {str(e).splitlines()[0]}")) from None
    except OSError as e:
        raise VAEError(f"Could not reach the Hub to push {repo_id} ({type(e).__name__}); check the network.") from None
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}")


__all__ = ["PUSH_FILES", "push_to_hub"]
