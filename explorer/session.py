"""The per-session context every page works on, and the error guard around every page."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import Callable

import streamlit as st

import vae_core
from vae_core import ImageSet, ModelInfo, VAEBase, memory

from explorer.limits import public_text, settings
from explorer.usage import session_id
from explorer.text import literal

CONTEXT_KEY = "_ctx"
HEAVY_RUN_S = 0.3          # a page run longer than this did heavy work: its freed memory goes back (guard)


@dataclasses.dataclass
class Context:
    """The sidebar's choices, resolved: what every page works on."""

    model: VAEBase | None = None
    info: ModelInfo | None = None       # the model's identity: its key names it in every cache
    model_error: str = ""
    model_error_shown: bool = False     # the sidebar shows the error beside the model's picker
    data: ImageSet | None = None
    data_key: str = ""
    data_error: str = ""
    device: str = "cpu"

    @property
    def data_words(self) -> str:
        """The dataset and split in words, e.g. "mnist-5k (all splits)", for a number's caption."""
        name, _, rest = self.data_key.partition(":")
        split = rest.split(":")[0]
        return f"{name} ({'all splits' if split == 'all' else split + ' split'})" if split else name

    @property
    def model_key(self) -> str:
        """Names the model, on its device, in caches; never shared by other weights."""
        return f"{self.info.key}|{self.device}" if self.info is not None else ""

    def require_model(self) -> VAEBase:
        if self.model is None:
            if self.model_error_shown:              # said once, in red, beside the picker
                st.info(literal("No model is loaded: the sidebar says why. Choose a working model there."))
            else:
                st.info(f"{literal(self.model_error) or 'No model loaded.'} Choose a working model in the sidebar.")
            st.stop()
        return self.model

    def require_data(self) -> ImageSet:
        self.require_model()
        if self.data is None:
            st.error(self.data_error or "No dataset loaded; choose one in the sidebar.")
            st.stop()
        return self.data


def context() -> Context:
    """The sidebar's context for this run (app.py draws the sidebar before the page, explorer.sidebar)."""
    ctx = st.session_state.get(CONTEXT_KEY)
    if ctx is None:
        st.error("This page runs inside the app: start it with `streamlit run app.py`.")
        st.stop()
    return ctx


@contextlib.contextmanager
def guard(what: str = "This page"):
    """A VAEError is the user's to fix and says how; anything else is ours, shown in one line.

    A run that took more than HEAVY_RUN_S did heavy work (an analysis, an encoding): what it
    freed is given back to the operating system (vae_core.memory), so the server shrinks again."""

    t0 = time.perf_counter()
    try:
        yield
    except vae_core.VAEError as e:
        st.error(public_text(settings(), str(e)))                # public mode: no path of the server
        st.stop()
    except Exception as e:   # streamlit's stop and rerun are BaseExceptions and pass through
        logging.getLogger(__name__).exception("%s failed unexpectedly (session %s)", what, session_id() or "-")
        first = public_text(settings(), str(e).splitlines()[0]) if str(e) else ""
        st.error(f"{what} hit an unexpected problem ({type(e).__name__}{': ' + first if first else ''}). "
                 "Try other settings or another model; the rest of the app keeps working.")
        st.stop()
    finally:
        if time.perf_counter() - t0 > HEAVY_RUN_S:
            memory.release()


def session_alive() -> Callable[[], bool] | None:
    """A function that says whether this browser session is still connected (None outside a server).

    A training run started here is tied to it: once the tab is closed for longer than the session
    time-out, the run stops itself and its thread ends (vae_core.training.live)."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    run_ctx = get_script_run_ctx()
    if not runtime.exists() or run_ctx is None:
        return None
    rt, sid = runtime.get_instance(), run_ctx.session_id
    return lambda: rt.is_active_session(sid) is True      # (AppTest's stand-in runtime answers a Mock)
