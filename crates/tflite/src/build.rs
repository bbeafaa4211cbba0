//! A minimal FlatBuffer writer for crafting `.tflite` files in tests, fuzz seeds and tools
//! (including hostile ones: shared tables, out-of-range indices). Not a general builder: objects
//! are created children first and laid out parents first, so every offset points forward.
//!
//! Slot numbers are those of tensorflow/lite/schema/schema.fbs; see [`Tflite`] for the common
//! TF Lite tables.

/// A field value of a table.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    /// A one-byte scalar (bool, byte, ubyte, enums of byte).
    U8(u8),
    /// A four-byte scalar (int, uint, float bits).
    U32(u32),
    /// An eight-byte scalar (long, ulong).
    U64(u64),
    /// An offset to another object (table, vector or string) of the builder.
    Ref(usize),
}

#[derive(Debug, Clone)]
enum Obj {
    Table(Vec<(usize, Field)>),
    Bytes(Vec<u8>),
    Refs(Vec<usize>),
}

/// Collects objects; [`Builder::finish`] lays them out.
#[derive(Debug, Default, Clone)]
pub struct Builder {
    objs: Vec<Obj>,
}

impl Builder {
    /// A new, empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, o: Obj) -> usize {
        self.objs.push(o);
        self.objs.len() - 1
    }

    /// A table with the given `(slot, value)` fields; referenced objects must already exist.
    pub fn table(&mut self, fields: &[(usize, Field)]) -> usize {
        for (_, f) in fields {
            if let Field::Ref(r) = f {
                assert!(*r < self.objs.len(), "children must be created first");
            }
        }
        self.add(Obj::Table(fields.to_vec()))
    }

    /// A vector of raw little-endian scalars: `elem_count` followed by `bytes`.
    pub fn raw_vector(&mut self, count: u32, bytes: &[u8]) -> usize {
        let mut v = count.to_le_bytes().to_vec();
        v.extend_from_slice(bytes);
        self.add(Obj::Bytes(v))
    }

    /// A `[ubyte]` vector.
    pub fn bytes(&mut self, b: &[u8]) -> usize {
        self.raw_vector(b.len() as u32, b)
    }

    /// A string.
    pub fn string(&mut self, s: &str) -> usize {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        let mut v = (s.len() as u32).to_le_bytes().to_vec();
        v.extend(b);
        self.add(Obj::Bytes(v))
    }

    /// An `[int]` vector.
    pub fn i32s(&mut self, v: &[i32]) -> usize {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.raw_vector(v.len() as u32, &b)
    }

    /// A `[float]` vector.
    pub fn f32s(&mut self, v: &[f32]) -> usize {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.raw_vector(v.len() as u32, &b)
    }

    /// A `[long]` vector.
    pub fn i64s(&mut self, v: &[i64]) -> usize {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.raw_vector(v.len() as u32, &b)
    }

    /// A vector of tables (or strings): offsets to existing objects, repeats allowed.
    pub fn refs(&mut self, ids: &[usize]) -> usize {
        assert!(ids.iter().all(|&i| i < self.objs.len()));
        self.add(Obj::Refs(ids.to_vec()))
    }

    /// The buffer: root offset, file identifier, then every object, the last created (the
    /// root) first.
    pub fn finish(&self, root: usize, ident: &[u8; 4]) -> Vec<u8> {
        let mut out = vec![0u8; 8];
        out[4..8].copy_from_slice(ident);
        let mut pos_of = vec![usize::MAX; self.objs.len()];
        let mut patches: Vec<(usize, usize)> = Vec::new();
        let order: Vec<usize> = std::iter::once(root)
            .chain((0..self.objs.len()).rev().filter(|&i| i != root))
            .collect();
        for id in order {
            while out.len() % 4 != 0 {
                out.push(0);
            }
            match &self.objs[id] {
                Obj::Bytes(b) => {
                    pos_of[id] = out.len();
                    out.extend_from_slice(b);
                }
                Obj::Refs(ids) => {
                    pos_of[id] = out.len();
                    out.extend((ids.len() as u32).to_le_bytes());
                    for &r in ids {
                        patches.push((out.len(), r));
                        out.extend([0u8; 4]);
                    }
                }
                Obj::Table(fields) => {
                    let nslots = fields.iter().map(|(s, _)| s + 1).max().unwrap_or(0);
                    // Table body: soffset, then the fields (each 8 bytes apart, simple).
                    let mut offsets = vec![0u16; nslots];
                    let mut body = vec![0u8; 4];
                    let mut body_patches = Vec::new();
                    for (slot, f) in fields {
                        while body.len() % 4 != 0 {
                            body.push(0);
                        }
                        offsets[*slot] = body.len() as u16;
                        match *f {
                            Field::U8(v) => body.push(v),
                            Field::U32(v) => body.extend(v.to_le_bytes()),
                            Field::U64(v) => body.extend(v.to_le_bytes()),
                            Field::Ref(r) => {
                                body_patches.push((body.len(), r));
                                body.extend([0u8; 4]);
                            }
                        }
                    }
                    let vt_len = 4 + 2 * nslots;
                    let vtable_pos = out.len();
                    out.extend((vt_len as u16).to_le_bytes());
                    out.extend((body.len() as u16).to_le_bytes());
                    for o in offsets {
                        out.extend(o.to_le_bytes());
                    }
                    while out.len() % 4 != 0 {
                        out.push(0);
                    }
                    let table_pos = out.len();
                    pos_of[id] = table_pos;
                    body[0..4].copy_from_slice(&((table_pos - vtable_pos) as i32).to_le_bytes());
                    for (at, r) in body_patches {
                        patches.push((table_pos + at, r));
                    }
                    out.extend(body);
                }
            }
        }
        out[0..4].copy_from_slice(&(pos_of[root] as u32).to_le_bytes());
        for (at, r) in patches {
            let target = pos_of[r];
            assert!(target > at, "object {r} is not after its referrer");
            out[at..at + 4].copy_from_slice(&((target - at) as u32).to_le_bytes());
        }
        out
    }
}

