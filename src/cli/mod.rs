//! The command line: clap definitions here, one module per subcommand.

pub mod backend;
pub mod bench;
pub mod bench_device;
pub mod convert;
pub mod demo;
pub mod doctor;
pub mod eval;
pub mod interrupt;
pub mod manifest;
pub mod outdir;
pub mod panels;
pub mod predict;
pub mod runner;
pub mod shard;
pub mod status;
pub mod verify;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub use backend::BackendArg;

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
pub enum Precision {
    F32,
    Bf16,
}

/// What `--precision` says on every command that runs the model.
pub const PRECISION_HELP: &str = "Storage precision of weights and activations: f32, or bf16 (products of bf16 values summed \
in f32; biases, norm statistics, the residual stream, the patch embedding and the scheduler state stay f32). bf16 halves \
the weights' memory; on the CPU its products are one AMX tile product where the f32 path needs six (CPUs with AMX), \
elsewhere they run at about f32's speed. Its results match a GPU's bf16 run within the fixtures' bf16 tolerances (about 1e-2 \
relative); f32 matches the reference to 1e-5. [default: bf16 on a GPU, f32 on the CPU and the emulator]";

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// Where the model comes from and what runs it.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model file (.safetensors or .pt) or `synthetic:generalist` [env: PERCEPT_MODEL; default:
    /// the embedded demo model].
    #[arg(long)]
    pub model: Option<String>,
    /// Stable-Diffusion-2 folder (diffusers layout) for the VAE and scheduler [env: PERCEPT_SD2].
    #[arg(long)]
    pub sd2: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    #[arg(long, value_enum, help = PRECISION_HELP)]
    pub precision: Option<Precision>,
}

impl ModelArgs {
    /// `--model`, else `PERCEPT_MODEL` (the CLI maps the environment; the library reads none).
    pub fn model_spec(&self) -> Option<String> {
        model_spec(self.model.as_deref())
    }
    /// `--sd2`, else `PERCEPT_SD2`.
    pub fn sd2_dir(&self) -> Option<PathBuf> {
        self.sd2.clone().or_else(|| env_nonempty("PERCEPT_SD2").map(PathBuf::from))
    }
}

/// A `--model` value, else `PERCEPT_MODEL`; `None`: the embedded demo model.
pub fn model_spec(arg: Option<&str>) -> Option<String> {
    arg.map(str::to_string).or_else(|| env_nonempty("PERCEPT_MODEL"))
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// Sampling flags shared by the task commands.
#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Ensemble members per input (depth: Marigold alignment + median; segment: median; flow: mean).
    #[arg(long, default_value_t = 1)]
    pub ensemble: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder.
    #[arg(long, default_value = "percept_out")]
    pub out: PathBuf,
    /// Inputs per batch.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Take part I of N of the sorted inputs (every input whose position is I modulo N)
    /// [default: from Slurm's array variables, or JOB_COMPLETION_INDEX with --shard-count; 0/1
    /// turns that off].
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// The shard count of a Kubernetes Indexed Job (its completions), whose JOB_COMPLETION_INDEX
    /// gives the shard index.
    #[arg(long, value_name = "N")]
    pub shard_count: Option<usize>,
    /// Recompute inputs whose outputs were made with another model or other options.
    #[arg(long)]
    pub overwrite: bool,
    /// One worker per device, fed from one queue: GPU numbers (0,1,...) or all; with --backend
    /// cpu (or cuda-emu), as many workers as listed, sharing the cores.
    #[arg(long, value_name = "LIST|all")]
    pub devices: Option<String>,
}

/// How a run takes its part of a job (see `cli::shard`, `cli::manifest`).
#[derive(Clone, Debug, Default)]
pub struct ScaleOptions {
    pub shard: Option<String>,
    pub shard_count: Option<usize>,
    pub overwrite: bool,
    pub devices: Option<String>,
}

impl SampleArgs {
    pub fn scale(&self) -> ScaleOptions {
        ScaleOptions {
            shard: self.shard.clone(),
            shard_count: self.shard_count,
            overwrite: self.overwrite,
            devices: self.devices.clone(),
        }
    }

    pub fn options(&self) -> crate::pipeline::tasks::SampleOptions {
        crate::pipeline::tasks::SampleOptions {
            steps: self.steps,
            ensemble: self.ensemble,
            seed: self.seed,
            ..Default::default()
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Relative depth of images (files, folders or globs).
    Depth {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sample: SampleArgs,
    },
    /// Optical flow between frame pairs (FRAME1 FRAME2 ..., or a folder of consecutive frames).
    Flow {
        #[arg(required = true)]
        frames: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sample: SampleArgs,
    },
    /// Amodal segmentation: the whole object from an image and its visible-object mask.
    Segment {
        #[arg(required = true)]
        images_and_masks: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sample: SampleArgs,
    },
    /// Done, failed and missing inputs of a (sharded) run into OUT, from its run records.
    Status {
        /// The output folder of the run(s).
        out: PathBuf,
    },
    /// Metrics on a dataset with ground truth (Hypersim depth, FlyingChairs flow, Pix2Gestalt).
    Eval(eval::EvalArgs),
    /// Check the engine against golden fixtures (the authors' own outputs).
    Verify {
        /// Folder of fixtures (NAME.json + NAME.io.safetensors).
        #[arg(long)]
        fixtures: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// f32 or bf16 (the fixtures' bf16 tolerances), on every backend [default: f32].
        #[arg(long, value_enum)]
        precision: Option<Precision>,
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
        /// Where to run: the GPU if usable else the CPU (auto), or the CUDA backend on the
        /// emulator (cuda-emu: checks the harness on a small model).
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        /// Model for the device rows [default: synthetic:generalist on a GPU, the demo model on
        /// the emulator].
        #[arg(long)]
        model: Option<String>,
        /// Precision of the rows (see the task commands' --precision). On the CPU, bf16 times
        /// the f32 rows beside the bf16 ones, alternating runs, each row named with its precision.
        #[arg(long, value_enum)]
        precision: Option<Precision>,
    },
    /// List a checkpoint's tensors, parameter count and (inferred) config.
    Inspect { file: PathBuf },
    /// Convert a PyTorch checkpoint to a self-describing safetensors file.
    Convert {
        input: PathBuf,
        output: PathBuf,
        /// Cast floating tensors (default: keep each tensor's dtype).
        #[arg(long)]
        dtype: Option<String>,
    },
    /// Write the procedural toy datasets (Hypersim-, FlyingChairs- and Pix2Gestalt-like).
    ToyData {
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Depth, flow and amodal segmentation on the bundled toy data with the embedded demo model:
    /// metrics beside the baselines, panels in --out.
    Demo {
        #[arg(long, default_value = "percept_demo")]
        out: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        /// DDIM steps.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// CUDA status and every kernel compiled by NVRTC (registers, shared memory, spills).
    Doctor {
        /// Only compile (needs NVRTC, no driver or GPU).
        #[arg(long)]
        compile_only: bool,
        /// sm_80, sm_89 or sm_90a [default: all three without a GPU].
        #[arg(long)]
        arch: Option<String>,
        /// Compare the emulated mma.sync / ldmatrix with the GPU's on random fragments.
        #[arg(long)]
        probe: bool,
    },
}
