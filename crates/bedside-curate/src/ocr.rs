//! Burned-in text inside the scan area: find static text, read it with Tesseract, and keep the
//! boxes of words that match the file's own identifiers (or every word, by policy).
//!
//! Text overlays do not move while the image under them does, so only pixels that are both
//! static over the cine and bright are candidates; they are grouped into line boxes and only
//! those crops are read (upscaled, since scanner fonts are small, and inverted to dark text on
//! light, as Tesseract reads best). A line that crosses the edge of the kept area is read whole.
//! Single-frame images are read whole.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::scan_area::Rect;

/// Which recognised words are blanked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextPolicy {
    /// Words that match the deny list or look like dates, times or record numbers.
    #[default]
    PhiOnly,
    /// Every recognised word.
    AllText,
}

/// Words that label an identifier on screen (normalised): the line holding one is masked.
const LABELS: [&str; 9] = [
    "ID",
    "MRN",
    "DOB",
    "PID",
    "NAME",
    "PATIENT",
    "BIRTH",
    "ACC",
    "ACCESSION",
];

/// Identifiers of one file, in the forms scanners print them.
#[derive(Debug, Clone, Default)]
pub struct DenyList {
    words: Vec<String>,
    digit_strings: Vec<String>,
}

fn normalise(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_uppercase()
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Vec<String> {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok().map(|s| s.to_string()))
        .map(|s| {
            s.split('\\')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

impl DenyList {
    /// Builds the deny list from a header that still holds its identifiers: names (each
    /// component), IDs, accession and study IDs, institution words, birth and study dates.
    pub fn from_header(obj: &InMemDicomObject) -> DenyList {
        let mut d = DenyList::default();
        for tag in [
            tags::PATIENT_NAME,
            tags::OTHER_PATIENT_NAMES,
            tags::REFERRING_PHYSICIAN_NAME,
            tags::PERFORMING_PHYSICIAN_NAME,
            tags::OPERATORS_NAME,
        ] {
            for v in text(obj, tag) {
                for part in v.split(['^', ' ', ',']) {
                    let n = normalise(part);
                    if n.len() >= 3 {
                        d.words.push(n);
                    }
                }
            }
        }
        for tag in [
            tags::PATIENT_ID,
            tags::ACCESSION_NUMBER,
            tags::STUDY_ID,
            Tag(0x0010, 0x1000),
        ] {
            for v in text(obj, tag) {
                let n = normalise(&v);
                if n.len() >= 3 {
                    d.words.push(n);
                }
            }
        }
        if let Ok(seq) = obj.element(tags::OTHER_PATIENT_I_DS_SEQUENCE)
            && let Some(items) = seq.items()
        {
            for item in items {
                for v in text(item, tags::PATIENT_ID) {
                    d.words.push(normalise(&v));
                }
            }
        }
        for tag in [tags::INSTITUTION_NAME, tags::INSTITUTION_ADDRESS] {
            for v in text(obj, tag) {
                for part in v.split([' ', ',']) {
                    let n = normalise(part);
                    if n.len() >= 4 {
                        d.words.push(n);
                    }
                }
            }
        }
        for tag in [
            tags::PATIENT_BIRTH_DATE,
            tags::STUDY_DATE,
            tags::ACQUISITION_DATE,
            tags::CONTENT_DATE,
        ] {
            for v in text(obj, tag) {
                if v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit()) {
                    let (y, m, dd) = (&v[..4], &v[4..6], &v[6..8]);
                    for form in [
                        format!("{y}{m}{dd}"),
                        format!("{m}{dd}{y}"),
                        format!("{dd}{m}{y}"),
                    ] {
                        d.digit_strings.push(form);
                    }
                }
            }
        }
        d.words.sort();
        d.words.dedup();
        d
    }

    /// Whether a recognised word should be blanked under the PHI-only policy.
    pub fn matches(&self, word: &str) -> bool {
        // Small scanner fonts make Tesseract read a zero as '@'.
        let zeroed;
        let word = if word.contains('@') {
            zeroed = word.replace('@', "0");
            zeroed.as_str()
        } else {
            word
        };
        let n = normalise(word);
        if n.is_empty() {
            return false;
        }
        // A label that introduces an identifier: the line it stands in is one.
        if LABELS.contains(&n.as_str()) {
            return true;
        }
        let digits: String = word.chars().filter(|c| c.is_ascii_digit()).collect();
        // Generic patterns: long digit runs (record numbers, dates), dates and times with
        // separators, whatever the file says.
        if digits.len() >= 6 {
            return true;
        }
        // A bare number of four or more digits on an image is an ID, a date or a time far more
        // often than a setting, and OCR often misreads a digit or two of it.
        if digits.len() >= 4 && digits.len() == n.len() {
            return true;
        }
        // The same with one character misread as a letter ("F4832", "W1955").
        if digits.len() >= 4 && digits.len() + 1 >= n.len() {
            return true;
        }
        if word.contains(':') && digits.len() >= 3 {
            return true;
        }
        let separators = word
            .chars()
            .filter(|c| matches!(c, '/' | '-' | '.' | ':'))
            .count();
        if separators >= 1 && digits.len() >= 4 && digits.len() * 2 >= n.len() {
            return true;
        }
        if self
            .digit_strings
            .iter()
            .any(|d| digits.len() >= 6 && d.contains(&digits))
        {
            return true;
        }
        self.words.iter().any(|w| {
            n == *w
                || (w.len() >= 4 && n.contains(w.as_str()))
                || (n.len() >= 4 && w.contains(n.as_str()))
                // A word cut by the edge of the scan area keeps its start or its end.
                || (n.len() >= 3 && w.len() >= 5 && (w.starts_with(n.as_str()) || w.ends_with(n.as_str())))
                // OCR confuses a letter or two (N/H, O/0, V/U) in small scanner fonts.
                || (w.len() >= 5 && edit_distance(&n, w) <= if w.len() >= 8 { 2 } else { 1 })
                || (n.len() >= 4 && w.len() >= 5 && cut_match(&n, w))
                // Names joined by a misread separator (LAST^FIRST read as one word) hold the
                // name, perhaps with a letter misread.
                || (w.len() >= 5
                    && n.len() > w.len()
                    && (0..=n.len() - w.len()).any(|i| edit_distance(&n[i..i + w.len()], w) <= 1))
        })
    }

    /// Number of identifying entries in the list (words and date forms).
    pub fn len(&self) -> usize {
        self.words.len() + self.digit_strings.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `n` reads as the start or the end of `w` with one letter misread, missing or
/// added: a word cut by the edge of the kept area, read by an OCR that confuses a letter.
fn cut_match(n: &str, w: &str) -> bool {
    (n.len().saturating_sub(1)..=n.len() + 1)
        .filter(|&k| k >= 3 && k < w.len())
        .any(|k| edit_distance(n, &w[w.len() - k..]) <= 1 || edit_distance(n, &w[..k]) <= 1)
}

/// Levenshtein distance between two ASCII strings (`usize::MAX` when the lengths differ by
/// more than two, which no accepted match allows).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 2 {
        return usize::MAX;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A recognised word with its box in image coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The text as read.
    pub text: String,
    /// Text line the word belongs to (block, paragraph, line as Tesseract numbers them).
    pub line: (u32, u32, u32),
    /// Its box.
    pub rect: Rect,
    /// Tesseract's confidence (0–100).
    pub confidence: f32,
}

/// Boxes of static, bright content, one per text line with pixels inside the kept area (`keep`
/// is 1 there; a line that crosses its edge is boxed whole), and an image that holds only the
/// static bright content (everything moving or dark set to black) for the OCR to read.
pub fn static_text_boxes(
    frames: &[&[u8]],
    keep: &[u8],
    rows: usize,
    columns: usize,
) -> (Vec<Rect>, Vec<u8>) {
    let n = rows * columns;
    let Some(first) = frames.first() else {
        return (Vec::new(), Vec::new());
    };
    // Candidates in the whole frame, so that a line cut by the edge of the kept area is read
    // whole (its fragment inside, "-01-06" of a date, identifies nothing); only lines with
    // pixels inside the kept area are read, the rest is blanked anyway.
    let mut candidate: Vec<bool> = first.iter().map(|&v| v >= 140).collect();
    for f in frames.iter().skip(1) {
        for (i, c) in candidate.iter_mut().enumerate() {
            // Lossy compression makes static text flicker by a few grey levels.
            if *c && f[i].abs_diff(first[i]) > 16 {
                *c = false;
            }
        }
    }
    drop_lone_pixels(&mut candidate, rows, columns);
    let text_image: Vec<u8> = (0..n)
        .map(|i| if candidate[i] { first[i] } else { 0 })
        .collect();
    let boxes = line_boxes(&candidate, rows, columns)
        .into_iter()
        .filter(|b| {
            (b.y0..=b.y1).any(|y| {
                (b.x0..=b.x1).any(|x| keep[y * columns + x] == 1 && candidate[y * columns + x])
            })
        })
        .collect();
    (boxes, text_image)
}

/// Groups candidate text pixels (`[row * columns + column]`, lone pixels already dropped) into
/// line boxes: letters joined into words, words into lines; specks and solid blobs skipped.
pub fn line_boxes(candidate: &[bool], rows: usize, columns: usize) -> Vec<Rect> {
    let n = rows * columns;
    // Join the letters of a word: dilate horizontally by 4 pixels and vertically by 1.
    let mut grown = vec![false; n];
    for y in 0..rows {
        for x in 0..columns {
            if candidate[y * columns + x] {
                for yy in y.saturating_sub(1)..(y + 2).min(rows) {
                    for xx in x.saturating_sub(4)..(x + 5).min(columns) {
                        grown[yy * columns + xx] = true;
                    }
                }
            }
        }
    }
    let mut boxes = Vec::new();
    for members in crate::scan_area::components(&grown, columns, rows) {
        let (mut x0, mut y0, mut x1, mut y1) = (columns, rows, 0, 0);
        // The box of the strokes themselves; the dilation only joined them.
        for &i in members.iter().filter(|&&i| candidate[i]) {
            let (y, x) = (i / columns, i % columns);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
        let count = members.len();
        let lit = members.iter().filter(|&&i| candidate[i]).count();
        // Text lines are wider than tall and only partly lit; skip specks and solid blobs.
        let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
        if lit >= 12 && w >= 6 && h >= 5 && h <= rows / 4 && (lit as f64) < 0.8 * count as f64 {
            boxes.push(Rect {
                x0: x0.saturating_sub(2),
                y0: y0.saturating_sub(2),
                x1: (x1 + 2).min(columns - 1),
                y1: (y1 + 2).min(rows - 1),
            });
        }
    }
    merge_lines(boxes)
}

/// Drops candidate pixels with fewer than two candidate neighbours: strokes are connected, a
/// lone bright pixel (saturated speckle) is not text.
pub fn drop_lone_pixels(candidate: &mut [bool], rows: usize, columns: usize) {
    let lone: Vec<usize> = (0..rows * columns)
        .filter(|&i| {
            if !candidate[i] {
                return false;
            }
            let (y, x) = (i / columns, i % columns);
            let mut neighbours = 0;
            for yy in y.saturating_sub(1)..=(y + 1).min(rows - 1) {
                for xx in x.saturating_sub(1)..=(x + 1).min(columns - 1) {
                    neighbours += (candidate[yy * columns + xx] && (yy, xx) != (y, x)) as usize;
                }
            }
            neighbours < 2
        })
        .collect();
    for i in lone {
        candidate[i] = false;
    }
}

/// Merges word boxes into line boxes: boxes that share most of their height and are separated
/// by less than twice that height.
fn merge_lines(mut boxes: Vec<Rect>) -> Vec<Rect> {
    boxes.sort_by_key(|b| (b.y0, b.x0));
    let mut merged = true;
    while merged {
        merged = false;
        'outer: for i in 0..boxes.len() {
            for j in i + 1..boxes.len() {
                let (a, b) = (boxes[i], boxes[j]);
                let overlap = a.y1.min(b.y1) as i64 - a.y0.max(b.y0) as i64 + 1;
                let h = (a.y1 - a.y0 + 1).min(b.y1 - b.y0 + 1) as i64;
                let gap = (a.x0.max(b.x0) as i64) - (a.x1.min(b.x1) as i64);
                if overlap * 2 >= h && gap <= 2 * h {
                    boxes[i] = Rect {
                        x0: a.x0.min(b.x0),
                        y0: a.y0.min(b.y0),
                        x1: a.x1.max(b.x1),
                        y1: a.y1.max(b.y1),
                    };
                    boxes.remove(j);
                    merged = true;
                    break 'outer;
                }
            }
        }
    }
    boxes
}

/// Why text could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OcrError {
    /// Tesseract could not start (missing language data?).
    #[error("OCR engine unavailable: {0}")]
    Engine(String),
    /// Recognition failed.
    #[error("OCR failed: {0}")]
    Recognise(String),
}

#[cfg(feature = "ocr")]
thread_local! {
    static ENGINE: std::cell::RefCell<Option<tesseract::Tesseract>> = const { std::cell::RefCell::new(None) };
}

/// How Tesseract is asked to lay out what it is given.
#[cfg(feature = "ocr")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Segmentation {
    /// One line of text (a line box found from the pixels): no page layout analysis, which
    /// is most of Tesseract's time on a small crop.
    Line,
    /// Sparse text anywhere (a whole image).
    Sparse,
}

/// Readings already made in this process, by the exact pixels read: the same overlay (a name,
/// an ID, a hospital) stands pixel for pixel on every cine of a study, and Tesseract gives the
/// same answer for the same pixels. Keyed by SHA-256, so two crops never share a reading unless
/// they are identical.
#[cfg(feature = "ocr")]
type ReadingKey = (Segmentation, usize, usize, [u8; 32]);

#[cfg(feature = "ocr")]
static READINGS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<ReadingKey, std::sync::Arc<str>>>,
> = std::sync::LazyLock::new(Default::default);

/// Readings kept at most; the cache is emptied when full (a run rarely has this many distinct
/// overlays, and a reading is a few hundred bytes).
#[cfg(feature = "ocr")]
const MAX_READINGS: usize = 8192;

/// Reads the words in `rect` of a grey frame, upscaling small text first; Tesseract looks for
/// sparse text anywhere in the rectangle.
#[cfg(feature = "ocr")]
pub fn read_words(frame: &[u8], columns: usize, rect: Rect) -> Result<Vec<Word>, OcrError> {
    read(frame, columns, rect, Segmentation::Sparse)
}

/// Reads the words of one text line (a box from [`line_boxes`]) of a grey frame: as
/// [`read_words`], but Tesseract takes the crop as a single line.
#[cfg(feature = "ocr")]
pub fn read_line(frame: &[u8], columns: usize, rect: Rect) -> Result<Vec<Word>, OcrError> {
    read(frame, columns, rect, Segmentation::Line)
}

#[cfg(feature = "ocr")]
fn read(
    frame: &[u8],
    columns: usize,
    rect: Rect,
    segmentation: Segmentation,
) -> Result<Vec<Word>, OcrError> {
    use sha2::{Digest, Sha256};
    let (w, h) = (rect.x1 - rect.x0 + 1, rect.y1 - rect.y0 + 1);
    // Tesseract reads best with letters about 30 pixels tall.
    let scale = ((36.0 / h as f64).round() as usize).clamp(1, 4);
    let pad = 8 * scale;
    let (sw, sh) = (w * scale + 2 * pad, h * scale + 2 * pad);
    // A line crop (light candidate text on black) is inverted: dark text on a light page, as
    // Tesseract's line recogniser was trained. Given light text on black it read most lines
    // twice (the second time inverted, after a poor first reading). Whole images are read as
    // they are, text of either polarity.
    let invert = segmentation == Segmentation::Line;
    let (background, flip) = if invert { (255u8, 255u8) } else { (0, 0) };
    let mut crop = vec![background; sw * sh];
    for y in 0..h * scale {
        let src = &frame[(rect.y0 + y / scale) * columns..][..columns];
        let dst = &mut crop[(y + pad) * sw + pad..][..w * scale];
        for (x, d) in dst.iter_mut().enumerate() {
            *d = flip ^ src[rect.x0 + x / scale];
        }
    }
    let key: ReadingKey = (segmentation, sw, sh, Sha256::digest(&crop).into());
    let cached = READINGS.lock().ok().and_then(|m| m.get(&key).cloned());
    let tsv = match cached {
        Some(tsv) => tsv,
        None => {
            let tsv: std::sync::Arc<str> = recognise(&crop, sw, sh, segmentation)?.into();
            if let Ok(mut m) = READINGS.lock() {
                if m.len() >= MAX_READINGS {
                    m.clear();
                }
                m.insert(key, tsv.clone());
            }
            tsv
        }
    };
    let mut words = Vec::new();
    for line in tsv.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 12 || f[0] != "5" {
            continue;
        }
        let num = |k: usize| f[k].trim().parse::<f64>().unwrap_or(0.0);
        let word = f[11].trim();
        if word.is_empty() {
            continue;
        }
        let to_image =
            |v: f64, off: usize| (((v - pad as f64) / scale as f64).max(0.0) as usize) + off;
        let (left, top, width, height) = (num(6), num(7), num(8), num(9));
        let x0 = to_image(left, rect.x0).min(rect.x1);
        let y0 = to_image(top, rect.y0).min(rect.y1);
        let x1 = to_image(left + width, rect.x0).clamp(x0, rect.x1);
        let y1 = to_image(top + height, rect.y0).clamp(y0, rect.y1);
        let line = (num(2) as u32, num(3) as u32, num(4) as u32);
        words.push(Word {
            text: word.to_string(),
            line,
            rect: Rect { x0, y0, x1, y1 },
            confidence: num(10) as f32,
        });
    }
    Ok(words)
}

