//! PyTorch checkpoints (`torch.save` zip archives), read without Python and without running code.
//!
//! A checkpoint is a zip archive `NAME/data.pkl` + `NAME/data/KEY` (one entry per storage). The
//! pickle is interpreted by a small VM that knows only the globals torch uses for tensors and
//! state dicts ([`pickle`]); each tensor is then a view (offset, size, stride) into a storage
//! entry, whose bytes stay in the memory map when the view is contiguous ([`view`]).
//!
//! The state dict is taken from the top level or from the first of `ema`, `model`, `state_dict`
//! present (EMA weights are the ones meant for inference); everything beside it is skipped
//! unread, whatever its classes. A `module.` prefix on every name (a DDP or DataParallel
//! wrapper's state dict) is dropped. CRC-32s are checked where the writer recorded them (torch
//! can be told not to: `compute_crc32 = False` records zeros, which torch.load accepts).

mod pickle;
mod view;
mod zip;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use self::pickle::{Pickle, TensorRef, Value};
use super::{Bytes, RawTensor};
use crate::error::{Error, Result};

/// The keys under which training scripts save the weights, in order of preference.
pub const STATE_DICT_KEYS: [&str; 3] = ["ema", "model", "state_dict"];

/// What to do about a file whose structure contradicts itself.
const DAMAGED: &str =
    "the file is damaged or was not written by torch.save: re-copy it, or re-save the weights with torch.save";

/// Nested dicts inside a state dict deeper than this are refused (a real one is flat).
const MAX_NESTING: usize = 32;
/// Longest tensor name accepted (real ones are a few dozen bytes).
const MAX_NAME: usize = 4096;
/// Skipped entries listed by name; the rest are only counted.
const MAX_SKIPPED_LISTED: usize = 100;

/// Dict entries visited while collecting tensors (shared sub-dicts are visited once per use).
const MAX_VISITS: usize = 1 << 22;

