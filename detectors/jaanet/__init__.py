"""JAA-Net (Shao et al., ECCV 2018), re-implemented: joint AU detection and face alignment with adaptive attention.

`landmarks` (68→49 mapping, flips, predefined attention maps), `model` (the network), `losses` (pure loss
functions), `config` (the typed config, presets, lr schedule), `train` (the training loop), `detector` (the
Detector that scores frames).
"""
