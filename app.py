"""VAE Latent Explorer: `streamlit run app.py`.

The frame only: page config, the shared sidebar (model, dataset, device) and the navigation over
the pages in explorer/pages/. Each page reads the sidebar's choices from ``explorer.session.context()``.

This file is read twice. `streamlit run app.py` first imports it as a module and serves ``app``
(Streamlit's ASGI mode), whose lifespan starts the server's start-up work (explorer.startup);
then every script run executes it as ``__main__``, which draws the frame.
"""
import streamlit as st

from explorer import startup
from explorer.navigation import PAGES


if __name__ == "__main__":
    from explorer import controls, limits, links
    from explorer.page_settings import PAGES as SETTINGS
    from explorer.sidebar import sidebar
    from explorer.widgets import page_style

    with startup.one_run():         # one script run at a time per session, whatever the client sends
        st.set_page_config(page_title="VAE Latent Explorer", page_icon=":material/blur_on:", layout="wide")
        startup.configure_torch()
        page_style()
        limits.configure_streamlit(limits.settings())     # public mode: no error details in the browser
        nav = st.navigation([st.Page(f"explorer/pages/{name}.py", title=title, icon=icon, default=i == 0)
                             for i, (name, title, icon) in enumerate(PAGES)])
        st.sidebar.title("VAE Latent Explorer")
        page = nav.url_path or PAGES[0][0]                       # the default page's path is ""
        controls.remember(SETTINGS.values())                     # the last run's widget values: the pages' own state
        links.first_run_restore(page, "sidebar")                 # a link's model and dataset, before their pickers
        ctx = sidebar()
        links.first_run_restore(page, "page", ctx)               # the page's settings, checked against them
        controls.reseed(links.page(page), ctx)                   # what Streamlit forgot while another page ran
        left_out = links.copy_control(st.sidebar)
        try:
            nav.run()
        finally:                        # a page that stops early (st.stop) still has its view in the address bar
            links.show_left_out(left_out, links.publish(page, ctx))   # the address bar holds this view, or says what not
            startup.warm_up()           # after the first page is drawn, so its imports do not delay that page
else:
    app = st.App(__file__, lifespan=startup.lifespan)
