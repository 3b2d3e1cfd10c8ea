//! Command-line inputs: files, directories and globs become a list of image paths; paths become
//! output stems that never collide; frames and masks are paired.
//!
//! - A file is taken as given, whatever its extension (the loader sniffs the content).
//! - A directory gives its image files (png, jpg, jpeg, ppm, pgm, any case), not recursing and
//!   skipping hidden files (our own half-written outputs are hidden temp files).
//! - A glob has `*`, `?` or `[...]` in its file-name part only (shells expand globs; this is for
//!   quoted patterns and shells that do not) and gives the matching image files.
//!
//! Lists are in natural order (digit runs compare as numbers, so `frame2` precedes `frame10`;
//! zero-padded names sort as they would byte-wise).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Extensions (lower case) that directory listings and globs pick up.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "ppm", "pgm"];

/// Whether `path` has an image extension, in any case.
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expand one argument: a file, a directory or a glob.
pub fn expand_input(arg: &Path) -> Result<Vec<PathBuf>> {
    if arg.is_file() {
        return Ok(vec![arg.to_path_buf()]);
    }
    if arg.is_dir() {
        let mut files = Vec::new();
        list_tree(arg, &mut files, 0)?;
        sort_natural(&mut files);
        if files.is_empty() {
            return Err(Error::Input(format!(
                "{}: directory holds no images ({})",
                arg.display(),
                IMAGE_EXTENSIONS.join(", ")
            )));
        }
        return Ok(files);
    }
    let name = arg.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !has_glob_chars(name) {
        if has_glob_chars(&arg.to_string_lossy()) {
            return Err(Error::Input(format!("{}: wildcards are supported in the file-name part only", arg.display())));
        }
        return Err(Error::Input(format!("{}: no such file or directory", arg.display())));
    }
    let parent = arg.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if has_glob_chars(&parent.to_string_lossy()) {
        return Err(Error::Input(format!("{}: wildcards are supported in the file-name part only", arg.display())));
    }
    if !parent.is_dir() {
        return Err(Error::Input(format!("{}: no such directory {}", arg.display(), parent.display())));
    }
    let explicit_hidden = name.starts_with('.');
    let files = list_dir(parent, |n| (explicit_hidden || !n.starts_with('.')) && glob_match(name, n))?;
    if files.is_empty() {
        return Err(Error::Input(format!("{}: no image files match", arg.display())));
    }
    // Keep the pattern's own spelling of the directory (no "./" prefix when it had none).
    let rebase = arg.parent().is_some_and(|p| p.as_os_str().is_empty());
    Ok(files.into_iter().map(|f| if rebase { PathBuf::from(f.file_name().unwrap_or_default()) } else { f }).collect())
}

/// Expand every argument in order (each directory or glob sorted within itself).
pub fn expand_inputs<P: AsRef<Path>>(args: &[P]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        out.extend(expand_input(a.as_ref())?);
    }
    Ok(out)
}