/// The magic number a legacy (pre-1.6) `torch.save` file pickles first, as a LONG1 of 10 bytes.
const LEGACY_MAGIC: [u8; 12] = [0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The tensors of a checkpoint's state dict, in its order.
#[derive(Debug)]
pub struct PtCheckpoint {
    pub path: PathBuf,
    pub tensors: Vec<(String, RawTensor)>,
    /// The top-level key the state dict was taken from, or `None` for a plain state dict.
    pub source_key: Option<String>,
    /// Entries of the state dict that are not tensors (plain numbers, strings, lists), which
    /// were left out, each as `name (what it is)`.
    pub skipped: Vec<String>,
}

impl PtCheckpoint {
    /// The tensor of that name, if any.
    pub fn get(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct PtOptions {
    /// Check the CRC-32 of the pickle and of every storage used (detects damaged bytes that
    /// the structure alone cannot reveal).
    pub verify_crc: bool,
}

impl Default for PtOptions {
    fn default() -> Self {
        PtOptions { verify_crc: true }
    }
}

/// Reads the state dict of a `torch.save` checkpoint, memory-mapped; contiguous tensors stay in
/// the map. Refuses (naming the file, what was found and what to do) legacy and damaged files
/// and any tensor or state dict that depends on something this reader does not interpret.
pub fn read_pt(path: &Path) -> Result<PtCheckpoint> {
    read_pt_with(path, PtOptions::default())
}

/// [`read_pt`] with options.
pub fn read_pt_with(path: &Path, opts: PtOptions) -> Result<PtCheckpoint> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; a file truncated underneath us is the usual mmap caveat.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    read_source(path, Source::Mapped(Arc::new(map)), opts)
}

/// The same reader over bytes in memory (`name` stands for the path in messages); tensors are
/// copied out of `bytes` rather than mapped.
pub fn read_pt_bytes(name: &str, bytes: Arc<Vec<u8>>) -> Result<PtCheckpoint> {
    read_pt_bytes_with(name, bytes, PtOptions::default())
}

/// [`read_pt_bytes`] with options.
pub fn read_pt_bytes_with(name: &str, bytes: Arc<Vec<u8>>, opts: PtOptions) -> Result<PtCheckpoint> {
    read_source(Path::new(name), Source::Memory(bytes), opts)
}

/// Who owns the archive's bytes: a map hands out zero-copy ranges, memory hands out copies.
enum Source {
    Mapped(Arc<memmap2::Mmap>),
    Memory(Arc<Vec<u8>>),
}

impl Source {
    fn as_slice(&self) -> &[u8] {
        match self {
            Source::Mapped(m) => m,
            Source::Memory(v) => v,
        }
    }
    /// Whether [`Source::bytes`] copies.
    fn copies(&self) -> bool {
        matches!(self, Source::Memory(_))
    }
    fn bytes(&self, r: Range<usize>) -> Bytes {
        match self {
            Source::Mapped(m) => Bytes::Mapped { map: m.clone(), offset: r.start, len: r.len() },
            Source::Memory(v) => Bytes::Owned(Arc::new(v[r].to_vec())),
        }
    }
}

fn read_source(path: &Path, src: Source, opts: PtOptions) -> Result<PtCheckpoint> {
    let mut reader =
        Reader { src: &src, opts, storages: HashMap::new(), owned_budget: 0, zip: None, prefix: String::new() };
    reader
        .read()
        .map(|(tensors, source_key, skipped)| PtCheckpoint { path: path.to_path_buf(), tensors, source_key, skipped })
        .map_err(|m| Error::Checkpoint(format!("{}: {m}", path.display())))
}

type Found = (Vec<(String, RawTensor)>, Option<String>, Vec<String>);

struct Reader<'a> {
    src: &'a Source,
    opts: PtOptions,
    /// Storage entries already located (and CRC-checked), by key.
    storages: HashMap<Rc<str>, Range<usize>>,
    /// Bytes left for copies (non-contiguous views; every tensor of an in-memory archive), so
    /// that many views of one storage cannot multiply memory without bound.
    owned_budget: usize,
    zip: Option<zip::Archive>,
    prefix: String,
}

impl<'a> Reader<'a> {
    fn read(&mut self) -> Result<Found, String> {
        let buf: &'a [u8] = self.src.as_slice();
        check_not_legacy(buf)?;
        let archive = zip::parse(buf).map_err(|m| format!("{m}; {DAMAGED}"))?;
        self.prefix = archive_prefix(&archive)?;
        self.owned_budget = buf.len().saturating_mul(4).saturating_add(64 << 20);

        let byteorder = format!("{}byteorder", self.prefix);
        if let Some(e) = archive.get(&byteorder) {
            let order = self.entry_bytes(&archive, e)?;
            if order != b"little" {
                return Err(format!(
                    "the checkpoint was written on a {} machine; only little-endian checkpoints are read",
                    String::from_utf8_lossy(order)
                ));
            }
        }
        let pkl_name = format!("{}data.pkl", self.prefix);
        let pkl = match archive.get(&pkl_name) {
            Some(e) => self.entry_bytes(&archive, e)?,
            None => return Err(format!("the archive has no {pkl_name}")),
        };
        self.zip = Some(archive);
        let p = pickle::load(pkl).map_err(|m| format!("{pkl_name}: {m}; {DAMAGED}"))?;

        let (sd, source_key) = select_state_dict(&p)?;
        let mut c = Collector::new(&p);
        c.dict(sd, "", 0)?;
        let skipped = c.skipped();
        if c.found.is_empty() {
            let place = source_key.as_deref().map(|k| format!(" under \"{k}\"")).unwrap_or_default();
            return Err(format!(
                "the state dict{place} holds no tensors (other entries: {skipped:?}); save the weights with \
                 torch.save(model.state_dict(), PATH)"
            ));
        }
        for s in &skipped {
            log::debug!("skipped state dict entry {s}");
        }
        let tensors = c
            .found
            .into_iter()
            .map(|(name, t)| self.tensor(&t).map(|r| (name.clone(), r)).map_err(|m| format!("tensor \"{name}\": {m}")))
            .collect::<Result<Vec<_>, String>>()?;
        Ok((strip_wrapper_prefix(tensors), source_key, skipped))
    }

    /// The bytes of a stored entry, checked against its size and (optionally) its CRC.
    fn entry_bytes(&self, archive: &zip::Archive, e: &zip::Entry) -> Result<&'a [u8], String> {
        let buf: &'a [u8] = self.src.as_slice();
        entry_range(buf, e, self.check_crc(archive)).map(|r| &buf[r])
    }

    /// CRCs are checked where the writer recorded them (see [`zip::Archive::crcs_written`]).
    fn check_crc(&self, archive: &zip::Archive) -> bool {
        self.opts.verify_crc && archive.crcs_written
    }

    fn storage_range(&mut self, t: &TensorRef) -> Result<Range<usize>, String> {
        if let Some(r) = self.storages.get(&t.storage.key) {
            return Ok(r.clone());
        }
        let name = format!("{}data/{}", self.prefix, t.storage.key);
        let archive = self.zip.as_ref().ok_or("no archive")?;
        let e = archive.get(&name).ok_or_else(|| {
            format!("its storage \"{}\" ({name}) is missing from the archive; {DAMAGED}", t.storage.key)
        })?;
        let r = entry_range(self.src.as_slice(), e, self.check_crc(archive))?;
        self.storages.insert(t.storage.key.clone(), r.clone());
        Ok(r)
    }

    fn tensor(&mut self, t: &TensorRef) -> Result<RawTensor, String> {
        let l = view::layout(t).map_err(|e| match e {
            view::LayoutError::Inconsistent(m) => format!("{m}; {DAMAGED}"),
            view::LayoutError::Unsupported(m) => m,
        })?;
        let dtype = t.storage.dtype;
        let item = dtype.size();
        let entry = self.storage_range(t)?;
        // layout() accepted numel as usize; the byte count may still overflow.
        let declared = (t.storage.numel as usize)
            .checked_mul(item)
            .ok_or_else(|| format!("its storage declares {} elements, too many to address", t.storage.numel))?;
        if entry.len() < declared {
            return Err(format!(
                "its storage \"{}\" declares {} {dtype} elements ({declared} bytes) but the archive entry holds {} bytes (storage too short); {DAMAGED}",
                t.storage.key,
                t.storage.numel,
                entry.len()
            ));
        }
        let storage = entry.start..entry.start + declared;
        let need = l.numel * item;
        if !l.contiguous || self.src.copies() {
            if need > self.owned_budget {
                return Err(format!(
                    "its views need more copied bytes ({need}) than the size of the checkpoint could justify"
                ));
            }
            self.owned_budget -= need;
        }
        let bytes = if l.contiguous {
            let start = storage.start + l.offset * item;
            self.src.bytes(start..start + need)
        } else {
            Bytes::Owned(Arc::new(view::materialise(&l, &self.src.as_slice()[storage], item)))
        };
        Ok(RawTensor { dtype, shape: l.shape, bytes })
    }
}

