//! scipy's `minimize(method="BFGS")` with no gradient given, step for step: forward
//! differences with the absolute step sqrt(f64::EPSILON), the MINPACK-2 line search `dcsrch`
//! (scipy's `line_search_wolfe1`) with the strong-Wolfe search (`line_search_wolfe2`) as its
//! fallback, and the inverse-Hessian update of `_minimize_bfgs`. Marigold's depth ensembling
//! runs this on a float32 cost, where the finite differences are mostly rounding noise, so only
//! a faithful copy of the algorithm (and of the cost's rounding) can land near the reference.

/// Outcome of [`minimize_bfgs`].
#[derive(Clone, Debug)]
pub struct BfgsResult {
    pub x: Vec<f64>,
    pub fun: f64,
    /// iterations done (scipy's `nit`)
    pub nit: usize,
    /// every point at which the objective was evaluated, in order, with its value
    pub evaluations: Vec<(Vec<f64>, f64)>,
    /// true when a line search failed (scipy's status 2, "precision loss")
    pub line_search_failed: bool,
}

/// Objective with the memo scipy's `ScalarFunction` keeps: the value at the last point.
struct Objective<'a> {
    f: &'a mut dyn FnMut(&[f64]) -> f64,
    last: Option<(Vec<f64>, f64)>,
    evaluations: Vec<(Vec<f64>, f64)>,
}

