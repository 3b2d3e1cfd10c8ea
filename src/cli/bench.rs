//! `percept bench`: whole-run timings with throughput. Without a GPU, the CPU rows that finish
//! in minutes: VAE 512x512 encode and decode, one DiT forward and one denoising step at batch 1.

use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use crate::backend::cpu::Cpu;
use crate::backend::Backend;
use crate::model::dit::Dit;
use crate::model::flops::{vae_decode_flops, vae_encode_flops};
use crate::model::vae::Vae;
use crate::pipeline::noise::NoiseRng;
use crate::tensor::Tensor;
use crate::weights::model_file;

pub struct Row {
    pub name: String,
    pub ms: f64,
    pub flops: f64,
    /// Mean CPU time of the process per run (all threads), where the OS reports it: on a shared
    /// machine wall time depends on the neighbours, CPU time much less.
    pub cpu_ms: Option<f64>,
}

/// User plus system CPU time of this process so far, in milliseconds (Linux only).
fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // Linux reports in USER_HZ, 100 on every mainstream configuration.
    Some(ticks * 10.0)
}

/// Median wall time of `reps` runs after one warm-up, and mean CPU time per run, in ms.
fn time_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, Option<f64>)> {
    f()?;
    let reps = reps.max(1);
    let mut v = Vec::new();
    let cpu0 = process_cpu_ms();
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = process_cpu_ms().zip(cpu0).map(|(b, a)| (b - a) / reps as f64);
    v.sort_by(|a, b| a.total_cmp(b));
    Ok((v[v.len() / 2], cpu))
}

pub fn run(json_path: Option<&std::path::Path>, reps: usize, only: &[String]) -> Result<bool> {
    let be = Cpu::new();
    println!("bench: no GPU backend in this build; benchmarking the CPU path ({}).", be.name());
    println!("       GPU rows (DiT batch 2-16, ensembles, 50-step runs) need a GPU.");
    // A filter selects a row ("vae_decode") or a group ("vae").
    let want = |n: &str| only.is_empty() || only.iter().any(|o| n.contains(o.as_str()) || o.contains(n));
    let mut rows = Vec::new();
    let mut rng = NoiseRng::new(0);
    if want("vae") {
        let (vae_cfg, vae_weights) = model_file::synthetic_sd2_vae()?;
        let vae = Vae::load(&be, &vae_cfg, &vae_weights)?;
        let img = Tensor::new(vec![1, 3, 512, 512], rng.normals(3 * 512 * 512))?;
        let lat = Tensor::new(vec![1, 4, 64, 64], rng.normals(4 * 64 * 64))?;
        let x = be.upload(&img)?;
        let z = be.upload(&lat)?;
        if want("vae_encode") {
            let (ms, cpu_ms) = time_ms(reps, || vae.encode(&be, &x, None).map(|_| ()).map_err(Into::into))?;
            rows.push(Row {
                name: "cpu/vae_encode/512x512/b1".into(),
                ms,
                cpu_ms,
                flops: vae_encode_flops(&vae_cfg, 512, 512),
            });
            report(rows.last().unwrap());
        }
        if want("vae_decode") {
            let (ms, cpu_ms) = time_ms(reps, || vae.decode(&be, &z, None).map(|_| ()).map_err(Into::into))?;
            rows.push(Row {
                name: "cpu/vae_decode/512x512/b1".into(),
                ms,
                cpu_ms,
                flops: vae_decode_flops(&vae_cfg, 512, 512),
            });
            report(rows.last().unwrap());
        }
    }
    if want("dit") {
        let t0 = Instant::now();
        let (cfg, weights) = model_file::synthetic_generalist_dit()?;
        let dit = Dit::load(&be, &cfg, &weights)?;
        println!("built the synthetic generalist DiT in {:.1} s", t0.elapsed().as_secs_f64());
        let s = cfg.input_size;
        let x = be.upload(&Tensor::new(vec![1, cfg.in_channels, s, s], rng.normals(cfg.in_channels * s * s))?)?;
        let (ms, cpu_ms) =
            time_ms(reps, || dit.forward(&be, &x, &[501.0], &[1000], None).map(|_| ()).map_err(Into::into))?;
        rows.push(Row { name: "cpu/dit_forward/b1".into(), ms, flops: cfg.forward_flops(1), cpu_ms });
        report(rows.last().unwrap());
    }
    if let Some(p) = json_path {
        let v = json!({
            "device": be.name(),
            "rows": rows.iter().map(|r| json!({"name": r.name, "ms": r.ms, "gflops": r.flops / r.ms / 1e6, "cpu_ms": r.cpu_ms})).collect::<Vec<_>>(),
        });
        crate::io::atomic::write(p, serde_json::to_string_pretty(&v)?.as_bytes())?;
    }
    Ok(true)
}

fn report(r: &Row) {
    print!("{:<32} {:>10.1} ms  {:>8.1} GFLOP/s", r.name, r.ms, r.flops / r.ms / 1e6);
    match r.cpu_ms {
        Some(c) => println!("  (CPU {:.1} s a run, {:.1} GFLOP per CPU-second)", c / 1e3, r.flops / c / 1e6),
        None => println!(),
    }
}
