//! The CPU backend against the authors' outputs in ../shared/fixtures.

use percept::backend::cpu::Cpu;
use percept::verify::fixture::Fixture;
use percept::verify::models::{verify_dit, verify_vae};

use crate::support::{assert_all_pass, fixtures_dir};

#[test]
fn dit_tiny_matches_the_authors() {
    let Some(dir) = fixtures_dir() else { return };
    let fx = Fixture::load(&dir, "dit_tiny").unwrap();
    assert_all_pass(&verify_dit(&Cpu::new(), &fx, "f32").unwrap());
}

#[test]
fn vae_tiny_matches_the_authors_with_both_attention_spellings() {
    let Some(dir) = fixtures_dir() else { return };
    let fx = Fixture::load(&dir, "vae_tiny").unwrap();
    let checks = verify_vae(&Cpu::new(), &fx, "f32").unwrap();
    assert!(checks.iter().any(|c| c.output.contains("legacy")));
    assert_all_pass(&checks);
}

#[test]
fn vae_sd2_synthetic_matches_the_authors() {
    let Some(dir) = fixtures_dir() else { return };
    let fx = Fixture::load(&dir, "vae_sd2_synth").unwrap();
    assert_all_pass(&verify_vae(&Cpu::new(), &fx, "f32").unwrap());
}
