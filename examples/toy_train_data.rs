//! Extra training data for `tools/train/`: the toy generator with other seeds and larger counts,
//! written to a scratch folder outside the repository (never committed).
//!
//!     cargo run --release --example toy_train_data -- OUT SEED N_DEPTH N_FLOW N_SEGMENT
//!
//! Everything goes to the generator's train split (validation stays the shipped seed-0 set).

use std::path::PathBuf;
use std::process::ExitCode;

use percept::toydata::{generate, ToyDataOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 {
        eprintln!("usage: toy_train_data OUT SEED N_DEPTH N_FLOW N_SEGMENT");
        return ExitCode::from(2);
    }
    let mut nums = Vec::new();
    for a in &args[1..] {
        match a.parse::<u64>() {
            Ok(n) => nums.push(n),
            Err(_) => {
                eprintln!("toy_train_data: expected a non-negative integer, got {a:?}");
                return ExitCode::from(2);
            }
        }
    }
    let opts = ToyDataOptions {
        seed: nums[0],
        n_depth: nums[1] as usize,
        n_flow: nums[2] as usize,
        n_segment: nums[3] as usize,
        val_fraction: 0.0,
        ..ToyDataOptions::default()
    };
    match generate(&PathBuf::from(&args[0]), &opts) {
        Ok(s) => {
            println!("{} files, {} bytes", s.files, s.bytes);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("toy_train_data: {e}");
            ExitCode::FAILURE
        }
    }
}
