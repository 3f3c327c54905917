//! Flower's content-addressed message objects (flwr 1.42 `InflatableObject`).
//!
//! Every object is `"<Type> <child ids, comma-joined> <body length>\0<body>"` and its id is
//! the hex SHA-256 of those bytes. A message is a tree: `Message` (metadata protobuf with
//! an empty `message_id`) → `RecordDict` (JSON `{name: record id}`) → `ArrayRecord` (JSON
//! `{name: array id}`), `MetricRecord` / `ConfigRecord` (protobuf bodies) → `Array` (JSON
//! metadata with indices into its children) → `ArrayChunk` (at most 5 MiB of `.npy` bytes).
//! Children are listed once each, in first-seen order, as Python's dicts keyed by id do.

use std::collections::HashMap;

use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::FederateError;
use crate::proto;

/// Largest array chunk Flower writes (`FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE`).
pub const MAX_CHUNK: usize = 5 * 1024 * 1024;

/// Hex SHA-256 of `bytes`: an object's id.
pub fn object_id(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// One array as Flower carries it (`stype` "numpy.ndarray" means `data` is `.npy` bytes).
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayValue {
    /// NumPy dtype name, e.g. `float32`.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<i64>,
    /// Serialisation type.
    pub stype: String,
    /// Serialised bytes.
    pub data: Vec<u8>,
}

/// A metric value (`MetricRecordValue`).
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    /// float
    Double(f64),
    /// int
    Int(i64),
    /// list of floats
    DoubleList(Vec<f64>),
}

/// A configuration value (`ConfigRecordValue`, the scalar kinds).
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigValue {
    /// float
    Double(f64),
    /// int
    Int(i64),
    /// unsigned int beyond i64
    Uint(u64),
    /// bool
    Bool(bool),
    /// str
    Str(String),
    /// bytes
    Bytes(Vec<u8>),
    /// any list kind (kept opaque)
    Other,
}

impl ConfigValue {
    /// The value as a float, if numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ConfigValue::Double(v) => Some(*v),
            ConfigValue::Int(v) => Some(*v as f64),
            ConfigValue::Uint(v) => Some(*v as f64),
            _ => None,
        }
    }
}

/// One record of a `RecordDict`.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// `ArrayRecord`
    Arrays(Vec<(String, ArrayValue)>),
    /// `MetricRecord`
    Metrics(Vec<(String, MetricValue)>),
    /// `ConfigRecord`
    Config(Vec<(String, ConfigValue)>),
}

/// A `RecordDict`: named records in order.
pub type RecordDict = Vec<(String, Record)>;

/// Objects of one message: bytes by id plus the tree Flower expects beside the metadata.
#[derive(Debug, Default)]
pub struct ObjectSet {
    /// Object bytes by id.
    pub objects: HashMap<String, Vec<u8>>,
}

struct Built {
    id: String,
    tree: proto::ObjectTree,
}

fn with_header(ty: &str, children: &[String], body: &[u8]) -> Vec<u8> {
    let head = format!("{ty} {} {}", children.join(","), body.len());
    let mut out = Vec::with_capacity(head.len() + 1 + body.len());
    out.extend_from_slice(head.as_bytes());
    out.push(0);
    out.extend_from_slice(body);
    out
}

/// Python `json.dumps` string quoting (ASCII-only output, as `ensure_ascii=True`).
fn py_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn py_ref_map(entries: &[(&str, &str)]) -> String {
    let inner: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}: {}", py_str(k), py_str(v)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

impl ObjectSet {
    fn put(&mut self, ty: &str, children: Vec<Built>, body: &[u8]) -> Built {
        // Python keeps the first of identical children (dict keyed by id).
        let mut seen = Vec::<String>::new();
        let mut trees = Vec::new();
        for child in children {
            if !seen.contains(&child.id) {
                seen.push(child.id.clone());
                trees.push(child.tree);
            }
        }
        let bytes = with_header(ty, &seen, body);
        let id = object_id(&bytes);
        self.objects.insert(id.clone(), bytes);
        Built {
            tree: proto::ObjectTree {
                object_id: id.clone(),
                children: trees,
            },
            id,
        }
    }