/// Runs this thread's Tesseract engine (made on first use) over a grey image; returns its TSV.
#[cfg(feature = "ocr")]
fn recognise(
    crop: &[u8],
    sw: usize,
    sh: usize,
    segmentation: Segmentation,
) -> Result<String, OcrError> {
    ENGINE.with(|cell| -> Result<String, OcrError> {
        let mut slot = cell.borrow_mut();
        let engine = match slot.take() {
            Some(e) => e,
            None => {
                let e = tesseract::Tesseract::new(None, Some("eng"))
                    .map_err(|e| OcrError::Engine(e.to_string()))?;
                // A fixed resolution keeps Tesseract from guessing (and saying so).
                e.set_variable("user_defined_dpi", "300")
                    .map_err(|e| OcrError::Engine(e.to_string()))?
            }
        };
        // Line crops come dark on light (see `read`): a second, inverted reading of a poorly
        // read line only costs time. Whole images keep it, for text of either polarity.
        let mut engine = engine
            .set_variable(
                "tessedit_do_invert",
                if segmentation == Segmentation::Line {
                    "0"
                } else {
                    "1"
                },
            )
            .map_err(|e| OcrError::Engine(e.to_string()))?;
        engine.set_page_seg_mode(match segmentation {
            Segmentation::Line => tesseract::PageSegMode::PsmSingleLine,
            Segmentation::Sparse => tesseract::PageSegMode::PsmSparseText,
        });
        let mut engine = engine
            .set_frame(crop, sw as i32, sh as i32, 1, sw as i32)
            .map_err(|e| OcrError::Recognise(e.to_string()))?
            .recognize()
            .map_err(|e| OcrError::Recognise(e.to_string()))?;
        let tsv = engine
            .get_tsv_text(0)
            .map_err(|e| OcrError::Recognise(e.to_string()));
        *slot = Some(engine);
        tsv
    })
}

