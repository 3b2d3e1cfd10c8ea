//! safetensors files, memory-mapped: each tensor's bytes stay in the map (zero-copy).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Bytes, RawTensor};
use crate::error::{Error, Result};
use crate::tensor::DType;

/// A memory-mapped safetensors file: its tensors in file order and its `__metadata__`.
pub struct SafetensorsFile {
    pub path: PathBuf,
    pub tensors: Vec<(String, RawTensor)>,
    pub metadata: BTreeMap<String, String>,
}

fn dtype_from_str(s: &str) -> Option<DType> {
    Some(match s {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "I64" => DType::I64,
        "I32" => DType::I32,
        "I16" => DType::I16,
        "I8" => DType::I8,
        "U8" => DType::U8,
        "BOOL" => DType::Bool,
        _ => return None,
    })
}

pub fn dtype_to_str(d: DType) -> &'static str {
    match d {
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::F64 => "F64",
        DType::I64 => "I64",
        DType::I32 => "I32",
        DType::I16 => "I16",
        DType::I8 => "I8",
        DType::U8 => "U8",
        DType::Bool => "BOOL",
    }
}

/// The reference library's rule: sorted by offset, the tensors' byte ranges cover the data section
/// exactly, each starting where the previous one ends. An overlap would let two tensors alias
/// the same bytes, a gap or trailing bytes hide data no tensor owns; both mean a damaged or
/// hand-made file, which the official loader refuses and so do we.
fn check_tiling(sorted: &[(String, RawTensor)], data_start: usize, data_len: usize) -> Result<(), String> {
    let mut expected = 0usize;
    let mut previous: Option<&str> = None;
    for (name, t) in sorted {
        let Bytes::Mapped { offset, len, .. } = &t.bytes else { continue };
        let (start, end) = (offset - data_start, offset - data_start + len);
        let after = || match previous {
            Some(p) => format!("tensor \"{p}\" (which ends at byte {expected})"),
            None => "the start of the data section".to_string(),
        };
        let fault = if start < expected {
            format!("overlaps {}", after())
        } else if start > expected {
            format!("leaves a gap of {} bytes after {}", start - expected, after())
        } else {
            String::new()
        };
        if !fault.is_empty() {
            return Err(format!(
                "tensor \"{name}\" has data_offsets [{start}, {end}], which {fault}; tensors must tile the data \
                 section without overlaps or gaps (the safetensors library refuses such a file too)"
            ));
        }
        expected = end;
        previous = Some(name);
    }
    if expected != data_len {
        return Err(format!(
            "the tensors' data ends at byte {expected} of the data section but the file holds {data_len} data bytes \
             ({} unclaimed bytes at the end; the safetensors library refuses this file too)",
            data_len - expected
        ));
    }
    Ok(())
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; a file truncated underneath us is the usual mmap caveat.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::from_map(path, Arc::new(map))
    }

    /// A safetensors file already in memory, named `name` in messages. The bytes are copied
    /// once into an anonymous read-only map, so the tensors borrow them as they borrow a file's.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Self> {
        let path = Path::new(name);
        if bytes.len() < 8 {
            return Err(Error::Weights(format!(
                "{name}: not a valid safetensors file: only {} bytes long",
                bytes.len()
            )));
        }
        let mut map = memmap2::MmapMut::map_anon(bytes.len()).map_err(|e| Error::io(path, e))?;
        map.copy_from_slice(bytes);
        let map = map.make_read_only().map_err(|e| Error::io(path, e))?;
        Self::from_map(path, Arc::new(map))
    }

    fn from_map(path: &Path, map: Arc<memmap2::Mmap>) -> Result<Self> {
        let bad = |what: String| Error::Weights(format!("{}: not a valid safetensors file: {what}", path.display()));
        if map.len() < 8 {
            return Err(bad(format!("only {} bytes long", map.len())));
        }
        let hlen = u64::from_le_bytes(map[..8].try_into().unwrap());
        if hlen > (map.len() as u64 - 8) || hlen > 100 << 20 {
            return Err(bad(format!("header length {hlen} exceeds the file size {}", map.len())));
        }
        let hlen = hlen as usize;
        let header: serde_json::Value =
            serde_json::from_slice(&map[8..8 + hlen]).map_err(|e| bad(format!("header is not JSON ({e})")))?;
        let obj = header.as_object().ok_or_else(|| bad("header is not a JSON object".into()))?;
        let data_start = 8 + hlen;
        let data_len = map.len() - data_start;
        let mut tensors = Vec::new();
        let mut metadata = BTreeMap::new();
        for (name, info) in obj {
            if name == "__metadata__" {
                if let Some(m) = info.as_object() {
                    for (k, v) in m {
                        metadata.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
                    }
                }
                continue;
            }
            let dt = info["dtype"].as_str().unwrap_or("?");
            let dtype =
                dtype_from_str(dt).ok_or_else(|| bad(format!("tensor \"{name}\" has unsupported dtype {dt}")))?;
            let shape: Vec<usize> = info["shape"]
                .as_array()
                .ok_or_else(|| bad(format!("tensor \"{name}\" has no shape")))?
                .iter()
                .map(|v| v.as_u64().map(|x| x as usize))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(format!("tensor \"{name}\" has a non-integer shape")))?;
            let offs = info["data_offsets"]
                .as_array()
                .filter(|a| a.len() == 2)
                .and_then(|a| Some((a[0].as_u64()? as usize, a[1].as_u64()? as usize)))
                .ok_or_else(|| bad(format!("tensor \"{name}\" has no valid data_offsets")))?;
            let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let need = numel.and_then(|n| n.checked_mul(dtype.size()));
            if offs.0 > offs.1 || offs.1 > data_len || need != Some(offs.1 - offs.0) {
                return Err(bad(format!(
                    "tensor \"{name}\" ({dt} {shape:?}) has data_offsets {:?} that do not fit its size or the file ({} data bytes)",
                    offs, data_len
                )));
            }
            let bytes = Bytes::Mapped { map: map.clone(), offset: data_start + offs.0, len: offs.1 - offs.0 };
            tensors.push((name.clone(), RawTensor { dtype, shape, bytes }));
        }
        // In data order (the header's order may differ), which is also the order the ranges
        // must tile the data section in.
        tensors.sort_by_key(|(_, t)| match &t.bytes {
            Bytes::Mapped { offset, len, .. } => (*offset, *len),
            _ => (0, 0),
        });
        check_tiling(&tensors, data_start, data_len).map_err(bad)?;
        Ok(SafetensorsFile { path: path.to_path_buf(), tensors, metadata })
    }

    pub fn get(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Write tensors to a safetensors file (atomically: a temporary name, then rename).
pub fn write(path: &Path, tensors: &[(String, RawTensor)], metadata: &BTreeMap<String, String>) -> Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata).unwrap());
    }
    let mut off = 0usize;
    for (name, t) in tensors {
        let len = t.bytes.as_bytes().len();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype_to_str(t.dtype), "shape": t.shape, "data_offsets": [off, off + len]}),
        );
        off += len;
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    while (8 + h.len()) % 8 != 0 {
        h.push(b' ');
    }
    crate::io::atomic::write_with(path, |w| {
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        for (_, t) in tensors {
            w.write_all(t.bytes.as_bytes())?;
        }
        Ok(())
    })
}
