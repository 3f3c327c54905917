//! `.npy` encoding and decoding of the arrays Flower carries (`Array.stype == "numpy.ndarray"`).
//!
//! Flower serialises every array with `numpy.save(allow_pickle=False)`; only plain
//! little-endian floating-point arrays are accepted here, never object arrays.

use crate::FederateError;

/// Float element types accepted on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatType {
    /// `float16` (sent only when the site's egress filter quantises).
    F16,
    /// `float32`
    F32,
    /// `float64`
    F64,
}

impl FloatType {
    /// NumPy's dtype name as Flower writes it in `Array.dtype`.
    pub fn name(self) -> &'static str {
        match self {
            FloatType::F16 => "float16",
            FloatType::F32 => "float32",
            FloatType::F64 => "float64",
        }
    }

    fn descr(self) -> &'static str {
        match self {
            FloatType::F16 => "<f2",
            FloatType::F32 => "<f4",
            FloatType::F64 => "<f8",
        }
    }

    fn size(self) -> usize {
        match self {
            FloatType::F16 => 2,
            FloatType::F32 => 4,
            FloatType::F64 => 8,
        }
    }
}

/// A dense array decoded to `f32` values, with its shape and wire type.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Shape (C order).
    pub shape: Vec<usize>,
    /// Values (converted to `f32`).
    pub data: Vec<f32>,
}

impl Tensor {
    /// A 1-D tensor.
    pub fn vector(data: Vec<f32>) -> Self {
        Tensor {
            shape: vec![data.len()],
            data,
        }
    }
}

/// Encodes `tensor` as `.npy` bytes of element type `ty` (what `numpy.save` writes).
pub fn encode(tensor: &Tensor, ty: FloatType) -> Vec<u8> {
    let mut out = header(ty, &tensor.shape);
    out.reserve(tensor.data.len() * ty.size());
    match ty {
        FloatType::F16 => {
            for v in &tensor.data {
                out.extend_from_slice(&f32_to_f16(*v).to_le_bytes());
            }
        }
        FloatType::F32 => {
            for v in &tensor.data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        FloatType::F64 => {
            for v in &tensor.data {
                out.extend_from_slice(&f64::from(*v).to_le_bytes());
            }
        }
    }
    out
}

fn header(ty: FloatType, shape: &[usize]) -> Vec<u8> {
    let shape_txt = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        ty.descr(),
        shape_txt
    );
    // numpy pads magic(6) + version(2) + len(2) + dict + '\n' to a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Decodes `.npy` bytes holding a little-endian float array in C order.
pub fn decode(bytes: &[u8]) -> Result<(Tensor, FloatType), FederateError> {
    let bad = |why: &str| FederateError::DecodeArray(why.to_string());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy (magic)"));
    }
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        _ => return Err(bad("unknown .npy version")),
    };
    let end = start
        .checked_add(header_len)
        .filter(|e| *e <= bytes.len())
        .ok_or_else(|| bad("truncated header"))?;
    let dict = std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("header not UTF-8"))?;
    let descr = dict_value(dict, "descr").ok_or_else(|| bad("no descr"))?;
    let ty = match descr.trim_matches('\'') {
        "<f2" => FloatType::F16,
        "<f4" => FloatType::F32,
        "<f8" => FloatType::F64,
        _ => return Err(bad("dtype is not a little-endian float")),
    };
    if dict_value(dict, "fortran_order").map(str::trim) != Some("False") {
        return Err(bad("Fortran order"));
    }
    let shape_txt = dict_value(dict, "shape").ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = shape_txt
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("shape")))
        .collect::<Result<_, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, d| a.checked_mul(*d))
        .ok_or_else(|| bad("shape overflows"))?;
    let body = &bytes[end..];
    if body.len() != count.checked_mul(ty.size()).ok_or_else(|| bad("size"))? {
        return Err(bad("data length does not match shape"));
    }
    let data = match ty {
        FloatType::F16 => body
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        FloatType::F32 => body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        FloatType::F64 => body
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
    };
    Ok((Tensor { shape, data }, ty))
}

/// The raw text after `'key':` up to the next top-level comma (tuples kept whole).
fn dict_value<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("'{key}':");
    let at = dict.find(&pat)? + pat.len();
    let rest = &dict[at..];
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

/// IEEE 754 binary16 → binary32.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: renormalise.
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000,
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// IEEE 754 binary32 → binary16, round to nearest even (NumPy's `astype(float16)`).
pub fn f32_to_f16(v: f32) -> u16 {
    let x = v.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = x & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1u32 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && r & 1 == 1) {
        r += 1; // may carry into the exponent, which is correct rounding
    }
    sign | r as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let t = Tensor {
            shape: vec![2, 3],
            data: vec![1.0, -2.5, 3.25, 0.0, 1e-3, 7.0],
        };
        for ty in [FloatType::F32, FloatType::F64] {
            let bytes = encode(&t, ty);
            let header_end = bytes.len()
                - 6 * match ty {
                    FloatType::F32 => 4,
                    _ => 8,
                };
            assert_eq!(header_end % 64, 0);
            let (back, got) = decode(&bytes).expect("decode");
            assert_eq!(got, ty);
            assert_eq!(back, t);
        }
    }

    #[test]
    fn f16_conversion_matches_known_values() {
        // Values checked against numpy.float16(x).view(numpy.uint16).
        for (v, h) in [
            (1.0f32, 0x3c00u16),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (1e5, 0x7c00),
            (0.1, 0x2e66),
            (6.0e-8, 0x0001),
            (0.0, 0),
        ] {
            assert_eq!(f32_to_f16(v), h, "{v}");
        }
        assert_eq!(f16_to_f32(0x2e66), 0.099_975_586);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
    }

    #[test]
    fn refuses_object_arrays() {
        let mut bytes = encode(&Tensor::vector(vec![1.0]), FloatType::F32);
        let pos = bytes.windows(3).position(|w| w == b"<f4").expect("descr");
        bytes[pos..pos + 3].copy_from_slice(b"|O ");
        assert!(decode(&bytes).is_err());
    }
}
