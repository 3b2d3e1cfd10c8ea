//! The one interface the model code runs on. `cpu` implements it in plain Rust (the correctness
//! oracle and the path without a GPU); the CUDA backend implements the same ops with our kernels.

pub mod cpu;
pub mod cuda;
pub mod ddim;
pub mod switches;

use crate::error::Result;
use crate::shape_err;
use crate::tensor::Tensor;
use crate::weights::RawTensor;

/// The axes of `shape` when it has exactly `N`, else `Error::Shape` naming the op and the tensor:
/// how the backends take a shape apart without indexing past its end.
pub fn axes<const N: usize>(op: &str, what: &str, shape: &[usize]) -> Result<[usize; N]> {
    shape.try_into().map_err(|_| shape_err!("{op}: {what} {shape:?} must have {N} axes"))
}

/// `shape` when it has at least `n` axes, else `Error::Shape` naming the op and the tensor.
pub fn at_least<'a>(op: &str, what: &str, shape: &'a [usize], n: usize) -> Result<&'a [usize]> {
    if shape.len() < n {
        return Err(shape_err!("{op}: {what} {shape:?} must have at least {n} axes"));
    }
    Ok(shape)
}

/// Checks one MoE layer's weights (gate [E, D]; per expert fc1 [F, D] + [F], fc2 [D, F] + [D],
/// at least one expert): (E, D, F), or `Error::Shape` naming the op.
pub fn moe_dims<W>(op: &str, w: &MoeWeights<W>, shape: fn(&W) -> &[usize]) -> Result<(usize, usize, usize)> {
    fn all<W>(v: &[W], shape: fn(&W) -> &[usize]) -> Vec<&[usize]> {
        v.iter().map(shape).collect()
    }
    let (fc1_w, fc1_b) = (all(&w.fc1_w, shape), all(&w.fc1_b, shape));
    let (fc2_w, fc2_b) = (all(&w.fc2_w, shape), all(&w.fc2_b, shape));
    let gate = shape(&w.gate);
    let [e, d] = axes(op, "gate", gate)?;
    let experts = fc1_w.len();
    if experts == 0 || experts != e || [fc1_b.len(), fc2_w.len(), fc2_b.len()] != [e; 3] {
        return Err(shape_err!(
            "{op}: gate {:?} for {} fc1, {} fc1 bias, {} fc2, {} fc2 bias weights",
            gate,
            experts,
            fc1_b.len(),
            fc2_w.len(),
            fc2_b.len()
        ));
    }
    let [f, _] = axes(op, "fc1 weight", fc1_w[0])?;
    for j in 0..e {
        if fc1_w[j] != [f, d] || fc1_b[j] != [f] || fc2_w[j] != [d, f] || fc2_b[j] != [d] {
            return Err(shape_err!(
                "{op}: expert {j}'s fc1 {:?} + {:?}, fc2 {:?} + {:?} do not fit [{f}, {d}] + [{f}], [{d}, {f}] + [{d}]",
                fc1_w[j],
                fc1_b[j],
                fc2_w[j],
                fc2_b[j]
            ));
        }
    }
    Ok((e, d, f))
}

/// Checks that token rows `x` (last axis D) and a top-k fit an MoE layer of `experts` experts whose
/// gate is [experts, D], or `Error::Shape` naming the op.
pub fn moe_input(op: &str, x: &[usize], gate: &[usize], top_k: usize) -> Result<()> {
    let [e, d] = axes(op, "gate", gate)?;
    if x.last() != Some(&d) {
        return Err(shape_err!("{op}: input {x:?} does not fit gate {gate:?}"));
    }
    if top_k == 0 || top_k > e {
        return Err(shape_err!("{op}: top-{top_k} of {e} experts"));
    }
    Ok(())
}

/// Activation applied in a fused epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    None,
    /// GELU, tanh approximation (timm `Mlp` with `approximate="tanh"`).
    GeluTanh,
    Silu,
}

/// Spatial parameters of a 2-D convolution: stride and padding (top, left, bottom, right).
/// The VAE's downsampler pads only right and bottom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub stride: usize,
    pub pad: [usize; 4],
}

impl Conv2d {
    pub const fn same3x3() -> Self {
        Conv2d { stride: 1, pad: [1, 1, 1, 1] }
    }
    pub const fn down3x3() -> Self {
        Conv2d { stride: 2, pad: [0, 0, 1, 1] }
    }
    pub const fn pointwise() -> Self {
        Conv2d { stride: 1, pad: [0, 0, 0, 0] }
    }
    pub const fn patch(p: usize) -> Self {
        Conv2d { stride: p, pad: [0, 0, 0, 0] }
    }
}

/// One MoE layer's weights: gate [E, D]; per expert fc1 [F, D] + [F], fc2 [D, F] + [D].
pub struct MoeWeights<W> {
    pub gate: W,
    pub fc1_w: Vec<W>,
    pub fc1_b: Vec<W>,
    pub fc2_w: Vec<W>,
    pub fc2_b: Vec<W>,
}

