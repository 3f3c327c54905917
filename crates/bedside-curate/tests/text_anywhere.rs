//! Burned-in text outside ultrasound, on synthetic images whose every text pixel is known (drawn
//! with the phantom's 8×8 font): signed 16-bit CT, 12-bit MONOCHROME1, RGB and an 8-bit cine whose
//! overlay changes. The planted identifying lines are masked with what displays as black, the
//! other lines follow the policy, every pixel outside the reported boxes is unchanged, frames keep
//! their order, and an image with nothing to mask keeps its transfer syntax.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use bedside_curate::ocr::{DenyList, TextPolicy};
use bedside_curate::scan_area::Rect;
use bedside_curate::text_cleaning::{TextOptions, clean_text};
use bedside_phantom::text::glyph_pixels;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use dicom_pixeldata::PixelDecoder;

const ROWS: usize = 200;
const COLS: usize = 480;
const NAME: &str = "HARGREAVES KENNETH";
const DOB: &str = "DOB 03/30/1956";
const HARMLESS: &str = "PORTABLE";

/// Where each line is drawn (scale 2: 16-pixel letters).
fn lines() -> [(&'static str, usize, usize); 3] {
    [(NAME, 8, 6), (DOB, 8, 30), (HARMLESS, 320, 160)]
}

struct Image {
    modality: &'static str,
    photometric: &'static str,
    bits_stored: u16,
    signed: bool,
    spp: usize,
    frames: usize,
    /// Sample values, frame by frame, `[frame][pixel * spp + k]`.
    samples: Vec<Vec<i32>>,
    transfer_syntax: &'static str,
}

fn text_pixels(text: &str, x: usize, y: usize) -> Vec<usize> {
    glyph_pixels(text, x, y, 2, COLS, ROWS)
        .0
        .into_iter()
        .map(|(px, py)| py * COLS + px)
        .collect()
}

/// Smooth "anatomy" with texture, in `[lo, hi)`.
fn background(lo: i32, hi: i32, frame: usize) -> Vec<i32> {
    (0..ROWS * COLS)
        .map(|i| {
            let (y, x) = ((i / COLS) as i32, (i % COLS) as i32);
            let smooth = (x * 3 + y * 2 + frame as i32 * 5) % 97;
            let texture = ((x * 7919 + y * 104_729 + frame as i32 * 31) % 13) - 6;
            lo + ((smooth + texture).rem_euclid(97) * (hi - lo) / 97) * 6 / 10
        })
        .collect()
}

fn object(img: &Image) -> DefaultDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, v: &str| obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    put(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.7");
    put(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        "1.2.826.0.1.3680043.8.498.1",
    );
    put(tags::MODALITY, VR::CS, img.modality);
    put(tags::PATIENT_NAME, VR::PN, "HARGREAVES^KENNETH");
    put(tags::PATIENT_ID, VR::LO, "91762706");
    put(tags::PATIENT_BIRTH_DATE, VR::DA, "19560330");
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, img.photometric);
    let mut us = |tag, v: u16| obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
    us(tags::ROWS, ROWS as u16);
    us(tags::COLUMNS, COLS as u16);
    us(tags::SAMPLES_PER_PIXEL, img.spp as u16);
    let bits = if img.bits_stored > 8 { 16 } else { 8 };
    us(tags::BITS_ALLOCATED, bits);
    us(tags::BITS_STORED, img.bits_stored);
    us(tags::HIGH_BIT, img.bits_stored - 1);
    us(tags::PIXEL_REPRESENTATION, img.signed as u16);
    if img.spp == 3 {
        us(tags::PLANAR_CONFIGURATION, 0);
    }
    if img.frames > 1 {
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from(img.frames.to_string()),
        ));
    }
    let flat: Vec<i32> = img.samples.concat();
    let element = if bits == 8 {
        let mut bytes: Vec<u8> = flat.iter().map(|&v| v as u8).collect();
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(bytes.into()))
    } else {
        let words: Vec<u16> = flat.iter().map(|&v| v as i16 as u16).collect();
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(words.into()))
    };
    obj.put(element);
    obj.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(img.transfer_syntax)
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
            .media_storage_sop_instance_uid("1.2.826.0.1.3680043.8.498.1"),
    )
    .unwrap()
}

/// Decoded sample values, `[frame][pixel * spp + k]`, after a write and read back.
fn samples(obj: &DefaultDicomObject, img: &Image) -> Vec<Vec<i32>> {
    let mut bytes = Vec::new();
    obj.write_all(&mut bytes).unwrap();
    let back = dicom_object::from_reader(&bytes[128..]).unwrap();
    let d = back.decode_pixel_data().unwrap();
    let data = d.data();
    let per_frame = ROWS * COLS * img.spp;
    (0..img.frames)
        .map(|f| {
            (0..per_frame)
                .map(|i| {
                    let k = f * per_frame + i;
                    if img.bits_stored > 8 {
                        let w = u16::from_le_bytes([data[2 * k], data[2 * k + 1]]);
                        if img.signed {
                            w as i16 as i32
                        } else {
                            w as i32
                        }
                    } else {
                        data[k] as i32
                    }
                })
                .collect()
        })
        .collect()
}

