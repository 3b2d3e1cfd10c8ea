//! The zip container of `torch.save`: just enough of the format to find each entry's bytes.
//!
//! torch writes every entry stored (method 0) and pads local headers so that data starts on a
//! 64-byte boundary; an entry is therefore a plain byte range of the file, which the caller can
//! hand out without copying. Compressed entries are refused rather than inflated. Every offset
//! and length read from the file is checked against the file's size before use, so a truncated
//! or damaged archive yields an error, never a panic. Errors are plain messages; the caller adds
//! the file name.

use std::collections::HashMap;
use std::ops::Range;

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const EOCD_LEN: usize = 22;
const CENTRAL_LEN: usize = 46;
const MAX_COMMENT: usize = 0xffff;

/// One entry as the central directory and its local header describe it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    /// 0 = stored; anything else is compressed.
    pub method: u16,
    pub crc32: u32,
    /// Where the entry's (possibly compressed) bytes lie in the archive.
    pub data: Range<usize>,
    pub uncompressed_size: u64,
    pub encrypted: bool,
}

/// The entries of an archive, in central-directory order.
#[derive(Debug)]
pub struct Archive {
    pub entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
    /// Whether the writer recorded CRC-32s. torch with `config.save.compute_crc32 = False`
    /// records 0 for every entry (and torch.load reads such files); a writer that computed them
    /// has a non-zero CRC on almost every non-empty entry.
    pub crcs_written: bool,
}

impl Archive {
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }
}

/// Bounds-checked little-endian reads over a slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn at(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
}

fn truncated(what: &str) -> String {
    format!("damaged or truncated zip archive: {what} runs past the end of the file")
}

/// Parses the end-of-central-directory records (plain and zip64), the central directory and each
/// entry's local header.
pub fn parse(buf: &[u8]) -> Result<Archive, String> {
    let eocd = find_eocd(buf)?;
    let mut r = Reader::at(buf, eocd + 4);
    let short = || truncated("the end-of-central-directory record");
    let disk = r.u16().ok_or_else(short)?;
    let cd_disk = r.u16().ok_or_else(short)?;
    let _entries_here = r.u16().ok_or_else(short)?;
    let mut count = r.u16().ok_or_else(short)? as u64;
    let mut cd_size = r.u32().ok_or_else(short)? as u64;
    let mut cd_offset = r.u32().ok_or_else(short)? as u64;
    if disk != 0 || cd_disk != 0 {
        return Err("multi-disk zip archives are not supported".into());
    }

    // torch always writes the zip64 records; their values replace the 16/32-bit ones.
    if eocd >= 20 && read_u32(buf, eocd - 20) == Some(ZIP64_LOCATOR_SIG) {
        let mut l = Reader::at(buf, eocd - 12);
        let z_eocd = l.u64().ok_or_else(|| truncated("the zip64 locator"))?;
        let z_eocd = usize::try_from(z_eocd).ok().filter(|&o| o < eocd).ok_or_else(|| {
            format!("damaged zip archive: the zip64 end record is said to lie at byte {z_eocd}, past the end record at {eocd}")
        })?;
        let mut z = Reader::at(buf, z_eocd);
        let short64 = || truncated("the zip64 end-of-central-directory record");
        if z.u32().ok_or_else(short64)? != ZIP64_EOCD_SIG {
            return Err(format!("damaged zip archive: no zip64 end-of-central-directory record at byte {z_eocd}"));
        }
        z.take(8 + 2 + 2 + 4 + 4 + 8).ok_or_else(short64)?;
        count = z.u64().ok_or_else(short64)?;
        cd_size = z.u64().ok_or_else(short64)?;
        cd_offset = z.u64().ok_or_else(short64)?;
    }

    let cd_start = usize::try_from(cd_offset).map_err(|_| truncated("the central directory"))?;
    let cd_end = usize::try_from(cd_size)
        .ok()
        .and_then(|s| cd_start.checked_add(s))
        .filter(|&e| e <= eocd)
        .ok_or_else(|| truncated("the central directory"))?;
    // Each record is at least 46 bytes: a count beyond that is damage, not a reason to allocate.
    if count > ((cd_end - cd_start) / CENTRAL_LEN) as u64 {
        return Err(format!(
            "damaged zip archive: {count} entries announced but the central directory holds {} bytes",
            cd_end - cd_start
        ));
    }

    let mut entries = Vec::with_capacity(count as usize);
    let mut by_name = HashMap::with_capacity(count as usize);
    let mut r = Reader::at(&buf[..cd_end], cd_start);
    for i in 0..count {
        let entry = central_entry(buf, &mut r).map_err(|e| format!("zip entry {i}: {e}"))?;
        if by_name.insert(entry.name.clone(), entries.len()).is_some() {
            return Err(format!("damaged zip archive: entry \"{}\" appears twice", entry.name));
        }
        entries.push(entry);
    }
    let crcs_written = entries.iter().any(|e| e.crc32 != 0);
    Ok(Archive { entries, by_name, crcs_written })
}

