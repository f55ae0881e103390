"""GANimation (Pumarola et al., ECCV 2018) re-implemented beside LAC-GAN, as the peer it is compared with.

config.py (typed configs, presets), networks.py (generator with colour and attention heads, WGAN-GP critic with
an AU regression head), losses.py (pure loss terms and their per-phase composition), train.py (the loop),
infer.py (an Editor with LAC-GAN's interface). See docs/ganimation.md.
"""
