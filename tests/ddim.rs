//! DDIM scheduler: the `ddim` fixture (diffusers' own numbers) and properties that hold for
//! any config.

use percept::scheduler::{Ddim, PredictionType, SchedulerConfig, TimestepSpacing};
use percept::verify::ddim::verify_ddim;
use percept::verify::fixture::Fixture;
use serde_json::json;

use crate::support::{assert_all_pass, fixtures_dir, Rng};

#[test]
fn ddim_fixture_every_output_passes() {
    let Some(dir) = fixtures_dir() else { return };
    let fx = Fixture::load(&dir, "ddim").unwrap();
    let checks = verify_ddim(&fx, "f32").unwrap();
    assert_eq!(checks.len(), fx.outputs().len());
    assert_all_pass(&checks);
}

#[test]
fn ddim_sd2_alphas_cumprod_are_bit_exact() {
    // diffusers builds the table in f32; ours must be the same numbers, not merely close
    let Some(dir) = fixtures_dir() else { return };
    let fx = Fixture::load(&dir, "ddim").unwrap();
    for cfg in ["a", "b", "c", "d", "e"] {
        let json = &fx.config()["configs"][cfg];
        let ddim = Ddim::new(&SchedulerConfig::from_json(json).unwrap()).unwrap();
        let want = fx.tensor(&format!("{cfg}.alphas_cumprod")).unwrap().data;
        let differing = ddim.alphas_cumprod().iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "config {cfg}: {differing} of 1000 entries differ");
    }
}

fn cfg_with(spacing: &str, offset: i64) -> Ddim {
    let cfg = SchedulerConfig::from_json(&json!({"timestep_spacing": spacing, "steps_offset": offset})).unwrap();
    Ddim::new(&cfg).unwrap()
}

#[test]
fn ddim_timesteps_strictly_decreasing_and_in_range_for_odd_counts() {
    for spacing in ["leading", "trailing", "linspace"] {
        let offset = if spacing == "leading" { 1 } else { 0 };
        let ddim = cfg_with(spacing, offset);
        for n in [1usize, 3, 7, 9, 13, 27, 33, 49, 77, 99, 333, 999] {
            let ts = ddim.timesteps(n).unwrap();
            assert!(ts.len() == n || (spacing == "trailing" && ts.len() == n + 1), "{spacing}/{n}: {} steps", ts.len());
            assert!(ts.windows(2).all(|w| w[0] > w[1]), "{spacing}/{n}: not strictly decreasing: {ts:?}");
            assert!(ts.iter().all(|&t| (-1..1000).contains(&t)), "{spacing}/{n}: out of range: {ts:?}");
            let first = match spacing {
                "leading" => (n as i64 - 1) * (1000 / n as i64) + 1,
                // numpy's linspace(0, 999, 1) is [0]
                "linspace" if n == 1 => 0,
                _ => 999,
            };
            assert_eq!(ts[0], first, "{spacing}/{n}: first timestep");
        }
    }
}

#[test]
fn ddim_timesteps_known_values() {
    // SD-2 defaults: leading spacing with offset 1
    let sd2 = Ddim::new(&SchedulerConfig::sd2()).unwrap();
    assert_eq!(sd2.timesteps(4).unwrap(), vec![751, 501, 251, 1]);
    assert_eq!(sd2.timesteps(3).unwrap(), vec![667, 334, 1]);
    // linspace rounds half to even as numpy does: 999/2 = 499.5 -> 500
    assert_eq!(cfg_with("linspace", 0).timesteps(3).unwrap(), vec![999, 500, 0]);
    assert_eq!(cfg_with("trailing", 0).timesteps(3).unwrap(), vec![999, 666, 332]);
    // diffusers' trailing quirk: numpy's arange gives 62 entries for 61 steps, ending at -1
    let t61 = cfg_with("trailing", 0).timesteps(61).unwrap();
    assert_eq!(t61.len(), 62);
    assert_eq!(*t61.last().unwrap(), -1);
}

#[test]
fn ddim_step_counts_outside_range_are_errors() {
    let sd2 = Ddim::new(&SchedulerConfig::sd2()).unwrap();
    assert!(sd2.timesteps(0).is_err());
    assert!(sd2.timesteps(1001).is_err());
    assert_eq!(sd2.timesteps(1000).unwrap().len(), 1000);
    let x = vec![0.0f32; 4];
    let mut out = vec![0.0f32; 4];
    assert!(sd2.step(&x, 1000, 10, &x, &mut out, None).is_err(), "t = 1000 is past the table");
    assert!(sd2.step(&x, 501, 0, &x, &mut out, None).is_err());
    assert!(sd2.step(&x[..3], 501, 10, &x, &mut out, None).is_err(), "length mismatch");
}