fn masked(boxes: &[Rect]) -> Vec<bool> {
    let mut m = vec![false; ROWS * COLS];
    for b in boxes {
        for y in b.y0..=b.y1 {
            for x in b.x0..=b.x1 {
                m[y * COLS + x] = true;
            }
        }
    }
    m
}

fn deny(obj: &DefaultDicomObject) -> DenyList {
    DenyList::from_header(obj)
}

/// Runs the text pass and checks what every test needs: identifying lines masked with `fill`
/// in every frame, pixels outside the boxes unchanged, the harmless line kept or masked as the
/// policy says.
fn check(img: &Image, policy: TextPolicy, fill: &[i32]) -> Vec<Rect> {
    let mut obj = object(img);
    let options = TextOptions::new(deny(&obj), policy);
    let outcome = clean_text(&mut obj, &options).unwrap();
    assert!(outcome.changed);
    assert_eq!(obj.meta().transfer_syntax(), "1.2.840.10008.1.2.1");
    let after = samples(&obj, img);
    let m = masked(&outcome.boxes);
    let spp = img.spp;
    for (f, (a, b)) in img.samples.iter().zip(&after).enumerate() {
        for i in 0..ROWS * COLS {
            let (a, b) = (&a[i * spp..(i + 1) * spp], &b[i * spp..(i + 1) * spp]);
            if m[i] {
                assert_eq!(b, fill, "frame {f}: masked pixel {i} not black");
            } else {
                assert_eq!(a, b, "frame {f}: pixel {i} outside the boxes changed");
            }
        }
    }
    for (text, x, y) in lines() {
        let covered = text_pixels(text, x, y).iter().filter(|&&i| m[i]).count();
        let total = text_pixels(text, x, y).len();
        let want_masked = text != HARMLESS || policy == TextPolicy::AllText;
        if want_masked {
            assert_eq!(covered, total, "{text}: {covered}/{total} pixels masked");
        } else {
            assert_eq!(covered, 0, "{text} masked under the PHI policy");
        }
    }
    // Lines of text, not the image: nothing masked farther than a few pixels from a planted
    // line the policy selects.
    let mut near = vec![false; ROWS * COLS];
    for (text, x, y) in lines() {
        if text == HARMLESS && policy == TextPolicy::PhiOnly {
            continue;
        }
        let (_, b) = glyph_pixels(text, x, y, 2, COLS, ROWS);
        for yy in b.y.saturating_sub(6)..(b.y + b.height + 6).min(ROWS) {
            for xx in b.x.saturating_sub(6)..(b.x + b.width + 6).min(COLS) {
                near[yy * COLS + xx] = true;
            }
        }
    }
    let stray = (0..ROWS * COLS).filter(|&i| m[i] && !near[i]).count();
    assert_eq!(stray, 0, "{stray} pixels masked away from the planted text");
    outcome.boxes
}

fn draw(samples: &mut [i32], spp: usize, text: &str, x: usize, y: usize, value: i32) {
    for i in text_pixels(text, x, y) {
        for k in 0..spp {
            samples[i * spp + k] = value;
        }
    }
}

fn with_text(mut bg: Vec<i32>, spp: usize, value: i32) -> Vec<i32> {
    for (text, x, y) in lines() {
        draw(&mut bg, spp, text, x, y, value);
    }
    bg
}

#[test]
fn signed_ct_text_is_masked_with_the_smallest_value() {
    let bg = background(-1000, 1500, 0);
    let lo = *bg.iter().min().unwrap();
    let img = Image {
        modality: "CT",
        photometric: "MONOCHROME2",
        bits_stored: 16,
        signed: true,
        spp: 1,
        frames: 1,
        samples: vec![with_text(bg, 1, 3071)],
        transfer_syntax: "1.2.840.10008.1.2",
    };
    check(&img, TextPolicy::PhiOnly, &[lo]);
    check(&img, TextPolicy::AllText, &[lo]);
}

#[test]
fn monochrome1_text_is_masked_with_the_largest_value() {
    // MONOCHROME1 shows low values bright: the text is stored at 0, black is the maximum.
    let bg: Vec<i32> = background(1200, 4000, 0);
    let hi = *bg.iter().max().unwrap();
    let img = Image {
        modality: "CR",
        photometric: "MONOCHROME1",
        bits_stored: 12,
        signed: false,
        spp: 1,
        frames: 1,
        samples: vec![with_text(bg, 1, 0)],
        transfer_syntax: "1.2.840.10008.1.2.1",
    };
    check(&img, TextPolicy::PhiOnly, &[hi]);
}

