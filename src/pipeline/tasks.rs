//! The three tasks on images at the model's resolution: build the prompt, run K ensemble
//! members of many inputs as one batch, reduce the members (SPEC.md "Tasks").

use super::control::Control;
use super::noise::NoiseRng;
use super::Engine;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::task::Task;
use crate::postprocess::ensemble::{ensemble_depth, EnsembleOptions};
use crate::postprocess::reduce::{amodal_median, mean_over_members};
use crate::tensor::Tensor;
use crate::util::rng::GOLDEN_GAMMA;

/// Sampling options shared by every task.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    pub steps: usize,
    pub ensemble: usize,
    pub seed: u64,
    /// Cancellation and progress, checked between denoising steps.
    pub control: Control,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions { steps: 50, ensemble: 1, seed: 0, control: Control::default() }
    }
}

/// One input of a task: an image and its prompt image, both [3, R, R] at the model's
/// resolution in the task's value range.
pub struct Request {
    pub task: Task,
    pub rgb: Tensor,
    pub prompt: Tensor,
}

/// A task's prediction at the model's resolution.
#[derive(Clone, Debug)]
pub enum Prediction {
    /// Relative depth in [0, 1] [R*R]; the ensemble spread when K > 1.
    Depth { depth: Vec<f32>, uncertainty: Option<Vec<f32>> },
    /// The whole object on white, [3, R, R] in [-1, 1].
    Segment { image: Vec<f32> },
    /// Flow in pixels at the model's resolution, [R*R] each.
    Flow { u: Vec<f32>, v: Vec<f32> },
}

/// Noise of member `m` for part `part` (flow x/y) of one input: seeded by (seed, m, part) only,
/// so a result does not depend on which other inputs share its batch.
fn member_noise(seed: u64, member: usize, part: usize, n: usize) -> Vec<f32> {
    let s = seed.wrapping_mul(GOLDEN_GAMMA) ^ ((member as u64) << 8) ^ part as u64;
    NoiseRng::new(s).normals(n)
}

/// The depth prompt: the valid-depth mask as 3 channels of 0/1; without ground truth all ones.
pub fn depth_prompt(res: usize) -> Tensor {
    Tensor::full(&[3, res, res], 1.0)
}

impl<B: Backend> Engine<B> {
    /// Run several requests, K members each, as one batch. Returns one prediction per request.
    pub fn predict(&self, requests: &[Request], opts: &SampleOptions) -> Result<Vec<Prediction>> {
        Ok(self.predict_full(requests, opts, None, &mut super::DenoiseCache::new(1))?.0)
    }