impl Objective<'_> {
    fn value(&mut self, x: &[f64]) -> f64 {
        if let Some((lx, lf)) = &self.last {
            if lx.as_slice() == x {
                return *lf;
            }
        }
        let v = self.eval(x);
        self.last = Some((x.to_vec(), v));
        v
    }

    fn eval(&mut self, x: &[f64]) -> f64 {
        let v = (self.f)(x);
        self.evaluations.push((x.to_vec(), v));
        v
    }

    /// scipy's `approx_derivative(method="2-point", abs_step=sqrt(eps))`.
    fn gradient(&mut self, x: &[f64]) -> Vec<f64> {
        let f0 = self.value(x);
        let eps = f64::EPSILON.sqrt();
        let mut g = vec![0.0; x.len()];
        let mut xi = x.to_vec();
        for i in 0..x.len() {
            let mut h = eps;
            if (x[i] + h) - x[i] == 0.0 {
                // step lost against a huge |x|: scipy falls back to a relative step
                let sign = if x[i] >= 0.0 { 1.0 } else { -1.0 };
                h = eps * sign * x[i].abs().max(1.0);
            }
            xi[i] = x[i] + h;
            let fi = self.eval(&xi);
            xi[i] = x[i];
            g[i] = (fi - f0) / ((x[i] + h) - x[i]);
        }
        g
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(x: &[f64], alpha: f64, p: &[f64]) -> Vec<f64> {
    x.iter().zip(p).map(|(xi, pi)| xi + alpha * pi).collect()
}

/// Minimise `f` from `x0`; `gtol` bounds the largest gradient component (scipy's `tol` for
/// BFGS), `max_iter` the number of iterations.
pub fn minimize_bfgs(f: &mut dyn FnMut(&[f64]) -> f64, x0: &[f64], gtol: f64, max_iter: usize) -> BfgsResult {
    let n = x0.len();
    let mut obj = Objective { f, last: None, evaluations: Vec::new() };
    let mut xk = x0.to_vec();
    let mut old_fval = obj.value(&xk);
    let mut gfk = obj.gradient(&xk);
    // identity; scipy starts from an integer eye, the same numbers
    let mut hk: Vec<f64> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
    // sets the first trial step to a move of about 1
    let mut old_old_fval = old_fval + dot(&gfk, &gfk).sqrt() / 2.0;
    let mut k = 0;
    let mut gnorm = gfk.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    let mut failed = false;
    while gnorm > gtol && k < max_iter {
        let pk: Vec<f64> = (0..n).map(|i| -dot(&hk[i * n..(i + 1) * n], &gfk)).collect();
        let found = line_search_wolfe1(&mut obj, &xk, &pk, &gfk, old_fval, old_old_fval)
            .or_else(|| line_search_wolfe2(&mut obj, &xk, &pk, &gfk, old_fval, old_old_fval));
        let Some(ls) = found else {
            failed = true;
            break;
        };
        old_old_fval = old_fval;
        old_fval = ls.fval;
        let sk: Vec<f64> = pk.iter().map(|p| ls.alpha * p).collect();
        let xkp1: Vec<f64> = xk.iter().zip(&sk).map(|(x, s)| x + s).collect();
        xk = xkp1;
        let gfkp1 = match ls.grad {
            Some(g) => g,
            None => obj.gradient(&xk),
        };
        let yk: Vec<f64> = gfkp1.iter().zip(&gfk).map(|(a, b)| a - b).collect();
        gfk = gfkp1;
        k += 1;
        gnorm = gfk.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        if gnorm <= gtol {
            break;
        }
        if ls.alpha * dot(&pk, &pk).sqrt() <= 0.0 {
            break;
        }
        if !old_fval.is_finite() {
            failed = true;
            break;
        }
        let rhok_inv = dot(&yk, &sk);
        let rhok = if rhok_inv == 0.0 { 1000.0 } else { 1.0 / rhok_inv };
        hk = bfgs_update(&hk, &sk, &yk, rhok);
    }
    BfgsResult { x: xk, fun: old_fval, nit: k, evaluations: obj.evaluations, line_search_failed: failed }
}

/// H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T
fn bfgs_update(h: &[f64], s: &[f64], y: &[f64], rho: f64) -> Vec<f64> {
    let n = s.len();
    let eye = |i: usize, j: usize| if i == j { 1.0 } else { 0.0 };
    let a1: Vec<f64> = (0..n * n).map(|ij| eye(ij / n, ij % n) - s[ij / n] * y[ij % n] * rho).collect();
    let a2: Vec<f64> = (0..n * n).map(|ij| eye(ij / n, ij % n) - y[ij / n] * s[ij % n] * rho).collect();
    let matmul = |a: &[f64], b: &[f64]| -> Vec<f64> {
        (0..n * n).map(|ij| (0..n).map(|l| a[(ij / n) * n + l] * b[l * n + ij % n]).sum()).collect()
    };
    let t = matmul(&a1, &matmul(h, &a2));
    (0..n * n).map(|ij| t[ij] + rho * s[ij / n] * s[ij % n]).collect()
}

struct LineSearch {
    alpha: f64,
    fval: f64,
    /// gradient at the accepted point, when the search computed it
    grad: Option<Vec<f64>>,
}

const C1: f64 = 1e-4;
const C2: f64 = 0.9;
const AMAX: f64 = 1e100;
const AMIN: f64 = 1e-100;

/// First trial step: a quadratic through the last decrease, capped at 1.
fn initial_step(phi0: f64, old_phi0: f64, derphi0: f64) -> f64 {
    if derphi0 != 0.0 {
        let a = (1.01 * 2.0 * (phi0 - old_phi0) / derphi0).min(1.0);
        if a < 0.0 {
            1.0
        } else {
            a
        }
    } else {
        1.0
    }
}

fn line_search_wolfe1(
    obj: &mut Objective,
    xk: &[f64],
    pk: &[f64],
    gfk: &[f64],
    old_fval: f64,
    old_old_fval: f64,
) -> Option<LineSearch> {
    let derphi0 = dot(gfk, pk);
    let alpha1 = initial_step(old_fval, old_old_fval, derphi0);
    let mut grad: Option<Vec<f64>> = None;
    let mut search = Dcsrch::new(C1, C2, 1e-14, AMIN, AMAX);
    let mut stp = alpha1;
    let (mut f, mut g) = (old_fval, derphi0);
    let mut task = Task::Start;
    for _ in 0..100 {
        let (s, t) = search.iterate(stp, f, g, task);
        stp = s;
        task = t;
        if !stp.is_finite() {
            return None;
        }
        if task != Task::Fg {
            break;
        }
        let x = axpy(xk, stp, pk);
        f = obj.value(&x);
        let gx = obj.gradient(&x);
        g = dot(&gx, pk);
        grad = Some(gx);
    }
    (task == Task::Convergence).then_some(LineSearch { alpha: stp, fval: f, grad })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Task {
    Start,
    Fg,
    Convergence,
    Warning,
    Error,
}

/// MINPACK-2 `dcsrch` as scipy's `_dcsrch.DCSRCH` keeps it.
struct Dcsrch {
    ftol: f64,
    gtol: f64,
    xtol: f64,
    stpmin: f64,
    stpmax: f64,
    brackt: bool,
    stage: u8,
    finit: f64,
    ginit: f64,
    gtest: f64,
    width: f64,
    width1: f64,
    stx: f64,
    fx: f64,
    gx: f64,
    sty: f64,
    fy: f64,
    gy: f64,
    stmin: f64,
    stmax: f64,
}

impl Dcsrch {
    fn new(ftol: f64, gtol: f64, xtol: f64, stpmin: f64, stpmax: f64) -> Self {
        Dcsrch {
            ftol,
            gtol,
            xtol,
            stpmin,
            stpmax,
            brackt: false,
            stage: 1,
            finit: 0.0,
            ginit: 0.0,
            gtest: 0.0,
            width: 0.0,
            width1: 0.0,
            stx: 0.0,
            fx: 0.0,
            gx: 0.0,
            sty: 0.0,
            fy: 0.0,
            gy: 0.0,
            stmin: 0.0,
            stmax: 0.0,
        }
    }

    fn iterate(&mut self, mut stp: f64, f: f64, g: f64, task: Task) -> (f64, Task) {
        const P5: f64 = 0.5;
        const P66: f64 = 0.66;
        const XTRAPL: f64 = 1.1;
        const XTRAPU: f64 = 4.0;
        if task == Task::Start {
            if stp < self.stpmin || stp > self.stpmax || g >= 0.0 || self.stpmax < self.stpmin {
                return (stp, Task::Error);
            }
            self.brackt = false;
            self.stage = 1;
            self.finit = f;
            self.ginit = g;
            self.gtest = self.ftol * self.ginit;
            self.width = self.stpmax - self.stpmin;
            self.width1 = self.width / P5;
            self.stx = 0.0;
            self.fx = self.finit;
            self.gx = self.ginit;
            self.sty = 0.0;
            self.fy = self.finit;
            self.gy = self.ginit;
            self.stmin = 0.0;
            self.stmax = stp + XTRAPU * stp;
            return (stp, Task::Fg);
        }
        let ftest = self.finit + stp * self.gtest;
        if self.stage == 1 && f <= ftest && g >= 0.0 {
            self.stage = 2;
        }
        let mut out = Task::Fg;
        if self.brackt && (stp <= self.stmin || stp >= self.stmax) {
            out = Task::Warning;
        }
        if self.brackt && self.stmax - self.stmin <= self.xtol * self.stmax {
            out = Task::Warning;
        }
        if stp == self.stpmax && f <= ftest && g <= self.gtest {
            out = Task::Warning;
        }
        if stp == self.stpmin && (f > ftest || g >= self.gtest) {
            out = Task::Warning;
        }
        if f <= ftest && g.abs() <= self.gtol * -self.ginit {
            out = Task::Convergence;
        }
        if out != Task::Fg {
            return (stp, out);
        }
        let cur = StepState { stx: self.stx, fx: self.fx, dx: self.gx, sty: self.sty, fy: self.fy, dy: self.gy };
        if self.stage == 1 && f <= self.fx && f > ftest {
            // modified function psi(stp) = f(stp) - f(0) - ftol * stp * f'(0) while in stage 1
            let modified = StepState {
                fx: cur.fx - cur.stx * self.gtest,
                dx: cur.dx - self.gtest,
                fy: cur.fy - cur.sty * self.gtest,
                dy: cur.dy - self.gtest,
                ..cur
            };
            let (next, s) =
                dcstep(modified, stp, f - stp * self.gtest, g - self.gtest, &mut self.brackt, self.stmin, self.stmax);
            stp = s;
            self.stx = next.stx;
            self.sty = next.sty;
            self.fx = next.fx + next.stx * self.gtest;
            self.fy = next.fy + next.sty * self.gtest;
            self.gx = next.dx + self.gtest;
            self.gy = next.dy + self.gtest;
        } else {
            let (next, s) = dcstep(cur, stp, f, g, &mut self.brackt, self.stmin, self.stmax);
            stp = s;
            self.stx = next.stx;
            self.fx = next.fx;
            self.gx = next.dx;
            self.sty = next.sty;
            self.fy = next.fy;
            self.gy = next.dy;
        }
        if self.brackt {
            if (self.sty - self.stx).abs() >= P66 * self.width1 {
                stp = self.stx + P5 * (self.sty - self.stx);
            }
            self.width1 = self.width;
            self.width = (self.sty - self.stx).abs();
            self.stmin = self.stx.min(self.sty);
            self.stmax = self.stx.max(self.sty);
        } else {
            self.stmin = stp + XTRAPL * (stp - self.stx);
            self.stmax = stp + XTRAPU * (stp - self.stx);
        }
        stp = stp.max(self.stpmin).min(self.stpmax);
        if self.brackt && (stp <= self.stmin || stp >= self.stmax || self.stmax - self.stmin <= self.xtol * self.stmax)
        {
            stp = self.stx;
        }
        (stp, Task::Fg)
    }
}

#[derive(Clone, Copy, Debug)]
struct StepState {
    stx: f64,
    fx: f64,
    dx: f64,
    sty: f64,
    fy: f64,
    dy: f64,
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// MINPACK-2 `dcstep`: a safeguarded cubic/quadratic step and the update of the bracket.
fn dcstep(st: StepState, stp: f64, fp: f64, dp: f64, brackt: &mut bool, stpmin: f64, stpmax: f64) -> (StepState, f64) {
    let StepState { mut stx, mut fx, mut dx, mut sty, mut fy, mut dy } = st;
    let sgnd = sign(dp) * sign(dx);
    let stpf;
    if fp > fx {
        let theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
        let s = theta.abs().max(dx.abs()).max(dp.abs());
        let mut gamma = s * ((theta / s) * (theta / s) - (dx / s) * (dp / s)).sqrt();
        if stp < stx {
            gamma = -gamma;
        }
        let p = (gamma - dx) + theta;
        let q = ((gamma - dx) + gamma) + dp;
        let r = p / q;
        let stpc = stx + r * (stp - stx);
        let stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx);
        stpf = if (stpc - stx).abs() <= (stpq - stx).abs() { stpc } else { stpc + (stpq - stpc) / 2.0 };
        *brackt = true;
    } else if sgnd < 0.0 {
        let theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
        let s = theta.abs().max(dx.abs()).max(dp.abs());
        let mut gamma = s * ((theta / s) * (theta / s) - (dx / s) * (dp / s)).sqrt();
        if stp > stx {
            gamma = -gamma;
        }
        let p = (gamma - dp) + theta;
        let q = ((gamma - dp) + gamma) + dx;
        let r = p / q;
        let stpc = stp + r * (stx - stp);
        let stpq = stp + (dp / (dp - dx)) * (stx - stp);
        stpf = if (stpc - stp).abs() > (stpq - stp).abs() { stpc } else { stpq };
        *brackt = true;
    } else if dp.abs() < dx.abs() {
        let theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
        let s = theta.abs().max(dx.abs()).max(dp.abs());
        let mut gamma = s * (0.0f64).max((theta / s) * (theta / s) - (dx / s) * (dp / s)).sqrt();
        if stp > stx {
            gamma = -gamma;
        }
        let p = (gamma - dp) + theta;
        let q = (gamma + (dx - dp)) + gamma;
        let r = p / q;
        let stpc = if r < 0.0 && gamma != 0.0 {
            stp + r * (stx - stp)
        } else if stp > stx {
            stpmax
        } else {
            stpmin
        };
        let stpq = stp + (dp / (dp - dx)) * (stx - stp);
        if *brackt {
            let mut f = if (stpc - stp).abs() < (stpq - stp).abs() { stpc } else { stpq };
            f = if stp > stx { f.min(stp + 0.66 * (sty - stp)) } else { f.max(stp + 0.66 * (sty - stp)) };
            stpf = f;
        } else {
            let f = if (stpc - stp).abs() > (stpq - stp).abs() { stpc } else { stpq };
            stpf = f.max(stpmin).min(stpmax);
        }
    } else if *brackt {
        let theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp;
        let s = theta.abs().max(dy.abs()).max(dp.abs());
        let mut gamma = s * ((theta / s) * (theta / s) - (dy / s) * (dp / s)).sqrt();
        if stp > sty {
            gamma = -gamma;
        }
        let p = (gamma - dp) + theta;
        let q = ((gamma - dp) + gamma) + dy;
        let r = p / q;
        stpf = stp + r * (sty - stp);
    } else if stp > stx {
        stpf = stpmax;
    } else {
        stpf = stpmin;
    }
    if fp > fx {
        sty = stp;
        fy = fp;
        dy = dp;
    } else {
        if sgnd < 0.0 {
            sty = stx;
            fy = fx;
            dy = dx;
        }
        stx = stp;
        fx = fp;
        dx = dp;
    }
    (StepState { stx, fx, dx, sty, fy, dy }, stpf)
}

/// scipy's `line_search_wolfe2` (Nocedal & Wright, algorithms 3.5 and 3.6).
fn line_search_wolfe2(
    obj: &mut Objective,
    xk: &[f64],
    pk: &[f64],
    gfk: &[f64],
    old_fval: f64,
    old_old_fval: f64,
) -> Option<LineSearch> {
    let mut last_grad: Option<Vec<f64>> = None;
    let mut phi = |obj: &mut Objective, a: f64| obj.value(&axpy(xk, a, pk));
    let mut derphi = |obj: &mut Objective, last: &mut Option<Vec<f64>>, a: f64| {
        let g = obj.gradient(&axpy(xk, a, pk));
        let d = dot(&g, pk);
        *last = Some(g);
        d
    };
    let phi0 = old_fval;
    let derphi0 = dot(gfk, pk);
    let mut alpha0 = 0.0;
    let mut alpha1 = initial_step(phi0, old_old_fval, derphi0).min(AMAX);
    let mut phi_a1 = phi(obj, alpha1);
    let mut phi_a0 = phi0;
    let mut derphi_a0 = derphi0;
    for i in 0..10 {
        if alpha1 == 0.0 || alpha0 > AMAX {
            return None;
        }
        if phi_a1 > phi0 + C1 * alpha1 * derphi0 || (phi_a1 >= phi_a0 && i > 0) {
            let z = zoom(
                obj,
                &mut phi,
                &mut derphi,
                &mut last_grad,
                [alpha0, alpha1],
                [phi_a0, phi_a1],
                derphi_a0,
                phi0,
                derphi0,
            )?;
            return Some(LineSearch { alpha: z.0, fval: z.1, grad: last_grad });
        }
        let derphi_a1 = derphi(obj, &mut last_grad, alpha1);
        if derphi_a1.abs() <= -C2 * derphi0 {
            return Some(LineSearch { alpha: alpha1, fval: phi_a1, grad: last_grad });
        }
        if derphi_a1 >= 0.0 {
            let z = zoom(
                obj,
                &mut phi,
                &mut derphi,
                &mut last_grad,
                [alpha1, alpha0],
                [phi_a1, phi_a0],
                derphi_a1,
                phi0,
                derphi0,
            )?;
            return Some(LineSearch { alpha: z.0, fval: z.1, grad: last_grad });
        }
        let alpha2 = (2.0 * alpha1).min(AMAX);
        alpha0 = alpha1;
        alpha1 = alpha2;
        phi_a0 = phi_a1;
        phi_a1 = phi(obj, alpha1);
        derphi_a0 = derphi_a1;
    }
    // scipy returns the last trial without a gradient ("did not converge")
    Some(LineSearch { alpha: alpha1, fval: phi_a1, grad: None })
}

/// Directional derivative at a step, keeping the gradient it computed.
type Derphi<'a> = dyn FnMut(&mut Objective, &mut Option<Vec<f64>>, f64) -> f64 + 'a;

#[allow(clippy::too_many_arguments)]
fn zoom(
    obj: &mut Objective,
    phi: &mut dyn FnMut(&mut Objective, f64) -> f64,
    derphi: &mut Derphi,
    last_grad: &mut Option<Vec<f64>>,
    [mut a_lo, mut a_hi]: [f64; 2],
    [mut phi_lo, mut phi_hi]: [f64; 2],
    mut derphi_lo: f64,
    phi0: f64,
    derphi0: f64,
) -> Option<(f64, f64)> {
    let (delta1, delta2) = (0.2, 0.1);
    let mut phi_rec = phi0;
    let mut a_rec = 0.0;
    for i in 0..=10 {
        let dalpha = a_hi - a_lo;
        let (a, b) = if dalpha < 0.0 { (a_hi, a_lo) } else { (a_lo, a_hi) };
        let mut a_j = None;
        if i > 0 {
            let cchk = delta1 * dalpha;
            a_j = cubicmin(a_lo, phi_lo, derphi_lo, a_hi, phi_hi, a_rec, phi_rec)
                .filter(|&aj| !(aj > b - cchk || aj < a + cchk));
        }
        let a_j = match a_j {
            Some(v) => v,
            None => {
                let qchk = delta2 * dalpha;
                match quadmin(a_lo, phi_lo, derphi_lo, a_hi, phi_hi) {
                    Some(v) if !(v > b - qchk || v < a + qchk) => v,
                    _ => a_lo + 0.5 * dalpha,
                }
            }
        };
        let phi_aj = phi(obj, a_j);
        if phi_aj > phi0 + C1 * a_j * derphi0 || phi_aj >= phi_lo {
            phi_rec = phi_hi;
            a_rec = a_hi;
            a_hi = a_j;
            phi_hi = phi_aj;
        } else {
            let derphi_aj = derphi(obj, last_grad, a_j);
            if derphi_aj.abs() <= -C2 * derphi0 {
                return Some((a_j, phi_aj));
            }
            if derphi_aj * (a_hi - a_lo) >= 0.0 {
                phi_rec = phi_hi;
                a_rec = a_hi;
                a_hi = a_lo;
                phi_hi = phi_lo;
            } else {
                phi_rec = phi_lo;
                a_rec = a_lo;
            }
            a_lo = a_j;
            phi_lo = phi_aj;
            derphi_lo = derphi_aj;
        }
    }
    None
}

/// Minimiser of the cubic through (a, fa) with slope fpa, (b, fb) and (c, fc).
fn cubicmin(a: f64, fa: f64, fpa: f64, b: f64, fb: f64, c: f64, fc: f64) -> Option<f64> {
    let cc = fpa;
    let db = b - a;
    let dc = c - a;
    let denom = (db * dc) * (db * dc) * (db - dc);
    if denom == 0.0 || !denom.is_finite() {
        return None;
    }
    let (u, v) = (fb - fa - cc * db, fc - fa - cc * dc);
    let aa = (dc * dc * u + -(db * db) * v) / denom;
    let bb = (-(dc * dc * dc) * u + db * db * db * v) / denom;
    let radical = bb * bb - 3.0 * aa * cc;
    if radical < 0.0 || aa == 0.0 {
        return None;
    }
    let xmin = a + (-bb + radical.sqrt()) / (3.0 * aa);
    xmin.is_finite().then_some(xmin)
}

/// Minimiser of the parabola through (a, fa) with slope fpa and (b, fb).
fn quadmin(a: f64, fa: f64, fpa: f64, b: f64, fb: f64) -> Option<f64> {
    let db = b - a;
    if db == 0.0 {
        return None;
    }
    let bb = (fb - fa - fpa * db) / (db * db);
    if bb == 0.0 || !bb.is_finite() {
        return None;
    }
    let xmin = a - fpa / (2.0 * bb);
    xmin.is_finite().then_some(xmin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfgs_minimises_a_quadratic() {
        let mut f = |x: &[f64]| (x[0] - 3.0).powi(2) + 10.0 * (x[1] + 1.0).powi(2) + 1.0;
        let r = minimize_bfgs(&mut f, &[0.0, 0.0], 1e-6, 200);
        assert!((r.x[0] - 3.0).abs() < 1e-4 && (r.x[1] + 1.0).abs() < 1e-4, "{:?}", r.x);
        assert!((r.fun - 1.0).abs() < 1e-8);
    }

    #[test]
    fn bfgs_minimises_rosenbrock() {
        let mut f = |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let r = minimize_bfgs(&mut f, &[-1.2, 1.0], 1e-5, 400);
        assert!((r.x[0] - 1.0).abs() < 1e-3 && (r.x[1] - 1.0).abs() < 1e-3, "{:?}", r.x);
    }

    #[test]
    fn bfgs_zero_iterations_only_evaluates_the_gradient() {
        let mut f = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>();
        let r = minimize_bfgs(&mut f, &[1.0, 2.0, 3.0], 1e-3, 0);
        assert_eq!(r.x, vec![1.0, 2.0, 3.0]);
        assert_eq!(r.evaluations.len(), 4);
        assert_eq!(r.nit, 0);
    }
}
