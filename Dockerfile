# VAE Latent Explorer as a Hugging Face Docker Space (README.md's front matter: sdk: docker, app_port: 7860).
# Anywhere else: docker build -t vae-explorer . && docker run -p 7860:7860 vae-explorer
FROM python:3.11-slim

# Spaces run the container as user 1000. Build as that user too, so every cache written below
# (venv, numba, Hugging Face) belongs to the user that runs the app and stays writable.
RUN useradd --create-home --uid 1000 user
USER user
ENV HOME=/home/user \
    PATH=/home/user/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/home/user/.cache/huggingface \
    NUMBA_CACHE_DIR=/home/user/.cache/numba \
    MPLCONFIGDIR=/home/user/.cache/matplotlib \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION=false \
    STREAMLIT_SERVER_ENABLE_CORS=false \
    STREAMLIT_RUNNER_FAST_RERUNS=false \
    VAE_EXPLORER_TORCH_THREADS=1 \
    VAE_EXPLORER_PROXY_HOPS=1 \
    VAE_EXPLORER_PUBLIC=1
# VAE_EXPLORER_PUBLIC=1: every visitor is an anonymous stranger. Models only from the shipped checkpoints
# and Hub ids, no file of this container and no token of its owner reachable, runs private to their
# session (a zip download, or a push with the visitor's own token), no error details (README: What the app promises).
# VAE_EXPLORER_PROXY_HOPS=1: the Space's proxy appends the visitor's address to X-Forwarded-For, so one
# browser's tabs count as one visitor for the training slots.
# The two STREAMLIT_SERVER_ENABLE_* settings: a Space shows the app inside an iframe on huggingface.co,
# where browsers drop the app's _xsrf cookie as a third-party cookie, so every upload would get a 403.
WORKDIR /home/user/app

RUN python -m venv /home/user/venv
COPY --chown=user requirements.txt requirements-extras.txt ./
# torch first, from PyTorch's CPU-only index at the version requirements.txt pins: PyPI's Linux
# wheel would pull about 3 GB of CUDA libraries that a CPU Space never uses.
RUN pip install "$(grep -E '^torch==' requirements.txt)" --index-url https://download.pytorch.org/whl/cpu
RUN pip install -r requirements.txt -r requirements-extras.txt

COPY --chown=user . .
# Hub VAEs to download at build time (space-separated repo ids); pass --build-arg VAE_PREFETCH= for none.
ARG VAE_PREFETCH="madebyollin/taesd"
RUN PYTHONPATH=. python docker/warm_caches.py

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import sys, urllib.request as u; sys.exit(u.urlopen('http://localhost:7860/_stcore/health', timeout=4).read() != b'ok')"
CMD ["streamlit", "run", "app.py", "--server.port", "7860", "--server.address", "0.0.0.0"]
