"""VAE Latent Explorer: `streamlit run app.py`.

The frame: page config, the shared sidebar (model, dataset, device) and the navigation over
the pages in app_pages/. Each page reads the sidebar's choices from ``explorer_ui.context()``.

This file is read twice. `streamlit run app.py` first imports it as a module and serves ``app``
(Streamlit's ASGI mode), whose lifespan starts importing torch and the explorer in the
background while the browser loads Streamlit's front end; then every script run executes it
as ``__main__``, which draws the frame.
"""
import streamlit as st

if __name__ == "__main__":
    import explorer_ui as ui

    st.set_page_config(page_title="VAE Latent Explorer", page_icon=":material/blur_on:", layout="wide")
    ui.configure_torch()

    nav = st.navigation([
        st.Page("app_pages/sample.py", title="Sample", icon=":material/grid_view:", default=True),
        st.Page("app_pages/traverse.py", title="Traverse", icon=":material/tune:"),
        st.Page("app_pages/interpolate.py", title="Interpolate", icon=":material/linear_scale:"),
        st.Page("app_pages/latent_map.py", title="Latent map", icon=":material/scatter_plot:"),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/analyze.py", title="Analyze", icon=":material/analytics:"),
    ])
    st.sidebar.title("VAE Latent Explorer")
    ui.sidebar()
    try:
        nav.run()
    finally:
        # UMAP's warm-up starts once the first page is drawn: its imports would otherwise hold the GIL
        # for seconds while that page is made (bench/startup.py).
        ui.warm_up_thread()
else:
    import contextlib
    import threading

    from explorer_heap import imports_then_freeze

    def preload() -> None:
        """Import torch and the explorer (0.8 s here) while the browser loads the front end, so the
        first page's run does not wait for them; a run that starts sooner waits on the import lock."""
        with imports_then_freeze():
            import explorer_ui  # noqa: F401

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        threading.Thread(target=preload, name="preload", daemon=True).start()
        yield

    app = st.App(__file__, lifespan=lifespan)