#[test]
fn rgb_text_is_masked_black() {
    let grey = background(0, 180, 0);
    let rgb: Vec<i32> = grey
        .iter()
        .flat_map(|&v| [v, v / 2, (v * 3 / 4).min(255)])
        .collect();
    let img = Image {
        modality: "SC",
        photometric: "RGB",
        bits_stored: 8,
        signed: false,
        spp: 3,
        frames: 1,
        samples: vec![with_text(rgb, 3, 255)],
        transfer_syntax: "1.2.840.10008.1.2.1",
    };
    check(&img, TextPolicy::PhiOnly, &[0, 0, 0]);
}

#[test]
fn a_changed_overlay_is_read_again_and_masked_in_every_frame() {
    // Frames 0-2 show only the harmless line, frames 3-5 add the name and birth date: the
    // name must be found (OCR again when the overlay changes) and hidden in every frame.
    let frames: Vec<Vec<i32>> = (0..6)
        .map(|f| {
            let mut bg = background(0, 160, f);
            draw(&mut bg, 1, HARMLESS, 320, 160, 255);
            if f >= 3 {
                draw(&mut bg, 1, NAME, 8, 6, 255);
                draw(&mut bg, 1, DOB, 8, 30, 255);
            }
            bg
        })
        .collect();
    let lo = frames.iter().flatten().copied().min().unwrap();
    let img = Image {
        modality: "XA",
        photometric: "MONOCHROME2",
        bits_stored: 8,
        signed: false,
        spp: 1,
        frames: 6,
        samples: frames,
        transfer_syntax: "1.2.840.10008.1.2.1",
    };
    let mut obj = object(&img);
    let options = TextOptions::new(deny(&obj), TextPolicy::PhiOnly);
    let outcome = clean_text(&mut obj, &options).unwrap();
    assert!(outcome.ocr_runs >= 2, "read {} times", outcome.ocr_runs);
    let m = masked(&outcome.boxes);
    let after = samples(&obj, &img);
    for (f, (a, b)) in img.samples.iter().zip(&after).enumerate() {
        for i in 0..ROWS * COLS {
            if m[i] {
                assert_eq!(b[i], lo, "frame {f}");
            } else {
                assert_eq!(a[i], b[i], "frame {f}: pixel {i} outside the boxes changed");
            }
        }
    }
    for text in [NAME, DOB] {
        let (_, x, y) = lines().into_iter().find(|l| l.0 == text).unwrap();
        assert!(text_pixels(text, x, y).iter().all(|&i| m[i]), "{text}");
    }
    assert!(text_pixels(HARMLESS, 320, 160).iter().all(|&i| !m[i]));
}

#[test]
fn nothing_to_mask_keeps_the_object_and_its_transfer_syntax() {
    let mut bg = background(0, 160, 0);
    draw(&mut bg, 1, HARMLESS, 320, 160, 255);
    let img = Image {
        modality: "OT",
        photometric: "MONOCHROME2",
        bits_stored: 8,
        signed: false,
        spp: 1,
        frames: 1,
        samples: vec![bg],
        transfer_syntax: "1.2.840.10008.1.2",
    };
    let original = object(&img);
    let mut obj = original.clone();
    let options = TextOptions::new(deny(&obj), TextPolicy::PhiOnly);
    let outcome = clean_text(&mut obj, &options).unwrap();
    assert!(!outcome.changed && outcome.boxes.is_empty());
    assert_eq!(obj.meta().transfer_syntax(), "1.2.840.10008.1.2");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    original.write_all(&mut a).unwrap();
    obj.write_all(&mut b).unwrap();
    assert_eq!(a, b);
}

#[test]
fn unsupported_pixel_data_is_an_error_not_a_panic() {
    let mut obj = object(&Image {
        modality: "CT",
        photometric: "MONOCHROME2",
        bits_stored: 16,
        signed: true,
        spp: 1,
        frames: 1,
        samples: vec![vec![0; ROWS * COLS]],
        transfer_syntax: "1.2.840.10008.1.2.1",
    });
    // Pixel data shorter than the image it claims to be.
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(vec![0u16; 10].into()),
    ));
    let options = TextOptions::new(DenyList::default(), TextPolicy::PhiOnly);
    assert!(clean_text(&mut obj, &options).is_err());
    obj.remove_element(tags::PIXEL_DATA);
    assert!(clean_text(&mut obj, &options).is_err());
}

#[test]
fn the_example_profile_sets_the_policy_per_modality() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/curate/profile.toml");
    let profile = bedside_deid::Profile::load(&path).unwrap();
    let text = &profile.burned_in_text;
    assert_eq!(text.rule_for("SC"), bedside_deid::TextRule::All);
    assert_eq!(text.rule_for("CT"), bedside_deid::TextRule::Phi);
    let off =
        bedside_deid::Profile::from_toml("[burned_in_text.modality]\nCT = \"off\"\n", "inline")
            .unwrap();
    assert_eq!(
        off.burned_in_text.rule_for("ct"),
        bedside_deid::TextRule::Off
    );
    assert!(
        bedside_deid::Profile::from_toml("[burned_in_text]\ndefault = \"some\"\n", "inline")
            .is_err()
    );
}
