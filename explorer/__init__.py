"""The explorer app: Streamlit pages over vae_core. vae_core never imports this package.

- ``pages/``    one thin script a page: read widgets, call vae_core, draw
- ``session``   the per-session context (model, dataset, device) and every page's error guard
- ``loaders``   cached model and dataset loaders, shared read-only by every session
- ``jobs``      background work (slow maps): per-session queues, superseded requests cancelled, fair turns
- ``sidebar``   the model, dataset and device pickers
- ``widgets``   image grids, the class picker, image input (dataset, upload, drawing), plot selections
- ``startup``   everything that tunes the server's start (preload, heap freeze, warm-up), with one off-switch
- ``limits``    the server's configured limits, read from the environment and validated

Importing this package is light: the heavy imports (torch, vae_core) happen in its modules.
"""
