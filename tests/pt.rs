//! PyTorch checkpoint reader: the fixture checkpoints against their safetensors twins, refusals
//! of handcrafted archives and pickles, and a mutation run that must never panic.

use std::path::Path;
use std::sync::Arc;

use percept::tensor::DType;
use percept::weights::pt::{read_pt, read_pt_bytes, read_pt_bytes_with, PtCheckpoint, PtOptions};
use percept::weights::safetensors::SafetensorsFile;
use percept::weights::Bytes;

use crate::support::{fixtures_dir, Rng};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn assert_equals_safetensors(ck: &PtCheckpoint, st: &Path) {
    let st = SafetensorsFile::open(st).unwrap();
    assert_eq!(ck.tensors.len(), st.tensors.len(), "tensor count");
    for (name, t) in &ck.tensors {
        let want = st.get(name).unwrap_or_else(|| panic!("{name} missing from the safetensors"));
        assert_eq!(t.dtype, want.dtype, "{name}");
        assert_eq!(t.shape, want.shape, "{name}");
        assert!(t.bytes.as_bytes() == want.bytes.as_bytes(), "{name}: bytes differ");
    }
}

#[test]
fn pt_dit_tiny_equals_safetensors() {
    let Some(dir) = fixtures_dir() else { return };
    let ck = read_pt(&dir.join("dit_tiny.pt")).unwrap();
    assert_eq!(ck.source_key, None);
    assert!(ck.skipped.is_empty(), "{:?}", ck.skipped);
    assert_equals_safetensors(&ck, &dir.join("dit_tiny.weights.safetensors"));
    // Contiguous tensors stay in the map, aligned for f32 access.
    for (name, t) in &ck.tensors {
        assert!(matches!(t.bytes, Bytes::Mapped { .. }), "{name} was copied");
        assert!(t.as_f32_slice().is_some(), "{name} is not f32-aligned");
    }
}

#[test]
fn pt_ema_checkpoint_takes_ema() {
    let Some(dir) = fixtures_dir() else { return };
    let ck = read_pt(&dir.join("dit_tiny_ema.pt")).unwrap();
    assert_eq!(ck.source_key.as_deref(), Some("ema"));
    assert_equals_safetensors(&ck, &dir.join("dit_tiny.weights.safetensors"));
}

#[test]
fn pt_bf16_equals_rounded_safetensors() {
    let Some(dir) = fixtures_dir() else { return };
    let ck = read_pt(&dir.join("dit_tiny_bf16.pt")).unwrap();
    let st = SafetensorsFile::open(&dir.join("dit_tiny.weights.safetensors")).unwrap();
    assert_eq!(ck.tensors.len(), st.tensors.len());
    for (name, t) in &ck.tensors {
        assert_eq!(t.dtype, DType::BF16, "{name}");
        let want = st.get(name).unwrap();
        assert_eq!(t.shape, want.shape, "{name}");
        let got = t.bytes.as_bytes();
        let want: Vec<u8> =
            want.to_f32_vec().unwrap().iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect();
        assert!(got == want.as_slice(), "{name}: bf16 values differ from the rounded f32 ones");
    }
}

#[test]
fn pt_legacy_format_refused_with_advice() {
    let Some(dir) = fixtures_dir() else { return };
    let err = read_pt(&dir.join("dit_tiny_legacy.pt")).unwrap_err().to_string();
    for part in ["dit_tiny_legacy.pt", "legacy", "torch.save", "_use_new_zipfile_serialization=True"] {
        assert!(err.contains(part), "{err}");
    }
}

#[test]
fn pt_views_equal_expected() {
    let Some(dir) = fixtures_dir() else { return };
    let ck = read_pt(&dir.join("views.pt")).unwrap();
    assert_equals_safetensors(&ck, &dir.join("views.expected.safetensors"));
    let get = |n: &str| &ck.tensors.iter().find(|(k, _)| k == n).unwrap().1;
    // A row slice of a shared storage is contiguous at its offset: still zero-copy.
    assert!(matches!(get("whole").bytes, Bytes::Mapped { .. }));
    assert!(matches!(get("rows_2_to_4").bytes, Bytes::Mapped { .. }));
    assert!(matches!(get("transposed").bytes, Bytes::Owned(_)));
    assert!(matches!(get("column_1").bytes, Bytes::Owned(_)));
}

// ---------------------------------------------------------------------------------------------
// Handcrafted archives

