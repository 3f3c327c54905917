//! The scan area of an ultrasound image: declared regions and the detected sector.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// An inclusive pixel rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x0: usize,
    /// Top row.
    pub y0: usize,
    /// Right column (inclusive).
    pub x1: usize,
    /// Bottom row (inclusive).
    pub y1: usize,
}

fn first_u32(item: &InMemDicomObject, tag: Tag) -> Option<u32> {
    item.element(tag).ok()?.to_int::<u32>().ok()
}

/// The regions of `SequenceOfUltrasoundRegions`, clipped to the image. Regions that lie wholly
/// outside the image or are malformed are ignored.
pub fn declared_regions(obj: &InMemDicomObject, rows: usize, columns: usize) -> Vec<Rect> {
    let Ok(seq) = obj.element(tags::SEQUENCE_OF_ULTRASOUND_REGIONS) else {
        return Vec::new();
    };
    let Some(items) = seq.items() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let (Some(x0), Some(y0), Some(x1), Some(y1)) = (
            first_u32(item, tags::REGION_LOCATION_MIN_X0),
            first_u32(item, tags::REGION_LOCATION_MIN_Y0),
            first_u32(item, tags::REGION_LOCATION_MAX_X1),
            first_u32(item, tags::REGION_LOCATION_MAX_Y1),
        ) else {
            continue;
        };
        let (x0, y0, x1, y1) = (x0 as usize, y0 as usize, x1 as usize, y1 as usize);
        if x0 > x1 || y0 > y1 || x0 >= columns || y0 >= rows {
            continue;
        }
        out.push(Rect {
            x0,
            y0,
            x1: x1.min(columns - 1),
            y1: y1.min(rows - 1),
        });
    }
    out
}

/// Side of the square cells the change map is pooled into.
const CELL: usize = 4;

/// Detects the scan sector from luminance frames (`frames[f][row * columns + column]`): pixels
/// whose value varies over time are pooled into cells, the largest connected group of changing
/// cells is taken (so a moving ECG cursor or a clock elsewhere does not count) and closed to its
/// convex hull, which for a fan or a rectangle is the scan area itself. Returns the hull's
/// vertices (x, y) in pixel coordinates, or `None` when fewer than two frames or no sizeable
/// changing area exist.
pub fn detect_sector(frames: &[&[u8]], rows: usize, columns: usize) -> Option<Vec<(f64, f64)>> {
    if frames.len() < 2 || rows < CELL || columns < CELL {
        return None;
    }
    let n = rows * columns;
    // Temporal range over up to 24 evenly spread frames.
    let step = (frames.len() / 24).max(1);
    let mut lo = vec![u8::MAX; n];
    let mut hi = vec![0u8; n];
    for f in frames.iter().step_by(step) {
        if f.len() < n {
            return None;
        }
        for i in 0..n {
            let v = f[i];
            lo[i] = lo[i].min(v);
            hi[i] = hi[i].max(v);
        }
    }
    let (gr, gc) = (rows / CELL, columns / CELL);
    let mut cells = vec![false; gr * gc];
    for cy in 0..gr {
        for cx in 0..gc {
            let mut changing = 0;
            for y in cy * CELL..(cy + 1) * CELL {
                for x in cx * CELL..(cx + 1) * CELL {
                    let i = y * columns + x;
                    if hi[i] - lo[i] > 10 {
                        changing += 1;
                    }
                }
            }
            cells[cy * gc + cx] = changing * 4 >= CELL * CELL;
        }
    }
    // The largest component (the first of equals, as the scan meets them).
    let best = components(&cells, gc, gr)
        .into_iter()
        .rev()
        .max_by_key(Vec::len)?;
    // Too small is noise; nearly the whole frame is not a sector either: the interface changed
    // with the image (a different picture per frame, an inverted copy), so text outside the
    // scan area is not static and must not be kept as part of it.
    if best.len() * 100 < gr * gc || best.len() * 10 > gr * gc * 9 {
        return None;
    }
    let mut points = Vec::with_capacity(best.len() * 4);
    for c in best {
        let (x, y) = (((c % gc) * CELL) as f64, ((c / gc) * CELL) as f64);
        points.extend([
            (x, y),
            (x + CELL as f64, y),
            (x, y + CELL as f64),
            (x + CELL as f64, y + CELL as f64),
        ]);
    }
    Some(convex_hull(points))
}

