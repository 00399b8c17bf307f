"""Files: atomic writes, weights checks, the run folder and its model card, model sources, loading, the Hub, convert.

Importing the package loads nothing; import the module you need (``from vae_core.io.loading import load_model``).
"""
