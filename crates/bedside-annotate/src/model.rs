//! The annotation model: roles, label schemas with controlled lists, annotation kinds and
//! their validation.
//!
//! An annotation is one of
//!
//! | kind      | payload                                         | location                   |
//! |-----------|-------------------------------------------------|----------------------------|
//! | `label`   | `{"values": ["A4C"]}`                            | the label's scope          |
//! | `length`  | `{"points": [[x, y], [x, y]]}`                  | series, instance and frame |
//! | `area`    | `{"points": [[x, y], …]}` (≥ 3, closed)         | series, instance and frame |
//! | `polygon` | `{"points": [[x, y], …]}` (≥ 3, closed)         | series, instance and frame |
//! | `ellipse` | `{"center": [x, y], "radii": [rx, ry]}`         | series, instance and frame |
//! | `mask`    | `{"rows": R, "columns": C, "data": base64(R×C bytes)}` | series, instance and frame |
//!
//! Points are in pixels (`x` = column, `y` = row) of the stored image; frames are numbered from
//! 1 as in DICOM. The server adds the physical values ([`crate::units`]).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A user's role in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages the project (schema, members, studies, assignments), annotates, uploads (STOW),
    /// reads everything, exports.
    Admin,
    /// Annotates the studies assigned to them; edits only their own annotations.
    Annotator,
    /// Reads every annotation of the project (blinded or not) and exports.
    Reviewer,
    /// Reads the project's images and, unless the project is blinded, its annotations.
    Viewer,
}

impl Role {
    /// The name stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Annotator => "annotator",
            Role::Reviewer => "reviewer",
            Role::Viewer => "viewer",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "annotator" => Some(Role::Annotator),
            "reviewer" => Some(Role::Reviewer),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// Whether this role may create, change or delete annotations.
    pub fn may_annotate(self) -> bool {
        matches!(self, Role::Admin | Role::Annotator)
    }

    /// Whether this role sees every annotation of a study, whoever wrote it.
    pub fn sees_all(self, blinded: bool) -> bool {
        match self {
            Role::Admin | Role::Reviewer => true,
            Role::Annotator | Role::Viewer => !blinded,
        }
    }
}

/// Whether a label takes one value or several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    /// Exactly one value.
    Single,
    /// One or more distinct values.
    Multi,
}

/// What a label is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelScope {
    /// The whole study.
    Study,
    /// One series.
    Series,
    /// One instance.
    Instance,
    /// One frame of an instance.
    Frame,
}

/// A scan-level label with a controlled list of values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelDef {
    /// Name shown to annotators and written to exports.
    pub name: String,
    /// Single or multiple choice.
    pub choice: Choice,
    /// What the label applies to.
    pub scope: LabelScope,
    /// The allowed values.
    pub options: Vec<String>,
}

/// Measurement tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeasureKind {
    /// A segment.
    Length,
    /// A closed outline whose area is wanted.
    Area,
    /// An axis-aligned ellipse.
    Ellipse,
    /// A closed polygon (area and perimeter).
    Polygon,
}

impl MeasureKind {
    /// The annotation kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            MeasureKind::Length => "length",
            MeasureKind::Area => "area",
            MeasureKind::Ellipse => "ellipse",
            MeasureKind::Polygon => "polygon",
        }
    }
}

/// A named measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementDef {
    /// Name (e.g. `LVIDd`).
    pub name: String,
    /// The tool.
    pub kind: MeasureKind,
}

/// A named segmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskDef {
    /// Name (e.g. `LV cavity`).
    pub name: String,
}

/// What a project's annotators may record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSchema {
    /// Scan-level labels.
    #[serde(default)]
    pub labels: Vec<LabelDef>,
    /// Measurements.
    #[serde(default)]
    pub measurements: Vec<MeasurementDef>,
    /// Segmentation masks.
    #[serde(default)]
    pub masks: Vec<MaskDef>,
}

/// Largest number of points of one outline.
pub const MAX_POINTS: usize = 10_000;

fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(format!(
            "{what} names must be 1 to 128 printable characters"
        ));
    }
    Ok(())
}

