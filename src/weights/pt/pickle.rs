//! A pickle reader for the subset `torch.save` writes, that interprets data and never runs code.
//!
//! Python's unpickler imports any global a file names and calls it. Here a global is only a
//! name: the few that `torch.save` uses for tensors and state dicts (`_rebuild_tensor_v2`,
//! `_rebuild_parameter`, `collections.OrderedDict`, the typed storages) are interpreted, and any
//! other becomes an [`Value::Unknown`] object that is harmless until something we return depends
//! on it (training arguments and optimizer state may hold such objects and are skipped).
//! Calls of known globals with arguments we cannot trust become [`Value::Bad`], carrying the
//! reason, so that they too only fail the load when they are needed.
//!
//! Containers live in an arena and values refer to them by index: dropping, cloning and memo
//! references never recurse, so a pickle nested a million levels deep cannot exhaust the stack.
//! Stack, mark depth, memo, string lengths and the total number of container items are bounded.

use std::collections::HashMap;
use std::rc::Rc;

use crate::tensor::DType;

pub const MAX_STACK: usize = 1 << 20;
pub const MAX_MARK_DEPTH: usize = 1 << 12;
pub const MAX_MEMO: usize = 1 << 20;
pub const MAX_STRING: usize = 1 << 24;
/// Container items plus containers over the whole pickle.
pub const MAX_ITEMS: usize = 1 << 24;
/// Arguments of an interpreted call, and dimensions of a tensor.
const MAX_ARGS: usize = 8;
const MAX_DIMS: usize = 64;

/// Index of a container in [`Pickle::objs`].
pub type Id = usize;

/// The globals we interpret; any other name is kept as text.
#[derive(Clone, Debug, PartialEq)]
pub enum Global {
    RebuildTensorV2,
    /// torch's rebuild for dtypes without a typed storage class (uint16/32/64, float8 kinds).
    RebuildTensorV3,
    RebuildParameter,
    RebuildParameterWithState,
    OrderedDict,
    Storage(DType),
    Other(Rc<str>),
}

impl Global {
    /// The dotted name as it appears in the pickle.
    pub fn name(&self) -> String {
        match self {
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildTensorV3 => "torch._utils._rebuild_tensor_v3".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::RebuildParameterWithState => "torch._utils._rebuild_parameter_with_state".into(),
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::Storage(d) => format!("the torch storage class of {d}"),
            Global::Other(n) => n.to_string(),
        }
    }
}

