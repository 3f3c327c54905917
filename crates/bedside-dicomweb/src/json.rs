//! The DICOM JSON model (PS3.18 F.2): data sets as `application/dicom+json`.

use base64::Engine;
use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_core::{Tag, VR};
use dicom_object::InMemDicomObject;
use serde_json::{Map, Number, Value, json};

use crate::store::Record;

/// Pixel Data (7FE0,0010).
pub const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);

/// How binary values (OB, OW, OF, OD, OL, OV, UN) are written.
#[derive(Debug, Clone)]
pub enum Binary<'a> {
    /// Left out (QIDO records).
    Omit,
    /// Inline as base64 up to `threshold` bytes; larger values and Pixel Data become a
    /// `BulkDataURI` under `instance_url` + `/bulkdata/` + the tag path.
    BulkData {
        /// The instance's WADO-RS URL.
        instance_url: &'a str,
        /// Largest value written inline.
        threshold: usize,
    },
}

/// The tag as eight upper-case hexadecimal digits, as JSON keys and URLs use it.
pub fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// Converts a data set to the DICOM JSON model. File meta elements (group 0002) are left out.
pub fn to_json(obj: &InMemDicomObject, binary: &Binary<'_>) -> Record {
    dataset(obj, binary, "")
}

fn dataset(obj: &InMemDicomObject, binary: &Binary<'_>, path: &str) -> Record {
    let mut out = Map::new();
    for elem in obj.iter() {
        let tag = elem.header().tag;
        if tag.group() == 0x0002 {
            continue;
        }
        // Group length elements are deprecated in data sets and carry nothing for clients.
        if tag.element() == 0x0000 {
            continue;
        }
        let key = tag_key(tag);
        let vr = elem.vr();
        let elem_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}/{key}")
        };
        let mut attr = Map::new();
        attr.insert("vr".into(), Value::String(vr.to_string().to_string()));
        match elem.value() {
            DicomValue::Sequence(seq) => {
                let items: Vec<Value> = seq
                    .items()
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        Value::Object(dataset(item, binary, &format!("{elem_path}/{i}")))
                    })
                    .collect();
                if !items.is_empty() {
                    attr.insert("Value".into(), Value::Array(items));
                }
            }
            DicomValue::PixelSequence(_) => match binary {
                Binary::Omit => continue,
                Binary::BulkData { instance_url, .. } => {
                    attr.insert(
                        "BulkDataURI".into(),
                        Value::String(format!("{instance_url}/bulkdata/{elem_path}")),
                    );
                }
            },
            DicomValue::Primitive(value) => {
                if is_binary(vr) {
                    match binary {
                        Binary::Omit => continue,
                        Binary::BulkData {
                            instance_url,
                            threshold,
                        } => {
                            let bytes = value.to_bytes();
                            if tag == PIXEL_DATA || bytes.len() > *threshold {
                                attr.insert(
                                    "BulkDataURI".into(),
                                    Value::String(format!("{instance_url}/bulkdata/{elem_path}")),
                                );
                            } else if !bytes.is_empty() {
                                attr.insert(
                                    "InlineBinary".into(),
                                    Value::String(
                                        base64::engine::general_purpose::STANDARD.encode(&bytes),
                                    ),
                                );
                            }
                        }
                    }
                } else if let Some(values) = primitive_values(vr, value) {
                    attr.insert("Value".into(), Value::Array(values));
                }
            }
        }
        out.insert(key, Value::Object(attr));
    }
    out
}

/// Whether values of this VR are binary (bulk data candidates).
pub fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN
    )
}

fn trim(s: &str, vr: VR) -> &str {
    let s = s.trim_end_matches(['\0', ' ']);
    // Leading spaces are significant only in the free-text VRs.
    if matches!(vr, VR::LT | VR::ST | VR::UT | VR::UC | VR::UR) {
        s
    } else {
        s.trim_start_matches(' ')
    }
}

fn number_or_null(n: Option<Number>) -> Value {
    n.map(Value::Number).unwrap_or(Value::Null)
}

/// The `Value` array for a primitive element, or `None` when it is empty.
fn primitive_values(vr: VR, value: &PrimitiveValue) -> Option<Vec<Value>> {
    if value.multiplicity() == 0 || matches!(value, PrimitiveValue::Empty) {
        return None;
    }
    let values: Vec<Value> = match vr {
        VR::US | VR::SS | VR::UL | VR::SL | VR::SV => value
            .to_multi_int::<i64>()
            .ok()?
            .into_iter()
            .map(|v| Value::Number(v.into()))
            .collect(),
        VR::UV => value
            .to_multi_int::<u64>()
            .ok()?
            .into_iter()
            .map(|v| Value::Number(v.into()))
            .collect(),
        VR::FL | VR::FD => value
            .to_multi_float64()
            .ok()?
            .into_iter()
            .map(|v| number_or_null(Number::from_f64(v)))
            .collect(),
        VR::AT => match value {
            PrimitiveValue::Tags(tags) => tags.iter().map(|t| Value::String(tag_key(*t))).collect(),
            _ => return None,
        },
        VR::IS | VR::DS => value
            .to_multi_str()
            .iter()
            .map(|s| {
                let s = trim(s, vr);
                if s.is_empty() {
                    Value::Null
                } else if vr == VR::IS {
                    s.parse::<i64>()
                        .map(|v| Value::Number(v.into()))
                        .unwrap_or_else(|_| Value::String(s.to_string()))
                } else {
                    s.parse::<f64>()
                        .ok()
                        .and_then(Number::from_f64)
                        .map(Value::Number)
                        .unwrap_or_else(|| Value::String(s.to_string()))
                }
            })
            .collect(),
        VR::PN => value
            .to_multi_str()
            .iter()
            .map(|s| person_name(trim(s, vr)))
            .collect(),
        _ => value
            .to_multi_str()
            .iter()
            .map(|s| {
                let s = trim(s, vr);
                if s.is_empty() {
                    Value::Null
                } else {
                    Value::String(s.to_string())
                }
            })
            .collect(),
    };
    if values.iter().all(Value::is_null) {
        return None;
    }
    Some(values)
}

fn person_name(s: &str) -> Value {
    if s.is_empty() {
        return Value::Null;
    }
    let mut groups = s.split('=');
    let mut out = Map::new();
    for name in ["Alphabetic", "Ideographic", "Phonetic"] {
        if let Some(g) = groups.next()
            && !g.is_empty()
        {
            out.insert(name.into(), Value::String(g.to_string()));
        }
    }
    Value::Object(out)
}

/// The first value of an attribute in a record, as text (PN: its alphabetic form).
pub fn first_text(record: &Record, tag: Tag) -> Option<String> {
    texts(record.get(&tag_key(tag))?).into_iter().next()
}

/// Every value of an attribute as text (numbers in JSON form, PN as alphabetic form).
pub fn texts(attr: &Value) -> Vec<String> {
    let Some(values) = attr.get("Value").and_then(Value::as_array) else {
        return Vec::new();
    };
    values
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(o) => o
                .get("Alphabetic")
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        })
        .collect()
}

/// An attribute with string values (or no value when `values` is empty).
pub fn string_attr(vr: &str, values: &[&str]) -> Value {
    if values.is_empty() {
        json!({ "vr": vr })
    } else {
        json!({ "vr": vr, "Value": values })
    }
}

/// An attribute with one integer value.
pub fn int_attr(vr: &str, value: i64) -> Value {
    json!({ "vr": vr, "Value": [value] })
}
