//! Post-processing: the `postprocess` fixture (the authors' functions) and properties of the
//! helpers that hold for any input.

use percept::postprocess::ensemble::{alignment_stack, max_res_size, resize_nearest_exact};
use percept::postprocess::metrics::{amodal_mask, fit_affine};
use percept::postprocess::*;
use percept::verify::fixture::Fixture;
use percept::verify::postprocess::verify_postprocess;

use crate::support::{assert_all_pass, fixtures_dir, Rng};

#[test]
fn postprocess_fixture_every_output_passes() {
    let Some(dir) = fixtures_dir() else { return };
    let fx = Fixture::load(&dir, "postprocess").unwrap();
    let checks = verify_postprocess(&fx, "f32").unwrap();
    assert_eq!(checks.len(), fx.outputs().len());
    assert_all_pass(&checks);
}

#[test]
fn postprocess_deterministic_ensemble_parts_are_tight() {
    // tighter than the fixture's own tolerances: these involve no optimiser noise
    let Some(dir) = fixtures_dir() else { return };
    let fx = Fixture::load(&dir, "postprocess").unwrap();
    let checks = verify_postprocess(&fx, "f32").unwrap();
    let err = |name: &str| checks.iter().find(|c| c.output == name).unwrap().error;
    assert_eq!(err("ens_depth_small"), 0.0);
    assert!(err("ens_param_init") == 0.0, "init params differ: {}", err("ens_param_init"));
    assert!(err("ens_eval_costs") < 1e-6, "cost: {}", err("ens_eval_costs"));
    assert!(err("ens_depth_noopt") < 1e-6, "noopt depth: {}", err("ens_depth_noopt"));
    assert!(err("ens_uncertainty_noopt") < 1e-6, "noopt uncertainty: {}", err("ens_uncertainty_noopt"));
    assert!(err("spectral_lut") < 1e-7, "lut: {}", err("spectral_lut"));
    assert!(err("depth_color") == 0.0, "depth colours: {}", err("depth_color"));
}

#[test]
fn postprocess_bfgs_first_gradient_points_match_scipy() {
    // scipy evaluates f(x0), then x0 + h e_i with h = sqrt(eps) for each parameter: our first
    // eleven evaluation points must be the reference's, bit for bit after rounding to f32
    let Some(dir) = fixtures_dir() else { return };
    let fx = Fixture::load(&dir, "postprocess").unwrap();
    let ens = fx.tensor("depth_ens").unwrap();
    let opts = EnsembleOptions { max_res: Some(50), max_iter: 2, ..EnsembleOptions::default() };
    let out = ensemble_depth(&ens.data, 5, 64, 64, &opts).unwrap();
    let want = fx.tensor("ens_eval_params").unwrap().data;
    for (i, (p, _)) in out.search.evaluations.iter().take(11).enumerate() {
        let ours: Vec<f32> = p.iter().map(|&v| v as f32).collect();
        assert_eq!(ours, want[i * 10..(i + 1) * 10].to_vec(), "evaluation {i}");
    }
    assert_eq!(out.search.nit, 2);
}

#[test]
fn postprocess_ensemble_of_affine_copies_recovers_the_shape() {
    // members that are affine copies of one map align exactly: the result is that map
    // normalised to [0, 1], with zero uncertainty
    let (h, w) = (13, 17);
    let mut rng = Rng(3);
    let base: Vec<f32> = rng.vec(h * w);
    let affine = [(1.0f32, 0.0f32), (2.0, 0.5), (0.5, -0.3)];
    let members: Vec<f32> = affine.iter().flat_map(|&(s, t)| base.iter().map(move |&b| b * s + t)).collect();
    let out = ensemble_depth(&members, 3, h, w, &EnsembleOptions::default()).unwrap();
    let (lo, hi) = base.iter().fold((f32::MAX, f32::MIN), |(l, u), &v| (l.min(v), u.max(v)));
    for (d, b) in out.depth.iter().zip(&base) {
        assert!((d - (b - lo) / (hi - lo)).abs() < 1e-5);
    }
    assert!(out.uncertainty.unwrap().iter().all(|&u| u < 1e-5));
    assert!(ensemble_depth(&members[1..], 3, h, w, &EnsembleOptions::default()).is_err());
}

