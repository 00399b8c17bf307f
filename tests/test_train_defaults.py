"""The Train tab's default run makes a good model: the threshold of bench/time_to_quality.py within its default
epochs (a bound on epochs, not on seconds, so a busy machine cannot fail it)."""
import vae_core
from explorer.page_settings import TRAIN
from vae_core import RunConfig, TrainConfig

THRESHOLD = -150.0          # bench.time_to_quality's default threshold, nats per image (the single-sample test ELBO)


def test_the_train_tabs_default_run_reaches_the_benchs_threshold():
    state = {}
    dataset = TRAIN["train_dataset"].resolve("default", None, state)
    family = TRAIN["train_family"].resolve("default", None, state)
    latent = TRAIN["train_latent"].resolve("default", None, state)
    epochs = TRAIN["train_epochs"].resolve("default", None, state)
    lr = TRAIN["train_lr"].resolve("default", None, state)
    assert (dataset, family, lr) == ("mnist-5k", "mlp", TrainConfig.lr)      # the page reads the library's default
    data = vae_core.load_dataset(dataset, "train")
    model_cfg = vae_core.MODEL_TYPES[family][0](in_shape=data.shape, latent_dim=latent)
    config = RunConfig(model_cfg, TrainConfig(dataset=dataset, epochs=epochs, lr=lr, batch_size=128))
    done = [ev for ev in vae_core.train(config, data=data) if ev.kind == "epoch" and ev.eval][-1]
    assert done.epoch == epochs and done.eval["elbo"] >= THRESHOLD, done.eval["elbo"]
