//! Physical units for measurements drawn in image coordinates.
//!
//! The calibration comes from the instance's attributes as stored in the index (DICOM JSON):
//! Pixel Spacing (0028,0030), also inside the shared functional groups of enhanced multi-frame
//! objects, and otherwise the ultrasound region calibration (Sequence of Ultrasound Regions,
//! 0018,6011) of the 2D region that contains every point of the measurement, when both of its
//! physical units are centimetres. Points are `[x, y]` = `[column, row]` in pixels.

use serde_json::{Value, json};

use bedside_dicomweb::Record;

/// Millimetres per pixel along x (columns) and y (rows), and where they came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Millimetres per pixel along a row (between columns).
    pub dx_mm: f64,
    /// Millimetres per pixel along a column (between rows).
    pub dy_mm: f64,
    /// `PixelSpacing` or `UltrasoundRegion`.
    pub source: &'static str,
}

/// A measured geometry in pixel coordinates.
#[derive(Debug, Clone, PartialEq)]
pub enum Geometry {
    /// A segment between two points.
    Length([f64; 2], [f64; 2]),
    /// A closed polygon (area and perimeter).
    Polygon(Vec<[f64; 2]>),
    /// An axis-aligned ellipse: centre and radii along x and y.
    Ellipse {
        /// Centre.
        center: [f64; 2],
        /// Radii along x and y.
        radii: [f64; 2],
    },
    /// A mask: the number of pixels set.
    Pixels(u64),
}

impl Geometry {
    fn points(&self) -> Vec<[f64; 2]> {
        match self {
            Geometry::Length(a, b) => vec![*a, *b],
            Geometry::Polygon(p) => p.clone(),
            Geometry::Ellipse { center, radii } => vec![
                [center[0] - radii[0], center[1] - radii[1]],
                [center[0] + radii[0], center[1] + radii[1]],
            ],
            Geometry::Pixels(_) => Vec::new(),
        }
    }
}