fn read_u32(buf: &[u8], pos: usize) -> Option<u32> {
    Reader::at(buf, pos).u32()
}

/// The end record is the last thing in the file but may be followed by a comment of up to 64 KiB:
/// scan backwards for a signature whose comment length ends exactly at the end of the file.
fn find_eocd(buf: &[u8]) -> Result<usize, String> {
    if buf.len() < EOCD_LEN {
        return Err(format!("not a zip archive: only {} bytes long", buf.len()));
    }
    let last = buf.len() - EOCD_LEN;
    let first = last.saturating_sub(MAX_COMMENT);
    for pos in (first..=last).rev() {
        if read_u32(buf, pos) == Some(EOCD_SIG) {
            let comment = Reader::at(buf, pos + 20).u16().unwrap_or(u16::MAX) as usize;
            if pos + EOCD_LEN + comment == buf.len() {
                return Ok(pos);
            }
        }
    }
    Err("not a zip archive (no end-of-central-directory record)".into())
}

fn central_entry(buf: &[u8], r: &mut Reader) -> Result<Entry, String> {
    let short = || truncated("a central directory record");
    if r.u32().ok_or_else(short)? != CENTRAL_SIG {
        return Err("damaged zip archive: bad central directory record signature".into());
    }
    r.take(4).ok_or_else(short)?; // versions
    let flags = r.u16().ok_or_else(short)?;
    let method = r.u16().ok_or_else(short)?;
    r.take(4).ok_or_else(short)?; // time, date
    let crc32 = r.u32().ok_or_else(short)?;
    let mut csize = r.u32().ok_or_else(short)? as u64;
    let mut usize_ = r.u32().ok_or_else(short)? as u64;
    let name_len = r.u16().ok_or_else(short)? as usize;
    let extra_len = r.u16().ok_or_else(short)? as usize;
    let comment_len = r.u16().ok_or_else(short)? as usize;
    r.take(2 + 2 + 4).ok_or_else(short)?; // disk, attributes
    let mut local = r.u32().ok_or_else(short)? as u64;
    let name = r.take(name_len).ok_or_else(short)?;
    let name =
        String::from_utf8(name.to_vec()).map_err(|_| "damaged zip archive: an entry name is not UTF-8".to_string())?;
    let extra = r.take(extra_len).ok_or_else(short)?;
    r.take(comment_len).ok_or_else(short)?;

    // Zip64 extended information: only the fields whose 32-bit slot is saturated are present.
    let mut x = Reader::at(extra, 0);
    while let (Some(id), Some(len)) = (x.u16(), x.u16()) {
        let field = x
            .take(len as usize)
            .ok_or_else(|| format!("damaged zip archive: entry \"{name}\" has a truncated extra field"))?;
        if id == 1 {
            let mut f = Reader::at(field, 0);
            let bad = || format!("damaged zip archive: entry \"{name}\" has a short zip64 field");
            if usize_ == 0xffff_ffff {
                usize_ = f.u64().ok_or_else(bad)?;
            }
            if csize == 0xffff_ffff {
                csize = f.u64().ok_or_else(bad)?;
            }
            if local == 0xffff_ffff {
                local = f.u64().ok_or_else(bad)?;
            }
        }
    }

    let data = local_data(buf, local, &name, method, csize)?;
    Ok(Entry { name, method, crc32, data, uncompressed_size: usize_, encrypted: flags & 1 != 0 })
}

/// The local header repeats the name and carries its own extra field (torch's alignment
/// padding), so the data offset can only be known by reading it.
fn local_data(buf: &[u8], local: u64, name: &str, method: u16, csize: u64) -> Result<Range<usize>, String> {
    let what = format!("the local header of \"{name}\"");
    let start = usize::try_from(local).map_err(|_| truncated(&what))?;
    let mut r = Reader::at(buf, start);
    let short = || truncated(&what);
    if r.u32().ok_or_else(short)? != LOCAL_SIG {
        return Err(format!("damaged zip archive: no local header for \"{name}\" at byte {start}"));
    }
    r.take(4).ok_or_else(short)?; // version, flags
    let local_method = r.u16().ok_or_else(short)?;
    r.take(4 + 4 + 4 + 4).ok_or_else(short)?; // time, date, crc, sizes (may be deferred)
    let name_len = r.u16().ok_or_else(short)? as usize;
    let extra_len = r.u16().ok_or_else(short)? as usize;
    let local_name = r.take(name_len).ok_or_else(short)?;
    r.take(extra_len).ok_or_else(short)?;
    if local_name != name.as_bytes() || local_method != method {
        return Err(format!(
            "damaged zip archive: the local header of \"{name}\" disagrees with the central directory"
        ));
    }
    let begin = r.pos;
    let end = usize::try_from(csize).ok().and_then(|c| begin.checked_add(c)).filter(|&e| e <= buf.len()).ok_or_else(
        || {
            format!(
                "truncated zip archive: entry \"{name}\" needs {csize} bytes from byte {begin}, the file has {}",
                buf.len()
            )
        },
    )?;
    Ok(begin..end)
}