/// The 4-connected components of a `width`×`height` mask, each as the indices it holds.
pub(crate) fn components(mask: &[bool], width: usize, height: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![false; mask.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut members = Vec::new();
        while let Some(i) = stack.pop() {
            members.push(i);
            let (y, x) = (i / width, i % width);
            let mut visit = |j: usize| {
                if mask[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < width {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - width);
            }
            if y + 1 < height {
                visit(i + width);
            }
        }
        out.push(members);
    }
    out
}

/// Convex hull (Andrew's monotone chain), counter-clockwise in image coordinates.
pub fn convex_hull(mut pts: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    pts.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let cross = |o: (f64, f64), a: (f64, f64), b: (f64, f64)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(f64, f64)> = Vec::with_capacity(pts.len() * 2);
    for &p in &pts {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    let lower = hull.len() + 1;
    for &p in pts.iter().rev().skip(1) {
        while hull.len() >= lower && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    hull.pop();
    hull
}

/// Rasterises the keep mask: 1 inside any region or inside the hull grown by `margin` pixels.
pub fn keep_mask(
    rows: usize,
    columns: usize,
    regions: &[Rect],
    hull: Option<&[(f64, f64)]>,
    margin: f64,
) -> Vec<u8> {
    let mut mask = vec![0u8; rows * columns];
    for r in regions {
        for y in r.y0..=r.y1.min(rows.saturating_sub(1)) {
            mask[y * columns + r.x0..=y * columns + r.x1.min(columns - 1)].fill(1);
        }
    }
    if let Some(h) = hull.filter(|h| h.len() >= 3) {
        // Inside a convex polygon: on the same side of every edge (allowing `margin`).
        let edges: Vec<(f64, f64, f64)> = (0..h.len())
            .map(|i| {
                let (a, b) = (h[i], h[(i + 1) % h.len()]);
                let (nx, ny) = (b.1 - a.1, a.0 - b.0);
                let len = (nx * nx + ny * ny).sqrt().max(1e-9);
                (nx / len, ny / len, -(nx * a.0 + ny * a.1) / len)
            })
            .collect();
        let orient = {
            let (cx, cy) = h.iter().fold((0.0, 0.0), |s, p| (s.0 + p.0, s.1 + p.1));
            let (cx, cy) = (cx / h.len() as f64, cy / h.len() as f64);
            let e = edges[0];
            if e.0 * cx + e.1 * cy + e.2 >= 0.0 {
                1.0
            } else {
                -1.0
            }
        };
        for y in 0..rows {
            for x in 0..columns {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                if edges
                    .iter()
                    .all(|e| orient * (e.0 * px + e.1 * py + e.2) >= -margin)
                {
                    mask[y * columns + x] = 1;
                }
            }
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hull_of_a_square_and_inner_points() {
        let h = convex_hull(vec![
            (0.0, 0.0),
            (4.0, 0.0),
            (4.0, 4.0),
            (0.0, 4.0),
            (2.0, 2.0),
            (1.0, 3.0),
        ]);
        assert_eq!(h.len(), 4);
        let m = keep_mask(6, 6, &[], Some(&h), 0.0);
        assert_eq!(m.iter().filter(|&&v| v == 1).count(), 16);
        assert_eq!(m[5 * 6 + 5], 0);
    }

    #[test]
    fn a_frame_that_changes_everywhere_is_not_a_sector() {
        let (rows, cols) = (64, 80);
        let first: Vec<u8> = (0..rows * cols).map(|i| (i % 97) as u8).collect();
        let inverted: Vec<u8> = first.iter().map(|v| 255 - v).collect();
        assert_eq!(detect_sector(&[&first, &inverted], rows, cols), None);
    }

    #[test]
    fn detects_a_changing_triangle_and_ignores_a_small_blinker() {
        let (rows, cols) = (64, 80);
        let frames: Vec<Vec<u8>> = (0..8)
            .map(|f| {
                let mut v = vec![0u8; rows * cols];
                for y in 8..60 {
                    let half = (y - 8) / 2;
                    for x in 40 - half..40 + half {
                        v[y * cols + x] = ((x * 7 + y * 13 + f * 31) % 200) as u8;
                    }
                }
                v[2 * cols + 2] = if f % 2 == 0 { 255 } else { 0 };
                v
            })
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        let hull = detect_sector(&refs, rows, cols).unwrap();
        let m = keep_mask(rows, cols, &[], Some(&hull), 2.0);
        assert_eq!(m[30 * cols + 40], 1);
        assert_eq!(m[2 * cols + 2], 0);
        assert_eq!(m[10 * cols + 5], 0);
    }
}
