"""Autoencoders whose latent space the diffusion model can work in (docs/architecture.md)."""
