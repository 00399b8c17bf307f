"""Train: a run in the background, watched live; then explore, save (or download) or push it."""
import time
from pathlib import Path

import streamlit as st

import vae_core
from explorer import controls, figures, jobs, loaders, motion, session, sidebar, widgets
from explorer.page_settings import TRAIN as PAGE, TRAIN_FAMILIES as FAMILIES
from explorer.limits import Settings
from explorer.usage import visitor
from explorer.private_runs import private_runs
from vae_core import ModelInfo, VAEError, models
from vae_core.io.files import zip_folder
from vae_core.io.push import push_to_hub
from vae_core.training.live import TrainingJob
from vae_core.io.run_folder import RunConfig
from vae_core.training.trackers import Tracking, parse_tracks

st.title("Train")
SNAPSHOT_IMAGES = 1000      # training images whose codes every run here keeps each epoch (Training in motion)
REFRESH_SECONDS = 1.0       # the live view's held-out ELBO and samples: after an epoch, at most every second


def run_config(dataset: str, family: str, latent: int, beta: float, anneal: str, epochs: int, lr: float):
    data = loaders.load_data(dataset, "train")
    cfg_cls = vae_core.MODEL_TYPES[family][0]
    fields = {"in_shape": data.shape, "latent_dim": latent}
    if family == "cvae":
        fields["num_classes"] = data.num_classes
    model_cfg = cfg_cls(**fields)
    model_cfg.validate()
    models.check_param_budget(model_cfg)
    train_cfg = vae_core.TrainConfig(dataset=dataset, epochs=epochs, beta=beta, kl_anneal=anneal, lr=lr,
                                     batch_size=min(128, len(data)), snapshots=min(SNAPSHOT_IMAGES, len(data)),
                                     checkpoint_seconds=REFRESH_SECONDS)
    train_cfg.validate()
    return RunConfig(model_cfg, train_cfg), data


def show_progress(job: TrainingJob) -> None:
    s = job.snapshot()
    eta = f", about {s.eta:.0f} s left" if s.eta is not None and not s.done else ""
    if s.done:              # the run's own average, never its last steps' pace
        pace = (f"{s.images:,} images in {s.wall:.0f} s: {s.average_images_per_s:,.0f} images/s on average"
                if s.images else "no training step")
    else:
        pace = f"{s.images_per_s:,.0f} images/s now, {s.average_images_per_s:,.0f} on average"
    st.progress(s.progress, text=f"{s.status}: step {s.step:,}/{s.total_steps:,}, epoch {s.epoch}/{s.epochs}{eta}"
                                 f" ({pace})")
    for line in job.tracking.problems if job.tracking else ():
        st.warning(line)
    if s.error:
        st.error(s.error)
    elif s.message:
        st.caption(s.message)
    left, right = st.columns([3, 2])
    if s.history:
        left.plotly_chart(figures.loss_figure(s.history), key="train_losses")
    if s.evals:
        e = s.evals[-1]
        left.caption(f"held-out after epoch {e['epoch']} ({e['n_images']:,} test images, one posterior sample "
                     f"each): ELBO {e.get('elbo', float('nan')):.2f} nats, KL {e.get('kl', float('nan')):.2f} nats "
                     "per image" +
                     (f", active units {e['active_units']}/{e['latent_units']}" if "active_units" in e else ""))
    if s.samples is not None:
        with right:
            widgets.show_grid(s.samples[:16], nrow=4, span=0.4, caption=f"samples after epoch {s.samples_epoch} (fixed noise)")
    if s.motion is not None and len(s.motion.epochs) < 2 and s.done:
        st.caption("Training in motion needs the codes after at least one finished epoch; this run ended before "
                   "its first epoch did.")
    elif s.motion is not None and len(s.motion.epochs) >= 2:
        st.subheader("Training in motion")
        motion.show(s.motion, job.data, key="train_motion", height=460)


