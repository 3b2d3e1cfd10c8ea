//! The networks: the DiT-MoE denoiser and the SD-2 VAE, generic over the backend.
pub mod dit;
pub mod flops;
pub mod loader;
pub mod task;
pub mod vae;
