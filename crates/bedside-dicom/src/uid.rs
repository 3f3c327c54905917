//! UID generation.

/// A `2.25.` UID (ISO/IEC 9834-8 UUID-derived form) from the first 128 bits of a hash of `bytes`.
///
/// The hash is FNV-1a-based mixing, enough to make UIDs unique for distinct inputs; it is not a
/// cryptographic commitment (pseudonymisation uses a keyed hash instead).
pub fn from_hash(bytes: &[u8]) -> String {
    let (hi, lo) = hash128(bytes);
    let v = ((hi as u128) << 64) | lo as u128;
    format!("2.25.{v}")
}

/// A UID of the form `<root>.<a>.<yyyymmddhhmmss>.<b>` as many vendors write it, embedding an
/// acquisition timestamp. `root` plus the suffix must stay within 64 characters.
pub fn with_timestamp(root: &str, a: u64, timestamp: &str, b: u64) -> String {
    let uid = format!("{root}.{a}.{timestamp}.{b}");
    debug_assert!(uid.len() <= 64, "UID too long: {uid}");
    uid
}

/// Checks the syntax of a UID: 1–64 characters, dot-separated numeric components without
/// leading zeros.
pub fn is_valid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

fn hash128(bytes: &[u8]) -> (u64, u64) {
    let mut h1: u64 = 0xcbf2_9ce4_8422_2325;
    let mut h2: u64 = 0x6c62_272e_07bb_0142;
    for &b in bytes {
        h1 ^= b as u64;
        h1 = h1.wrapping_mul(0x0000_0100_0000_01B3);
        h2 ^= (b as u64).rotate_left(5);
        h2 = h2.wrapping_mul(0x0000_0100_0000_01B3).rotate_left(17);
    }
    (mix(h1 ^ h2.rotate_left(29)), mix(h2 ^ h1))
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_uids_are_valid_and_distinct() {
        let a = from_hash(b"one");
        let b = from_hash(b"two");
        assert_ne!(a, b);
        assert!(is_valid(&a) && is_valid(&b), "{a} {b}");
        assert_eq!(a, from_hash(b"one"));
    }

    #[test]
    fn validity_rules() {
        assert!(is_valid("1.2.840.10008.1.2.1"));
        assert!(!is_valid("1.02.3"));
        assert!(!is_valid("1..2"));
        assert!(!is_valid(""));
        assert!(!is_valid(&"1.".repeat(40)));
    }
}
