//! Embedding percept: load the demo model once, open a session, predict depth for an image.
//!
//!     cargo run --release --example embed_depth -- IMAGE [STEPS SEED [CLI_DEPTH_NPY]]
//!
//! With `CLI_DEPTH_NPY` (the `_depth.npy` that `percept depth IMAGE --steps STEPS --seed SEED`
//! wrote) it checks that the library gives the command line's result for the same input and
//! seed, within float rounding, and exits non-zero when it does not (CI runs it so).

use std::process::ExitCode;

use percept::{DepthOptions, Device, ImageView, Model, Session};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("embed_depth: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<bool, Box<dyn std::error::Error>> {
    let Some(image_path) = args.first() else {
        return Err("usage: embed_depth IMAGE [STEPS SEED [CLI_DEPTH_NPY]]".into());
    };
    let steps: usize = args.get(1).map_or(Ok(10), |s| s.parse())?;
    let seed: u64 = args.get(2).map_or(Ok(0), |s| s.parse())?;

    // Decode the picture however the application does; percept borrows the pixels.
    let rgb = image::open(image_path)?.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);

    let model = Model::demo()?; // load once; share with any number of sessions
    let mut session = Session::new(&model, Device::Cpu { threads: None })?;
    let image = ImageView::rgb8(rgb.as_raw(), w, h)?;
    let opts = DepthOptions { num_inference_steps: steps, seed, ..Default::default() };
    let result = session.depth(&image, &opts)?;
    let (lo, hi) = result.depth.iter().fold((f32::MAX, f32::MIN), |(a, b), &d| (a.min(d), b.max(d)));
    println!("{image_path}: {w}x{h} depth on {} in [{lo:.3}, {hi:.3}]", session.device_name());

    let Some(npy) = args.get(3) else { return Ok(true) };
    // percept's own .npy reader (an internal module, not the public API).
    let (shape, cli) = percept::io::npy::read_npy_f32(std::path::Path::new(npy))?;
    if shape != [h, w] {
        println!("{npy}: shape {shape:?}, the library's result is [{h}, {w}]");
        return Ok(false);
    }
    let worst = cli.iter().zip(&result.depth).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let same = worst <= 1e-4;
    println!(
        "{npy}: largest difference from the command line's depth {worst:.2e} ({})",
        if same { "equal within float rounding" } else { "DIFFERENT" }
    );
    Ok(same)
}