impl LabelSchema {
    /// Parses and checks a schema: names unique and printable, every label with distinct
    /// options.
    pub fn parse(value: &Value) -> Result<Self, String> {
        let schema: LabelSchema =
            serde_json::from_value(value.clone()).map_err(|e| format!("label schema: {e}"))?;
        let mut names = HashSet::new();
        for l in &schema.labels {
            check_name(&l.name, "label")?;
            if !names.insert(l.name.as_str()) {
                return Err(format!("label schema: the name {:?} is used twice", l.name));
            }
            if l.options.is_empty() {
                return Err(format!("label schema: {:?} has no options", l.name));
            }
            let mut seen = HashSet::new();
            for o in &l.options {
                check_name(o, "option")?;
                if !seen.insert(o.as_str()) {
                    return Err(format!(
                        "label schema: {:?} lists the option {o:?} twice",
                        l.name
                    ));
                }
            }
        }
        for m in &schema.measurements {
            check_name(&m.name, "measurement")?;
            if !names.insert(m.name.as_str()) {
                return Err(format!("label schema: the name {:?} is used twice", m.name));
            }
        }
        for m in &schema.masks {
            check_name(&m.name, "mask")?;
            if !names.insert(m.name.as_str()) {
                return Err(format!("label schema: the name {:?} is used twice", m.name));
            }
        }
        Ok(schema)
    }
}

/// Where an annotation is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Series, when the annotation is below the study.
    #[serde(default)]
    pub series_instance_uid: Option<String>,
    /// Instance, when the annotation is on an instance or a frame.
    #[serde(default)]
    pub sop_instance_uid: Option<String>,
    /// Frame number (from 1), when the annotation is on a frame.
    #[serde(default)]
    pub frame: Option<i64>,
}

/// The level a location must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// No series, instance or frame.
    Study,
    /// A series only.
    Series,
    /// Series and instance, no frame.
    Instance,
    /// Series, instance and frame.
    Frame,
}

impl Location {
    /// Checks that exactly the fields of `level` are present.
    pub fn check_level(&self, level: Level) -> Result<(), String> {
        let has = (
            self.series_instance_uid.is_some(),
            self.sop_instance_uid.is_some(),
            self.frame.is_some(),
        );
        let want = match level {
            Level::Study => (false, false, false),
            Level::Series => (true, false, false),
            Level::Instance => (true, true, false),
            Level::Frame => (true, true, true),
        };
        if has != want {
            return Err(format!(
                "this annotation belongs on a {}: give {}",
                match level {
                    Level::Study => "study",
                    Level::Series => "series",
                    Level::Instance => "instance",
                    Level::Frame => "frame",
                },
                match level {
                    Level::Study => "no series, instance or frame",
                    Level::Series => "series_instance_uid only",
                    Level::Instance => "series_instance_uid and sop_instance_uid, no frame",
                    Level::Frame => "series_instance_uid, sop_instance_uid and frame",
                }
            ));
        }
        Ok(())
    }
}

/// What a kind and a name resolve to in a schema.
#[derive(Debug, Clone)]
pub enum Resolved<'a> {
    /// A label definition.
    Label(&'a LabelDef),
    /// A measurement.
    Measurement(MeasureKind),
    /// A mask.
    Mask,
}

impl LabelSchema {
    /// Finds the definition an annotation of `kind` named `name` refers to.
    pub fn resolve(&self, kind: &str, name: &str) -> Result<Resolved<'_>, String> {
        match kind {
            "label" => self
                .labels
                .iter()
                .find(|l| l.name == name)
                .map(Resolved::Label)
                .ok_or_else(|| format!("the schema has no label named {name:?}")),
            "mask" => self
                .masks
                .iter()
                .find(|m| m.name == name)
                .map(|_| Resolved::Mask)
                .ok_or_else(|| format!("the schema has no mask named {name:?}")),
            "length" | "area" | "ellipse" | "polygon" => {
                let m = self
                    .measurements
                    .iter()
                    .find(|m| m.name == name)
                    .ok_or_else(|| format!("the schema has no measurement named {name:?}"))?;
                if m.kind.as_str() != kind {
                    return Err(format!(
                        "{name:?} is a {} measurement, not {kind}",
                        m.kind.as_str()
                    ));
                }
                Ok(Resolved::Measurement(m.kind))
            }
            other => Err(format!(
                "unknown annotation kind {other:?} (label, length, area, ellipse, polygon, mask)"
            )),
        }
    }
}

/// Checks a label's values against its definition.
pub fn check_label(def: &LabelDef, payload: &Value) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        values: Vec<String>,
    }
    let p: P = serde_json::from_value(payload.clone())
        .map_err(|e| format!("label payload: {e} (expected {{\"values\": [...]}})"))?;
    match def.choice {
        Choice::Single if p.values.len() != 1 => {
            return Err(format!("{:?} takes exactly one value", def.name));
        }
        Choice::Multi if p.values.is_empty() => {
            return Err(format!("{:?} takes at least one value", def.name));
        }
        _ => {}
    }
    let mut seen = HashSet::new();
    for v in &p.values {
        if !def.options.contains(v) {
            return Err(format!("{v:?} is not an option of {:?}", def.name));
        }
        if !seen.insert(v) {
            return Err(format!("{v:?} is given twice"));
        }
    }
    Ok(p.values)
}

