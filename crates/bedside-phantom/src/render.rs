//! Rendering of an apical-four-chamber-like cine: a fan-shaped scan sector with speckle, a beating
//! elliptical left ventricle of known ejection fraction, the other chambers as distractors, an ECG
//! trace with a sweeping cursor, and burned-in text.
//!
//! Geometry is in pixels, x to the right and y down. A chamber is an ellipse with centre
//! `(cx, cy)`, long semi-axis `a`, short semi-axis `b` and `angle` (radians) by which its long
//! axis is turned from the image vertical; a pixel belongs to the cavity when
//! `(u/b)² + (v/a)² < 1` with `u = dx cos(angle) + dy sin(angle)`, `v = −dx sin(angle) + dy cos(angle)`.
//! The left-ventricular volume is the prolate ellipsoid `V = π/6 · (2a) · (2b)²`; from end
//! diastole to end systole `a` scales by `(1 − EF)^0.2` and `b` by `(1 − EF)^0.4`, so the volume
//! ratio is exactly `1 − EF`.

use bedside_core::rng::Rng;

use crate::sites::Site;
use crate::text::{self, PixelBox};

/// Fraction of the cardiac cycle at which end systole occurs (end diastole is phase 0).
pub const ES_PHASE: f64 = 0.35;

/// Where a text item goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Header band, line `line`, left-aligned.
    HeaderLeft(usize),
    /// Header band, line `line`, right-aligned.
    HeaderRight(usize),
    /// Inside or touching the scan sector.
    InSector,
}

/// A text item to burn in: `prefix` (not identifying) followed by `value` (identifying).
#[derive(Debug, Clone)]
pub struct TextSpec {
    /// Free label shown before the value, e.g. `DOB `.
    pub prefix: String,
    /// The identifying text.
    pub value: String,
    /// Where it goes.
    pub placement: Placement,
}

/// A burned-in text item as drawn.
#[derive(Debug, Clone)]
pub struct DrawnText {
    /// Index into the specs given to [`render`].
    pub spec: usize,
    /// The identifying text as drawn (may be truncated at the image edge).
    pub text: String,
    /// Box of the identifying text.
    pub value_box: PixelBox,
    /// Whether the box overlaps the scan sector.
    pub in_sector: bool,
}

/// A chamber ellipse at one instant.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Ellipse {
    /// Centre column.
    pub cx: f64,
    /// Centre row.
    pub cy: f64,
    /// Long semi-axis (pixels).
    pub a: f64,
    /// Short semi-axis (pixels).
    pub b: f64,
    /// Turn of the long axis from the vertical (radians).
    pub angle: f64,
}

/// The ultrasound region calibration of the image.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Region {
    /// RegionLocationMinX0.
    pub x0: u32,
    /// RegionLocationMinY0.
    pub y0: u32,
    /// RegionLocationMaxX1.
    pub x1: u32,
    /// RegionLocationMaxY1.
    pub y1: u32,
    /// Physical size of a pixel, centimetres (x and y).
    pub delta_cm: f64,
    /// Sector apex column relative to the region (ReferencePixelX0).
    pub reference_x: i32,
    /// Sector apex row relative to the region (ReferencePixelY0).
    pub reference_y: i32,
}

/// What the renderer needs to know about one study.
#[derive(Debug, Clone)]
pub struct Scene<'a> {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub columns: usize,
    /// Frames.
    pub frames: usize,
    /// Frames per second.
    pub fps: f64,
    /// Heart rate, beats per minute.
    pub heart_rate: f64,
    /// Ejection fraction, percent.
    pub ef: f64,
    /// Render RGB (else one sample per pixel).
    pub rgb: bool,
    /// Site effects.
    pub site: &'a Site,
    /// Seed of every random choice of this rendering.
    pub seed: u64,
    /// Text to burn in.
    pub texts: &'a [TextSpec],
}