/// `check_crc`: verify the entry's CRC-32 (when asked for and the archive records CRCs).
fn entry_range(buf: &[u8], e: &zip::Entry, check_crc: bool) -> Result<Range<usize>, String> {
    if e.encrypted {
        return Err(format!("entry \"{}\" is encrypted", e.name));
    }
    if e.method != 0 {
        return Err(format!(
            "entry \"{}\" is compressed (zip method {}); torch.save stores entries uncompressed: use the file torch.save wrote, not a re-zipped copy",
            e.name, e.method
        ));
    }
    if e.data.len() as u64 != e.uncompressed_size {
        return Err(format!(
            "damaged zip archive: stored entry \"{}\" has {} bytes but declares {}; {DAMAGED}",
            e.name,
            e.data.len(),
            e.uncompressed_size
        ));
    }
    if check_crc {
        let crc = crc32fast::hash(&buf[e.data.clone()]);
        if crc != e.crc32 {
            return Err(format!(
                "damaged archive: the CRC-32 of entry \"{}\" is {crc:08x}, the archive records {:08x}; {DAMAGED}",
                e.name, e.crc32
            ));
        }
    }
    Ok(e.data.clone())
}

/// The prefix `DistributedDataParallel` and `DataParallel` put on every key of the state dict of
/// the model they wrap (`model.state_dict()` called on the wrapper).
const WRAPPER_PREFIX: &str = "module.";

/// Drops [`WRAPPER_PREFIX`] when every tensor name carries it (so names stay distinct): the
/// weights are the wrapped model's.
fn strip_wrapper_prefix(tensors: Vec<(String, RawTensor)>) -> Vec<(String, RawTensor)> {
    if tensors.is_empty() || !tensors.iter().all(|(n, _)| n.starts_with(WRAPPER_PREFIX)) {
        return tensors;
    }
    log::info!("every tensor name starts with \"{WRAPPER_PREFIX}\" (a DDP/DataParallel state dict): prefix dropped");
    tensors.into_iter().map(|(n, t)| (n[WRAPPER_PREFIX.len()..].to_string(), t)).collect()
}

fn check_not_legacy(buf: &[u8]) -> Result<(), String> {
    // The legacy format opens with a pickle whose first value is the magic number; with another
    // pickle protocol a FRAME may come first, so look a little way in.
    let head = &buf[..buf.len().min(64)];
    let magic = head.first() == Some(&0x80) && head.windows(LEGACY_MAGIC.len()).any(|w| w == LEGACY_MAGIC);
    let tar = buf.get(257..262) == Some(b"ustar");
    if magic || tar {
        return Err(
            "this is PyTorch's legacy (pre-1.6, non-zip) checkpoint format, which cannot be read without running Python; \
             re-save it in the zip format with `torch.save(torch.load(\"OLD.pt\", map_location=\"cpu\"), \"NEW.pt\")` \
             (the default _use_new_zipfile_serialization=True writes the zip format)"
                .into(),
        );
    }
    if head.first() == Some(&0x80) {
        return Err("this is a bare pickle, not a torch.save zip archive; re-save it with torch.save".into());
    }
    Ok(())
}