#[test]
fn postprocess_resize_nearest_exact_and_max_res() {
    assert_eq!(max_res_size(64, 64, 50), (50, 50));
    assert_eq!(max_res_size(480, 640, 50), (37, 50));
    assert_eq!(max_res_size(640, 480, 50), (50, 37));
    // identity and exact halving
    let src: Vec<f32> = (0..16).map(|v| v as f32).collect();
    assert_eq!(resize_nearest_exact(&src, 4, 4, 4, 4), src);
    // nearest-exact samples pixel centres: (0 + 0.5) * 2 -> source 1
    assert_eq!(resize_nearest_exact(&src, 4, 4, 2, 2), vec![5.0, 7.0, 13.0, 15.0]);
    // no resize when already small enough
    let (stack, nh, nw) = alignment_stack(&src, 1, 4, 4, Some(50));
    assert_eq!((stack, nh, nw), (src.clone(), 4, 4));
}

#[test]
fn postprocess_member_reductions() {
    let members = [1.0f32, -3.0, 5.0, 2.0, 9.0, 0.0, 3.0, -2.0];
    // 4 members of 2 pixels: pixel 0 has 1, 5, 9, 3 -> lower middle 3; pixel 1: -3, 2, 0, -2 -> -2
    assert_eq!(median_over_members(&members, 4), vec![3.0, -2.0]);
    assert_eq!(mean_over_members(&members, 4), vec![4.5, -0.75]);
    let amodal = [1.5f32, -2.0, 1.2, -1.5, 0.5, 0.0];
    // pixel 1: -2, -1.5, 0 -> median -1.5 -> clamped to -1
    assert_eq!(amodal_median(&amodal, 3), vec![1.0, -1.0]);
}

#[test]
fn postprocess_fits_recover_known_lines() {
    let mut rng = Rng(11);
    let pred: Vec<f32> = rng.vec(500);
    let gt: Vec<f32> = pred.iter().map(|p| 3.0 * p - 0.25).collect();
    let (a, b, fitted) = depth_fit(&pred, &gt, None).unwrap();
    assert!((a - 3.0).abs() < 1e-6 && (b + 0.25).abs() < 1e-6, "{a} {b}");
    assert!(fitted.iter().zip(&gt).all(|(f, g)| (f - g).abs() < 1e-5));
    // a mask excludes corrupted pixels from the fit
    let mut noisy = gt.clone();
    noisy[..50].iter_mut().for_each(|v| *v = 100.0);
    let valid: Vec<bool> = (0..500).map(|i| i >= 50).collect();
    let (a, b) = fit_affine(&pred, &noisy, Some(&valid)).unwrap();
    assert!((a - 3.0).abs() < 1e-6 && (b + 0.25).abs() < 1e-6);
    // EPE of an exact affine flow after fitting is zero; without the fit it is not
    let gy: Vec<f32> = pred.iter().map(|p| -2.0 * p + 1.0).collect();
    let r = epe_with_fit(&pred, &gt, &pred, &gy).unwrap();
    assert!(r[0] < 1e-6 && (r[3] + 2.0).abs() < 1e-6 && (r[4] - 1.0).abs() < 1e-6);
    assert!(epe(&pred, &gt, &pred, &gy).unwrap() > 0.1);
    assert!(depth_fit(&pred, &gt[..10], None).is_err());
}