#[test]
fn ddim_bad_config_values_are_clear_errors() {
    let cases = [
        (json!({"beta_schedule": "cosine"}), "beta_schedule"),
        (json!({"prediction_type": "flow"}), "prediction_type"),
        (json!({"timestep_spacing": "uniform"}), "timestep_spacing"),
        (json!({"num_train_timesteps": 0}), "num_train_timesteps"),
        (json!({"num_train_timesteps": 10.5}), "num_train_timesteps"),
        (json!({"beta_start": "small"}), "beta_start"),
        (json!({"set_alpha_to_one": 1}), "set_alpha_to_one"),
        (json!({"thresholding": true}), "thresholding"),
        (json!({"trained_betas": [0.1, 0.2]}), "trained_betas"),
        (json!([1, 2]), "object"),
    ];
    for (json, word) in cases {
        let err = SchedulerConfig::from_json(&json).expect_err(&format!("{json} should be refused"));
        assert!(err.to_string().contains(word), "error for {json} does not name {word}: {err}");
    }
}

#[test]
fn ddim_config_defaults_and_unknown_keys() {
    // the SD-2 folder's file: unknown keys and nulls are ignored, missing keys are SD-2's
    let json = json!({"_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
        "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": false,
        "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null});
    assert_eq!(SchedulerConfig::from_json(&json).unwrap(), SchedulerConfig::sd2());
    let empty = SchedulerConfig::from_json(&json!({})).unwrap();
    assert_eq!(empty, SchedulerConfig::sd2());
    assert_eq!(empty.prediction_type, PredictionType::VPrediction);
    assert_eq!(empty.timestep_spacing, TimestepSpacing::Leading);
}

#[test]
fn ddim_step_properties() {
    let mut rng = Rng(7);
    let x: Vec<f32> = rng.vec(64);
    let mo: Vec<f32> = rng.vec(64);
    let mut prev = vec![0.0f32; 64];
    let mut x0 = vec![0.0f32; 64];
    // "sample" prediction with alpha_prev = 1 at the last step returns the prediction itself
    let cfg = SchedulerConfig::from_json(&json!({"prediction_type": "sample", "set_alpha_to_one": true})).unwrap();
    let ddim = Ddim::new(&cfg).unwrap();
    ddim.step(&mo, 1, 10, &x, &mut prev, Some(&mut x0)).unwrap();
    assert_eq!(prev, mo);
    assert_eq!(x0, mo);
    // v-prediction: x0 = sqrt(a) x - sqrt(1-a) v, checked against the table directly
    let sd2 = Ddim::new(&SchedulerConfig::sd2()).unwrap();
    sd2.step(&mo, 501, 10, &x, &mut prev, Some(&mut x0)).unwrap();
    let a = sd2.alphas_cumprod()[501] as f64;
    for i in 0..64 {
        let want = a.sqrt() * x[i] as f64 - (1.0 - a).sqrt() * mo[i] as f64;
        assert!((x0[i] as f64 - want).abs() < 1e-6, "x0[{i}] = {} want {want}", x0[i]);
    }
    // clip_sample clamps x0 to the range
    let cfg = SchedulerConfig::from_json(
        &json!({"prediction_type": "epsilon", "clip_sample": true, "clip_sample_range": 0.25}),
    )
    .unwrap();
    Ddim::new(&cfg).unwrap().step(&mo, 901, 10, &x, &mut prev, Some(&mut x0)).unwrap();
    assert!(x0.iter().all(|v| v.abs() <= 0.25));
    assert!(x0.iter().any(|v| v.abs() == 0.25));
}

#[test]
fn ddim_cosine_schedule_is_capped() {
    let cfg = SchedulerConfig::from_json(&json!({"beta_schedule": "squaredcos_cap_v2"})).unwrap();
    let ddim = Ddim::new(&cfg).unwrap();
    let a = ddim.alphas_cumprod();
    assert!(a.windows(2).all(|w| w[1] < w[0]));
    assert!(a[999] > 0.0 && a[999] < 1e-3);
}