/// The rendered cine and its ground truth.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Frames, `[frame][row][column]` (× 3 interleaved samples when RGB).
    pub pixels: Vec<u8>,
    /// Left-ventricular cavity masks, `[frame][row][column]`, 1 inside.
    pub lv_mask: Vec<u8>,
    /// Left-ventricular ellipse per frame.
    pub lv_ellipse: Vec<Ellipse>,
    /// Cardiac phase per frame (0 = end diastole, [`ES_PHASE`] = end systole).
    pub phase: Vec<f64>,
    /// Frames closest to end diastole (one per beat in the clip).
    pub ed_frames: Vec<usize>,
    /// Frames closest to end systole.
    pub es_frames: Vec<usize>,
    /// EF from the ellipse volumes of the clip's largest and smallest frames, percent.
    pub clip_ef: f64,
    /// Burned-in text as drawn.
    pub texts: Vec<DrawnText>,
    /// Region calibration.
    pub region: Region,
    /// Scan-sector mask `[row][column]`, 1 inside (static over frames).
    pub sector_mask: Vec<u8>,
}

/// Contraction `s(φ)` in `[0, 1]`: 0 at end diastole, 1 at end systole.
pub fn contraction(phase: f64) -> f64 {
    let p = phase.rem_euclid(1.0);
    if p < ES_PHASE {
        0.5 * (1.0 - (std::f64::consts::PI * p / ES_PHASE).cos())
    } else {
        // Rapid early filling, slower diastasis.
        let q = (p - ES_PHASE) / (1.0 - ES_PHASE);
        let fill = 1.0 - (-5.0 * q).exp();
        1.0 - fill / (1.0 - (-5.0f64).exp())
    }
}

fn ecg(phase: f64) -> f64 {
    let p = phase.rem_euclid(1.0);
    let g = |c: f64, w: f64, h: f64| {
        let d = (p - c + 0.5).rem_euclid(1.0) - 0.5;
        h * (-(d * d) / (2.0 * w * w)).exp()
    };
    g(0.0, 0.012, 1.0)
        + g(-0.03, 0.01, -0.15)
        + g(0.03, 0.012, -0.25)
        + g(-0.14, 0.025, 0.15)
        + g(0.27, 0.04, 0.3)
}

struct Chamber {
    cx: f64,
    cy: f64,
    a: f64,
    b: f64,
    angle: f64,
    /// Wall thickness in pixels (0: no own wall drawn).
    wall: f64,
    /// Size factor as a function of contraction (volume scale of the cavity).
    kind: ChamberKind,
}

#[derive(Clone, Copy)]
enum ChamberKind {
    /// The left ventricle, with the study's EF.
    Lv,
    /// The right ventricle (fixed fractional change).
    Rv,
    /// An atrium, filling while the ventricles contract.
    Atrium,
}

impl Chamber {
    fn at(&self, s: f64, ef: f64) -> Ellipse {
        let v = match self.kind {
            ChamberKind::Lv => 1.0 - ef * s,
            ChamberKind::Rv => 1.0 - 0.45 * s,
            ChamberKind::Atrium => 1.0 + 0.5 * s,
        };
        Ellipse {
            cx: self.cx,
            cy: self.cy,
            a: self.a * v.powf(0.2),
            b: self.b * v.powf(0.4),
            angle: self.angle,
        }
    }
}