#[test]
fn postprocess_depth_metrics_formulas() {
    let gt = [1.0f32, 2.0, 4.0, 8.0];
    let valid = [true; 4];
    // an affine copy fits exactly
    let pred: Vec<f32> = gt.iter().map(|g| 0.5 * g + 1.0).collect();
    let m = depth_metrics(&pred, &gt, &valid, None).unwrap();
    assert!(m.abs_rel < 1e-9 && m.delta1 == 1.0 && m.valid_pixels == 4);
    // a constant prediction fits to mean(gt) = 3.75: AbsRel = mean(|3.75 - g| / g)
    let m = depth_metrics(&[1.0; 4], &gt, &valid, None).unwrap();
    let want = (2.75 / 1.0 + 1.75 / 2.0 + 0.25 / 4.0 + 4.25 / 8.0) / 4.0;
    assert!((m.abs_rel - want).abs() < 1e-12, "{} vs {want}", m.abs_rel);
    assert_eq!(m.delta1, 0.25); // only 3.75 vs 4 is within 1.25
}

#[test]
fn postprocess_iou_psnr_and_amodal_mask() {
    assert_eq!(mask_iou(&[true, true, false, false], &[true, false, true, false]).unwrap(), 1.0 / 3.0);
    assert_eq!(mask_iou(&[false; 3], &[false; 3]).unwrap(), 1.0);
    let a = [0.0f32, 0.5, 1.0, 0.25];
    let b = [0.1f32, 0.5, 1.0, 0.25];
    assert!((psnr(&a, &b, 1.0).unwrap() - 10.0 * (1.0 / (0.01f64 / 4.0)).log10()).abs() < 1e-4);
    assert!(psnr(&a, &a, 1.0).unwrap().is_infinite());
    // white background is not object; grey is
    let rgb = [1.0f32, 0.5, 1.0, 0.5, 0.96, 0.5];
    assert_eq!(amodal_mask(&rgb), vec![false, true]);
}

#[test]
fn postprocess_flow_colours() {
    // zero motion is light grey 0.9; the fastest pixel is fully saturated
    let u = [0.0f32, 1.0, 0.0, -1.0];
    let v = [0.0f32, 0.0, 1.0, 0.0];
    let c = flow_to_color(&u, &v).unwrap();
    let px = |p: usize| [c[p], c[4 + p], c[8 + p]];
    assert_eq!(px(0), [0.9, 0.9, 0.9]);
    // u = 1, v = 0: angle 0, hue 0.5 -> cyan-ish (r = 0 after saturation 1)
    let [r, g, b] = px(1);
    assert!(r.abs() < 1e-6 && (g - 0.9).abs() < 1e-6 && (b - 0.9).abs() < 1e-6, "{:?}", px(1));
    // u = -1, v = 0: angle pi, hue 1 -> red
    let [r, g, b] = px(3);
    assert!((r - 0.9).abs() < 1e-6 && g.abs() < 1e-6 && b.abs() < 1e-6, "{:?}", px(3));
    // an all-zero field is grey everywhere, not NaN
    assert!(flow_to_color(&[0.0; 3], &[0.0; 3]).unwrap().iter().all(|&x| x == 0.9));
    assert!(flow_to_color(&[0.0; 3], &[0.0; 2]).is_err());
}

#[test]
fn postprocess_spectral_lut_ends_and_depth_colours() {
    let lut = spectral_lut();
    assert_eq!(lut[0], [158.0 / 255.0, 1.0 / 255.0, 66.0 / 255.0]);
    assert_eq!(lut[255], [94.0 / 255.0, 79.0 / 255.0, 162.0 / 255.0]);
    // the middle control point (255, 255, 191) sits at x = 127.5, between rows 127 and 128
    assert!(lut[127][0] > 0.99 && lut[128][0] > 0.99);
    let c = colorize_depth(&[0.0, 1.0, 0.5, 2.0, -1.0]);
    assert_eq!([c[0], c[5], c[10]], lut[0]);
    assert_eq!([c[1], c[6], c[11]], lut[255]);
    assert_eq!([c[2], c[7], c[12]], lut[128]);
    assert_eq!([c[3], c[8], c[13]], lut[255]);
    assert_eq!([c[4], c[9], c[14]], lut[0]);
}