fn point(v: &Value) -> Option<[f64; 2]> {
    let a = v.as_array()?;
    if a.len() != 2 {
        return None;
    }
    let (x, y) = (a[0].as_f64()?, a[1].as_f64()?);
    (x.is_finite() && y.is_finite()).then_some([x, y])
}

/// Parses a measurement payload into a geometry, checking the points lie on an image of
/// `rows` × `columns`.
pub fn geometry(
    kind: MeasureKind,
    payload: &Value,
    rows: f64,
    columns: f64,
) -> Result<crate::units::Geometry, String> {
    use crate::units::Geometry;
    let obj = payload
        .as_object()
        .ok_or("a measurement payload is an object")?;
    let allowed: &[&str] = match kind {
        MeasureKind::Ellipse => &["center", "radii"],
        _ => &["points"],
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {k:?} in a {} payload",
            kind.as_str()
        ));
    }
    let inside = |p: &[f64; 2]| p[0] >= 0.0 && p[1] >= 0.0 && p[0] <= columns && p[1] <= rows;
    let g = match kind {
        MeasureKind::Ellipse => {
            let center = obj
                .get("center")
                .and_then(point)
                .ok_or("an ellipse needs \"center\": [x, y]")?;
            let radii = obj
                .get("radii")
                .and_then(point)
                .ok_or("an ellipse needs \"radii\": [rx, ry]")?;
            if radii[0] < 0.0 || radii[1] < 0.0 {
                return Err("ellipse radii are not negative".into());
            }
            let g = Geometry::Ellipse { center, radii };
            if !inside(&center) {
                return Err("the ellipse's centre is outside the image".into());
            }
            g
        }
        _ => {
            let pts = obj
                .get("points")
                .and_then(Value::as_array)
                .ok_or("a measurement needs \"points\": [[x, y], ...]")?;
            if pts.len() > MAX_POINTS {
                return Err(format!("at most {MAX_POINTS} points"));
            }
            let pts: Vec<[f64; 2]> = pts
                .iter()
                .map(point)
                .collect::<Option<_>>()
                .ok_or("points are pairs of finite numbers")?;
            if pts.iter().any(|p| !inside(p)) {
                return Err("a point lies outside the image".into());
            }
            match kind {
                MeasureKind::Length => {
                    if pts.len() != 2 {
                        return Err("a length has exactly two points".into());
                    }
                    Geometry::Length(pts[0], pts[1])
                }
                _ => {
                    if pts.len() < 3 {
                        return Err(format!("a {} needs at least three points", kind.as_str()));
                    }
                    Geometry::Polygon(pts)
                }
            }
        }
    };
    Ok(g)
}

/// A decoded mask: its pixels, zlib-compressed for storage, and how many are set.
#[derive(Debug, Clone)]
pub struct Mask {
    /// zlib stream of `rows × columns` bytes (0 = background).
    pub compressed: Vec<u8>,
    /// Number of non-zero pixels.
    pub set: u64,
}

/// Decodes a mask payload for an image of `rows` × `columns`; returns the payload to keep
/// (without the pixel data) and the compressed mask.
pub fn mask(payload: &Value, rows: u64, columns: u64) -> Result<(Value, Mask), String> {
    use base64::Engine as _;
    use std::io::Write as _;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        rows: u64,
        columns: u64,
        data: String,
    }
    let p: P = serde_json::from_value(payload.clone()).map_err(|e| {
        format!(
            "mask payload: {e} (expected rows, columns and data: base64 of rows × columns bytes)"
        )
    })?;
    if p.rows != rows || p.columns != columns {
        return Err(format!(
            "the mask is {}×{} but the image is {rows}×{columns}",
            p.rows, p.columns
        ));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(p.data.as_bytes())
        .map_err(|_| "mask data is not base64")?;
    if raw.len() as u64 != rows * columns {
        return Err(format!(
            "mask data has {} bytes, not rows × columns = {}",
            raw.len(),
            rows * columns
        ));
    }
    let set = raw.iter().filter(|b| **b != 0).count() as u64;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).map_err(|e| e.to_string())?;
    let compressed = z.finish().map_err(|e| e.to_string())?;
    Ok((
        serde_json::json!({"rows": rows, "columns": columns, "encoding": "zlib-u8"}),
        Mask { compressed, set },
    ))
}