/// A zip of the given entries, each stored (or marked with `method`), CRCs filled in. With
/// `zip64`, every size and offset goes through the zip64 fields (as for files over 4 GiB).
fn zip_with(entries: &[(&str, &[u8])], method: u16, zip64: bool) -> Vec<u8> {
    let put16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
    let put32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    let put64 = |v: &mut Vec<u8>, x: u64| v.extend_from_slice(&x.to_le_bytes());
    let small = |x: usize| if zip64 { u32::MAX } else { x as u32 };
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len();
        let crc = crc32fast::hash(data);
        put32(&mut out, 0x0403_4b50);
        put16(&mut out, 45); // version
        put16(&mut out, 0); // flags
        put16(&mut out, method);
        put32(&mut out, 0); // time, date
        put32(&mut out, crc);
        put32(&mut out, small(data.len()));
        put32(&mut out, small(data.len()));
        put16(&mut out, name.len() as u16);
        put16(&mut out, if zip64 { 20 } else { 0 });
        out.extend_from_slice(name.as_bytes());
        if zip64 {
            put16(&mut out, 1);
            put16(&mut out, 16);
            put64(&mut out, data.len() as u64);
            put64(&mut out, data.len() as u64);
        }
        out.extend_from_slice(data);

        put32(&mut central, 0x0201_4b50);
        put16(&mut central, 45);
        put16(&mut central, 45);
        put16(&mut central, 0);
        put16(&mut central, method);
        put32(&mut central, 0);
        put32(&mut central, crc);
        put32(&mut central, small(data.len()));
        put32(&mut central, small(data.len()));
        put16(&mut central, name.len() as u16);
        put16(&mut central, if zip64 { 28 } else { 0 });
        central.extend_from_slice(&[0; 2 + 2 + 2 + 4]); // comment, disk, attributes
        put32(&mut central, small(offset));
        central.extend_from_slice(name.as_bytes());
        if zip64 {
            put16(&mut central, 1);
            put16(&mut central, 24);
            put64(&mut central, data.len() as u64);
            put64(&mut central, data.len() as u64);
            put64(&mut central, offset as u64);
        }
    }
    let cd_offset = out.len();
    out.extend_from_slice(&central);
    if zip64 {
        let record = out.len();
        put32(&mut out, 0x0606_4b50);
        put64(&mut out, 44);
        put16(&mut out, 45);
        put16(&mut out, 45);
        put32(&mut out, 0);
        put32(&mut out, 0);
        put64(&mut out, entries.len() as u64);
        put64(&mut out, entries.len() as u64);
        put64(&mut out, central.len() as u64);
        put64(&mut out, cd_offset as u64);
        put32(&mut out, 0x0706_4b50);
        put32(&mut out, 0);
        put64(&mut out, record as u64);
        put32(&mut out, 1);
    }
    put32(&mut out, 0x0605_4b50);
    put32(&mut out, 0);
    let count = if zip64 { u16::MAX } else { entries.len() as u16 };
    put16(&mut out, count);
    put16(&mut out, count);
    put32(&mut out, small(central.len()));
    put32(&mut out, small(cd_offset));
    put16(&mut out, 0);
    out
}

/// A checkpoint archive with `pkl` as its pickle and the given storages (`data/KEY`).
fn checkpoint(pkl: &[u8], storages: &[(&str, Vec<u8>)]) -> Arc<Vec<u8>> {
    let names: Vec<String> = storages.iter().map(|(k, _)| format!("ck/data/{k}")).collect();
    let mut entries: Vec<(&str, &[u8])> = vec![("ck/data.pkl", pkl), ("ck/byteorder", b"little")];
    for ((_, data), name) in storages.iter().zip(&names) {
        entries.push((name, data));
    }
    Arc::new(zip_with(&entries, 0, false))
}

/// Pickle bytes written the way torch.save writes them (protocol 2).
#[derive(Default)]
struct Pkl(Vec<u8>);