    fn put_array(&mut self, array: &ArrayValue) -> Built {
        let mut chunks = Vec::new();
        let mut index_ids: Vec<String> = Vec::new();
        let mut indices = Vec::new();
        // An empty array still has no chunk, as in Python's range(0, 0, step).
        for piece in array.data.chunks(MAX_CHUNK) {
            let chunk = self.put("ArrayChunk", Vec::new(), piece);
            let idx = match index_ids.iter().position(|i| *i == chunk.id) {
                Some(i) => i,
                None => {
                    index_ids.push(chunk.id.clone());
                    index_ids.len() - 1
                }
            };
            indices.push(idx.to_string());
            chunks.push(chunk);
        }
        let shape: Vec<String> = array.shape.iter().map(|d| d.to_string()).collect();
        let body = format!(
            "{{\"dtype\": {}, \"shape\": [{}], \"stype\": {}, \"arraychunk_ids\": [{}]}}",
            py_str(&array.dtype),
            shape.join(", "),
            py_str(&array.stype),
            indices.join(", ")
        );
        self.put("Array", chunks, body.as_bytes())
    }

    fn put_record(&mut self, record: &Record) -> Built {
        match record {
            Record::Arrays(items) => {
                let built: Vec<Built> = items.iter().map(|(_, a)| self.put_array(a)).collect();
                let refs: Vec<(&str, &str)> = items
                    .iter()
                    .zip(&built)
                    .map(|((k, _), b)| (k.as_str(), b.id.as_str()))
                    .collect();
                let body = py_ref_map(&refs);
                self.put("ArrayRecord", built, body.as_bytes())
            }
            Record::Metrics(items) => {
                let body = proto::MetricRecord {
                    items: items
                        .iter()
                        .map(|(k, v)| proto::metric_record::Item {
                            key: k.clone(),
                            value: Some(metric_to_proto(v)),
                        })
                        .collect(),
                }
                .encode_to_vec();
                self.put("MetricRecord", Vec::new(), &body)
            }
            Record::Config(items) => {
                let body = proto::ConfigRecord {
                    items: items
                        .iter()
                        .filter_map(|(k, v)| {
                            config_to_proto(v).map(|value| proto::config_record::Item {
                                key: k.clone(),
                                value: Some(value),
                            })
                        })
                        .collect(),
                }
                .encode_to_vec();
                self.put("ConfigRecord", Vec::new(), &body)
            }
        }
    }

    /// Deflates a reply: returns its object id (= `metadata.message_id`) and object tree.
    /// `metadata.message_id` is ignored (Flower hashes the message without it).
    pub fn put_message(
        &mut self,
        metadata: &proto::Metadata,
        content: &RecordDict,
    ) -> (String, proto::ObjectTree) {
        let built: Vec<Built> = content.iter().map(|(_, r)| self.put_record(r)).collect();
        let refs: Vec<(&str, &str)> = content
            .iter()
            .zip(&built)
            .map(|((k, _), b)| (k.as_str(), b.id.as_str()))
            .collect();
        let body = py_ref_map(&refs);
        let dict = self.put("RecordDict", built, body.as_bytes());
        let mut meta = metadata.clone();
        meta.message_id.clear();
        let body = proto::Message {
            metadata: Some(meta),
            content: None,
            error: None,
        }
        .encode_to_vec();
        let msg = self.put("Message", vec![dict], &body);
        (msg.id, msg.tree)
    }
}

impl ObjectSet {
    /// Deflates an error reply (no content, so the message has no children).
    pub fn put_error_message(
        &mut self,
        metadata: &proto::Metadata,
        error: Option<proto::Error>,
    ) -> (String, proto::ObjectTree) {
        let mut meta = metadata.clone();
        meta.message_id.clear();
        let body = proto::Message {
            metadata: Some(meta),
            content: None,
            error,
        }
        .encode_to_vec();
        let msg = self.put("Message", Vec::new(), &body);
        (msg.id, msg.tree)
    }
}

