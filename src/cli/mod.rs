//! The command line: clap definitions here, one module per subcommand.

pub mod bench;
pub mod verify;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "percept",
    version,
    about = "Depth, optical flow and amodal segmentation with the generalist DiT-MoE diffusion model"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Auto,
    Cpu,
    Cuda,
    #[value(name = "cuda-emu")]
    CudaEmu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    F32,
    Bf16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check the engine against golden fixtures (the authors' own outputs).
    Verify {
        /// Folder of fixtures (NAME.json + NAME.io.safetensors).
        #[arg(long)]
        fixtures: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        #[arg(long, value_enum, default_value = "f32")]
        precision: Precision,
        /// Skip (and count) fixtures marked slow.
        #[arg(long)]
        skip_slow: bool,
        /// Only these fixtures (repeatable).
        #[arg(long)]
        only: Vec<String>,
    },
    /// Time whole runs (CPU rows without a GPU).
    Bench {
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Timed repetitions per row (median reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Only rows whose name contains this (repeatable).
        #[arg(long)]
        only: Vec<String>,
    },
}