impl Pkl {
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.op(b"X").op(&(s.len() as u32).to_le_bytes()).op(s.as_bytes())
    }
    fn int(&mut self, v: i64) -> &mut Self {
        if (0..256).contains(&v) {
            self.op(&[b'K', v as u8])
        } else if i32::try_from(v).is_ok() {
            self.op(b"J").op(&(v as i32).to_le_bytes())
        } else {
            self.op(&[0x8a, 8]).op(&v.to_le_bytes())
        }
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(b"c").op(module.as_bytes()).op(b"\n").op(name.as_bytes()).op(b"\n")
    }
    fn ints(&mut self, v: &[i64]) -> &mut Self {
        self.op(b"(");
        for &x in v {
            self.int(x);
        }
        self.op(b"t")
    }
    fn storage(&mut self, ty: &str, key: &str, numel: i64) -> &mut Self {
        self.op(b"(").str("storage").global("torch", ty).str(key).str("cpu").int(numel).op(b"tQ")
    }
    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
    fn tensor_of(&mut self, storage: impl FnOnce(&mut Self), offset: i64, size: &[i64], stride: &[i64]) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"(");
        storage(self);
        self.int(offset).ints(size).ints(stride).op(&[0x89]).global("collections", "OrderedDict").op(b")R").op(b"tR")
    }
    fn tensor(&mut self, key: &str, numel: i64, offset: i64, size: &[i64], stride: &[i64]) -> &mut Self {
        self.tensor_of(
            |p| {
                p.storage("FloatStorage", key, numel);
            },
            offset,
            size,
            stride,
        )
    }
    fn begin_dict(&mut self) -> &mut Self {
        self.op(&[0x80, 2]).op(b"}(")
    }
    fn end_dict(&mut self) -> Vec<u8> {
        self.op(b"u.");
        std::mem::take(&mut self.0)
    }
}

fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

fn refusal(pkl: Vec<u8>, storages: &[(&str, Vec<u8>)]) -> String {
    match read_pt_bytes("hand.pt", checkpoint(&pkl, storages)) {
        Ok(ck) => panic!("accepted: {:?}", ck.tensors),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    assert!(msg.starts_with("checkpoint: hand.pt: "), "{msg}");
    for p in parts {
        assert!(msg.contains(p), "expected {p:?} in: {msg}");
    }
}

#[test]
fn pt_handcrafted_checkpoint_reads() {
    // Nested dicts flatten with dots; plain values beside tensors are skipped; a shared storage
    // serves two tensors; an optimizer-like leftover with an unknown class is never touched.
    let pkl = Pkl::default()
        .begin_dict()
        .str("state_dict")
        .op(b"}(")
        .str("a")
        .tensor("0", 6, 0, &[2, 3], &[3, 1])
        .str("inner")
        .op(b"}(")
        .str("b")
        .tensor("0", 6, 3, &[3], &[1])
        .op(b"u")
        .str("epoch")
        .int(7)
        .op(b"u")
        .str("args")
        .global("argparse", "Namespace")
        .op(b")")
        .op(&[0x81])
        .op(b"}")
        .str("lr")
        .int(1)
        .op(b"sb")
        .end_dict();
    let ck = read_pt_bytes("hand.pt", checkpoint(&pkl, &[("0", f32_bytes(6))])).unwrap();
    assert_eq!(ck.source_key.as_deref(), Some("state_dict"));
    let names: Vec<&str> = ck.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "inner.b"]);
    assert_eq!(ck.tensors[1].1.to_f32_vec().unwrap(), [3.0, 4.0, 5.0]);
    assert_eq!(ck.skipped, ["epoch (the integer 7)"]);
}

#[test]
fn pt_handcrafted_protocol4_ordered_dict() {
    // What model.state_dict() looks like under protocol 4: an OrderedDict made by
    // STACK_GLOBAL + REDUCE, items set, then its `_metadata` attribute set by BUILD; tensors
    // wrapped in _rebuild_parameter; a half storage; memoized globals fetched back.
    let short = |p: &mut Pkl, s: &str| {
        p.op(&[0x8c, s.len() as u8]).op(s.as_bytes());
    };
    let mut p = Pkl::default();
    p.op(&[0x80, 4, 0x95]).op(&0u64.to_le_bytes());
    short(&mut p, "collections");
    short(&mut p, "OrderedDict");
    p.op(&[0x93, 0x94]).op(b")R").op(&[0x94]).op(b"(");
    for (name, offset) in [("w", 0), ("v", 2)] {
        short(&mut p, name);
        p.op(&[0x94]).global("torch._utils", "_rebuild_parameter").op(b"(");
        p.tensor_of(
            |p| {
                p.storage("HalfStorage", "7", 4);
            },
            offset,
            &[2],
            &[1],
        );
        p.op(&[0x88]).op(b"h").op(&[0]).op(b")R").op(b"tR");
    }
    p.op(b"u}");
    short(&mut p, "_metadata");
    p.op(b"h").op(&[0]).op(b")R");
    short(&mut p, "");
    p.op(b"}");
    short(&mut p, "version");
    p.int(1).op(b"sssb.");
    let halves: Vec<u8> = [1.0f32, 2.0, 3.0, -4.0].iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
    let ck = read_pt_bytes("hand.pt", checkpoint(&p.0, &[("7", halves)])).unwrap();
    assert_eq!(ck.source_key, None);
    let w = ck.get("w").unwrap();
    assert_eq!((w.dtype, w.shape.as_slice()), (DType::F16, &[2usize][..]));
    assert_eq!(w.to_f32_vec().unwrap(), [1.0, 2.0]);
    assert_eq!(ck.get("v").unwrap().to_f32_vec().unwrap(), [3.0, -4.0]);
    assert_eq!(ck.tensors.len(), 2);
}

