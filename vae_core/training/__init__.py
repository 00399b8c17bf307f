"""Training: the loop, the objectives, the optimiser, the code prior, live jobs for the app, snapshots.

Importing the package loads nothing; import the module you need (``from vae_core.training.loop import train``).
"""