fn numbers(attr: Option<&Value>) -> Vec<f64> {
    attr.and_then(|a| a.get("Value"))
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn items(attr: Option<&Value>) -> Vec<&Record> {
    attr.and_then(|a| a.get("Value"))
        .and_then(Value::as_array)
        .map(|vs| vs.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default()
}

fn pixel_spacing(record: &Record) -> Option<(f64, f64)> {
    let direct = numbers(record.get("00280030"));
    let spacing = if direct.len() == 2 {
        direct
    } else {
        // Enhanced multi-frame: SharedFunctionalGroups > PixelMeasures > PixelSpacing.
        items(record.get("52009229"))
            .into_iter()
            .flat_map(|g| items(g.get("00289110")))
            .map(|m| numbers(m.get("00280030")))
            .find(|v| v.len() == 2)?
    };
    // Pixel Spacing is row spacing (between rows, y) then column spacing (x).
    let (dy, dx) = (spacing[0], spacing[1]);
    (dx.is_finite() && dy.is_finite() && dx > 0.0 && dy > 0.0).then_some((dx, dy))
}

/// The calibration for a measurement made of `points` on an instance with `record`'s
/// attributes, or `None` when the image carries none that applies.
pub fn calibration(record: &Record, points: &[[f64; 2]]) -> Option<Calibration> {
    if let Some((dx, dy)) = pixel_spacing(record) {
        return Some(Calibration {
            dx_mm: dx,
            dy_mm: dy,
            source: "PixelSpacing",
        });
    }
    let first = |r: &Record, k: &str| numbers(r.get(k)).first().copied();
    items(record.get("00186011"))
        .into_iter()
        .find_map(|region| {
            // 1 = 2D tissue or flow; other formats (M-mode, spectral) are not spatial in both axes.
            if first(region, "00186012")? != 1.0 {
                return None;
            }
            // 3 = centimetres.
            if first(region, "00186024")? != 3.0 || first(region, "00186026")? != 3.0 {
                return None;
            }
            let (x0, y0) = (first(region, "00186018")?, first(region, "0018601A")?);
            let (x1, y1) = (first(region, "0018601C")?, first(region, "0018601E")?);
            let inside = points
                .iter()
                .all(|p| p[0] >= x0 && p[0] <= x1 + 1.0 && p[1] >= y0 && p[1] <= y1 + 1.0);
            let dx = first(region, "0018602C")?.abs() * 10.0;
            let dy = first(region, "0018602E")?.abs() * 10.0;
            (inside && dx.is_finite() && dy.is_finite() && dx > 0.0 && dy > 0.0).then_some(
                Calibration {
                    dx_mm: dx,
                    dy_mm: dy,
                    source: "UltrasoundRegion",
                },
            )
        })
}

fn shoelace(points: &[[f64; 2]], sx: f64, sy: f64) -> f64 {
    let n = points.len();
    let twice: f64 = (0..n)
        .map(|i| {
            let (a, b) = (points[i], points[(i + 1) % n]);
            a[0] * sx * b[1] * sy - b[0] * sx * a[1] * sy
        })
        .sum();
    twice.abs() / 2.0
}

fn perimeter(points: &[[f64; 2]], sx: f64, sy: f64) -> f64 {
    let n = points.len();
    (0..n)
        .map(|i| {
            let (a, b) = (points[i], points[(i + 1) % n]);
            ((b[0] - a[0]) * sx).hypot((b[1] - a[1]) * sy)
        })
        .sum()
}

/// Ramanujan's second approximation of an ellipse's perimeter (relative error below 1e-9 for
/// the axis ratios met in images).
fn ellipse_perimeter(a: f64, b: f64) -> f64 {
    if a + b == 0.0 {
        return 0.0;
    }
    let h = ((a - b) / (a + b)).powi(2);
    std::f64::consts::PI * (a + b) * (1.0 + 3.0 * h / (10.0 + (4.0 - 3.0 * h).sqrt()))
}

/// The quantities of a geometry, in millimetres when calibrated and in pixels otherwise:
/// `{"calibration": …, "values": [{"quantity", "value", "unit"}]}`.
pub fn measure(geometry: &Geometry, record: &Record) -> Value {
    let cal = calibration(record, &geometry.points());
    let (sx, sy, len_unit, area_unit, source) = match cal {
        Some(c) => (c.dx_mm, c.dy_mm, "mm", "mm2", c.source),
        None => (1.0, 1.0, "px", "px2", "none"),
    };
    let q = |quantity: &str, value: f64, unit: &str| json!({"quantity": quantity, "value": value, "unit": unit});
    let values = match geometry {
        Geometry::Length(a, b) => {
            vec![q(
                "length",
                ((b[0] - a[0]) * sx).hypot((b[1] - a[1]) * sy),
                len_unit,
            )]
        }
        Geometry::Polygon(p) => vec![
            q("area", shoelace(p, sx, sy), area_unit),
            q("perimeter", perimeter(p, sx, sy), len_unit),
        ],
        Geometry::Ellipse { radii, .. } => {
            let (a, b) = (radii[0] * sx, radii[1] * sy);
            vec![
                q("area", std::f64::consts::PI * a * b, area_unit),
                q("perimeter", ellipse_perimeter(a, b), len_unit),
            ]
        }
        Geometry::Pixels(n) => {
            // A mask has no points: only Pixel Spacing or a single 2D region applies.
            let cal = cal.or_else(|| single_region(record));
            let (sx, sy, unit, source) = match cal {
                Some(c) => (c.dx_mm, c.dy_mm, "mm2", c.source),
                None => (1.0, 1.0, "px2", "none"),
            };
            return json!({
                "calibration": source,
                "values": [q("area", *n as f64 * sx * sy, unit), q("pixels", *n as f64, "px")],
            });
        }
    };
    json!({"calibration": source, "values": values})
}

fn single_region(record: &Record) -> Option<Calibration> {
    let regions = items(record.get("00186011"));
    if regions.len() != 1 {
        return None;
    }
    let first = |k: &str| numbers(regions[0].get(k)).first().copied();
    let (x0, y0) = (first("00186018")?, first("0018601A")?);
    calibration(record, &[[x0, y0]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(v: Value) -> Record {
        v.as_object().cloned().unwrap_or_default()
    }

    fn value(m: &Value, quantity: &str) -> (f64, String) {
        let v = m["values"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["quantity"] == quantity)
            .cloned()
            .unwrap_or(Value::Null);
        (
            v["value"].as_f64().unwrap_or(f64::NAN),
            v["unit"].as_str().unwrap_or("").to_string(),
        )
    }

    #[test]
    fn pixel_spacing_is_rows_then_columns() {
        // 0.5 mm between rows, 0.25 mm between columns: a 40-column, 30-row step is
        // hypot(40 × 0.25, 30 × 0.5) = hypot(10, 15) = 18.0277... mm.
        let r = record(json!({"00280030": {"vr": "DS", "Value": [0.5, 0.25]}}));
        let m = measure(&Geometry::Length([0.0, 0.0], [40.0, 30.0]), &r);
        let (v, unit) = value(&m, "length");
        assert!((v - 325.0f64.sqrt()).abs() < 1e-12, "{v}");
        assert_eq!(unit, "mm");
        assert_eq!(m["calibration"], "PixelSpacing");
        // A 10 × 20 px rectangle: 10 × 0.25 by 20 × 0.5 = 2.5 × 10 = 25 mm², perimeter 25 mm.
        let rect = vec![[0.0, 0.0], [10.0, 0.0], [10.0, 20.0], [0.0, 20.0]];
        let m = measure(&Geometry::Polygon(rect), &r);
        assert!((value(&m, "area").0 - 25.0).abs() < 1e-12);
        assert!((value(&m, "perimeter").0 - 25.0).abs() < 1e-12);
        assert_eq!(value(&m, "area").1, "mm2");
    }

    #[test]
    fn ultrasound_region_in_centimetres_and_outside_points() {
        let region = json!({
            "00186012": {"vr": "US", "Value": [1]},
            "00186018": {"vr": "UL", "Value": [10]},
            "0018601A": {"vr": "UL", "Value": [20]},
            "0018601C": {"vr": "UL", "Value": [200]},
            "0018601E": {"vr": "UL", "Value": [300]},
            "00186024": {"vr": "US", "Value": [3]},
            "00186026": {"vr": "US", "Value": [3]},
            "0018602C": {"vr": "FD", "Value": [0.02]},
            "0018602E": {"vr": "FD", "Value": [0.03]},
        });
        let r = record(json!({"00186011": {"vr": "SQ", "Value": [region]}}));
        // 30 px along x at 0.2 mm = 6 mm; 40 px along y at 0.3 mm = 12 mm; hypot = 13.4164 mm.
        let m = measure(&Geometry::Length([50.0, 50.0], [80.0, 90.0]), &r);
        assert!((value(&m, "length").0 - 180.0f64.sqrt()).abs() < 1e-12);
        assert_eq!(m["calibration"], "UltrasoundRegion");
        // Ellipse radii 10 and 5 px: 2 mm × 1.5 mm semi-axes, area π × 3 mm².
        let m = measure(
            &Geometry::Ellipse {
                center: [100.0, 100.0],
                radii: [10.0, 5.0],
            },
            &r,
        );
        assert!((value(&m, "area").0 - std::f64::consts::PI * 3.0).abs() < 1e-12);
        // A segment leaving the region is not calibrated by it.
        let m = measure(&Geometry::Length([0.0, 0.0], [80.0, 90.0]), &r);
        assert_eq!(m["calibration"], "none");
        assert_eq!(value(&m, "length").1, "px");
        // 12 mask pixels at 0.2 × 0.3 mm = 0.72 mm².
        let m = measure(&Geometry::Pixels(12), &r);
        assert!((value(&m, "area").0 - 0.72).abs() < 1e-12);
    }

    #[test]
    fn ellipse_perimeter_of_a_circle() {
        assert!((ellipse_perimeter(2.0, 2.0) - 4.0 * std::f64::consts::PI).abs() < 1e-12);
    }
}