#[test]
fn pt_refuses_tensor_from_unknown_global() {
    let pkl = Pkl::default().begin_dict().str("w").global("os", "system").op(b"(").str("rm").op(b"tR").end_dict();
    assert_mentions(&refusal(pkl, &[]), &["\"w\"", "unknown global os.system"]);

    // The storage argument itself comes from an unknown callable.
    let pkl = Pkl::default()
        .begin_dict()
        .str("w")
        .tensor_of(
            |p| {
                p.global("builtins", "eval").op(b"(").str("x").op(b"tR");
            },
            0,
            &[1],
            &[1],
        )
        .end_dict();
    assert_mentions(&refusal(pkl, &[]), &["tensor \"w\"", "storage is built by the unknown global builtins.eval"]);

    // A storage type torch knows but we do not.
    let pkl = Pkl::default()
        .begin_dict()
        .str("w")
        .tensor_of(
            |p| {
                p.storage("ComplexFloatStorage", "0", 2);
            },
            0,
            &[2],
            &[1],
        )
        .end_dict();
    assert_mentions(
        &refusal(pkl, &[("0", vec![0; 16])]),
        &["tensor \"w\"", "torch.ComplexFloatStorage is not supported"],
    );

    // The whole checkpoint is a pickled module.
    let pkl = Pkl::default().op(&[0x80, 2]).global("mymodels", "DiT").op(b")").op(&[0x81]).op(b".").0.clone();
    assert_mentions(&refusal(pkl, &[]), &["unknown global mymodels.DiT", "state_dict()"]);
}

#[test]
fn pt_refuses_unknown_opcode() {
    // 'I' (a protocol-0 text integer) is not written by torch.save.
    let pkl = Pkl::default().begin_dict().str("w").op(b"I12\n").end_dict();
    assert_mentions(&refusal(pkl, &[]), &["data.pkl", "0x49 ('I')", "unsupported opcode", "byte"]);
}

#[test]
fn pt_refuses_bad_layouts() {
    type Case = (i64, i64, &'static [i64], &'static [i64], &'static [&'static str]);
    let cases: [Case; 8] = [
        // numel, offset, size, stride, message parts
        (10, 0, &[10], &[1], &["storage too short", "declares 10 f32 elements (40 bytes)", "holds 24 bytes"]),
        (6, 0, &[7], &[1], &["reach element 6 of a storage of 6"]),
        (6, 6, &[1], &[1], &["offset 6", "reach element 6"]),
        (6, -1, &[1], &[1], &["storage offset -1 is negative"]),
        (6, 0, &[-2, 3], &[3, 1], &["size [-2, 3] has a negative entry"]),
        (6, 0, &[2, 3], &[3, -1], &["stride [3, -1] has a negative entry"]),
        (6, 0, &[1 << 62, 1 << 62], &[1, 1], &["overflows the element count"]),
        (6, 0, &[4], &[i64::MAX], &["overflow"]),
    ];
    for (numel, offset, size, stride, parts) in cases {
        let pkl = Pkl::default().begin_dict().str("w").tensor("0", numel, offset, size, stride).end_dict();
        let msg = refusal(pkl, &[("0", f32_bytes(6))]);
        assert_mentions(&msg, &[&["tensor \"w\""][..], parts].concat());
    }
    // A missing storage entry.
    let pkl = Pkl::default().begin_dict().str("w").tensor("9", 6, 0, &[6], &[1]).end_dict();
    assert_mentions(&refusal(pkl, &[("0", f32_bytes(6))]), &["storage \"9\"", "missing"]);
    // An expanded (stride 0) view loads as torch reads it; one whose copy would dwarf the file
    // is refused.
    let pkl = Pkl::default().begin_dict().str("w").tensor("0", 6, 2, &[100], &[0]).end_dict();
    let ck = read_pt_bytes("hand.pt", checkpoint(&pkl, &[("0", f32_bytes(6))])).unwrap();
    assert_eq!(ck.tensors[0].1.to_f32_vec().unwrap(), vec![2.0; 100]);
    let pkl = Pkl::default().begin_dict().str("w").tensor("0", 6, 0, &[1 << 40], &[0]).end_dict();
    assert_mentions(&refusal(pkl, &[("0", f32_bytes(6))]), &["copied bytes"]);
}

