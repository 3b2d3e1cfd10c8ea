//! Between the caller's pixels and the model: inputs resized to the model's resolution and
//! mapped to its value ranges, predictions brought back to the input's size. The CLI's file
//! commands use these same steps, so a file and a view of the same pixels give the same result.

use crate::error::Result;
use crate::io::flo::Flow;
use crate::io::image::Image;
use crate::io::resize::{resize_area, resize_bilinear, resize_nearest};
use crate::pipeline::tasks::Prediction;
use crate::postprocess::metrics::amodal_mask;
use crate::tensor::Tensor;

/// Image [3, H, W] in [0, 1] resized to the model's resolution (area filter), mapped to [-1, 1].
#[doc(hidden)]
pub fn to_model(img: &Image, res: usize) -> Result<Tensor> {
    let data = resize_area(&img.data, img.width, img.height, res, res)?;
    Tensor::new(vec![3, res, res], data.into_iter().map(|v| v * 2.0 - 1.0).collect())
}

/// A mask plane in [0, 1] at the model's resolution (nearest resize), thresholded at 0.5, as
/// 3 channels of `on`/`off`.
fn mask_prompt(mask: &Image, res: usize, on: f32, off: f32) -> Result<Tensor> {
    let m = resize_nearest(&mask.data[..mask.width * mask.height], mask.width, mask.height, res, res)?;
    let plane: Vec<f32> = m.iter().map(|&v| if v > 0.5 { on } else { off }).collect();
    Tensor::new(vec![3, res, res], [plane.clone(), plane.clone(), plane].concat())
}

/// The segment prompt: a visible-object mask (one plane in [0, 1]) as 3 channels of -1/1.
#[doc(hidden)]
pub fn segment_prompt(mask: &Image, res: usize) -> Result<Tensor> {
    mask_prompt(mask, res, 1.0, -1.0)
}

/// The depth prompt from a valid-depth mask (one plane in [0, 1]): 3 channels of 0/1.
#[doc(hidden)]
pub fn valid_depth_prompt(mask: &Image, res: usize) -> Result<Tensor> {
    mask_prompt(mask, res, 1.0, 0.0)
}

/// A prediction brought to an input's size, planar (as the CLI writes files).
#[doc(hidden)]
pub enum AtInputSize {
    /// Relative depth in [0, 1] and, for an ensemble, its spread.
    Depth { depth: Vec<f32>, uncertainty: Option<Vec<f32>> },
    /// Pixels at the input's resolution.
    Flow(Flow),
    /// The amodal image [3, h, w] in [0, 1] and its object mask (0/1, found at the model's
    /// resolution and resized nearest).
    Segment { image: Vec<f32>, mask: Vec<f32> },
}

/// Resize a prediction at the model's resolution `res` to `w` x `h`: bilinear for values,
/// nearest for the mask; flow is rescaled to pixels at the new size.
#[doc(hidden)]
pub fn to_input_size(pred: &Prediction, res: usize, w: usize, h: usize) -> Result<AtInputSize> {
    let back = |plane: &[f32]| resize_bilinear(plane, res, res, w, h);
    Ok(match pred {
        Prediction::Depth { depth, uncertainty } => AtInputSize::Depth {
            depth: back(depth)?.into_iter().map(|v| v.clamp(0.0, 1.0)).collect(),
            uncertainty: uncertainty.as_deref().map(back).transpose()?,
        },
        Prediction::Flow { u, v } => {
            let (sx, sy) = (w as f32 / res as f32, h as f32 / res as f32);
            let u: Vec<f32> = back(u)?.into_iter().map(|x| x * sx).collect();
            let v: Vec<f32> = back(v)?.into_iter().map(|x| x * sy).collect();
            AtInputSize::Flow(Flow { width: w, height: h, u, v })
        }
        Prediction::Segment { image } => {
            let img01: Vec<f32> = image.iter().map(|v| (v + 1.0) / 2.0).collect();
            let mask_f: Vec<f32> = amodal_mask(&img01).iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
            AtInputSize::Segment {
                image: resize_bilinear(&img01, res, res, w, h)?,
                mask: resize_nearest(&mask_f, res, res, w, h)?,
            }
        }
    })
}
