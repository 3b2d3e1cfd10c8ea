//! Atomic file writes: write to a temporary name beside the target, fsync, rename, fsync the
//! folder. A crash, SIGKILL or an error (a full disk) leaves either the old file or nothing under
//! the final name, never a half-written output; on an error the temporary file is removed.
//! What a SIGKILL leaves under a temporary name is removed by the next run that writes into the
//! folder (`remove_stale_temps`).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// This machine's name as temporary names carry it: an output folder may be shared by the
/// nodes of a cluster, where a process id alone says nothing about whether its writer lives.
fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        let clean: String = raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if clean.is_empty() {
            "host".to_string()
        } else {
            clean
        }
    })
}

/// The temporary name a write of `path` by process `pid` of this machine uses:
/// `.NAME.tmp-HOST-PID` beside it.
pub fn temp_name_of(path: &Path, pid: u32) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{pid}", host()))
}

fn temp_name(path: &Path) -> PathBuf {
    temp_name_of(path, std::process::id())
}

/// Whether process `pid` of this machine is running (where that cannot be told: yes).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        return Path::new("/proc").join(pid.to_string()).exists();
    }
    true
}

/// Removes the temporary files in `dir` that writes of this machine's processes left when they
/// were killed before renaming (SIGKILL, power loss): those whose process has ended. Temporary
/// files of other machines and of running processes are left alone. Returns how many went.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let marker = format!(".tmp-{}-", host());
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(at) = name.rfind(&marker).filter(|_| name.starts_with('.')) else { continue };
        let Ok(pid) = name[at + marker.len()..].parse::<u32>() else { continue };
        if pid != std::process::id() && !alive(pid) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Write a file through `f`, atomically. Parent directories are created.
pub fn write_with(path: &Path, f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = temp_name(path);
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut w = BufWriter::new(file);
        f(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(path);
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Makes the rename itself durable (a crash right after it could otherwise forget it). Best
/// effort: some file systems cannot sync a directory, and the file's own bytes are already safe.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Write bytes atomically.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |w| w.write_all(bytes))
}