#[test]
fn pt_refuses_damaged_archives() {
    let pkl = Pkl::default().begin_dict().str("w").tensor("0", 6, 0, &[6], &[1]).end_dict();
    let good = checkpoint(&pkl, &[("0", f32_bytes(6))]);
    assert!(read_pt_bytes("hand.pt", good.clone()).is_ok());

    let read = |b: Vec<u8>| read_pt_bytes("hand.pt", Arc::new(b)).unwrap_err().to_string();
    // Every size and offset in zip64 fields, as in checkpoints over 4 GiB.
    let big = zip_with(&[("ck/data.pkl", &pkl), ("ck/data/0", &f32_bytes(6))], 0, true);
    let ck = read_pt_bytes("hand.pt", Arc::new(big.clone())).unwrap();
    assert_eq!(ck.tensors[0].1.to_f32_vec().unwrap(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let mut short = big.clone();
    let at = short.windows(4).rposition(|w| w == 0x0018_0001u32.to_le_bytes()).unwrap();
    short[at + 2] = 8; // the zip64 field of the last entry now lacks its offset
    assert_mentions(&read(short), &["zip64"]);
    assert_mentions(&read(b"hello, not a zip at all".to_vec()), &["not a zip archive"]);
    assert_mentions(&read(vec![]), &["not a zip archive", "0 bytes"]);
    // Truncated: the end record is gone, or the data ends early.
    assert_mentions(&read(good[..good.len() - 3].to_vec()), &["not a zip archive"]);
    let mut cut = good[..200].to_vec();
    cut.extend_from_slice(&good[good.len() - 200..]);
    let msg = read(cut);
    assert!(msg.contains("damaged") || msg.contains("truncated"), "{msg}");
    // A flipped byte in a storage: only the CRC can tell, and it does.
    let mut flipped = good.to_vec();
    let at = flipped.windows(8).position(|w| w == &f32_bytes(6)[4..12]).unwrap();
    flipped[at] ^= 0x40;
    assert_mentions(&read(flipped.clone()), &["CRC-32", "ck/data/0"]);
    let unchecked = read_pt_bytes_with("hand.pt", Arc::new(flipped), PtOptions { verify_crc: false });
    assert!(unchecked.is_ok());
    // A compressed entry (as a re-zipping tool would write).
    let deflated = zip_with(&[("ck/data.pkl", &pkl), ("ck/data/0", &f32_bytes(6))], 8, false);
    assert_mentions(&read(deflated), &["compressed", "re-zipped"]);
    // A zip without a torch pickle.
    assert_mentions(&read(zip_with(&[("readme.txt", b"hi")], 0, false)), &["no NAME/data.pkl"]);
}

#[test]
fn pt_refuses_hostile_pickles() {
    // Deep MARK nesting.
    let mut pkl = vec![0x80, 2];
    pkl.extend(std::iter::repeat_n(b'(', 100_000));
    assert_mentions(&refusal(pkl, &[]), &["MARKs nest deeper"]);

    // A huge memo.
    let mut pkl = vec![0x80, 2, b')'];
    pkl.extend(std::iter::repeat_n(0x94, (1 << 20) + 1));
    assert_mentions(&refusal(pkl, &[]), &["memo exceeds"]);

    // A string length far beyond the file.
    let mut pkl = vec![0x80, 2, b'X'];
    pkl.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    assert_mentions(&refusal(pkl, &[]), &["exceeds the limit"]);
    let mut pkl = vec![0x80, 2, b'X'];
    pkl.extend_from_slice(&1000u32.to_le_bytes());
    assert_mentions(&refusal(pkl, &[]), &["truncated pickle"]);

    // Dicts nested as a state dict.
    let mut p = Pkl::default();
    p.op(&[0x80, 2]);
    for _ in 0..100 {
        p.op(b"}").str("x");
    }
    p.op(b"}");
    for _ in 0..100 {
        p.op(b"s");
    }
    assert_mentions(&refusal(p.op(b".").0.clone(), &[]), &["nests dicts deeper than"]);

    // Half a million nested lists beside a tensor: skipped, and freeing them must not recurse.
    let n = 500_000;
    let mut p = Pkl::default();
    p.begin_dict().str("w").tensor("0", 6, 0, &[6], &[1]).str("deep");
    p.op(&vec![b']'; n]).op(&vec![b'a'; n - 1]);
    let pkl = p.end_dict();
    let ck = read_pt_bytes("hand.pt", checkpoint(&pkl, &[("0", f32_bytes(6))])).unwrap();
    assert_eq!(ck.tensors.len(), 1);
    assert_eq!(ck.skipped, ["deep (a list of 1 items)"]);

    // A size tuple with more dimensions than any model uses.
    let dims = vec![1i64; 100];
    let pkl = Pkl::default().begin_dict().str("w").tensor("0", 6, 0, &dims, &dims).end_dict();
    assert_mentions(&refusal(pkl, &[("0", f32_bytes(6))]), &["tensor \"w\"", "not a tuple of at most 64 integers"]);

    // No STOP.
    let pkl = Pkl::default().begin_dict().0.clone();
    assert_mentions(&refusal(pkl, &[]), &["without a STOP"]);
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// Truncates and flips bytes of a real checkpoint many times; every outcome must be a value or
/// an error, never a panic. Without CRC checks most mutations reach the pickle and the layouts.
fn mutate(file: &Path, rounds: usize, seed: u64) -> (usize, usize) {
    let original = std::fs::read(file).unwrap();
    let mut rng = Rng(seed);
    let mut buf = Arc::new(original.clone());
    let (mut ok, mut err) = (0, 0);
    // The interesting bytes: the pickle at the start and the central directory at the end.
    let hot = 8192.min(original.len());
    for round in 0..rounds {
        let b = Arc::get_mut(&mut buf).unwrap();
        let mode = rng.next_u64() % 5;
        let mut touched = Vec::new();
        if mode == 0 {
            b.truncate((rng.next_u64() % original.len() as u64) as usize);
        } else {
            for _ in 0..1 + rng.next_u64() % 4 {
                let r = rng.next_u64() as usize;
                let at = match mode {
                    1 | 4 => r % hot,
                    2 => original.len() - 1 - r % hot,
                    _ => r % original.len(),
                };
                if mode == 4 {
                    b[at] = rng.next_u64() as u8;
                } else {
                    b[at] ^= 1 << (rng.next_u64() % 8);
                }
                touched.push(at);
            }
        }
        let opts = PtOptions { verify_crc: round % 8 == 0 };
        let name = file.display().to_string();
        let res =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_pt_bytes_with(&name, buf.clone(), opts)));
        match res {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                assert!(e.to_string().contains(&name), "{e}");
                err += 1
            }
            Err(_) => panic!("panic at round {round} (seed {seed}, mode {mode}, bytes {touched:?})"),
        }
        let b = Arc::get_mut(&mut buf).unwrap();
        if mode == 0 {
            b.extend_from_slice(&original[b.len()..]);
        } else {
            for at in touched {
                b[at] = original[at];
            }
        }
    }
    assert!(*buf == original);
    (ok, err)
}

#[test]
fn pt_mutations_never_panic() {
    let Some(dir) = fixtures_dir() else { return };
    // PERCEPT_TEST_LEVEL=2 runs a 20 times longer campaign.
    let level = std::env::var("PERCEPT_TEST_LEVEL").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1);
    let scale = if level >= 2 { 20 } else { 1 };
    let (ok, err) = mutate(&dir.join("views.pt"), 20_000 * scale, 1);
    eprintln!("views.pt: {ok} read, {err} refused");
    assert!(ok > 0 && err > 0);
    let (ok, err) = mutate(&dir.join("dit_tiny.pt"), 4000 * scale, 2);
    eprintln!("dit_tiny.pt: {ok} read, {err} refused");
    assert!(ok > 0 && err > 0);
}
