use clap::Parser;
use std::path::PathBuf;

use percept::cli::{Cli, Command, ModelArgs, SampleArgs};
use percept::model::task::Task;

fn main() {
    let cli = Cli::parse();
    let reused = percept::backend::cpu::alloc::reuse_freed_memory();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    log::debug!("allocator keeps freed memory for reuse: {reused}");
    match run(cli.command) {
        Ok(true) => {}
        // 128 + the signal after SIGTERM/Ctrl-C stopped the run (cli::interrupt).
        Ok(false) => std::process::exit(percept::cli::interrupt::exit_status(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Ok(false) means the command ran but something it checked failed (exit 1).
fn run(cmd: Command) -> anyhow::Result<bool> {
    match cmd {
        Command::Verify { fixtures, backend, precision, skip_slow, only } => {
            // verify defaults to f32 on every backend (CONVENTIONS.md).
            let precision = precision.unwrap_or(percept::cli::Precision::F32);
            percept::cli::verify::run(&fixtures, backend, precision, skip_slow, &only)
        }
        Command::Depth { images, model, sample } => run_task(Task::Depth, &images, &model, &sample),
        Command::Flow { frames, model, sample } => run_task(Task::Flow, &frames, &model, &sample),
        Command::Segment { images_and_masks, model, sample } => {
            run_task(Task::Segment, &images_and_masks, &model, &sample)
        }
        Command::Status { out } => percept::cli::status::run(&out),
        Command::Inspect { file } => percept::cli::convert::inspect(&file),
        Command::Convert { input, output, dtype } => percept::cli::convert::convert(&input, &output, dtype.as_deref()),
        Command::ToyData { out, seed } => {
            let opts = percept::toydata::ToyDataOptions { seed, ..Default::default() };
            let s = percept::toydata::generate(&out, &opts)?;
            println!(
                "wrote {} files ({:.1} MB) to {}: {} depth views, {} flow pairs, {} amodal samples",
                s.files,
                s.bytes as f64 / 1e6,
                out.display(),
                s.depth_samples,
                s.flow_samples,
                s.segment_samples
            );
            Ok(true)
        }
        Command::Demo { out, model, steps, seed } => percept::cli::demo::run(&out, &model, steps, seed),
        Command::Doctor { probe: true, .. } => percept::cli::doctor::probe(),
        Command::Doctor { compile_only, arch, .. } => percept::cli::doctor::run(compile_only, arch.as_deref()),
        Command::Eval(args) => percept::cli::eval::run(&args),
        Command::Bench { json, reps, only, backend, model, precision } => {
            percept::cli::bench::run(json.as_deref(), reps, &only, backend, model.as_deref(), precision)
        }
    }
}

fn run_task(task: Task, inputs: &[PathBuf], model: &ModelArgs, sample: &SampleArgs) -> anyhow::Result<bool> {
    percept::cli::predict::run(task, inputs, model, &sample.options(), &sample.out, sample.batch, &sample.scale())
}