/// Tissue levels in decibels before speckle and display mapping.
const TISSUE_DB: f32 = -19.0;
const MYOCARDIUM_DB: f32 = -5.0;
const BLOOD_DB: f32 = -42.0;

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Renders one cine.
pub fn render(scene: &Scene<'_>) -> Rendered {
    let (rows, cols) = (scene.rows, scene.columns);
    let site = scene.site;
    let mut rng = Rng::seed_from(scene.seed);
    let scale = (rows / 240).max(1);
    let line_h = 8 * scale + 2 * scale;
    let margin = 2 * scale;

    // Text layout first: the header band's height follows from it.
    let header_lines = scene
        .texts
        .iter()
        .filter_map(|t| match t.placement {
            Placement::HeaderLeft(l) | Placement::HeaderRight(l) => Some(l + 1),
            Placement::InSector => None,
        })
        .max()
        .unwrap_or(0);
    let band_h = header_lines * line_h + margin;
    let ecg_h = (rows / 10).max(12);

    // Sector geometry.
    let half = site.half_angle_deg.to_radians();
    let apex_x = cols as f64 / 2.0 + rng.range(-0.01, 0.01) * cols as f64;
    let apex_y = (band_h + 2 * scale) as f64;
    let max_r_rows = rows as f64 - apex_y - ecg_h as f64 - 2.0;
    let max_r_cols = (cols as f64 / 2.0 - 4.0) / half.sin();
    let radius = max_r_rows.min(max_r_cols).max(8.0);

    let mut sector_mask = vec![0u8; rows * cols];
    let (tan_half, r2) = (half.tan(), radius * radius);
    for y in 0..rows {
        let dy = y as f64 + 0.5 - apex_y;
        if dy <= 0.0 {
            continue;
        }
        let row = &mut sector_mask[y * cols..(y + 1) * cols];
        for (x, m) in row.iter_mut().enumerate() {
            let dx = x as f64 + 0.5 - apex_x;
            if dx * dx + dy * dy <= r2 && dx.abs() <= dy * tan_half {
                *m = 1;
            }
        }
    }

    // Static speckle (exponentially distributed intensity, in dB) plus depth attenuation, folded
    // into one per-pixel offset; blurred complex noise gives the granular texture.
    let grain_x = 1 + scale;
    let grain_y = scale.max(1);
    let mut re = vec![0f32; rows * cols];
    let mut im = vec![0f32; rows * cols];
    for (a, b) in re.iter_mut().zip(im.iter_mut()) {
        *a = rng.normal() as f32;
        *b = rng.normal() as f32;
    }
    let re = box_blur(&re, rows, cols, grain_x, grain_y);
    let im = box_blur(&im, rows, cols, grain_x, grain_y);
    let norm = ((2 * grain_x + 1) * (2 * grain_y + 1)) as f32;
    let mut base = vec![0f32; rows * cols];
    for y in 0..rows {
        for x in 0..cols {
            let i = y * cols + x;
            if sector_mask[i] == 0 {
                continue;
            }
            let intensity = (re[i] * re[i] + im[i] * im[i]) / (2.0 * norm);
            let speckle_db = 10.0 * intensity.max(1e-4).log10();
            let depth = ((x as f64 - apex_x).hypot(y as f64 - apex_y) / radius) as f32;
            base[i] = speckle_db - 6.0 * depth + 45.0;
        }
    }
    // Display map: dB (0..64 in quarter steps) to grey level, with the site's gain and gamma.
    let lut: Vec<u8> = (0..256)
        .map(|k| {
            let v = (k as f32 / 4.0) / 50.0 * site.gain;
            (255.0 * v.clamp(0.0, 1.0).powf(site.gamma)).round() as u8
        })
        .collect();
    let map = |db: f32| -> u8 { lut[((db * 4.0) as i32).clamp(0, 255) as usize] };

    // Chambers (apical four-chamber: apex up, left ventricle on the right of the image).
    let jitter = |r: &mut Rng, v: f64| v + r.range(-0.02, 0.02);
    let size = rng.range(0.9, 1.1);
    let rs = radius;
    let lv_cx = apex_x + jitter(&mut rng, 0.13) * rs;
    let lv_cy = apex_y + jitter(&mut rng, 0.40) * rs;
    let chambers = [
        Chamber {
            cx: lv_cx,
            cy: lv_cy,
            a: 0.25 * rs * size,
            b: 0.115 * rs * size,
            angle: -((lv_cx - apex_x) / (lv_cy - apex_y)).atan(),
            wall: 0.035 * rs,
            kind: ChamberKind::Lv,
        },
        Chamber {
            cx: apex_x - jitter(&mut rng, 0.12) * rs,
            cy: apex_y + jitter(&mut rng, 0.42) * rs,
            a: 0.2 * rs * size,
            b: 0.085 * rs * size,
            angle: (0.12f64 / 0.42).atan(),
            wall: 0.02 * rs,
            kind: ChamberKind::Rv,
        },
        Chamber {
            cx: apex_x + jitter(&mut rng, 0.16) * rs,
            cy: apex_y + jitter(&mut rng, 0.78) * rs,
            a: 0.115 * rs * size,
            b: 0.1 * rs * size,
            angle: 0.1,
            wall: 0.015 * rs,
            kind: ChamberKind::Atrium,
        },
        Chamber {
            cx: apex_x - jitter(&mut rng, 0.14) * rs,
            cy: apex_y + jitter(&mut rng, 0.78) * rs,
            a: 0.105 * rs * size,
            b: 0.095 * rs * size,
            angle: -0.1,
            wall: 0.015 * rs,
            kind: ChamberKind::Atrium,
        },
    ];
    let ef = scene.ef / 100.0;
    // Bounding box of every chamber at its largest, wall included.
    let (mut bx0, mut by0, mut bx1, mut by1) = (cols as f64, rows as f64, 0f64, 0f64);
    for c in &chambers {
        let big = c.at(
            if matches!(c.kind, ChamberKind::Atrium) {
                1.0
            } else {
                0.0
            },
            ef,
        );
        let ext = big.a.max(big.b) + c.wall + 3.0;
        bx0 = bx0.min(c.cx - ext);
        by0 = by0.min(c.cy - ext);
        bx1 = bx1.max(c.cx + ext);
        by1 = by1.max(c.cy + ext);
    }
    let bx0 = bx0.max(0.0) as usize;
    let by0 = by0.max(0.0) as usize;
    let bx1 = (bx1.ceil() as usize).min(cols);
    let by1 = (by1.ceil() as usize).min(rows);

    // Static frame: tissue everywhere in the sector, black elsewhere.
    let mut stat = vec![0u8; rows * cols];
    for i in 0..rows * cols {
        if sector_mask[i] == 1 {
            stat[i] = map(base[i] + TISSUE_DB);
        }
    }
    // ECG trace over the whole clip, in the bottom band.
    let beat_s = 60.0 / scene.heart_rate;
    let phase0 = rng.uniform();
    let duration = scene.frames as f64 / scene.fps;
    let (ex0, ex1) = (cols / 10, cols - cols / 10);
    let e_base = rows - ecg_h / 3 - 1;
    let e_amp = (ecg_h as f64 * 0.55).max(4.0);
    let ecg_y = |x: usize| -> usize {
        let t = (x - ex0) as f64 / (ex1 - ex0).max(1) as f64 * duration;
        let v = ecg(t / beat_s + phase0);
        (e_base as f64 - v * e_amp)
            .round()
            .clamp(0.0, rows as f64 - 1.0) as usize
    };
    let mut ecg_pixels = Vec::new();
    let mut prev = ecg_y(ex0);
    for x in ex0..ex1 {
        let y = ecg_y(x);
        let (lo, hi) = (y.min(prev), y.max(prev));
        for yy in lo..=hi {
            ecg_pixels.push(yy * cols + x);
        }
        prev = y;
    }
    for &i in &ecg_pixels {
        stat[i] = 200;
    }

    // Text layout.
    let mut drawn = Vec::new();
    let mut text_pixels: Vec<(usize, usize)> = Vec::new();
    for (k, spec) in scene.texts.iter().enumerate() {
        let full = format!("{}{}", spec.prefix, spec.value);
        let max_chars = cols.saturating_sub(2 * margin) / (8 * scale);
        let shown: String = full.chars().take(max_chars).collect();
        let width = text::text_width(&shown, scale);
        let (x, y) = match spec.placement {
            Placement::HeaderLeft(l) => (margin, margin + l * line_h),
            Placement::HeaderRight(l) => (cols.saturating_sub(margin + width), margin + l * line_h),
            Placement::InSector => {
                // Low in the sector, either straddling its left or right edge or inside it.
                let depth = rng.range(0.55, 0.85) * rs;
                let y = (apex_y + depth) as usize;
                let half_w = depth * tan_half;
                let x = match rng.below(3) {
                    0 => apex_x - half_w - width as f64 * 0.4,
                    1 => apex_x + half_w - width as f64 * 0.6,
                    _ => apex_x - width as f64 / 2.0 + rng.range(-0.2, 0.2) * half_w,
                };
                (
                    x.clamp(0.0, cols.saturating_sub(width) as f64) as usize,
                    y.min(rows - 8 * scale),
                )
            }
        };
        let (px, _) = text::glyph_pixels(&shown, x, y, scale, cols, rows);
        text_pixels.extend(px);
        let prefix_chars = spec.prefix.chars().count().min(shown.chars().count());
        let value_text: String = shown.chars().skip(prefix_chars).collect();
        let vx = x + prefix_chars * 8 * scale;
        let (_, value_box) = text::glyph_pixels(&value_text, vx, y, scale, cols, rows);
        let in_sector = (value_box.y..value_box.y + value_box.height).any(|yy| {
            (value_box.x..value_box.x + value_box.width).any(|xx| sector_mask[yy * cols + xx] == 1)
        });
        drawn.push(DrawnText {
            spec: k,
            text: value_text,
            value_box,
            in_sector,
        });
    }

    // Frame-to-frame noise from a table, read at a random offset per frame.
    const NOISE_LEN: usize = 1 << 18;
    let noise: Vec<i16> = (0..NOISE_LEN)
        .map(|_| (rng.normal() * site.noise_sd as f64).round() as i16)
        .collect();

    let samples = if scene.rgb { 3 } else { 1 };
    let frame_len = rows * cols;
    let mut pixels = vec![0u8; scene.frames * frame_len * samples];
    let mut lv_mask = vec![0u8; scene.frames * frame_len];
    let mut lv_ellipse = Vec::with_capacity(scene.frames);
    let mut phases = Vec::with_capacity(scene.frames);
    let mut gray = vec![0u8; frame_len];
    let edge = 1.5f32;
    let bw = bx1.saturating_sub(bx0);
    let mut blood_w = vec![0f32; bw * by1.saturating_sub(by0)];
    let mut myo_w = vec![0f32; blood_w.len()];
    for f in 0..scene.frames {
        let t = f as f64 / scene.fps;
        let phase = (t / beat_s + phase0).rem_euclid(1.0);
        phases.push(phase);
        let s = contraction(phase);
        let now: Vec<(Ellipse, f64)> = chambers.iter().map(|c| (c.at(s, ef), c.wall)).collect();
        lv_ellipse.push(now[0].0);
        gray.copy_from_slice(&stat);
        let mask = &mut lv_mask[f * frame_len..(f + 1) * frame_len];
        // Per chamber, visit only its own bounding box and keep the strongest blood and wall
        // weights per pixel; then map the union box once.
        blood_w.fill(0.0);
        myo_w.fill(0.0);
        for (k, (e, wall)) in now.iter().enumerate() {
            let (sin, cos) = (e.angle.sin() as f32, e.angle.cos() as f32);
            let (inv_a, inv_b) = (1.0 / e.a as f32, 1.0 / e.b as f32);
            let wall_q = (*wall / e.b) as f32;
            let edge_q = edge / e.b as f32;
            let outer = 1.0 + wall_q + edge_q;
            let (big_a, big_b) = (e.a * outer as f64, e.b * outer as f64);
            let (s64, c64) = (sin as f64, cos as f64);
            let half_x = ((big_b * c64).powi(2) + (big_a * s64).powi(2)).sqrt() + 1.0;
            let half_y = ((big_b * s64).powi(2) + (big_a * c64).powi(2)).sqrt() + 1.0;
            let x0 = ((e.cx - half_x).floor().max(bx0 as f64) as usize).min(bx1);
            let x1 = ((e.cx + half_x).ceil().max(0.0) as usize).clamp(x0, bx1);
            let y0 = ((e.cy - half_y).floor().max(by0 as f64) as usize).min(by1);
            let y1 = ((e.cy + half_y).ceil().max(0.0) as usize).clamp(y0, by1);
            let (cx, cy) = (e.cx as f32, e.cy as f32);
            for y in y0..y1 {
                let dy = y as f32 + 0.5 - cy;
                let row = (y - by0) * bw;
                for x in x0..x1 {
                    let dx = x as f32 + 0.5 - cx;
                    let u = (dx * cos + dy * sin) * inv_b;
                    let v = (-dx * sin + dy * cos) * inv_a;
                    let q2 = u * u + v * v;
                    if q2 > outer * outer {
                        continue;
                    }
                    let q = q2.sqrt();
                    if k == 0 && q < 1.0 && sector_mask[y * cols + x] == 1 {
                        mask[y * cols + x] = 1;
                    }
                    let rim = smoothstep(1.0 - edge_q, 1.0 + edge_q, q);
                    let inside = 1.0 - rim;
                    let muscle =
                        rim * (1.0 - smoothstep(1.0 + wall_q - edge_q, 1.0 + wall_q + edge_q, q));
                    let j = row + (x - bx0);
                    blood_w[j] = blood_w[j].max(inside);
                    myo_w[j] = myo_w[j].max(muscle);
                }
            }
        }
        for y in by0..by1 {
            for x in bx0..bx1 {
                let j = (y - by0) * bw + (x - bx0);
                let (blood, myo) = (blood_w[j], myo_w[j]);
                let i = y * cols + x;
                if (blood > 0.0 || myo > 0.0) && sector_mask[i] == 1 {
                    let mut level = TISSUE_DB + (MYOCARDIUM_DB - TISSUE_DB) * myo;
                    level += (BLOOD_DB - level) * blood;
                    gray[i] = map(base[i] + level);
                }
            }
        }
        // Temporal noise inside the sector.
        let offset = rng.below(NOISE_LEN as u64) as usize;
        for (i, g) in gray.iter_mut().enumerate() {
            if sector_mask[i] == 1 {
                let n = noise[(offset + i) & (NOISE_LEN - 1)];
                *g = (*g as i16 + n).clamp(0, 255) as u8;
            }
        }
        // ECG cursor at the current time.
        let cursor_x = ex0 + ((t / duration) * (ex1 - ex0) as f64) as usize;
        let cursor_x = cursor_x.min(ex1.saturating_sub(1));
        for y in rows - ecg_h..rows {
            gray[y * cols + cursor_x] = 255;
        }
        let out = &mut pixels[f * frame_len * samples..(f + 1) * frame_len * samples];
        if scene.rgb {
            for (o, g) in out.chunks_exact_mut(3).zip(gray.iter()) {
                o.fill(*g);
            }
            for &i in &ecg_pixels {
                out[3 * i..3 * i + 3].copy_from_slice(&[40, 220, 60]);
            }
            for &(x, y) in &text_pixels {
                let i = y * cols + x;
                out[3 * i..3 * i + 3].copy_from_slice(&site.text_rgb);
            }
        } else {
            out.copy_from_slice(&gray);
            for &(x, y) in &text_pixels {
                out[y * cols + x] = 255;
            }
        }
    }

    // End-diastolic/systolic frames: the frame nearest each ED/ES instant inside the clip.
    let nearest = |target: f64| -> Vec<usize> {
        let mut out = Vec::new();
        let first = (phase0 - target).rem_euclid(1.0);
        // Times (in beats from the first frame) when the phase equals `target`.
        let mut beat = (1.0 - first).rem_euclid(1.0);
        let beats = duration / beat_s;
        while beat <= beats {
            let frame = (beat * beat_s * scene.fps).round() as usize;
            if frame < scene.frames {
                out.push(frame);
            }
            beat += 1.0;
        }
        out
    };
    let volumes: Vec<f64> = lv_ellipse.iter().map(|e| e.a * e.b * e.b).collect();
    let vmax = volumes.iter().cloned().fold(f64::MIN, f64::max);
    let vmin = volumes.iter().cloned().fold(f64::MAX, f64::min);

    let x0 = (apex_x - radius * half.sin()).floor().max(0.0) as u32;
    let x1 = ((apex_x + radius * half.sin()).ceil() as u32).min(cols as u32 - 1);
    let y0 = if site.region_includes_header {
        0
    } else {
        apex_y.floor() as u32
    };
    let y1 = ((apex_y + radius).ceil() as u32).min(rows as u32 - 1);
    let region = Region {
        x0,
        y0,
        x1,
        y1,
        delta_cm: site.depth_cm / radius,
        reference_x: (apex_x.round() as i64 - x0 as i64) as i32,
        reference_y: (apex_y.round() as i64 - y0 as i64) as i32,
    };

    Rendered {
        pixels,
        lv_mask,
        lv_ellipse,
        phase: phases,
        ed_frames: nearest(0.0),
        es_frames: nearest(ES_PHASE),
        clip_ef: 100.0 * (1.0 - vmin / vmax),
        texts: drawn,
        region,
        sector_mask,
    }
}

