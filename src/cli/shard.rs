//! `--shard I/N`: which part of the input list this process takes, from the flag or from the job
//! array it runs in (Slurm's array variables, Kubernetes' Indexed Job index).
//!
//! The partition is by position in the sorted input list: shard I takes every input whose
//! position is I modulo N. It depends on nothing but the list and (I, N), so N processes that
//! see the same inputs cover them exactly once between them, and a requeued shard takes the same
//! inputs again.

use std::fmt;

/// Part `index` of `count` (0 <= index < count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// Where a shard came from, for the line the run prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSource {
    Flag,
    Slurm,
    Kubernetes,
}

impl ShardSource {
    /// For the line a run prints.
    pub fn describe(self) -> &'static str {
        match self {
            ShardSource::Flag => "from --shard",
            ShardSource::Slurm => "from the Slurm array task",
            ShardSource::Kubernetes => "from JOB_COMPLETION_INDEX",
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The whole input list.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parse `I/N`.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard \"{s}\": expected I/N with 0 <= I < N (e.g. 0/4)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) =
            (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Keep this shard's items of a list already in its final (sorted) order.
    pub fn select<T>(&self, items: Vec<T>) -> Vec<T> {
        items.into_iter().enumerate().filter(|(i, _)| i % self.count == self.index).map(|(_, t)| t).collect()
    }

    /// A name for this shard's files (e.g. its manifest) that no other shard of any count uses.
    pub fn file_tag(&self) -> String {
        format!("shard-{:05}-of-{:05}", self.index, self.count)
    }
}

/// The shard to take: the flag if given (`0/1` turns the environment default off), else the
/// job array's. `shard_count` gives the count for Kubernetes, whose Indexed Jobs set only the
/// index (`JOB_COMPLETION_INDEX`). `env` looks up an environment variable (a parameter so tests
/// need not change the process environment).
pub fn choose(
    flag: Option<&str>,
    shard_count: Option<usize>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(Shard, ShardSource)>, String> {
    if let Some(s) = flag {
        let shard = Shard::parse(s)?;
        return Ok((shard != Shard::ALL).then_some((shard, ShardSource::Flag)));
    }
    let num = |name: &str| -> Result<Option<usize>, String> {
        match env(name).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| format!("{name}=\"{v}\" is not a number")),
        }
    };
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let count = num("SLURM_ARRAY_TASK_COUNT")?
            .ok_or("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard I/N")?;
        let offset = id.checked_sub(min).filter(|o| o % step == 0).map(|o| o / step);
        return match offset {
            Some(index) if index < count => Ok(Some((Shard { index, count }, ShardSource::Slurm))),
            _ => Err(format!(
                "Slurm array task {id} (min {min}, step {step}, count {count}) is not on a regular \
                 range; use --array=A-B[:S] or pass --shard I/N"
            )),
        };
    }
    if let Some(index) = num("JOB_COMPLETION_INDEX")? {
        let count = shard_count.ok_or(
            "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but no shard count: pass \
             --shard-count N (the Job's completions) or --shard I/N",
        )?;
        if index >= count {
            return Err(format!("JOB_COMPLETION_INDEX={index} is not below --shard-count {count}"));
        }
        return Ok(Some((Shard { index, count }, ShardSource::Kubernetes)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn shards_partition_the_list_exactly_once() {
        let items: Vec<usize> = (0..23).collect();
        for count in 1..6 {
            let mut seen: Vec<usize> =
                (0..count).flat_map(|index| Shard { index, count }.select(items.clone())).collect();
            seen.sort();
            assert_eq!(seen, items, "{count} shards");
        }
        assert_eq!(Shard { index: 1, count: 3 }.select(items), vec![1, 4, 7, 10, 13, 16, 19, 22]);
    }

    #[test]
    fn flag_parses_and_rejects_nonsense() {
        assert_eq!(Shard::parse("2/5"), Ok(Shard { index: 2, count: 5 }));
        for bad in ["5/5", "1/0", "x/2", "3", "-1/2", ""] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(e.contains("--shard"), "{bad}: {e}");
        }
    }

    #[test]
    fn slurm_arrays_map_to_shards_whatever_their_first_id_and_step() {
        let none = env(&[]);
        assert_eq!(choose(None, None, &none), Ok(None));
        // --array=1-4
        let e = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(choose(None, None, &e), Ok(Some((Shard { index: 2, count: 4 }, ShardSource::Slurm))));
        // --array=10-16:3 -> 10, 13, 16
        let e = env(&[
            ("SLURM_ARRAY_TASK_ID", "16"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert_eq!(choose(None, None, &e), Ok(Some((Shard { index: 2, count: 3 }, ShardSource::Slurm))));
        // The flag wins; 0/1 turns the default off.
        assert_eq!(choose(Some("0/1"), None, &e), Ok(None));
        assert_eq!(choose(Some("1/2"), None, &e), Ok(Some((Shard { index: 1, count: 2 }, ShardSource::Flag))));
        // An irregular list (--array=1,2,7) cannot be a shard.
        let e = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert!(choose(None, None, &e).unwrap_err().contains("--shard I/N"));
    }

    #[test]
    fn kubernetes_index_needs_a_count() {
        let e = env(&[("JOB_COMPLETION_INDEX", "2")]);
        assert!(choose(None, None, &e).unwrap_err().contains("--shard-count"));
        assert_eq!(choose(None, Some(3), &e), Ok(Some((Shard { index: 2, count: 3 }, ShardSource::Kubernetes))));
        assert!(choose(None, Some(2), &e).is_err());
    }
}
