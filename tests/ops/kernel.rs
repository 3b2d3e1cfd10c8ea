//! Cases straight to one entry point through its generated launcher (`Via::Kernel`), with launch
//! shapes the backend does not use: grid-stride kernels get at most 5 blocks of 128 threads, so
//! their loops wrap; the wide attention kernel runs at a head dim the backend gives the flash
//! kernel; the MoE counting sort runs in one block of fewer warps than experts. The CPU reference
//! sees the values the kernel sees (bf16-representable inputs).

use super::Ctx;
use crate::support::Rng;
use half::bf16;
use percept::backend::cpu::Cpu;
use percept::backend::cuda::device::Device;
use percept::backend::cuda::launch::LaunchConfig;
use percept::backend::cuda::launchers::{self as k, DevPtr};
use percept::backend::Backend;
use percept::{DType, Result, Tensor};

/// Fewer blocks than elements / threads, so grid-stride loops must cover the rest.
fn strided(n: usize) -> LaunchConfig {
    LaunchConfig::linear(n.div_ceil(128).clamp(1, 5) as u32, 128)
}

fn tensor(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::new(shape.to_vec(), data).unwrap()
}

/// Device buffers in the case's storage type.
struct Mem<'d, D: Device> {
    dev: &'d D,
    dtype: DType,
}

impl<D: Device> Mem<'_, D> {
    fn up(&self, v: &[f32]) -> Result<D::Buffer> {
        match self.dtype {
            DType::BF16 => {
                self.dev.upload(bytemuck::cast_slice(&v.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>()))
            }
            _ => self.dev.upload(bytemuck::cast_slice(v)),
        }
    }
    fn up_f32(&self, v: &[f32]) -> Result<D::Buffer> {
        self.dev.upload(bytemuck::cast_slice(v))
    }
    /// NaN-filled output of n elements: an element the kernel never writes fails the check.
    fn out(&self, n: usize) -> Result<D::Buffer> {
        self.up(&vec![f32::NAN; n.max(1)])
    }
    fn down(&self, b: &D::Buffer, n: usize) -> Result<Vec<f32>> {
        let bytes = self.dev.download(b)?;
        Ok(match self.dtype {
            DType::BF16 => bytes[..2 * n].chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            _ => bytemuck::pod_collect_to_vec(&bytes[..4 * n]),
        })
    }
    fn ptr(&self, b: &D::Buffer) -> DevPtr {
        DevPtr::of(self.dev, b)
    }
}