fn metric_to_proto(v: &MetricValue) -> proto::MetricRecordValue {
    use proto::metric_record_value::Value;
    let value = match v {
        MetricValue::Double(x) => Value::Double(*x),
        MetricValue::Int(x) => Value::Sint64(*x),
        MetricValue::DoubleList(x) => Value::DoubleList(proto::DoubleList { vals: x.clone() }),
    };
    proto::MetricRecordValue { value: Some(value) }
}

fn config_to_proto(v: &ConfigValue) -> Option<proto::ConfigRecordValue> {
    use proto::config_record_value::Value;
    let value = match v {
        ConfigValue::Double(x) => Value::Double(*x),
        ConfigValue::Int(x) => Value::Sint64(*x),
        ConfigValue::Uint(x) => Value::Uint64(*x),
        ConfigValue::Bool(x) => Value::Bool(*x),
        ConfigValue::Str(x) => Value::String(x.clone()),
        ConfigValue::Bytes(x) => Value::Bytes(x.clone()),
        ConfigValue::Other => return None,
    };
    Some(proto::ConfigRecordValue { value: Some(value) })
}

/// Splits an object into (type, child ids, body), checking the declared length.
pub fn split_object(bytes: &[u8]) -> Result<(&str, Vec<&str>, &[u8]), FederateError> {
    let bad = |why: &str| FederateError::DecodeObject(why.to_string());
    let nul = bytes
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| bad("no header"))?;
    let head = std::str::from_utf8(&bytes[..nul]).map_err(|_| bad("header not UTF-8"))?;
    let mut parts = head.split(' ');
    let (Some(ty), Some(children), Some(len), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("header fields"));
    };
    let body = &bytes[nul + 1..];
    if len.parse::<usize>().ok() != Some(body.len()) {
        return Err(bad("body length"));
    }
    let children = if children.is_empty() {
        Vec::new()
    } else {
        children.split(',').collect()
    };
    Ok((ty, children, body))
}

fn parse_refs(body: &[u8]) -> Result<Vec<(String, String)>, FederateError> {
    // Names come back sorted (serde_json's map); ids do not depend on this order.
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| FederateError::DecodeObject("reference map is not JSON".into()))?;
    let map = value
        .as_object()
        .ok_or_else(|| FederateError::DecodeObject("reference map is not an object".into()))?;
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let id = v
            .as_str()
            .ok_or_else(|| FederateError::DecodeObject("reference is not a string".into()))?;
        out.push((k.clone(), id.to_string()));
    }
    Ok(out)
}

