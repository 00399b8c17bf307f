import os

import pytest
import torch

# Tests never touch the network: Hub code is exercised against local caches only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))



@pytest.fixture(scope="session")
def digits_train():
    from vae_core import load_dataset
    return load_dataset("digits", "train")


@pytest.fixture
def tiny_run_config():
    """A run that takes well under a second: an MLP on 8x8 digits, evaluated and saved at every epoch."""
    from vae_core import RunConfig, TrainConfig
    from vae_core.models import MLPConfig
    return RunConfig(MLPConfig(in_shape=(1, 8, 8), hidden_dims=(32,), latent_dim=4),
                     TrainConfig(dataset="digits", epochs=2, batch_size=64, sample_every=1, checkpoint_seconds=0))
