"""Evaluation: held-out metrics, image quality, disentanglement, anomaly scores, experiments, the Analyze figures.

Importing the package loads nothing; import the module you need (``from vae_core.evaluation import metrics``).
"""