/// Routing decisions of one MoE layer, per token row: the top-k experts sorted by gate
/// probability (descending) and those probabilities (not renormalised).
#[derive(Clone, Debug, Default)]
pub struct Routing {
    pub top_k: usize,
    pub experts: Vec<i64>,
    pub weights: Vec<f32>,
}

/// Device-side tensors and the ops of the DiT-MoE and the VAE. Layouts are PyTorch's:
/// images NCHW, tokens [B, T, D], linear weights [out, in], conv weights [O, C, kh, kw].
pub trait Backend: Send + Sync {
    /// An activation tensor on the device (knows its shape).
    type T: Send + Sync;
    /// A parameter tensor on the device.
    type W: Send + Sync;
    /// One MoE layer's weights in the layout this backend's kernels want.
    type M: Send + Sync;
    /// A captured step of device work (see `capture`).
    type Graph: Send + Sync;

    fn name(&self) -> String;
    fn shape<'a>(&self, t: &'a Self::T) -> &'a [usize];
    fn upload(&self, t: &Tensor) -> Result<Self::T>;
    fn download(&self, t: &Self::T) -> Result<Tensor>;
    /// Bring a stored parameter to the device (conversion happens once, here).
    fn weight(&self, name: &str, raw: &RawTensor) -> Result<Self::W>;
    /// Several stored [rows_i, cols] parameters concatenated along rows into one.
    fn weight_cat(&self, name: &str, raws: &[&RawTensor]) -> Result<Self::W>;
    /// One stored parameter, or several concatenated along rows, kept in f32 at every
    /// precision: the patch embedding's, which runs in f32 even at bf16 (see `patch_embed`).
    fn weight_f32(&self, name: &str, raws: &[&RawTensor]) -> Result<Self::W>;

    /// `x [.., K] · w[N, K]^T + b` with a fused activation: [.., N].
    fn linear(&self, x: &Self::T, w: &Self::W, b: Option<&Self::W>, act: Act) -> Result<Self::T>;
    fn act(&self, x: &Self::T, act: Act) -> Result<Self::T>;
    /// Elementwise `a + b` (same shapes).
    fn add(&self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// `x * s`.
    fn scale(&self, x: &Self::T, s: f32) -> Result<Self::T>;
    /// 2-D convolution, NCHW, weights [O, C, kh, kw], optional bias [O].
    fn conv2d(&self, x: &Self::T, w: &Self::W, b: Option<&Self::W>, p: Conv2d) -> Result<Self::T>;
    fn upsample_nearest2x(&self, x: &Self::T) -> Result<Self::T>;
    /// `conv2d(upsample_nearest2x(x))`, which a backend may fuse (the upsampled tensor then never
    /// exists).
    fn upsample_conv2d(&self, x: &Self::T, w: &Self::W, b: Option<&Self::W>, p: Conv2d) -> Result<Self::T> {
        self.conv2d(&self.upsample_nearest2x(x)?, w, b, p)
    }
    /// GroupNorm over NCHW with affine gamma/beta [C], optionally followed by SiLU.
    fn group_norm(
        &self,
        x: &Self::T,
        gamma: &Self::W,
        beta: &Self::W,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<Self::T>;
    /// `LN(x) * (1 + scale) + shift` for x [B, T, D] with no LN affine; shift and scale are
    /// chunks `shift` and `scale` (each D wide) of `mods` [B, n*D].
    fn modulated_layer_norm(
        &self,
        x: &Self::T,
        mods: &Self::T,
        shift: usize,
        scale: usize,
        eps: f32,
    ) -> Result<Self::T>;
    /// `x += gate * y` with gate = chunk `gate` of `mods` [B, n*D], x and y [B, T, D].
    fn gated_add(&self, x: &mut Self::T, y: &Self::T, mods: &Self::T, gate: usize) -> Result<()>;
    /// Softmax attention over packed `qkv` [B, L, 3 * H * hd] (timm layout: q, k, v, each heads
    /// then head dims), scale 1/sqrt(hd): [B, L, H * hd].
    fn attention(&self, qkv: &Self::T, heads: usize) -> Result<Self::T>;
    /// Rows of an embedding table [rows, D] for each id: [ids.len(), D].
    fn embedding(&self, table: &Self::W, ids: &[i64]) -> Result<Self::T>;
    /// Per-sample patch embedding: sample b uses conv `labels[b] - first_label` of the `n_convs`
    /// stacked in `conv_w` [n_convs * D, C, p, p] and `conv_b` [n_convs * D] (2-D conv with
    /// kernel = stride = patch); a label outside the stack gives zeros (the authors' behaviour);
    /// then `+ pos [1, T, D]`. x [B, C, H, W] -> [B, T, D], tokens row-major.
    ///
    /// In f32 at every precision (weights from `weight_f32`, input as given, output f32): the
    /// residual stream starts here, and the authors' bf16 autocast computes it in f32 (their
    /// fixtures measure `tokens_embedded` at 1e-7 under autocast). Rounding it to bf16 instead
    /// put 2.6e-3 of error into the stream before the first block and flipped two of
    /// `dit_tiny`'s 128 routing decisions (block0_out 1.0e-2 against autocast's 3.3e-3); in f32
    /// the routing agrees and block0_out lands at 3.0e-3. It costs nothing measurable (a
    /// 2x2 convolution over 12 channels).
    #[allow(clippy::too_many_arguments)]
    fn patch_embed(
        &self,
        x: &Self::T,
        conv_w: &Self::W,
        conv_b: &Self::W,
        n_convs: usize,
        labels: &[i64],
        first_label: i64,
        pos: &Self::W,
        patch: usize,
    ) -> Result<Self::T>;
    /// [B, T, p*p*C] -> [B, C, H, W]: token (h, w) feature (p, q, c) -> out[c, h*p + p', w*p + q].
    fn unpatchify(&self, x: &Self::T, patch: usize, channels: usize, grid_h: usize, grid_w: usize) -> Result<Self::T>;
    /// Arrange one MoE layer's weights for `moe` (called once at load).
    fn prepare_moe(&self, name: &str, w: MoeWeights<Self::W>) -> Result<Self::M>;
    /// Top-k MoE over token rows x [N, D]: softmax gate, top-k (weights not renormalised),
    /// experts `fc2(gelu_tanh(fc1(x)))`, weighted sum. Routing returned when `record`.
    fn moe(&self, x: &Self::T, w: &Self::M, top_k: usize, record: bool) -> Result<(Self::T, Option<Routing>)>;
    /// The DiT block's attention residual: `x += gate * linear(a, w, b)` with x [B, T, D], the
    /// gate chunk `gate` of `mods` [B, n*D]; backends may fuse the add into the GEMM's epilogue.
    fn linear_gated_add(
        &self,
        x: &mut Self::T,
        a: &Self::T,
        w: &Self::W,
        b: Option<&Self::W>,
        mods: &Self::T,
        gate: usize,
    ) -> Result<()> {
        let y = self.linear(a, w, b, Act::None)?;
        self.gated_add(x, &y, mods, gate)
    }
    /// The DiT block's MoE residual: `x += gate * moe(m_in)` with x [B, T, D], m_in [B*T, D] and
    /// the gate chunk `gate` of `mods` [B, n*D]; backends may fuse the experts' weighted combine
    /// into the add. Routing returned when `record`.
    #[allow(clippy::too_many_arguments)]
    fn moe_gated_add(
        &self,
        x: &mut Self::T,
        m_in: &Self::T,
        w: &Self::M,
        top_k: usize,
        mods: &Self::T,
        gate: usize,
        record: bool,
    ) -> Result<Option<Routing>> {
        let (out, routing) = self.moe(m_in, w, top_k, record)?;
        let out = self.reshape(out, &self.shape(x).to_vec())?;
        self.gated_add(x, &out, mods, gate)?;
        Ok(routing)
    }
    /// NCHW [N, C, H, W] <-> tokens [N, H*W, C].
    fn nchw_to_tokens(&self, x: &Self::T) -> Result<Self::T>;
    fn tokens_to_nchw(&self, x: &Self::T, h: usize, w: usize) -> Result<Self::T>;
    /// Concatenate NCHW tensors along channels.
    fn cat_channels(&self, parts: &[&Self::T]) -> Result<Self::T>;
    /// Channels `start..start+len` of an NCHW tensor.
    fn slice_channels(&self, x: &Self::T, start: usize, len: usize) -> Result<Self::T>;
    /// Reshape without moving data.
    fn reshape(&self, x: Self::T, shape: &[usize]) -> Result<Self::T>;

    // The denoising loop's device-resident form: each step's scalars live in tensors that the
    // host rewrites before the step, so one captured step can be replayed for every step.

    /// Copies host values into an existing f32 tensor with as many elements, in place.
    fn write(&self, dst: &mut Self::T, src: &Tensor) -> Result<()>;
    /// The sinusoidal timestep features [B, 256] of per-sample timesteps `t` [B] (f32).
    fn timestep_features(&self, t: &Self::T) -> Result<Self::T>;
    /// One DDIM step (eta 0), elementwise, in place on the f32 `sample` from the model's
    /// prediction `pred` (same shape), its coefficients (clipping included) read from the f32
    /// tensor `coefs` (`StepCoefficients::values`). Always f32.
    fn ddim_step(
        &self,
        pred: &Self::T,
        sample: &mut Self::T,
        coefs: &Self::T,
        prediction_type: crate::backend::ddim::PredictionType,
    ) -> Result<()>;
    /// Records the device work `step` issues (without running it) for `replay`. `Ok(None)`: this
    /// backend has no graphs and ran nothing; the caller runs `step` itself.
    fn capture(&self, step: &mut dyn FnMut() -> Result<()>) -> Result<Option<Self::Graph>>;
    fn replay(&self, graph: &Self::Graph) -> Result<()>;
    /// Waits until the device has done the work enqueued so far (a no-op where calls return
    /// when their work is done, as on the CPU).
    fn wait(&self) -> Result<()> {
        Ok(())
    }
}
