//! One DDIM step (eta = 0, v-prediction as SD-2) over the latents of batches 1 and 16
//! (4 x 64 x 64 each). Throughput in bytes: model output and sample read, two outputs written.

use criterion::{black_box, Criterion, Throughput};
use percept::scheduler::ddim::Ddim;
use percept::scheduler::SchedulerConfig;

use super::{values, DEVICE};

pub fn bench(c: &mut Criterion) {
    let ddim = Ddim::new(&SchedulerConfig::sd2()).expect("sd2 scheduler");
    let steps = 50;
    let t = ddim.timesteps(steps).expect("timesteps")[steps / 2];
    let mut g = c.benchmark_group(format!("{DEVICE}/ddim_step"));
    for batch in [1, 16] {
        let n = batch * 4 * 64 * 64;
        let (eps, sample) = (values(n, 40, 1.0), values(n, 41, 1.0));
        let (mut prev, mut x0) = (vec![0f32; n], vec![0f32; n]);
        g.throughput(Throughput::Bytes(4 * 4 * n as u64));
        g.bench_function(format!("b{batch}_4x64x64"), |bch| {
            bch.iter(|| {
                ddim.step(&eps, t, steps, &sample, &mut prev, Some(&mut x0)).expect("ddim step");
                black_box((&prev, &x0));
            })
        });
    }
    g.finish();
}