/// Reads objects pulled from the SuperLink back into a [`RecordDict`]; `get` returns an
/// object's bytes by id (already checked against its hash).
pub fn read_content<'a>(
    message_bytes: &[u8],
    get: &dyn Fn(&str) -> Option<&'a [u8]>,
) -> Result<RecordDict, FederateError> {
    let missing = |id: &str| FederateError::DecodeObject(format!("object {id} missing"));
    let (ty, children, _) = split_object(message_bytes)?;
    if ty != "Message" {
        return Err(FederateError::DecodeObject(format!("root is {ty}")));
    }
    let Some(dict_id) = children.first() else {
        return Ok(Vec::new());
    };
    let dict_bytes = get(dict_id).ok_or_else(|| missing(dict_id))?;
    let (ty, _, body) = split_object(dict_bytes)?;
    if ty != "RecordDict" {
        return Err(FederateError::DecodeObject(format!("content is {ty}")));
    }
    let mut out = Vec::new();
    for (name, rid) in parse_refs(body)? {
        let bytes = get(&rid).ok_or_else(|| missing(&rid))?;
        let (ty, _, body) = split_object(bytes)?;
        let record = match ty {
            "ArrayRecord" => {
                let mut arrays = Vec::new();
                for (aname, aid) in parse_refs(body)? {
                    let bytes = get(&aid).ok_or_else(|| missing(&aid))?;
                    arrays.push((aname, read_array(bytes, get)?));
                }
                Record::Arrays(arrays)
            }
            "MetricRecord" => {
                let rec = proto::MetricRecord::decode(body)
                    .map_err(|_| FederateError::DecodeObject("MetricRecord".into()))?;
                Record::Metrics(
                    rec.items
                        .into_iter()
                        .filter_map(|i| {
                            use proto::metric_record_value::Value;
                            let v = match i.value?.value? {
                                Value::Double(x) => MetricValue::Double(x),
                                Value::Sint64(x) => MetricValue::Int(x),
                                Value::Uint64(x) => MetricValue::Double(x as f64),
                                Value::DoubleList(l) => MetricValue::DoubleList(l.vals),
                                _ => return None,
                            };
                            Some((i.key, v))
                        })
                        .collect(),
                )
            }
            "ConfigRecord" => {
                let rec = proto::ConfigRecord::decode(body)
                    .map_err(|_| FederateError::DecodeObject("ConfigRecord".into()))?;
                Record::Config(
                    rec.items
                        .into_iter()
                        .map(|i| {
                            use proto::config_record_value::Value;
                            let v = match i.value.and_then(|v| v.value) {
                                Some(Value::Double(x)) => ConfigValue::Double(x),
                                Some(Value::Sint64(x)) => ConfigValue::Int(x),
                                Some(Value::Uint64(x)) => ConfigValue::Uint(x),
                                Some(Value::Bool(x)) => ConfigValue::Bool(x),
                                Some(Value::String(x)) => ConfigValue::Str(x),
                                Some(Value::Bytes(x)) => ConfigValue::Bytes(x),
                                _ => ConfigValue::Other,
                            };
                            (i.key, v)
                        })
                        .collect(),
                )
            }
            other => return Err(FederateError::DecodeObject(format!("record type {other}"))),
        };
        out.push((name, record));
    }
    Ok(out)
}