/// Inflates a stored mask.
pub fn inflate(compressed: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(compressed).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> LabelSchema {
        LabelSchema::parse(&json!({
            "labels": [
                {"name": "view", "choice": "single", "scope": "series", "options": ["A4C", "A2C"]},
                {"name": "findings", "choice": "multi", "scope": "frame", "options": ["a", "b"]}
            ],
            "measurements": [{"name": "LVIDd", "kind": "length"}],
            "masks": [{"name": "LV"}]
        }))
        .unwrap()
    }

    #[test]
    fn schema_refuses_duplicates_and_unknown_fields() {
        assert!(
            LabelSchema::parse(&json!({"labels": [
                {"name": "v", "choice": "single", "scope": "study", "options": ["x", "x"]}]}))
            .is_err()
        );
        assert!(
            LabelSchema::parse(&json!({"measurements": [
                {"name": "a", "kind": "length"}, {"name": "a", "kind": "area"}]}))
            .is_err()
        );
        assert!(LabelSchema::parse(&json!({"labelz": []})).is_err());
        assert!(
            LabelSchema::parse(&json!({"labels": [
                {"name": "v", "choice": "some", "scope": "study", "options": ["x"]}]}))
            .is_err()
        );
    }

    #[test]
    fn labels_follow_their_choice() {
        let s = schema();
        let Ok(Resolved::Label(view)) = s.resolve("label", "view") else {
            panic!("view is a label")
        };
        assert!(check_label(view, &json!({"values": ["A4C"]})).is_ok());
        assert!(check_label(view, &json!({"values": ["A4C", "A2C"]})).is_err());
        assert!(check_label(view, &json!({"values": ["PLAX"]})).is_err());
        let Ok(Resolved::Label(f)) = s.resolve("label", "findings") else {
            panic!("findings is a label")
        };
        assert!(check_label(f, &json!({"values": ["a", "b"]})).is_ok());
        assert!(check_label(f, &json!({"values": ["a", "a"]})).is_err());
        assert!(check_label(f, &json!({"values": []})).is_err());
        assert!(s.resolve("area", "LVIDd").is_err());
        assert!(s.resolve("label", "LVIDd").is_err());
        assert!(s.resolve("mask", "LV").is_ok());
    }

    #[test]
    fn locations_match_levels() {
        let frame = Location {
            series_instance_uid: Some("1.2".into()),
            sop_instance_uid: Some("1.3".into()),
            frame: Some(1),
        };
        assert!(frame.check_level(Level::Frame).is_ok());
        assert!(frame.check_level(Level::Instance).is_err());
        assert!(Location::default().check_level(Level::Study).is_ok());
    }

    #[test]
    fn masks_round_trip_compressed() {
        use base64::Engine as _;
        let mut raw = vec![0u8; 6 * 4];
        raw[5] = 1;
        raw[6] = 1;
        let data = base64::engine::general_purpose::STANDARD.encode(&raw);
        let (kept, m) = mask(&json!({"rows": 4, "columns": 6, "data": data}), 4, 6).unwrap();
        assert_eq!(m.set, 2);
        assert_eq!(inflate(&m.compressed).unwrap(), raw);
        assert!(kept.get("data").is_none());
        assert!(mask(&json!({"rows": 4, "columns": 5, "data": ""}), 4, 6).is_err());
    }

    #[test]
    fn geometry_checks_points() {
        assert!(
            geometry(
                MeasureKind::Length,
                &json!({"points": [[0, 0], [3, 4]]}),
                10.0,
                10.0
            )
            .is_ok()
        );
        assert!(
            geometry(
                MeasureKind::Length,
                &json!({"points": [[0, 0]]}),
                10.0,
                10.0
            )
            .is_err()
        );
        assert!(
            geometry(
                MeasureKind::Length,
                &json!({"points": [[0, 0], [30, 4]]}),
                10.0,
                10.0
            )
            .is_err()
        );
        assert!(
            geometry(
                MeasureKind::Area,
                &json!({"points": [[0, 0], [3, 4]]}),
                10.0,
                10.0
            )
            .is_err()
        );
        assert!(
            geometry(
                MeasureKind::Ellipse,
                &json!({"center": [5, 5], "radii": [1, -1]}),
                10.0,
                10.0
            )
            .is_err()
        );
        assert!(
            geometry(
                MeasureKind::Length,
                &json!({"points": [[0, 0], [3, 4]], "x": 1}),
                10.0,
                10.0
            )
            .is_err()
        );
    }
}
