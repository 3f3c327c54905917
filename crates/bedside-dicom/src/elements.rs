//! Helpers to put typed elements into an in-memory DICOM object.

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_object::InMemDicomObject;

/// Puts a string-valued element (any string VR; multiple values separated by `\`).
pub fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

/// Puts an element with an empty value (type 2 attributes known to be absent).
pub fn put_empty(obj: &mut InMemDicomObject, tag: Tag, vr: VR) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
}

/// Puts one or more US (unsigned short) values.
pub fn put_u16(obj: &mut InMemDicomObject, tag: Tag, values: &[u16]) {
    obj.put(DataElement::new(
        tag,
        VR::US,
        PrimitiveValue::U16(values.iter().copied().collect()),
    ));
}

/// Puts one or more UL (unsigned long) values.
pub fn put_u32(obj: &mut InMemDicomObject, tag: Tag, values: &[u32]) {
    obj.put(DataElement::new(
        tag,
        VR::UL,
        PrimitiveValue::U32(values.iter().copied().collect()),
    ));
}

/// Puts one or more SL (signed long) values.
pub fn put_i32(obj: &mut InMemDicomObject, tag: Tag, values: &[i32]) {
    obj.put(DataElement::new(
        tag,
        VR::SL,
        PrimitiveValue::I32(values.iter().copied().collect()),
    ));
}

/// Puts one or more FD (64-bit float) values.
pub fn put_f64(obj: &mut InMemDicomObject, tag: Tag, values: &[f64]) {
    obj.put(DataElement::new(
        tag,
        VR::FD,
        PrimitiveValue::F64(values.iter().copied().collect()),
    ));
}

/// Puts an attribute-tag (AT) value.
pub fn put_tag(obj: &mut InMemDicomObject, tag: Tag, value: Tag) {
    obj.put(DataElement::new(
        tag,
        VR::AT,
        PrimitiveValue::Tags([value].into_iter().collect()),
    ));
}

/// Puts a decimal string (DS) with up to 16 characters, as the standard requires.
pub fn put_ds(obj: &mut InMemDicomObject, tag: Tag, values: &[f64]) {
    let text = values
        .iter()
        .map(|v| format_ds(*v))
        .collect::<Vec<_>>()
        .join("\\");
    put_str(obj, tag, VR::DS, &text);
}

/// Puts an integer string (IS).
pub fn put_is(obj: &mut InMemDicomObject, tag: Tag, value: i64) {
    put_str(obj, tag, VR::IS, &value.to_string());
}

/// Puts a sequence (SQ) of items.
pub fn put_seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(
        tag,
        VR::SQ,
        DataSetSequence::new(items, Length::UNDEFINED),
    ));
}

/// Formats a number as a DS value of at most 16 characters.
pub fn format_ds(v: f64) -> String {
    for precision in (0..=10).rev() {
        let s = format!("{v:.precision$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{v:.6e}")
}

/// A code sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning).
pub fn code_item(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    use dicom_dictionary_std::tags;
    let mut item = InMemDicomObject::new_empty();
    put_str(&mut item, tags::CODE_VALUE, VR::SH, value);
    put_str(&mut item, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
    put_str(&mut item, tags::CODE_MEANING, VR::LO, meaning);
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_fits_sixteen_characters() {
        for v in [
            0.0,
            1.5,
            -0.000123456789,
            12_345_678.987_654,
            0.0234567891234,
        ] {
            let s = format_ds(v);
            assert!(s.len() <= 16, "{s}");
            let back: f64 = s.parse().unwrap();
            assert!((back - v).abs() <= 1e-6 * v.abs().max(1.0), "{v} -> {s}");
        }
    }
}
