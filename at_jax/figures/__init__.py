"""Figures from trained runs: attention maps (the paper's Figures 4 and 6), training curves (Figure 7),
and weakly supervised segmentation from attention maps (Jetley et al. 2018, section 5.3).

- :mod:`~at_jax.figures.attention_maps`, :mod:`~at_jax.figures.curves`: PNGs with headless matplotlib.
- :mod:`~at_jax.figures.drift`: a run's attention maps over its training steps (``metrics.attention_every``).
- :mod:`~at_jax.figures.segmentation`: maps -> masks -> Jaccard index (pure jnp).
- :mod:`~at_jax.figures.segment_folder`: an image folder with masks, scored with a run's attention maps.

Runs are loaded by the entry points (``at_jax.visualize``, ``at_jax.segment``) and handed in.
"""