def keep(job: TrainingJob) -> None:
    """The run has left the page (explored, saved, downloaded or pushed): a new run may replace it unasked."""
    st.session_state["train_kept"] = job


def unsaved(job: TrainingJob | None) -> bool:
    """A finished run that would be lost if a new one replaced it."""
    return (job is not None and not job.is_alive() and job.model is not None and job.snapshot().status != "failed"
            and st.session_state.get("train_kept") is not job)


def confirm_replace(start_now: bool) -> None:
    """on_click of the question before a new run replaces an unsaved one: answer it."""
    st.session_state.pop("train_confirm", None)
    if start_now:
        st.session_state["train_start_now"] = True


def explore_model(job: TrainingJob) -> None:
    """on_click: make the finished run the current model (runs before the sidebar is drawn)."""
    keep(job)
    model = job.model
    for p in model.parameters():
        p.requires_grad_(False)
    snap = job.snapshot()
    metrics = {k: snap.evals[-1][k] for k in ("elbo", "recon", "kl", "active_units")
               if snap.evals and k in snap.evals[-1]}
    info = ModelInfo.for_session(f"{job.config.model.model_type} trained here", job.config.train.dataset, metrics)
    st.session_state["trained_model"] = (model, info)
    st.session_state[motion.TRAINED_MOTION] = (info.key, snap.motion)
    st.session_state["model_kind"] = sidebar.SESSION_RUN


def private_save(job: TrainingJob, name: str, limits: Settings) -> tuple[str, bytes]:
    """Public mode: the run saved once into this session's private folder, and its zip (kept for reruns)."""
    folder_name = limits.run_folder(name).name                     # the same rules for the name
    kept = st.session_state.get("train_private")
    if kept is None or kept[0] is not job or kept[1] != folder_name or not kept[2].is_dir():
        folder = private_runs(limits.session_timeout).save(session.session_id(), folder_name, job.save,
                                                           limits.max_session_runs, limits.max_session_disk_bytes)
        kept = (job, folder_name, folder, zip_folder(folder))
        st.session_state["train_private"] = kept
    return str(kept[2]), kept[3]


def live_progress(job, running: bool) -> None:
    """The run's losses and samples, redrawn every second while it runs."""
    @st.fragment(run_every=1.0 if running else None)
    def live():
        job.touch()
        show_progress(job)
        if running and not job.is_alive():
            st.rerun()             # finished: redraw the whole page, with the buttons for what comes next

    live()


def what_next(job, limits) -> None:
    """Once the run has ended well: explore it, save it, download it or push it to the Hub."""
    if job.is_alive() or job.model is None or job.snapshot().status == "failed":
        return
    st.subheader("What next")
    d1, d2, d3 = st.columns(3)
    d1.button("Explore it", key="train_explore", on_click=explore_model, args=(job,),
              help="Make this run the current model of every page (sidebar: This session's run).")
    name = d2.text_input("Run folder name", value=f"run-{time.strftime('%Y%m%d-%H%M%S')}", key="train_save_name")
    if limits.public:                      # the run stays private to this session: it leaves as a download
        saved, archive = private_save(job, name, limits)
        d2.download_button("Download the run (zip)", archive, file_name=f"{Path(saved).name}.zip",
                           mime="application/zip", key="train_download", on_click=keep, args=(job,),
                           help="The run folder, zipped: unzip it and open it with vae_core.load_model('NAME'). "
                                "This server deletes its copy when you close the tab.")
    elif d2.button("Save as run folder", key="train_save"):
        folder = job.save(limits.run_folder(name))
        keep(job)
        d2.success(f"Saved to {folder}; open it with Model source: Folder.")
        st.session_state["train_saved"] = str(folder)
    repo = d3.text_input("Hub repo id", key="train_repo", placeholder="org/name")
    token = d3.text_input("Hub token (write access)", type="password", key="train_token",
                          help="Used for this push only: never logged, kept or written anywhere. "
                               "This server's own token is never used.")
    if d3.button("Push to the Hub", key="train_push"):
        if not token:
            raise VAEError("Pushing needs your own Hugging Face token with write access: type it in the token "
                           "box (huggingface.co/settings/tokens).")
        saved = private_save(job, name, limits)[0] if limits.public else \
            st.session_state.get("train_saved") or str(job.save(limits.run_folder(name)))
        url = push_to_hub(Path(saved), repo.strip(), token)
        keep(job)
        d3.success(f"Pushed: {url}")


