use clap::Parser;
use std::path::PathBuf;

use percept::cli::{Cli, Command, ModelArgs, SampleArgs};
use percept::pipeline::tasks::TaskKind;

fn main() {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    match run(cli.command) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
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
            percept::cli::verify::run(&fixtures, backend, precision, skip_slow, &only)
        }
        Command::Depth { images, model, sample } => run_task(TaskKind::Depth, &images, &model, &sample),
        Command::Flow { frames, model, sample } => run_task(TaskKind::Flow, &frames, &model, &sample),
        Command::Segment { images_and_masks, model, sample } => {
            run_task(TaskKind::Segment, &images_and_masks, &model, &sample)
        }
        Command::Eval(args) => percept::cli::eval::run(&args),
        Command::Bench { json, reps, only } => percept::cli::bench::run(json.as_deref(), reps, &only),
    }
}

fn run_task(task: TaskKind, inputs: &[PathBuf], model: &ModelArgs, sample: &SampleArgs) -> anyhow::Result<bool> {
    percept::cli::predict::run(task, inputs, model, &sample.options(), &sample.out, sample.batch)
}