/// torch names every entry `ARCHIVE/...` after the file name it was saved to.
fn archive_prefix(a: &zip::Archive) -> Result<String, String> {
    for e in &a.entries {
        if let Some(dir) = e.name.strip_suffix("data.pkl") {
            if dir.ends_with('/') && dir.matches('/').count() == 1 {
                return Ok(dir.to_string());
            }
        }
    }
    let names: Vec<&str> = a.entries.iter().take(5).map(|e| e.name.as_str()).collect();
    Err(format!(
        "the zip archive has no NAME/data.pkl entry, so it was not written by torch.save (first entries: {names:?})"
    ))
}

fn select_state_dict(p: &Pickle) -> Result<(&Value, Option<String>), String> {
    let resave = "re-save the weights with torch.save(model.state_dict(), PATH)";
    let id = match &p.root {
        Value::Dict(id) => *id,
        Value::Unknown(n) => {
            return Err(format!(
                "the checkpoint holds an object built by the unknown global {n} (a pickled module or class), not a state dict; {resave}"
            ))
        }
        other => return Err(format!("the checkpoint holds {}, not a state dict; {resave}", p.describe(other))),
    };
    let top = p.dict(id);
    for key in STATE_DICT_KEYS {
        let Some(v) = top.get_str(key).filter(|v| !matches!(v, Value::None)) else { continue };
        return match v {
            Value::Dict(_) => Ok((v, Some(key.to_string()))),
            Value::Unknown(n) => Err(format!(
                "\"{key}\" holds an object built by the unknown global {n} (a pickled module or class), not a state dict; {resave}"
            )),
            other => Err(format!("\"{key}\" holds {}, not a state dict; {resave}", p.describe(other))),
        };
    }
    Ok((&p.root, None))
}

/// The tensors of a state dict in its order (nested dicts give `outer.inner` names) and the
/// entries left out.
struct Collector<'p> {
    p: &'p Pickle,
    found: Vec<(String, Rc<TensorRef>)>,
    skipped: Vec<String>,
    unlisted: usize,
    visits: usize,
}

impl<'p> Collector<'p> {
    fn new(p: &'p Pickle) -> Self {
        Collector { p, found: Vec::new(), skipped: Vec::new(), unlisted: 0, visits: 0 }
    }

    fn skip(&mut self, what: String) {
        if self.skipped.len() < MAX_SKIPPED_LISTED {
            self.skipped.push(what);
        } else {
            self.unlisted += 1;
        }
    }

    /// The skipped entries, the ones past the listing limit summed up in a last line.
    fn skipped(&self) -> Vec<String> {
        let mut s = self.skipped.clone();
        if self.unlisted > 0 {
            s.push(format!("... and {} more", self.unlisted));
        }
        s
    }

    fn dict(&mut self, dict: &Value, prefix: &str, depth: usize) -> Result<(), String> {
        let p = self.p;
        let Value::Dict(id) = dict else { return Ok(()) };
        for (k, v) in &p.dict(*id).entries {
            self.visits += 1;
            if self.visits > MAX_VISITS {
                return Err(format!(
                    "the state dict has more than {MAX_VISITS} entries (counting shared sub-dicts per use); {DAMAGED}"
                ));
            }
            let key = match k {
                Value::Str(s) => s.to_string(),
                Value::Int(i) => i.to_string(),
                other => {
                    self.skip(format!("{prefix}[{}] (a non-string key)", p.describe(other)));
                    continue;
                }
            };
            if prefix.len() + key.len() >= MAX_NAME {
                return Err(format!("a state dict key is longer than {MAX_NAME} bytes; {DAMAGED}"));
            }
            let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
            match v {
                Value::Tensor(t) => self.found.push((name, t.clone())),
                Value::Dict(_) => {
                    if depth + 1 > MAX_NESTING {
                        return Err(format!(
                            "the state dict nests dicts deeper than {MAX_NESTING} levels (at \"{name}\"); save a flat \
                             state dict (model.state_dict())"
                        ));
                    }
                    self.dict(v, &name, depth + 1)?;
                }
                Value::Unknown(n) => {
                    return Err(format!(
                        "state dict entry \"{name}\" is an object built by the unknown global {n}, which this reader \
                         does not run; save the weights as plain tensors and other objects beside them, e.g. \
                         torch.save({{\"model\": model.state_dict(), \"args\": args}}, PATH)"
                    ))
                }
                Value::Bad(m) => {
                    return Err(format!(
                        "tensor \"{name}\" is refused: {m}; re-save the weights as torch.save writes a state dict \
                         (torch.save(model.state_dict(), PATH), floating-point tensors as float32, float16 or bfloat16)"
                    ))
                }
                other => self.skip(format!("{name} ({})", p.describe(other))),
            }
        }
        Ok(())
    }
}