/// Frees the OCR engines of every worker thread (and of this one), so that nothing of
/// Tesseract outlives a run.
#[cfg(feature = "ocr")]
pub fn release_engines() {
    rayon::broadcast(|_| ENGINE.with(|cell| drop(cell.borrow_mut().take())));
    ENGINE.with(|cell| drop(cell.borrow_mut().take()));
    if let Ok(mut m) = READINGS.lock() {
        m.clear();
    }
}

/// Without the `ocr` feature there are no engines to free.
#[cfg(not(feature = "ocr"))]
pub fn release_engines() {}

/// Without the `ocr` feature there is no engine.
#[cfg(not(feature = "ocr"))]
pub fn read_words(_frame: &[u8], _columns: usize, _rect: Rect) -> Result<Vec<Word>, OcrError> {
    Err(OcrError::Engine("built without the `ocr` feature".into()))
}

/// Without the `ocr` feature there is no engine.
#[cfg(not(feature = "ocr"))]
pub fn read_line(_frame: &[u8], _columns: usize, _rect: Rect) -> Result<Vec<Word>, OcrError> {
    Err(OcrError::Engine("built without the `ocr` feature".into()))
}

/// What the OCR stage found in one image.
#[derive(Debug, Clone, Default)]
pub struct TextFindings {
    /// Pixels to blank, `[row * columns + column]`: the strokes of matched lines and a 2-pixel
    /// halo (lossy compression smears strokes), not whole rectangles, so the image under and
    /// around the text is kept.
    pub blank: Vec<bool>,
    /// Words read.
    pub words: usize,
    /// Lines blanked.
    pub lines: usize,
    /// The boxes of the blanked lines, grown by the halo: no pixel outside them changes.
    pub boxes: Vec<Rect>,
}

