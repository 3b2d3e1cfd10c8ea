//! Everything after the decoder: ensembling of several samples (depth alignment, medians,
//! means), least-squares fits and metrics, and colour maps for display.
pub mod bfgs;
pub mod color;
pub mod ensemble;
pub mod metrics;
pub mod reduce;

pub use color::{colorize_depth, create_colored_map, flow_to_color, spectral_lut};
pub use ensemble::{ensemble_depth, Ensemble, EnsembleOptions};
pub use metrics::{depth_fit, depth_metrics, epe, epe_with_fit, mask_iou, psnr, DepthMetrics};
pub use reduce::{amodal_median, mean_over_members, median_over_members};