pub fn run<D: Device>(ctx: &mut Ctx<'_, D>) -> Result<()> {
    let dev = ctx.dev;
    let dtype = ctx.case.dtype.storage();
    let m = Mem { dev, dtype };
    let s: Vec<Vec<usize>> = ctx.case.shapes.clone();
    let cpu = Cpu::new();
    match ctx.case.op {
        "add" | "scale" => {
            let n: usize = s[0].iter().product();
            let (a, c) = (tensor(&s[0], ctx.data(n)), tensor(&s[0], ctx.data(n)));
            let (da, dc, y) = (m.up(&a.data)?, m.up(&c.data)?, m.out(n)?);
            let want = if ctx.case.op == "add" {
                k::add(dev, dtype, &strided(n), m.ptr(&y), m.ptr(&da), m.ptr(&dc), n)?;
                cpu.add(&a, &c).unwrap()
            } else {
                k::scale(dev, dtype, &strided(n), m.ptr(&y), m.ptr(&da), -1.75, n)?;
                cpu.scale(&a, -1.75).unwrap()
            };
            ctx.check("", &want.data, &m.down(&y, n)?);
        }
        "upsample_nearest2x" => {
            let &[n, c, h, w] = s[0].as_slice() else { panic!("upsample: shape {:?}", s[0]) };
            let x = tensor(&s[0], ctx.data(n * c * h * w));
            let want = cpu.upsample_nearest2x(&x).unwrap();
            let (dx, y) = (m.up(&x.data)?, m.out(want.numel())?);
            k::upsample_nearest2x(dev, dtype, &strided(want.numel()), m.ptr(&y), m.ptr(&dx), n * c, h, w)?;
            ctx.check("", &want.data, &m.down(&y, want.numel())?);
        }
        "cat_channels" => {
            // Two or three parts: the kernel's c is null without a third.
            let (n, h, w) = (s[0][0], s[0][1], s[0][2]);
            let parts: Vec<Tensor> = s[1].iter().map(|&c| tensor(&[n, c, h, w], ctx.data(n * c * h * w))).collect();
            let want = cpu.cat_channels(&parts.iter().collect::<Vec<_>>()).unwrap();
            let bufs = parts.iter().map(|p| m.up(&p.data)).collect::<Result<Vec<_>>>()?;
            let (third, cc) = if parts.len() == 3 { (m.ptr(&bufs[2]), s[1][2]) } else { (DevPtr::NULL, 0) };
            let y = m.out(want.numel())?;
            let cfg = strided(want.numel());
            let (a, b) = (m.ptr(&bufs[0]), m.ptr(&bufs[1]));
            k::cat_channels(dev, dtype, &cfg, m.ptr(&y), a, b, third, n, s[1][0], s[1][1], cc, h * w)?;
            ctx.check(&format!("{} parts", parts.len()), &want.data, &m.down(&y, want.numel())?);
        }
        "slice_channels" => {
            let &[n, c, h, w] = s[0].as_slice() else { panic!("slice_channels: shape {:?}", s[0]) };
            let (start, len) = (s[1][0], s[1][1]);
            let x = tensor(&s[0], ctx.data(n * c * h * w));
            let want = cpu.slice_channels(&x, start, len).unwrap();
            let (dx, y) = (m.up(&x.data)?, m.out(want.numel())?);
            let cfg = strided(want.numel());
            k::slice_channels(dev, dtype, &cfg, m.ptr(&y), m.ptr(&dx), n, c, start, len, h * w)?;
            ctx.check("", &want.data, &m.down(&y, want.numel())?);
        }
        "gated_add" => {
            let &[b, t, d] = s[0].as_slice() else { panic!("gated_add: shape {:?}", s[0]) };
            let gate = s[1][0];
            let n = b * t * d;
            let (x, y, mods) =
                (tensor(&s[0], ctx.data(n)), tensor(&s[0], ctx.data(n)), tensor(&[b, 6 * d], ctx.data(b * 6 * d)));
            let mut want = x.clone();
            cpu.gated_add(&mut want, &y, &mods, gate).unwrap();
            let (dx, dy, dm) = (m.up(&x.data)?, m.up(&y.data)?, m.up(&mods.data)?);
            k::gated_add(dev, dtype, &strided(n), m.ptr(&dx), m.ptr(&dy), m.ptr(&dm), b, t, d, 6 * d, gate * d)?;
            ctx.check("in place", &want.data, &m.down(&dx, n)?);
        }
        "attention" => {
            // The wide kernel: one block per (query row, head, batch), the row's scores in
            // dynamic shared memory. Spread-out scores so the softmax is far from uniform.
            let &[b, l, heads, hd] = s[0].as_slice() else { panic!("attention: shape {:?}", s[0]) };
            let d = heads * hd;
            let qkv: Vec<f32> = ctx.data(b * l * 3 * d).iter().map(|v| v * 2.5).collect();
            let want = cpu.attention(&tensor(&[b, l, 3 * d], qkv.clone()), heads).unwrap();
            let (dq, y) = (m.up(&qkv)?, m.out(want.numel())?);
            let cfg = LaunchConfig {
                grid: [l as u32, heads as u32, b as u32],
                block: [256, 1, 1],
                shared_bytes: 4 * (l + hd) as u32,
            };
            k::attention_wide(dev, dtype, &cfg, m.ptr(&y), m.ptr(&dq), l, heads, hd, 1.0 / (hd as f32).sqrt())?;
            ctx.check("wide kernel", &want.data, &m.down(&y, want.numel())?);
        }
        "timestep_features" => {
            let ts: Vec<f32> = [0.0, 1.0, 999.0, 417.0, 33.5, 501.0][..s[0][0]].to_vec();
            let want = cpu.timestep_features(&tensor(&[ts.len()], ts.clone())).unwrap();
            let (dts, y) = (m.up_f32(&ts)?, m.out(want.numel())?);
            let half = want.shape[1] / 2;
            k::timestep_features(dev, dtype, &strided(ts.len() * half), m.ptr(&y), m.ptr(&dts), ts.len(), half)?;
            ctx.check("", &want.data, &m.down(&y, want.numel())?);
        }
        "unpatchify" => {
            let &[b, c, p, gh, gw] = s[0].as_slice() else { panic!("unpatchify: shape {:?}", s[0]) };
            let x = tensor(&[b, gh * gw, p * p * c], ctx.data(b * gh * gw * p * p * c));
            let want = cpu.unpatchify(&x, p, c, gh, gw).unwrap();
            let (dx, y) = (m.up(&x.data)?, m.out(want.numel())?);
            k::unpatchify(dev, dtype, &strided(want.numel()), m.ptr(&y), m.ptr(&dx), b, c, p, gh, gw)?;
            ctx.check("", &want.data, &m.down(&y, want.numel())?);
        }
        "moe_count_sort" => {
            let (n, e) = (s[0][0], s[0][1]);
            let ids = expert_ids(ctx.rng(), n, e);
            let (want_off, want_sorted, want_pos) = counting_sort(&ids, e);
            let dids = dev.upload(bytemuck::cast_slice(&ids))?;
            let poisoned = |len: usize| dev.upload(bytemuck::cast_slice(&vec![-7i32; len]));
            let (offsets, sorted, pos) = (poisoned(e + 1)?, poisoned(n)?, poisoned(n)?);
            let cfg = LaunchConfig { grid: [1, 1, 1], block: [96, 1, 1], shared_bytes: 0 };
            let p = |b: &D::Buffer| DevPtr::of(dev, b);
            k::moe_count_sort_i32(dev, &cfg, p(&offsets), p(&sorted), p(&pos), p(&dids), n, e)?;
            let ints = |b: &D::Buffer, len: usize| -> Result<Vec<i32>> {
                Ok(bytemuck::pod_collect_to_vec(&dev.download(b)?[..4 * len]))
            };
            ctx.check_eq("offsets", &want_off, &ints(&offsets, e + 1)?);
            ctx.check_eq("sorted entries", &want_sorted, &ints(&sorted, n)?);
            ctx.check_eq("entry positions", &want_pos, &ints(&pos, n)?);
        }
        other => panic!("no kernel runner for op {other:?}"),
    }
    Ok(())
}

/// Random expert ids in 0..e, experts 1 and e-1 never chosen (empty experts).
fn expert_ids(rng: &mut Rng, n: usize, e: usize) -> Vec<i32> {
    (0..n)
        .map(|_| {
            let v = (rng.next_u64() % e as u64) as i32;
            if v == 1 || v == e as i32 - 1 {
                0
            } else {
                v
            }
        })
        .collect()
}

/// The stable counting sort the kernel must reproduce: entries grouped by expert, in index order.
fn counting_sort(ids: &[i32], e: usize) -> (Vec<i32>, Vec<i32>, Vec<i32>) {
    let mut offsets = vec![0i32; e + 1];
    for &x in ids {
        offsets[x as usize + 1] += 1;
    }
    for j in 0..e {
        offsets[j + 1] += offsets[j];
    }
    let mut next = offsets.clone();
    let (mut sorted, mut pos) = (vec![0i32; ids.len()], vec![0i32; ids.len()]);
    for (entry, &x) in ids.iter().enumerate() {
        let at = next[x as usize] as usize;
        next[x as usize] += 1;
        sorted[at] = entry as i32;
        pos[entry] = at as i32;
    }
    (offsets, sorted, pos)
}