/// Finds the text to blank in a cine: static text in the kept area, read and matched.
pub fn find_text(
    frames: &[&[u8]],
    keep: &[u8],
    rows: usize,
    columns: usize,
    deny: &DenyList,
    policy: TextPolicy,
) -> Result<TextFindings, OcrError> {
    let n = rows * columns;
    let Some(first) = frames.first() else {
        return Ok(TextFindings::default());
    };
    let (regions, text_image) = if frames.len() >= 2 {
        static_text_boxes(frames, keep, rows, columns)
    } else {
        let bright: Vec<u8> = (0..n)
            .map(|i| {
                if keep[i] == 1 && first[i] >= 140 {
                    first[i]
                } else {
                    0
                }
            })
            .collect();
        (
            vec![Rect {
                x0: 0,
                y0: 0,
                x1: columns - 1,
                y1: rows - 1,
            }],
            bright,
        )
    };
    let mut found = TextFindings {
        blank: vec![false; n],
        ..TextFindings::default()
    };
    for r in regions {
        let words = if frames.len() >= 2 {
            read_line(&text_image, columns, r)?
        } else {
            read_words(&text_image, columns, r)?
        };
        found.words += words.len();
        // A match blanks the whole line it stands in (the line as found from the pixels, which
        // does not depend on how the OCR split it): names, addresses and date-times are split
        // into words, and a half-masked line still identifies.
        let matched = |w: &Word| policy == TextPolicy::AllText || deny.matches(&w.text);
        // The lines to blank: with a cine, the whole line as found from the static pixels (it
        // does not depend on how the OCR split it); with a single frame, the OCR's own lines,
        // since every bright pixel is a candidate there.
        let lines: Vec<Rect> = if frames.len() >= 2 {
            if words.iter().any(matched) {
                vec![r]
            } else {
                Vec::new()
            }
        } else {
            let mut keys: Vec<(u32, u32, u32)> = words
                .iter()
                .filter(|w| matched(w))
                .map(|w| w.line)
                .collect();
            keys.sort();
            keys.dedup();
            keys.iter()
                .filter_map(|k| {
                    words
                        .iter()
                        .filter(|w| w.line == *k)
                        .map(|w| w.rect)
                        .reduce(|a, b| Rect {
                            x0: a.x0.min(b.x0),
                            y0: a.y0.min(b.y0),
                            x1: a.x1.max(b.x1),
                            y1: a.y1.max(b.y1),
                        })
                })
                .collect()
        };
        for line in lines {
            found.lines += 1;
            found.boxes.push(Rect {
                x0: line.x0.saturating_sub(2),
                y0: line.y0.saturating_sub(2),
                x1: (line.x1 + 2).min(columns - 1),
                y1: (line.y1 + 2).min(rows - 1),
            });
            for y in line.y0..=line.y1 {
                for x in line.x0..=line.x1 {
                    if text_image[y * columns + x] == 0 {
                        continue;
                    }
                    for yy in y.saturating_sub(2)..=(y + 2).min(rows - 1) {
                        for xx in x.saturating_sub(2)..=(x + 2).min(columns - 1) {
                            found.blank[yy * columns + xx] = true;
                        }
                    }
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bedside_dicom::elements::put_str;
    use dicom_core::VR;

    #[test]
    fn deny_list_matches_identifiers_and_patterns_only() {
        let mut obj = InMemDicomObject::new_empty();
        put_str(&mut obj, tags::PATIENT_NAME, VR::PN, "HARGREAVES^KENNETH");
        put_str(
            &mut obj,
            tags::OTHER_PATIENT_NAMES,
            VR::PN,
            "NORTHCOTT^ROSALIND\\LINDQVIST^ANNA",
        );
        put_str(&mut obj, tags::PATIENT_ID, VR::LO, "91762706");
        put_str(&mut obj, tags::PATIENT_BIRTH_DATE, VR::DA, "19560330");
        put_str(&mut obj, tags::INSTITUTION_NAME, VR::LO, "ST MARY HOSPITAL");
        let d = DenyList::from_header(&obj);
        for w in [
            "HARGREAVES,",
            "Kenneth",
            "91762706",
            "03/30/1956",
            "1956-03-30",
            "HOSPITAL",
            "12:04:55",
        ] {
            assert!(d.matches(w), "{w}");
        }
        for w in ["5486", "11:2", "HORTHCOTT,", "ROS", "LINDQUIST"] {
            assert!(d.matches(w), "{w}");
        }
        // Misreads of small fonts: '@' for a zero, a letter for a digit, a word cut by the
        // edge of the kept area with a letter misread, a name joined to the next one, a label.
        for w in [
            "@3/30",
            "F9176",
            "OSPITAI",
            "HARGREAVE5“KENNETH",
            "ID",
            "DOB:",
        ] {
            assert!(d.matches(w), "{w}");
        }
        for w in [
            "MI", "0.9", "TIS", "Gen", "THI", "Crd", "P21", "ST", "19", "2.5MHz", "16cm", "FR30",
        ] {
            assert!(!d.matches(w), "{w}");
        }
    }
}