/// Separable box blur of half-widths `rx` (columns) and `ry` (rows); sums, not means.
fn box_blur(src: &[f32], rows: usize, cols: usize, rx: usize, ry: usize) -> Vec<f32> {
    let mut tmp = vec![0f32; src.len()];
    for y in 0..rows {
        let row = &src[y * cols..(y + 1) * cols];
        let out = &mut tmp[y * cols..(y + 1) * cols];
        let mut acc: f32 = row[..rx.min(cols)].iter().sum();
        for x in 0..cols {
            if x + rx < cols {
                acc += row[x + rx];
            }
            if x > rx {
                acc -= row[x - rx - 1];
            }
            out[x] = acc;
        }
    }
    let mut dst = vec![0f32; src.len()];
    for x in 0..cols {
        let mut acc: f32 = (0..ry.min(rows)).map(|y| tmp[y * cols + x]).sum();
        for y in 0..rows {
            if y + ry < rows {
                acc += tmp[(y + ry) * cols + x];
            }
            if y > ry {
                acc -= tmp[(y - ry - 1) * cols + x];
            }
            dst[y * cols + x] = acc;
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites;

    fn scene<'a>(site: &'a Site, texts: &'a [TextSpec], rgb: bool) -> Scene<'a> {
        Scene {
            rows: 240,
            columns: 320,
            frames: 40,
            fps: 50.0,
            heart_rate: 75.0,
            ef: 35.0,
            rgb,
            site,
            seed: 7,
            texts,
        }
    }

    #[test]
    fn contraction_has_its_extremes_at_ed_and_es() {
        assert!(contraction(0.0).abs() < 1e-12);
        assert!((contraction(ES_PHASE) - 1.0).abs() < 1e-12);
        for k in 0..100 {
            let s = contraction(k as f64 / 100.0);
            assert!((-1e-9..=1.0 + 1e-9).contains(&s));
        }
    }

    #[test]
    fn ellipse_volumes_give_the_ef() {
        let site = sites::site(0);
        let r = render(&scene(&site, &[], false));
        assert!((r.clip_ef - 35.0).abs() < 1.5, "clip EF {}", r.clip_ef);
        assert!(!r.ed_frames.is_empty() && !r.es_frames.is_empty());
        // The mask area follows the ellipse area (π a b) within rasterisation error.
        let frame_len = 240 * 320;
        for f in [0, 10, 20] {
            let area: usize = r.lv_mask[f * frame_len..(f + 1) * frame_len]
                .iter()
                .map(|&m| m as usize)
                .sum();
            let e = r.lv_ellipse[f];
            let expected = std::f64::consts::PI * e.a * e.b;
            assert!(
                (area as f64 - expected).abs() / expected < 0.05,
                "{area} vs {expected}"
            );
        }
    }

    #[test]
    fn blood_is_dark_and_muscle_bright() {
        let site = sites::site(0);
        let r = render(&scene(&site, &[], false));
        let frame_len = 240 * 320;
        let (mut inside, mut n_in, mut sector, mut n_sec) = (0f64, 0f64, 0f64, 0f64);
        for i in 0..frame_len {
            if r.lv_mask[i] == 1 {
                inside += r.pixels[i] as f64;
                n_in += 1.0;
            } else if r.sector_mask[i] == 1 {
                sector += r.pixels[i] as f64;
                n_sec += 1.0;
            }
        }
        assert!(
            inside / n_in + 40.0 < sector / n_sec,
            "{} {}",
            inside / n_in,
            sector / n_sec
        );
    }

    #[test]
    fn text_is_drawn_where_reported() {
        let site = sites::site(1);
        let texts = [
            TextSpec {
                prefix: String::new(),
                value: "HOLLOWAY, MIRIAM".into(),
                placement: Placement::HeaderLeft(0),
            },
            TextSpec {
                prefix: "DOB ".into(),
                value: "1956-03-04".into(),
                placement: Placement::HeaderRight(1),
            },
            TextSpec {
                prefix: String::new(),
                value: "12345678".into(),
                placement: Placement::InSector,
            },
        ];
        let r = render(&scene(&site, &texts, true));
        assert_eq!(r.texts.len(), 3);
        assert!(!r.texts[0].in_sector && !r.texts[1].in_sector);
        assert!(r.texts[2].in_sector);
        assert_eq!(r.texts[1].text, "1956-03-04");
        let last = 39 * 240 * 320 * 3;
        for t in &r.texts {
            let b = t.value_box;
            let lit = (b.y..b.y + b.height)
                .flat_map(|y| (b.x..b.x + b.width).map(move |x| (x, y)))
                .filter(|&(x, y)| r.pixels[last + 3 * (y * 320 + x)..][..3] == site.text_rgb)
                .count();
            assert!(lit > 10 * t.text.len(), "{} lit pixels for {}", lit, t.text);
        }
    }
}
