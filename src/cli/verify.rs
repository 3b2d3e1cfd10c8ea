//! `percept verify`: one line per checked output, then `N passed, M failed, K skipped`.

use std::path::Path;

use anyhow::{bail, Result};

use super::backend::Chosen;
use super::{BackendArg, Precision};
use crate::backend::cpu::Cpu;
use crate::backend::cuda::backend::Cuda;
use crate::backend::cuda::device::Device;
use crate::backend::Backend;
use crate::verify::run::{list_fixtures, verify_one, Options, Outcome};

/// Returns whether every fixture passed.
pub fn run(dir: &Path, backend: BackendArg, precision: Precision, skip_slow: bool, only: &[String]) -> Result<bool> {
    let mut names = list_fixtures(dir)?;
    if names.is_empty() {
        bail!("{}: no fixtures found (expected NAME.json files with a \"kind\")", dir.display());
    }
    if !only.is_empty() {
        for o in only {
            if !names.contains(o) {
                bail!("--only {o}: no such fixture in {} (have: {})", dir.display(), names.join(", "));
            }
        }
        names.retain(|n| only.contains(n));
    }
    let opts = Options { precision: precision.as_str().into(), skip_slow };
    match backend.open()? {
        Chosen::Cpu { .. } => {
            let be = if precision == Precision::Bf16 { Cpu::bf16() } else { Cpu::new() };
            run_on(&be, dir, &names, &opts)
        }
        Chosen::Emu(dev) => run_on(&cuda(dev, precision), dir, &names, &opts),
        Chosen::Gpu(dev) => run_on(&cuda(dev, precision), dir, &names, &opts),
    }
}

fn cuda<D: Device>(dev: D, precision: Precision) -> Cuda<D> {
    if precision == Precision::Bf16 {
        Cuda::bf16(dev)
    } else {
        Cuda::new(dev)
    }
}

fn run_on<B: Backend + Clone>(be: &B, dir: &Path, names: &[String], opts: &Options) -> Result<bool> {
    println!("verify: {} fixture(s) in {} on {} at {}", names.len(), dir.display(), be.name(), opts.precision);
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for name in names {
        let start = std::time::Instant::now();
        match verify_one(be, dir, name, opts) {
            Outcome::Checked(checks) => {
                for c in &checks {
                    println!("{}", c.line());
                }
                let ok = checks.iter().all(|c| c.pass != Some(false));
                if ok {
                    passed += 1
                } else {
                    failed += 1
                }
                log::info!("{name}: {:.1} s", start.elapsed().as_secs_f64());
            }
            Outcome::Skipped(why) => {
                println!("{name:<16} skipped: {why}");
                skipped += 1;
            }
            Outcome::Failed(why) => {
                println!("{name:<16} FAIL: {why}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    Ok(failed == 0)
}