with session.guard("Training"):
    limits = Settings.from_env()
    job = st.session_state.get("train_job")
    running = job is not None and job.is_alive()
    c1, c2, c3, c4 = st.columns(4)
    ctx = session.context()
    dataset = controls.draw(PAGE, "train_dataset", ctx, c1, disabled=running)
    family = controls.draw(PAGE, "train_family", ctx, c2, format_func=FAMILIES.get, disabled=running)
    latent = controls.draw(PAGE, "train_latent", ctx, c3, disabled=running)
    epochs = controls.draw(PAGE, "train_epochs", ctx, c4, label=f"Epochs (at most {limits.max_epochs})",
                           disabled=running)
    c5, c6, c7, c8 = st.columns(4)
    beta = controls.draw(PAGE, "train_beta", ctx, c5, disabled=running)
    anneal = controls.draw(PAGE, "train_anneal", ctx, c6, disabled=running)
    lr = controls.draw(PAGE, "train_lr", ctx, c7, format_func=lambda v: f"{v:g}", disabled=running)
    c8.caption(f"Runs stop after {limits.max_seconds:g} s on this server.")
    track = "" if limits.public else st.text_input(     # public mode: no writing to the server's disk for strangers
        "Track the run in (optional)", key="train_track", disabled=running,
        placeholder="tensorboard:runs/tb, mlflow:sqlite:///runs/mlflow.db",
        help="TensorBoard directories and MLflow tracking URIs (a sqlite:/// file or a server's http:// address), "
             "comma-separated; the same sinks as `python -m vae_core train --track`.")

    b1, b2, _ = st.columns([1, 1, 4])
    start = b1.button("Start", key="train_start", type="primary", disabled=running)
    if start and unsaved(job):       # never throw a finished run away unasked
        st.session_state["train_confirm"] = True
        start = False
    if st.session_state.get("train_confirm") and unsaved(job):
        st.warning("The last run is not saved, downloaded, pushed or explored yet: a new run replaces it. Keep it "
                   "(then save it under What next), or discard it and start the new run.")
        w1, w2, _ = st.columns([1, 1, 2])
        w1.button("Keep the last run", key="train_keep_last", on_click=confirm_replace, args=(False,))
        w2.button("Discard it and start", key="train_discard", on_click=confirm_replace, args=(True,))
    if start or st.session_state.pop("train_start_now", False):
        limits.check_dataset(dataset)
        config, data = run_config(dataset, family, int(latent), float(beta), anneal, int(epochs), float(lr))
        job = TrainingJob(config, data, loaders.load_data(dataset, "test"), limits=limits.training,
                          slots=jobs.training_slots(limits.max_jobs, limits.max_jobs_per_session),
                          owner=visitor(limits), alive=session.session_alive(),    # one visitor's tabs together
                          watched=True, tracking=Tracking(parse_tracks(track), run_name=f"app-{time.strftime('%Y%m%d-%H%M%S')}"),
                          ).start()     # ends with its session
        st.session_state["train_job"] = job
        running = True
    if b2.button("Stop", key="train_stop", disabled=not running):
        job.stop()

    if job is None:               # (no st.stop: the address bar still follows this page, app.py)
        st.info("Choose the settings and press Start: the run trains in the background while you use the app.")
    else:
        live_progress(job, running)
        what_next(job, limits)
