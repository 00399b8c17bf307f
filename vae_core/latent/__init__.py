"""Latent-space tools: walks, directions, 2-D projections and their inverses, big maps, augmentation, and the
inspectors of a hierarchy, a codebook, and class and style.

Importing the package loads nothing; import the module you need (``from vae_core.latent import explore``).
"""
