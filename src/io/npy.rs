//! NumPy `.npy` files of little-endian f32 (`'<f4'`), C order.
//!
//! Written as format version 1.0, byte for byte as `numpy.save` writes it: the magic `\x93NUMPY`,
//! version bytes 1 0, a little-endian u16 header length, then the header dict padded with spaces
//! and ended by `\n` so that the data starts at a multiple of 64 bytes. The reader also takes versions 2.0 and 3.0
//! (u32 header length) and refuses anything that is not `<f4` in C order.

use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

fn shape_tuple(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// The bytes of an `.npy` file holding `data` with `shape`.
pub fn encode_npy_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(data.len()) {
        return Err(Error::Shape(format!("npy: shape {shape:?} does not hold the {} values given", data.len())));
    }
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}", shape_tuple(shape));
    // numpy.save leaves room to grow the first axis in place, then pads so the data starts at a
    // multiple of 64 (a whole extra 64 when already aligned); doing the same keeps files
    // byte-identical to numpy's.
    if let Some(first) = shape.first() {
        header.push_str(&" ".repeat(21usize.saturating_sub(first.to_string().len())));
    }
    let with_newline = header.len() + 1;
    let pad = 64 - (MAGIC.len() + 4 + with_newline) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let header_len = u16::try_from(header.len())
        .map_err(|_| Error::Shape(format!("npy: shape {shape:?} makes a header too long for version 1.0")))?;
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + 4 * data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Write `data` (C order) with `shape` as an `.npy` file, atomically.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let bytes = encode_npy_f32(shape, data).map_err(|e| match e {
        Error::Shape(m) => Error::Shape(format!("{}: {m}", path.display())),
        other => other,
    })?;
    super::atomic::write(path, &bytes)
}

/// Read an f32 `.npy` file: (shape, data in C order).
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_npy_f32(&bytes).map_err(|m| Error::Input(format!("{}: {m}", path.display())))
}

/// Parse `.npy` bytes holding `<f4` in C order; the error says what is wrong with them.
pub fn parse_npy_f32(b: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    if b.len() < 10 || &b[..6] != MAGIC {
        return Err("not a .npy file (missing the \\x93NUMPY magic)".into());
    }
    let (len_bytes, header_start) = match b[6] {
        1 => (2, 10),
        2 | 3 => (4, 12),
        v => return Err(format!("unsupported .npy version {v}.{}", b[7])),
    };
    if b.len() < header_start {
        return Err("truncated .npy header".into());
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([b[8], b[9]]) as usize
    } else {
        u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize
    };
    let data_start = header_start
        .checked_add(header_len)
        .filter(|&e| e <= b.len())
        .ok_or_else(|| format!("truncated .npy header: {header_len} bytes announced"))?;
    let header =
        std::str::from_utf8(&b[header_start..data_start]).map_err(|_| "the .npy header is not text".to_string())?;
    let descr = dict_value(header, "descr")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if descr != "<f4" {
        return Err(format!("dtype {descr}, expected little-endian float32 '<f4'"));
    }
    match dict_value(header, "fortran_order")? {
        "False" => {}
        "True" => return Err("Fortran-ordered array; save it in C order".into()),
        v => return Err(format!("fortran_order {v}, expected True or False")),
    }
    let shape = parse_shape(dict_value(header, "shape")?)?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let need = count.checked_mul(4).ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let body = &b[data_start..];
    if body.len() < need {
        return Err(format!("truncated .npy data: shape {shape:?} needs {need} bytes, file has {}", body.len()));
    }
    let data = body[..need].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((shape, data))
}

/// The raw text of `'key': value` in the header dict, up to the next top-level comma or brace.
fn dict_value<'a>(header: &'a str, key: &str) -> std::result::Result<&'a str, String> {
    let missing = || format!("the .npy header has no '{key}': {header:?}");
    let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\""))).ok_or_else(missing)?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':').ok_or_else(missing)?.trim_start();
    let mut depth = 0usize;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                if depth == 0 {
                    return Err(missing());
                }
                depth -= 1;
                if depth == 0 {
                    return Ok(&rest[..=i]);
                }
            }
            ',' | '}' if depth == 0 => return Ok(rest[..i].trim_end()),
            _ => {}
        }
    }
    Err(missing())
}

fn parse_shape(s: &str) -> std::result::Result<Vec<usize>, String> {
    let inner =
        s.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(|| format!("shape {s} is not a tuple"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse::<usize>().map_err(|_| format!("bad dimension {d:?} in shape {s}")))
        .collect()
}
