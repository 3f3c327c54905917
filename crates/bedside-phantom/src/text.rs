//! Burned-in text: an 8×8 bitmap font drawn at an integer scale, as on many scanner screens.

use font8x8::legacy::BASIC_LEGACY;

/// A pixel box `[x, y, width, height]` (x to the right, y down, in pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PixelBox {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl PixelBox {
    /// Whether the box overlaps another.
    pub fn intersects(&self, o: &PixelBox) -> bool {
        self.x < o.x + o.width
            && o.x < self.x + self.width
            && self.y < o.y + o.height
            && o.y < self.y + self.height
    }
}

/// Width in pixels of `text` at `scale`.
pub fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * 8 * scale
}

/// The set pixels of `text` at `scale` drawn at `(x, y)`, as (column, row) pairs clipped to
/// `columns`×`rows`, plus the box the text occupies.
pub fn glyph_pixels(
    text: &str,
    x: usize,
    y: usize,
    scale: usize,
    columns: usize,
    rows: usize,
) -> (Vec<(usize, usize)>, PixelBox) {
    let mut out = Vec::new();
    for (i, ch) in text.chars().enumerate() {
        let code = if ch.is_ascii() {
            ch as usize
        } else {
            b'?' as usize
        };
        let glyph = BASIC_LEGACY[code];
        let gx = x + i * 8 * scale;
        for (r, bits) in glyph.iter().enumerate() {
            for c in 0..8 {
                if (bits >> c) & 1 == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = gx + c * scale + dx;
                        let py = y + r * scale + dy;
                        if px < columns && py < rows {
                            out.push((px, py));
                        }
                    }
                }
            }
        }
    }
    let width = text_width(text, scale).min(columns.saturating_sub(x));
    let height = (8 * scale).min(rows.saturating_sub(y));
    (
        out,
        PixelBox {
            x,
            y,
            width,
            height,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_stay_inside_their_box() {
        let (px, b) = glyph_pixels("DOE, JANE 1956", 10, 20, 2, 640, 480);
        assert!(!px.is_empty());
        assert_eq!(b.width, 14 * 16);
        for (x, y) in px {
            assert!(x >= b.x && x < b.x + b.width && y >= b.y && y < b.y + b.height);
        }
    }
}
