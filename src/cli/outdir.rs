//! Output folders are checked before any compute: each is created and a probe file (a name unique
//! to this process, so that shards sharing the folder do not collide) is written and removed.
//! A folder that cannot be created or written fails the command at once, naming the path, instead
//! of after hours of model time when the first output is written.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Creates `dir` (and its parents) and probe-writes it. Returns whether `dir` itself was created
/// (a command that ends up writing nothing can remove it again).
pub fn prepare(dir: &Path) -> Result<bool> {
    let existed = dir.is_dir();
    if let Err(e) = std::fs::create_dir_all(dir) {
        let blocker = dir.ancestors().skip(1).find(|a| a.is_file());
        let why = match blocker {
            Some(f) => format!("{} is a file, not a folder", f.display()),
            None if dir.is_file() => "it is a file, not a folder".to_string(),
            None => crate::error::Error::io(dir, e).to_string(),
        };
        bail!("output folder {} cannot be created: {why}", dir.display());
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let probe = dir.join(format!(".percept-probe-{}-{nanos}", std::process::id()));
    let written = std::fs::File::create_new(&probe).and_then(|mut f| {
        f.write_all(b"percept checks that it can write here\n")?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    if let Err(e) = written {
        bail!("output folder {} is not writable: {}", dir.display(), crate::error::Error::io(&probe, e));
    }
    let stale = crate::io::atomic::remove_stale_temps(dir);
    if stale > 0 {
        eprintln!("removed {stale} temporary file(s) that killed runs left in {}", dir.display());
    }
    Ok(!existed)
}

/// [`prepare`] for `out` and every distinct folder the given output files go to.
pub fn prepare_for(out: &Path, outputs: impl IntoIterator<Item = PathBuf>) -> Result<()> {
    let mut dirs = BTreeSet::from([out.to_path_buf()]);
    dirs.extend(outputs.into_iter().filter_map(|p| p.parent().map(Path::to_path_buf)));
    for d in &dirs {
        prepare(d)?;
    }
    Ok(())
}