    /// `predict`, starting from `init` instead of the seed's noise when given (`[rows, c, h, w]`
    /// for one request, rows = parts x members, used for every request), and also returning the
    /// final latents `[requests x rows, c, h, w]` in request order. The denoising runs in
    /// `cache`'s state for its shape (see `Engine::denoise_cached`).
    pub fn predict_full(
        &self,
        requests: &[Request],
        opts: &SampleOptions,
        init: Option<&Tensor>,
        cache: &mut super::DenoiseCache<B>,
    ) -> Result<(Vec<Prediction>, Tensor)> {
        if requests.is_empty() {
            return Ok((vec![], Tensor::zeros(&[0])));
        }
        if opts.ensemble == 0 {
            return Err(Error::Input("--ensemble must be at least 1".into()));
        }
        let res = self.config.resolution;
        for r in requests {
            for (what, t) in [("image", &r.rgb), ("prompt", &r.prompt)] {
                if t.shape != [3, res, res] {
                    return Err(Error::Shape(format!("{what} {:?} must be [3, {res}, {res}]", t.shape)));
                }
            }
        }
        let k = opts.ensemble;
        let be = &self.backend;
        // Encode each input once; members and flow parts reuse the latents.
        let rgb = Tensor::stack(&requests.iter().map(|r| r.rgb.clone()).collect::<Vec<_>>())?;
        let prompt = Tensor::stack(&requests.iter().map(|r| r.prompt.clone()).collect::<Vec<_>>())?;
        let rgb_lat = be.download(&self.encode(&rgb)?)?;
        let prompt_lat = be.download(&self.encode(&prompt)?)?;
        let lat_shape = rgb_lat.shape[1..].to_vec();
        let lat_n: usize = lat_shape.iter().product();
        // Batch rows: (request, part, member).
        let mut rows = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            for (p, &label) in r.task.labels().iter().enumerate() {
                for m in 0..k {
                    rows.push((i, p, m, label));
                }
            }
        }
        let gather = |src: &Tensor| -> Result<Tensor> {
            Tensor::stack(&rows.iter().map(|&(i, ..)| src.index0(i)).collect::<Vec<_>>())
        };
        let noise = match init {
            None => Tensor::stack(
                &rows
                    .iter()
                    .map(|&(_, p, m, _)| Tensor::new(lat_shape.clone(), member_noise(opts.seed, m, p, lat_n)))
                    .collect::<Result<Vec<_>>>()?,
            )?,
            Some(init) => {
                let per_request = rows.len() / requests.len();
                let mut want = vec![per_request];
                want.extend(&lat_shape);
                if init.shape != want {
                    return Err(Error::Input(format!(
                        "latents {:?} do not fit this model and task: expected {want:?} (rows = parts x ensemble members)",
                        init.shape
                    )));
                }
                let mut data = Vec::with_capacity(rows.len() * lat_n);
                for _ in requests {
                    data.extend_from_slice(&init.data);
                }
                let mut shape = vec![rows.len()];
                shape.extend(&lat_shape);
                Tensor::new(shape, data)?
            }
        };
        let labels: Vec<i64> = rows.iter().map(|r| r.3).collect();
        let latent = self.denoise_cached(
            cache,
            &gather(&rgb_lat)?,
            &gather(&prompt_lat)?,
            &labels,
            &noise,
            opts.steps,
            &opts.control,
        )?;
        let decoded = self.decode(latent)?; // [rows, 3, R, R]
        let latent = be.download(latent)?;
        let plane = res * res;
        // Mean of the three decoded channels, per row.
        let channel_mean = |row: usize| -> Vec<f32> {
            let d = &decoded.data[row * 3 * plane..(row + 1) * 3 * plane];
            (0..plane).map(|p| (d[p] + d[plane + p] + d[2 * plane + p]) / 3.0).collect()
        };
        let mut out = Vec::with_capacity(requests.len());
        let mut row = 0;
        for r in requests {
            match r.task {
                Task::Depth => {
                    let members: Vec<f32> = (row..row + k).flat_map(channel_mean).collect();
                    row += k;
                    if k == 1 {
                        let depth = members.iter().map(|d| (d.clamp(-1.0, 1.0) + 1.0) / 2.0).collect();
                        out.push(Prediction::Depth { depth, uncertainty: None });
                    } else {
                        let opts = EnsembleOptions { max_res: Some(50), ..Default::default() };
                        let e = ensemble_depth(&members, k, res, res, &opts)?;
                        out.push(Prediction::Depth { depth: e.depth, uncertainty: e.uncertainty });
                    }
                }
                Task::Segment => {
                    let members = &decoded.data[row * 3 * plane..(row + k) * 3 * plane];
                    row += k;
                    out.push(Prediction::Segment { image: amodal_median(members, k) });
                }
                Task::Flow => {
                    let scale = self.config.flow_scale as f32;
                    let mut uv = Vec::new();
                    for _part in 0..2 {
                        let members: Vec<f32> = (row..row + k).flat_map(channel_mean).collect();
                        row += k;
                        uv.push(mean_over_members(&members, k).into_iter().map(|x| x * scale).collect::<Vec<_>>());
                    }
                    let v = uv.pop().unwrap();
                    let u = uv.pop().unwrap();
                    out.push(Prediction::Flow { u, v });
                }
            }
        }
        Ok((out, latent))
    }
}