/// A tensor for [`Tflite::tensor`].
#[derive(Debug, Clone, Default)]
pub struct TensorSpec {
    /// Name.
    pub name: String,
    /// Shape.
    pub shape: Vec<i32>,
    /// `TensorType` code (0 float32, 1 float16, 9 int8, ...).
    pub dtype: i8,
    /// Buffer index (0 = no data).
    pub buffer: u32,
    /// Per-tensor or per-channel scales (empty = not quantized).
    pub scale: Vec<f32>,
    /// Zero points.
    pub zero_point: Vec<i64>,
    /// Axis of per-channel scales.
    pub quantized_dimension: i32,
}

/// A whole TF Lite model with one subgraph, built from specs.
#[derive(Debug, Clone, Default)]
pub struct Tflite {
    /// Builtin operator codes (e.g. 3 CONV_2D, 0 ADD, 6 DEQUANTIZE).
    pub opcodes: Vec<i32>,
    /// Buffers' bytes (buffer 0 should be empty, as TF Lite writes it).
    pub buffers: Vec<Vec<u8>>,
    /// Tensors.
    pub tensors: Vec<TensorSpec>,
    /// Operators: (opcode index, inputs, outputs).
    pub operators: Vec<(u32, Vec<i32>, Vec<i32>)>,
    /// Subgraph inputs.
    pub inputs: Vec<i32>,
    /// Subgraph outputs.
    pub outputs: Vec<i32>,
}

impl Tflite {
    /// Adds a tensor; returns its index.
    pub fn tensor(&mut self, t: TensorSpec) -> i32 {
        self.tensors.push(t);
        self.tensors.len() as i32 - 1
    }

    /// Adds a buffer; returns its index.
    pub fn buffer(&mut self, b: Vec<u8>) -> u32 {
        if self.buffers.is_empty() {
            self.buffers.push(Vec::new());
        }
        self.buffers.push(b);
        self.buffers.len() as u32 - 1
    }

    /// The `.tflite` bytes (schema version 3, identifier `TFL3`).
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = Builder::new();
        let codes: Vec<usize> = self
            .opcodes
            .iter()
            .map(|&c| {
                b.table(&[
                    (0, Field::U8(c.min(127) as u8)),
                    (2, Field::U32(1)),
                    (3, Field::U32(c as u32)),
                ])
            })
            .collect();
        let codes = b.refs(&codes);
        let mut bufs = Vec::new();
        let buffers: Vec<Vec<u8>> = if self.buffers.is_empty() {
            vec![Vec::new()]
        } else {
            self.buffers.clone()
        };
        for data in &buffers {
            if data.is_empty() {
                bufs.push(b.table(&[]));
            } else {
                let d = b.bytes(data);
                bufs.push(b.table(&[(0, Field::Ref(d))]));
            }
        }
        let bufs = b.refs(&bufs);
        let mut tensors = Vec::new();
        for t in &self.tensors {
            let shape = b.i32s(&t.shape);
            let name = b.string(&t.name);
            let mut fields = vec![
                (0, Field::Ref(shape)),
                (1, Field::U8(t.dtype as u8)),
                (2, Field::U32(t.buffer)),
                (3, Field::Ref(name)),
            ];
            if !t.scale.is_empty() {
                let s = b.f32s(&t.scale);
                let z = b.i64s(&t.zero_point);
                let q = b.table(&[
                    (2, Field::Ref(s)),
                    (3, Field::Ref(z)),
                    (6, Field::U32(t.quantized_dimension as u32)),
                ]);
                fields.push((4, Field::Ref(q)));
            }
            tensors.push(b.table(&fields));
        }
        let tensors = b.refs(&tensors);
        let mut ops = Vec::new();
        for (code, ins, outs) in &self.operators {
            let i = b.i32s(ins);
            let o = b.i32s(outs);
            ops.push(b.table(&[
                (0, Field::U32(*code)),
                (1, Field::Ref(i)),
                (2, Field::Ref(o)),
            ]));
        }
        let ops = b.refs(&ops);
        let inputs = b.i32s(&self.inputs);
        let outputs = b.i32s(&self.outputs);
        let sg = b.table(&[
            (0, Field::Ref(tensors)),
            (1, Field::Ref(inputs)),
            (2, Field::Ref(outputs)),
            (3, Field::Ref(ops)),
        ]);
        let sgs = b.refs(&[sg]);
        let root = b.table(&[
            (0, Field::U32(3)),
            (1, Field::Ref(codes)),
            (2, Field::Ref(sgs)),
            (4, Field::Ref(bufs)),
        ]);
        b.finish(root, b"TFL3")
    }
}