/// Image files under `dir`, recursively (hidden entries skipped; depth limited so a link cycle
/// cannot loop).
fn list_tree(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    if depth > 32 {
        return Err(Error::Input(format!("{}: folders nested deeper than 32 levels", dir.display())));
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if entry.file_name().to_str().is_none_or(|n| n.starts_with('.')) {
            continue;
        }
        if path.is_dir() {
            list_tree(&path, out, depth + 1)?;
        } else if has_image_extension(&path) && path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Image files directly in `dir` whose names pass `keep`, in natural order.
fn list_dir(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if keep(&name) && has_image_extension(&path) && path.is_file() {
            files.push(path);
        }
    }
    sort_natural(&mut files);
    Ok(files)
}

/// Sort paths in natural order of their full text.
pub fn sort_natural(paths: &mut [PathBuf]) {
    paths.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
}

/// Compare strings with digit runs as numbers (`a2` < `a10`); ties fall back to byte order.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let (si, sj) = (i, j);
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let x = a[si..i].trim_start_matches('0');
            let y = b[sj..j].trim_start_matches('0');
            let ord = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if ab[i] != bb[j] {
                return ab[i].cmp(&bb[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j)).then_with(|| a.cmp(b))
}

/// Shell-style match of a whole file name: `*` any run, `?` one character, `[abc]`, `[a-z]`,
/// `[!x]` / `[^x]` one character from (or not from) a set. An unclosed `[` is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, name index it absorbed up to).
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = match_class(&p, pi, n[ni]) {
                        if matched {
                            pi = next;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                star = Some((sp, sn + 1));
                pi = sp;
                ni = sn + 1;
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Match `c` against the class starting at `p[start] == '['`: (matched, index after `]`), or
/// `None` when the class is not closed.
fn match_class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = i < p.len() && (p[i] == '!' || p[i] == '^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// `path` relative to `base` without its extension: where an input's outputs go under `--out`
/// (`base/a/x.png` -> `a/x`, then `a/x_depth.png`). A path outside `base` keeps its file stem.
pub fn output_stem(path: &Path, base: &Path) -> PathBuf {
    let abs = normalize(path);
    let rel = abs.strip_prefix(normalize(base)).unwrap_or_else(|_| Path::new(""));
    let stem = path.file_stem().unwrap_or_default();
    match rel.parent() {
        Some(dir) if rel.file_name().is_some() => dir.join(stem),
        _ => PathBuf::from(stem),
    }
}

/// The output stem of each input, all distinct: the file stem, or for inputs sharing a stem
/// their path relative to the deepest directory holding them all. Inputs that still collide (same
/// directory, other extension) keep their extension in the stem, and a file listed twice gets
/// `_2`, `_3`, ... so no output is overwritten by another input's.
pub fn output_stems(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut stems: Vec<PathBuf> = paths.iter().map(|p| PathBuf::from(p.file_stem().unwrap_or_default())).collect();
    for group in duplicate_groups(&stems) {
        let members: Vec<PathBuf> = group.iter().map(|&i| normalize(&paths[i])).collect();
        let base = common_dir(&members);
        for &i in &group {
            stems[i] = output_stem(&paths[i], &base);
        }
    }
    for group in duplicate_groups(&stems) {
        for &i in &group {
            let name = paths[i].file_name().unwrap_or_default();
            stems[i] = stems[i].with_file_name(name);
        }
    }
    for group in duplicate_groups(&stems) {
        for (k, &i) in group.iter().enumerate().skip(1) {
            let name = format!("{}_{}", stems[i].file_name().unwrap_or_default().to_string_lossy(), k + 1);
            stems[i] = stems[i].with_file_name(name);
        }
    }
    stems
}

/// Index groups (in input order) of equal entries, for entries that occur more than once.
fn duplicate_groups(stems: &[PathBuf]) -> Vec<Vec<usize>> {
    let mut groups: HashMap<&PathBuf, Vec<usize>> = HashMap::new();
    for (i, s) in stems.iter().enumerate() {
        groups.entry(s).or_default().push(i);
    }
    let mut dups: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() > 1).collect();
    dups.sort();
    dups
}

/// The deepest directory that holds every path.
fn common_dir(paths: &[PathBuf]) -> PathBuf {
    let mut base: Option<PathBuf> = None;
    for p in paths {
        let dir = p.parent().unwrap_or(Path::new("/")).to_path_buf();
        base = Some(match base {
            None => dir,
            Some(b) => b.components().zip(dir.components()).take_while(|(x, y)| x == y).map(|(x, _)| x).collect(),
        });
    }
    base.unwrap_or_default()
}

/// Absolute, with `.` and `..` resolved lexically (symlinks are left alone).
fn normalize(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Paired inputs and the inputs left without a partner (reported as failed by the caller).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pairing {
    pub pairs: Vec<(PathBuf, PathBuf)>,
    pub unpaired: Vec<PathBuf>,
}

fn stem_str(p: &Path) -> String {
    p.file_stem().unwrap_or_default().to_string_lossy().into_owned()
}

/// Pair frames for optical flow. FlyingChairs-style names (`X_img1.*`, `X_img2.*`, every input
/// so named) pair by `X`; any other sequence gives each frame with the next one in natural order
/// (n frames, n - 1 pairs).
pub fn pair_flow_frames(paths: &[PathBuf]) -> Pairing {
    let mut sorted = paths.to_vec();
    sort_natural(&mut sorted);
    let chairs = !sorted.is_empty()
        && sorted.iter().all(|p| {
            let s = stem_str(p);
            s.ends_with("_img1") || s.ends_with("_img2")
        });
    if !chairs {
        if sorted.len() < 2 {
            return Pairing { pairs: vec![], unpaired: sorted };
        }
        let pairs = sorted.windows(2).map(|w| (w[0].clone(), w[1].clone())).collect();
        return Pairing { pairs, unpaired: vec![] };
    }
    let mut second: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
    for p in sorted.iter().filter(|p| stem_str(p).ends_with("_img2")) {
        second.entry(chairs_key(p)).or_default().push(p.clone());
    }
    let mut out = Pairing::default();
    for p in sorted.iter().filter(|p| stem_str(p).ends_with("_img1")) {
        match second.get_mut(&chairs_key(p)).and_then(|v| (!v.is_empty()).then(|| v.remove(0))) {
            Some(q) => out.pairs.push((p.clone(), q)),
            None => out.unpaired.push(p.clone()),
        }
    }
    let mut left: Vec<PathBuf> = second.into_values().flatten().collect();
    sort_natural(&mut left);
    out.unpaired.extend(left);
    out
}

/// `dir/X_img1.ppm` -> `dir/X`.
fn chairs_key(p: &Path) -> PathBuf {
    let s = stem_str(p);
    p.with_file_name(&s[..s.len() - "_img1".len()])
}

/// The segmentation key of a file: its stem up to the first `_` (the Pix2Gestalt instance number,
/// `10000015_occlusion.png` -> `10000015`), or the whole stem when there is none.
pub fn segment_key(p: &Path) -> String {
    let s = stem_str(p);
    s.split('_').next().unwrap_or_default().to_string()
}

/// Pair each image with the mask of the same `segment_key`, in the images' order. Images with no
/// mask, masks with no image, and any entry whose key is not unique on its side are unpaired.
pub fn pair_segment(images: &[PathBuf], masks: &[PathBuf]) -> Pairing {
    let count = |list: &[PathBuf]| {
        let mut m: HashMap<String, usize> = HashMap::new();
        for p in list {
            *m.entry(segment_key(p)).or_default() += 1;
        }
        m
    };
    let (img_count, mask_count) = (count(images), count(masks));
    let mask_of: HashMap<String, &PathBuf> = masks.iter().map(|m| (segment_key(m), m)).collect();
    let mut out = Pairing::default();
    let mut used = std::collections::HashSet::new();
    for img in images {
        let key = segment_key(img);
        match mask_of.get(&key) {
            Some(&m) if img_count[&key] == 1 && mask_count[&key] == 1 => {
                used.insert(key);
                out.pairs.push((img.clone(), m.clone()));
            }
            _ => out.unpaired.push(img.clone()),
        }
    }
    out.unpaired.extend(masks.iter().filter(|m| !used.contains(&segment_key(m))).cloned());
    out
}
