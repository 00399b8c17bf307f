"""`push`: upload a run folder to a Hub model repo (the token from an environment variable)."""
from __future__ import annotations

import os

from vae_core.cli.args import env_name, existing_folder, name, refuse
from vae_core.errors import VAEError
from vae_core.io.hub import REPO_ID
from vae_core.io.push import push_to_hub


def repo_id(text: str) -> str:
    """A Hub repo to push to: org/name, without a revision."""
    if not REPO_ID.fullmatch(text) or text.startswith("hub:") or "@" in text:
        raise refuse(text, "give a Hub repo id as org/name")
    return text


def add_parser(sub, parents=()) -> None:
    u = sub.add_parser("push", help="upload a run folder to a Hub model repo", parents=list(parents))
    u.add_argument("run_dir", type=existing_folder)
    u.add_argument("repo_id", type=repo_id, help="org/name")
    u.add_argument("--private", action="store_true")
    u.add_argument("--token-env", type=env_name, default="HF_TOKEN", help="environment variable that holds the token")
    u.add_argument("--with-optimizer", action="store_true", help="also upload the optimizer state for resuming")
    u.add_argument("--message", type=name, default="Upload VAE with vae_core")
    u.set_defaults(func=run)


def run(args) -> int:
    token = os.environ.get(args.token_env)
    if not token:
        raise VAEError(f"Set the {args.token_env} environment variable to a Hub token with write access.")
    url = push_to_hub(args.run_dir, args.repo_id, token, private=args.private, with_optimizer=args.with_optimizer,
                      message=args.message)
    print(f"pushed {args.run_dir} to {url}")
    return 0
