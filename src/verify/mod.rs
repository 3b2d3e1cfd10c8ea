//! `percept verify`: run every fixture in a folder and compare with the authors' outputs.
pub mod ddim;
pub mod fixture;
pub mod postprocess;

use fixture::{Fixture, Tolerance};

use crate::error::Result;
use crate::tensor::rel_l2;

/// The result of comparing one output of one fixture.
#[derive(Clone, Debug)]
pub struct Check {
    pub fixture: String,
    pub output: String,
    /// Relative L2 error (for exact outputs: the number of differing elements).
    pub error: f64,
    pub tolerance: Tolerance,
    /// `None` when the output is informative (reported, not judged).
    pub pass: Option<bool>,
    pub note: String,
}

impl Check {
    /// One line: fixture, output, error, tolerance, PASS/FAIL/INFO.
    pub fn line(&self) -> String {
        let tol = match self.tolerance {
            Tolerance::Rel(t) => format!("{t:.0e}"),
            Tolerance::Exact => "exact".into(),
            Tolerance::Informative => "informative".into(),
        };
        let verdict = match self.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "INFO",
        };
        let note = if self.note.is_empty() { String::new() } else { format!("  ({})", self.note) };
        format!("{:<16} {:<28} {:>10.3e}  tol {:<11} {verdict}{note}", self.fixture, self.output, self.error, tol)
    }
}

/// Compare `got` with the fixture's stored output `name` under the JSON's tolerance for
/// `precision` ("f32" or "bf16"). Exact outputs compare element for element.
pub fn compare(fx: &Fixture, name: &str, got: &[f32], precision: &str) -> Result<Check> {
    let want = fx.tensor(name)?;
    let tolerance = fx.tolerance(name, precision);
    if want.data.len() != got.len() {
        return Ok(Check {
            fixture: fx.name.clone(),
            output: name.into(),
            error: f64::INFINITY,
            tolerance,
            pass: Some(false),
            note: format!("size {} but the fixture has {:?}", got.len(), want.shape),
        });
    }
    let (error, pass) = match tolerance {
        Tolerance::Exact => {
            let diff = got.iter().zip(&want.data).filter(|(a, b)| a != b).count();
            (diff as f64, Some(diff == 0))
        }
        Tolerance::Rel(t) => {
            let e = rel_l2(got, &want.data);
            (e, Some(e <= t))
        }
        Tolerance::Informative => (rel_l2(got, &want.data), None),
    };
    Ok(Check { fixture: fx.name.clone(), output: name.into(), error, tolerance, pass, note: String::new() })
}
pub mod models;
pub mod pipeline;
pub mod run;
