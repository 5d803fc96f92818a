"""mjexp: text-to-image diffusion experiments."""