/// A storage as a persistent id names it: `('storage', torch.FloatStorage, key, location, numel)`.
#[derive(Debug)]
pub struct StorageRef {
    pub dtype: DType,
    pub key: Rc<str>,
    pub numel: i64,
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`; sizes are kept as read (possibly
/// negative) so that the layout check can report them.
#[derive(Debug)]
pub struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64 (LONG1 of more than 8 bytes).
    BigInt,
    Float(f64),
    Str(Rc<str>),
    Tuple(Id),
    List(Id),
    Dict(Id),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// Built from a global we do not interpret; the text names that global.
    Unknown(Rc<str>),
    /// A known construct we refuse to trust; the text says why, in case it is needed.
    Bad(Rc<str>),
    /// Bytes, sets and other values nothing we return can use.
    Opaque(&'static str),
}

/// A dict keeps insertion order (as Python's does) and replaces values of repeated keys.
#[derive(Debug, Default)]
pub struct Dict {
    pub entries: Vec<(Value, Value)>,
    index: HashMap<Key, usize>,
}

#[derive(Debug, PartialEq, Eq, Hash)]
enum Key {
    Str(Rc<str>),
    Int(i64),
}

impl Dict {
    fn insert(&mut self, k: Value, v: Value) {
        let key = match &k {
            Value::Str(s) => Some(Key::Str(s.clone())),
            Value::Int(i) => Some(Key::Int(*i)),
            Value::Bool(b) => Some(Key::Int(*b as i64)),
            _ => None,
        };
        match key {
            Some(key) => match self.index.get(&key) {
                Some(&i) => self.entries[i].1 = v,
                None => {
                    self.index.insert(key, self.entries.len());
                    self.entries.push((k, v));
                }
            },
            None => self.entries.push((k, v)),
        }
    }

    pub fn get_str(&self, key: &str) -> Option<&Value> {
        self.index.get(&Key::Str(key.into())).map(|&i| &self.entries[i].1)
    }
}

#[derive(Debug)]
pub enum Obj {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Dict),
}

/// A loaded pickle: its result and the containers it refers to.
#[derive(Debug)]
pub struct Pickle {
    pub root: Value,
    pub objs: Vec<Obj>,
}

impl Pickle {
    pub fn dict(&self, id: Id) -> &Dict {
        match &self.objs[id] {
            Obj::Dict(d) => d,
            _ => unreachable!("Value::Dict always indexes a dict"),
        }
    }

    /// A short description of a value for messages.
    pub fn describe(&self, v: &Value) -> String {
        match v {
            Value::None => "None".into(),
            Value::Bool(b) => format!("the bool {b}"),
            Value::Int(i) => format!("the integer {i}"),
            Value::BigInt => "a very large integer".into(),
            Value::Float(f) => format!("the float {f}"),
            Value::Str(s) if s.len() <= 40 => format!("the string \"{s}\""),
            Value::Str(s) => format!("a string of {} bytes", s.len()),
            Value::Tuple(id) => format!("a tuple of {} items", self.len(*id)),
            Value::List(id) => format!("a list of {} items", self.len(*id)),
            Value::Dict(id) => format!("a dict of {} entries", self.len(*id)),
            Value::Global(g) => format!("the global {}", g.name()),
            Value::Storage(s) => format!("a bare {} storage", s.dtype),
            Value::Tensor(_) => "a tensor".into(),
            Value::Unknown(n) => format!("an object built by the unknown global {n}"),
            Value::Bad(m) => format!("a refused object ({m})"),
            Value::Opaque(k) => format!("a {k}"),
        }
    }

    fn len(&self, id: Id) -> usize {
        match &self.objs[id] {
            Obj::Tuple(v) | Obj::List(v) => v.len(),
            Obj::Dict(d) => d.entries.len(),
        }
    }
}

/// Runs the pickle in `data` (the bytes of `data.pkl`) and returns its result.
pub fn load(data: &[u8]) -> Result<Pickle, String> {
    let mut vm =
        Vm { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), objs: Vec::new(), items: 0 };
    let root = vm.run()?;
    Ok(Pickle { root, objs: vm.objs })
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    objs: Vec<Obj>,
    items: usize,
}

fn opcode_name(op: u8) -> String {
    if op.is_ascii_graphic() {
        format!("0x{op:02x} ('{}')", op as char)
    } else {
        format!("0x{op:02x}")
    }
}

impl<'a> Vm<'a> {
    fn run(&mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let Some(&op) = self.data.get(self.pos) else {
                return Err(format!("the pickle ends at byte {} without a STOP opcode (truncated)", self.data.len()));
            };
            self.pos += 1;
            match self.step(op) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => return Err(format!("pickle opcode {} at byte {at}: {e}", opcode_name(op))),
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            format!("needs {n} bytes of argument, only {} remain (truncated pickle)", self.data.len() - self.pos)
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
    fn len_arg(&mut self, n: u64) -> Result<usize, String> {
        if n > MAX_STRING as u64 {
            return Err(format!("a string of {n} bytes exceeds the limit of {MAX_STRING}"));
        }
        Ok(n as usize)
    }
    fn text(&mut self, n: u64) -> Result<Rc<str>, String> {
        let n = self.len_arg(n)?;
        let b = self.take(n)?;
        Ok(String::from_utf8_lossy(b).into())
    }
    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.data[self.pos..];
        let n =
            rest.iter().take(1024).position(|&b| b == b'\n').ok_or("a GLOBAL name is not terminated by a newline")?;
        self.pos += n + 1;
        std::str::from_utf8(&rest[..n]).map_err(|_| "a GLOBAL name is not UTF-8".to_string())
    }

    fn push(&mut self, v: Value) -> Result<(), String> {
        if self.stack.len() >= MAX_STACK {
            return Err(format!("the stack exceeds {MAX_STACK} values"));
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> Result<Value, String> {
        if self.marks.last() == Some(&self.stack.len()) {
            return Err("pops across a MARK".into());
        }
        self.stack.pop().ok_or_else(|| "pops an empty stack".to_string())
    }
    fn top(&mut self) -> Result<&mut Value, String> {
        if self.marks.last() == Some(&self.stack.len()) {
            return Err("needs a value above the MARK".into());
        }
        self.stack.last_mut().ok_or_else(|| "the stack is empty".to_string())
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let m = self.marks.pop().ok_or("no MARK on the stack")?;
        Ok(self.stack.split_off(m))
    }
    fn count(&mut self, n: usize) -> Result<(), String> {
        self.items = self.items.saturating_add(n);
        if self.items > MAX_ITEMS {
            return Err(format!("the pickle builds more than {MAX_ITEMS} container items"));
        }
        Ok(())
    }
    fn new_obj(&mut self, o: Obj) -> Result<Id, String> {
        let n = match &o {
            Obj::Tuple(v) | Obj::List(v) => v.len(),
            Obj::Dict(d) => d.entries.len(),
        };
        self.count(n + 1)?;
        self.objs.push(o);
        Ok(self.objs.len() - 1)
    }
    fn tuple(&mut self, items: Vec<Value>) -> Result<(), String> {
        let id = self.new_obj(Obj::Tuple(items))?;
        self.push(Value::Tuple(id))
    }
    fn put(&mut self, idx: u64) -> Result<(), String> {
        let v = self.top()?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&idx) {
            return Err(format!("the memo exceeds {MAX_MEMO} entries"));
        }
        self.memo.insert(idx, v);
        Ok(())
    }
    fn get(&mut self, idx: u64) -> Result<(), String> {
        let v = self.memo.get(&idx).cloned().ok_or_else(|| format!("memo slot {idx} was never stored"))?;
        self.push(v)
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), String> {
        self.count(items.len())?;
        match self.top()?.clone() {
            Value::List(id) => match &mut self.objs[id] {
                Obj::List(l) => l.extend(items),
                _ => unreachable!(),
            },
            Value::Unknown(_) | Value::Bad(_) => {}
            other => return Err(format!("appends to {}", kind(&other))),
        }
        Ok(())
    }
    fn set_items(&mut self, items: Vec<Value>) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err(format!("sets items from an odd number ({}) of values", items.len()));
        }
        self.count(items.len() / 2)?;
        match self.top()?.clone() {
            Value::Dict(id) => match &mut self.objs[id] {
                Obj::Dict(d) => {
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.insert(k, v);
                    }
                }
                _ => unreachable!(),
            },
            Value::Unknown(_) | Value::Bad(_) => {}
            other => return Err(format!("sets items on {}", kind(&other))),
        }
        Ok(())
    }

    /// One opcode; `Some` at STOP.
    fn step(&mut self, op: u8) -> Result<Option<Value>, String> {
        match op {
            0x80 => {
                let p = self.u8()?;
                if !(2..=5).contains(&p) {
                    return Err(format!("pickle protocol {p} is not supported (torch.save writes 2)"));
                }
            }
            0x95 => {
                self.u64()?; // FRAME: a size hint only
            }
            b'.' => return self.pop().map(Some),
            b'(' => {
                if self.marks.len() >= MAX_MARK_DEPTH {
                    return Err(format!("MARKs nest deeper than {MAX_MARK_DEPTH}"));
                }
                self.marks.push(self.stack.len());
            }
            b'0' => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.push(v)?;
            }
            b'N' => self.push(Value::None)?,
            0x88 => self.push(Value::Bool(true))?,
            0x89 => self.push(Value::Bool(false))?,
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(v as i64))?
            }
            b'M' => {
                let v = self.u16()?;
                self.push(Value::Int(v as i64))?
            }
            b'J' => {
                let v = self.u32()? as i32;
                self.push(Value::Int(v as i64))?
            }
            0x8a => {
                let n = self.u8()? as usize;
                let b = self.take(n)?;
                self.push(long1(b))?
            }
            b'G' => {
                let b = self.take(8)?;
                self.push(Value::Float(f64::from_be_bytes(b.try_into().unwrap_or([0; 8]))))?
            }
            b'X' => {
                let n = self.u32()? as u64;
                let s = self.text(n)?;
                self.push(Value::Str(s))?
            }
            0x8c => {
                let n = self.u8()? as u64;
                let s = self.text(n)?;
                self.push(Value::Str(s))?
            }
            0x8d => {
                let n = self.u64()?;
                let s = self.text(n)?;
                self.push(Value::Str(s))?
            }
            // Byte strings (protocol 1 strings, bytes): nothing torch needs from them.
            b'U' | b'C' => {
                let n = self.u8()? as usize;
                self.take(n)?;
                self.push(Value::Opaque("byte string"))?
            }
            b'T' | b'B' => {
                let n = self.u32()? as u64;
                let n = self.len_arg(n)?;
                self.take(n)?;
                self.push(Value::Opaque("byte string"))?
            }
            0x8e => {
                let n = self.u64()?;
                let n = self.len_arg(n)?;
                self.take(n)?;
                self.push(Value::Opaque("byte string"))?
            }
            b')' => self.tuple(Vec::new())?,
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if self.stack.len() < n || self.marks.last().is_some_and(|&m| m > self.stack.len() - n) {
                    return Err(format!("needs {n} values on the stack"));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.tuple(items)?
            }
            b't' => {
                let items = self.pop_mark()?;
                self.tuple(items)?
            }
            b']' => {
                let id = self.new_obj(Obj::List(Vec::new()))?;
                self.push(Value::List(id))?
            }
            b'l' => {
                let items = self.pop_mark()?;
                let id = self.new_obj(Obj::List(items))?;
                self.push(Value::List(id))?
            }
            b'}' => {
                let id = self.new_obj(Obj::Dict(Dict::default()))?;
                self.push(Value::Dict(id))?
            }
            b'd' => {
                let items = self.pop_mark()?;
                let id = self.new_obj(Obj::Dict(Dict::default()))?;
                self.push(Value::Dict(id))?;
                self.set_items(items)?;
            }
            b'a' => {
                let v = self.pop()?;
                self.append(vec![v])?
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.append(items)?
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])?
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(items)?
            }
            0x8f => self.push(Value::Opaque("set"))?,
            0x90 => {
                let items = self.pop_mark()?;
                self.count(items.len())?;
                match self.top()? {
                    Value::Opaque("set") | Value::Unknown(_) | Value::Bad(_) => {}
                    other => return Err(format!("adds set items to {}", kind(other))),
                }
            }
            0x91 => {
                self.pop_mark()?;
                self.push(Value::Opaque("frozenset"))?
            }
            b'q' => {
                let i = self.u8()? as u64;
                self.put(i)?
            }
            b'r' => {
                let i = self.u32()? as u64;
                self.put(i)?
            }
            0x94 => {
                let i = self.memo.len() as u64;
                self.put(i)?
            }
            b'h' => {
                let i = self.u8()? as u64;
                self.get(i)?
            }
            b'j' => {
                let i = self.u32()? as u64;
                self.get(i)?
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.push(Value::Global(resolve(module, name)))?
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => self.push(Value::Global(resolve(&m, &n)))?,
                    (m, n) => {
                        return Err(format!("STACK_GLOBAL needs two strings, found {} and {}", kind(&m), kind(&n)))
                    }
                }
            }
            b'R' => {
                let args = self.pop()?;
                let f = self.pop()?;
                let v = self.call(f, args)?;
                self.push(v)?
            }
            0x81 => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let v = self.new_object(cls, args)?;
                self.push(v)?
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let v = self.new_object(cls, args)?;
                self.push(v)?
            }
            b'b' => {
                let state = self.pop()?;
                let top = self.top()?;
                match top {
                    // An OrderedDict state dict carries `_metadata` as an attribute: not needed.
                    Value::Dict(_) | Value::Unknown(_) | Value::Bad(_) => {}
                    Value::Tensor(_) => *top = Value::Bad("a tensor whose state is replaced by BUILD".into()),
                    other => return Err(format!("BUILD on {} with {}", kind(other), kind(&state))),
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = self.persistent_load(pid);
                self.push(v)?
            }
            _ => return Err("unsupported opcode (torch.save writes protocol 2 pickles)".into()),
        }
        Ok(None)
    }

    fn tuple_items(&self, v: &Value) -> Option<&[Value]> {
        match v {
            Value::Tuple(id) => match &self.objs[*id] {
                Obj::Tuple(t) => Some(t),
                _ => None,
            },
            _ => None,
        }
    }

    /// REDUCE: only interpreted globals do anything; unknown callables give unknown objects.
    fn call(&mut self, f: Value, args: Value) -> Result<Value, String> {
        let g = match f {
            Value::Global(g) => g,
            Value::Unknown(n) => return Ok(Value::Unknown(n)),
            Value::Bad(m) => return Ok(Value::Bad(m)),
            other => return Err(format!("REDUCE calls {}, which is not callable", kind(&other))),
        };
        let Some(a) = self.tuple_items(&args) else {
            return Err(format!("REDUCE arguments are {}, not a tuple", kind(&args)));
        };
        if let Global::Other(n) = g {
            return Ok(Value::Unknown(n));
        }
        // Known globals take a handful of arguments; checking first keeps a long argument tuple,
        // fetched from the memo again and again, from costing its length on every call.
        if a.len() > MAX_ARGS {
            return Ok(Value::Bad(format!("{} called with {} arguments", g.name(), a.len()).into()));
        }
        let a = a.to_vec();
        Ok(match g {
            Global::Other(_) => unreachable!("handled above"),
            Global::RebuildTensorV2 => self.rebuild_tensor(&a).unwrap_or_else(|m| Value::Bad(m.into())),
            Global::RebuildTensorV3 => {
                let dtype = match a.get(6) {
                    Some(Value::Global(g)) => g.name(),
                    Some(other) => kind(other),
                    None => "an unnamed dtype".into(),
                };
                Value::Bad(
                    format!(
                        "a tensor of dtype {dtype}, which this reader does not read (float32, float16, bfloat16, \
                         float64, int64, int32, int16, int8, uint8 and bool are read)"
                    )
                    .into(),
                )
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => match a.first() {
                Some(Value::Tensor(t)) => Value::Tensor(t.clone()),
                Some(Value::Bad(m)) => Value::Bad(m.clone()),
                Some(Value::Unknown(n)) => {
                    Value::Bad(format!("a parameter whose data is built by the unknown global {n}").into())
                }
                Some(other) => Value::Bad(format!("a parameter whose data is {}", kind(other)).into()),
                None => Value::Bad("_rebuild_parameter called without arguments".into()),
            },
            Global::OrderedDict if a.is_empty() => Value::Dict(self.new_obj(Obj::Dict(Dict::default()))?),
            Global::OrderedDict => Value::Bad("collections.OrderedDict called with arguments".into()),
            Global::Storage(d) => Value::Bad(format!("a {d} storage constructed by a call").into()),
        })
    }

    /// NEWOBJ: `cls.__new__(cls, *args)`.
    fn new_object(&mut self, cls: Value, _args: Value) -> Result<Value, String> {
        Ok(match cls {
            Value::Global(Global::OrderedDict) => Value::Dict(self.new_obj(Obj::Dict(Dict::default()))?),
            Value::Global(Global::Other(n)) | Value::Unknown(n) => Value::Unknown(n),
            Value::Bad(m) => Value::Bad(m),
            Value::Global(g) => Value::Bad(format!("NEWOBJ of {}", g.name()).into()),
            other => return Err(format!("NEWOBJ of {}, which is not a class", kind(&other))),
        })
    }

    fn rebuild_tensor(&self, a: &[Value]) -> Result<Value, String> {
        if a.len() != 6 && a.len() != 7 {
            return Err(format!("_rebuild_tensor_v2 called with {} arguments, expected 6 or 7", a.len()));
        }
        let storage = match &a[0] {
            Value::Storage(s) => s.clone(),
            Value::Bad(m) => return Err(m.to_string()),
            Value::Unknown(n) => return Err(format!("a tensor whose storage is built by the unknown global {n}")),
            other => return Err(format!("a tensor whose storage is {}", kind(other))),
        };
        let offset = match a[1] {
            Value::Int(i) => i,
            _ => return Err(format!("a tensor whose storage offset is {}", kind(&a[1]))),
        };
        let ints = |v: &Value, what: &str| {
            self.ints(v).ok_or_else(|| {
                format!("a tensor whose {what} is {}, not a tuple of at most {MAX_DIMS} integers", kind(v))
            })
        };
        let size = ints(&a[2], "size")?;
        let stride = ints(&a[3], "stride")?;
        if size.len() != stride.len() {
            return Err(format!("a tensor with {} sizes but {} strides", size.len(), stride.len()));
        }
        match &a[5] {
            Value::Dict(_) | Value::None => {}
            other => return Err(format!("a tensor whose backward hooks are {}", kind(other))),
        }
        if let Some(meta) = a.get(6) {
            if !matches!(meta, Value::Dict(_) | Value::None) {
                return Err(format!("a tensor whose metadata is {}", kind(meta)));
            }
        }
        Ok(Value::Tensor(Rc::new(TensorRef { storage, offset, size, stride })))
    }

    fn ints(&self, v: &Value) -> Option<Vec<i64>> {
        let t = self.tuple_items(v)?;
        if t.len() > MAX_DIMS {
            return None;
        }
        t.iter().map(|x| if let Value::Int(i) = x { Some(*i) } else { None }).collect()
    }

    fn persistent_load(&self, pid: Value) -> Value {
        let Some(t) = self.tuple_items(&pid) else {
            return Value::Bad(format!("a persistent id that is {}", kind(&pid)).into());
        };
        match t {
            [Value::Str(tag), ty, Value::Str(key), Value::Str(_location), Value::Int(numel)] if &**tag == "storage" => {
                match ty {
                    Value::Global(Global::Storage(dtype)) => Value::Storage(Rc::new(StorageRef {
                        dtype: *dtype,
                        key: key.clone(),
                        numel: *numel,
                    })),
                    Value::Global(Global::Other(n)) => Value::Bad(
                        format!(
                            "storage type {n} is not supported (float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8 and bool are)"
                        )
                        .into(),
                    ),
                    other => Value::Bad(format!("a storage whose type is {}", kind(other)).into()),
                }
            }
            _ => Value::Bad("a persistent id that is not ('storage', type, key, location, numel)".into()),
        }
    }
}

fn long1(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    let negative = b[b.len() - 1] & 0x80 != 0;
    let fill = if negative { 0xff } else { 0 };
    if b.len() > 8 && b[8..].iter().any(|&x| x != fill) {
        return Value::BigInt;
    }
    let mut w = [fill; 8];
    let n = b.len().min(8);
    w[..n].copy_from_slice(&b[..n]);
    let v = i64::from_le_bytes(w);
    // Nine or more bytes can still fit, but only when the sign bit of the eight agrees.
    if b.len() > 8 && (v < 0) != negative {
        return Value::BigInt;
    }
    Value::Int(v)
}

fn kind(v: &Value) -> String {
    match v {
        Value::None => "None".into(),
        Value::Bool(_) => "a bool".into(),
        Value::Int(_) | Value::BigInt => "an integer".into(),
        Value::Float(_) => "a float".into(),
        Value::Str(_) => "a string".into(),
        Value::Tuple(_) => "a tuple".into(),
        Value::List(_) => "a list".into(),
        Value::Dict(_) => "a dict".into(),
        Value::Global(g) => format!("the global {}", g.name()),
        Value::Storage(_) => "a storage".into(),
        Value::Tensor(_) => "a tensor".into(),
        Value::Unknown(n) => format!("an object built by the unknown global {n}"),
        Value::Bad(m) => format!("a refused object ({m})"),
        Value::Opaque(k) => format!("a {k}"),
    }
}

fn resolve(module: &str, name: &str) -> Global {
    let storage = |d| Global::Storage(d);
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch", "FloatStorage") => storage(DType::F32),
        ("torch", "HalfStorage") => storage(DType::F16),
        ("torch", "BFloat16Storage") => storage(DType::BF16),
        ("torch", "DoubleStorage") => storage(DType::F64),
        ("torch", "LongStorage") => storage(DType::I64),
        ("torch", "IntStorage") => storage(DType::I32),
        ("torch", "ShortStorage") => storage(DType::I16),
        ("torch", "CharStorage") => storage(DType::I8),
        ("torch", "ByteStorage") | ("torch", "UntypedStorage") => storage(DType::U8),
        ("torch", "BoolStorage") => storage(DType::Bool),
        _ => Global::Other(format!("{module}.{name}").into()),
    }
}
