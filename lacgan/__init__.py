"""LAC-GAN: AU ROI maps, networks, losses, identity network, training loop and inference. Never imports prefect."""