fn read_array<'a>(
    bytes: &[u8],
    get: &dyn Fn(&str) -> Option<&'a [u8]>,
) -> Result<ArrayValue, FederateError> {
    let bad = |why: &str| FederateError::DecodeObject(why.to_string());
    let (ty, children, body) = split_object(bytes)?;
    if ty != "Array" {
        return Err(bad("array reference is not an Array"));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| bad("Array metadata is not JSON"))?;
    let dtype = meta["dtype"]
        .as_str()
        .ok_or_else(|| bad("dtype"))?
        .to_string();
    let stype = meta["stype"]
        .as_str()
        .ok_or_else(|| bad("stype"))?
        .to_string();
    let shape = meta["shape"]
        .as_array()
        .ok_or_else(|| bad("shape"))?
        .iter()
        .map(|v| v.as_i64().ok_or_else(|| bad("shape")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut data = Vec::new();
    for idx in meta["arraychunk_ids"]
        .as_array()
        .ok_or_else(|| bad("arraychunk_ids"))?
    {
        let i = idx.as_u64().ok_or_else(|| bad("chunk index"))? as usize;
        let cid = children.get(i).ok_or_else(|| bad("chunk index"))?;
        let chunk = get(cid).ok_or_else(|| bad("chunk missing"))?;
        let (cty, _, cbody) = split_object(chunk)?;
        if cty != "ArrayChunk" {
            return Err(bad("chunk type"));
        }
        data.extend_from_slice(cbody);
    }
    Ok(ArrayValue {
        dtype,
        shape,
        stype,
        data,
    })
}

/// Object ids of a tree in post-order (children before parents), as Flower pushes them.
pub fn post_order(tree: &proto::ObjectTree, out: &mut Vec<String>) {
    for child in &tree.children {
        post_order(child, out);
    }
    out.push(tree.object_id.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_and_id() {
        let bytes = with_header("ArrayChunk", &[], b"abc");
        assert_eq!(bytes, b"ArrayChunk  3\0abc");
        let (ty, children, body) = split_object(&bytes).expect("split");
        assert_eq!((ty, children.len(), body), ("ArrayChunk", 0, &b"abc"[..]));
        assert_eq!(object_id(b"").len(), 64);
    }

    #[test]
    fn python_json_quoting() {
        assert_eq!(py_str("a\"b\\é\n"), "\"a\\\"b\\\\\\u00e9\\n\"");
        assert_eq!(
            py_ref_map(&[("x", "1"), ("y", "2")]),
            "{\"x\": \"1\", \"y\": \"2\"}"
        );
    }

    /// Object ids computed by flwr 1.42 itself (`Array(np.arange(6, dtype=float32)
    /// .reshape(2, 3))`, `MetricRecord({"num-examples": 5, "train-loss": 0.25})`, ...):
    /// identical ids mean the SuperLink deduplicates what both sides already hold.
    #[test]
    fn object_ids_match_flower() {
        let t = crate::npy::Tensor {
            shape: vec![2, 3],
            data: (0..6).map(|v| v as f32).collect(),
        };
        let array = ArrayValue {
            dtype: "float32".into(),
            shape: vec![2, 3],
            stype: "numpy.ndarray".into(),
            data: crate::npy::encode(&t, crate::npy::FloatType::F32),
        };
        let mut set = ObjectSet::default();
        let a = set.put_array(&array);
        assert_eq!(
            a.id,
            "d0a7925020115f6db7d9c8a4f51c363476703b1239258b9d069a8a949954e97a"
        );
        assert_eq!(
            a.tree.children[0].object_id,
            "216023e51b2cdead91025b03a1b47a9d124cd44230f0da6476bda0b223d40aed"
        );
        let arrays = Record::Arrays(vec![("w".into(), array)]);
        let metrics = Record::Metrics(vec![
            ("num-examples".into(), MetricValue::Int(5)),
            ("train-loss".into(), MetricValue::Double(0.25)),
        ]);
        let config = Record::Config(vec![
            ("bedside-run".into(), ConfigValue::Str("x".into())),
            ("lr".into(), ConfigValue::Double(0.5)),
            ("local-epochs".into(), ConfigValue::Int(2)),
        ]);
        assert_eq!(
            set.put_record(&arrays).id,
            "8c6d72799efd036c731870f76611c9edbe4463616752d392fd9f7bccbf9e29cc"
        );
        assert_eq!(
            set.put_record(&metrics).id,
            "2ef7942db76f211d8a73400eed8bdd1535c334fe3c4b0007f60cad0723b34fb1"
        );
        assert_eq!(
            set.put_record(&config).id,
            "d0dbc3c83f552e1e4bc57fb298f4ff1e76d6e69f027c9de20692373047066789"
        );
        let content: RecordDict = vec![
            ("arrays".into(), arrays),
            ("metrics".into(), metrics),
            ("config".into(), config),
        ];
        let (_, tree) = set.put_message(&proto::Metadata::default(), &content);
        assert_eq!(
            tree.children[0].object_id,
            "f5d4a40d82bf242f99d7357a90cc6fdbfe0df79a402916efbb1a3e07c2d15e38"
        );
    }

    #[test]
    fn message_round_trip_with_chunks() {
        let big = ArrayValue {
            dtype: "float32".into(),
            shape: vec![3 * MAX_CHUNK as i64 / 8],
            stype: "numpy.ndarray".into(),
            data: vec![0u8; 3 * MAX_CHUNK / 2],
        };
        let content: RecordDict = vec![
            (
                "arrays".into(),
                Record::Arrays(vec![("w".into(), big.clone())]),
            ),
            (
                "metrics".into(),
                Record::Metrics(vec![("num-examples".into(), MetricValue::Int(5))]),
            ),
        ];
        let mut set = ObjectSet::default();
        let (id, tree) = set.put_message(&proto::Metadata::default(), &content);
        assert_eq!(tree.object_id, id);
        let get = |k: &str| set.objects.get(k).map(|v| v.as_slice());
        let back = read_content(&set.objects[&id], &get).expect("read");
        assert_eq!(back, content);
        // Two identical zero chunks collapse into one child; the tail differs.
        let mut ids = Vec::new();
        post_order(&tree, &mut ids);
        assert_eq!(ids.len(), set.objects.len());
    }
}
