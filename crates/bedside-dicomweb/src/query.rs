//! QIDO-RS query parameters and matching (PS3.18 8.3.4, PS3.4 C.2.2.2).
//!
//! Supported: single value matching, wildcards `*` and `?`, UID list matching (values
//! separated by `,` or `\`), value lists for other text attributes (`\`), date and time ranges
//! (`from-to`, `-to`, `from-`), universal matching (an empty value), `includefield` (tags,
//! keywords or `all`, repeated or comma separated), `limit`, `offset` and `fuzzymatching`
//! (case-insensitive prefix matching of person names).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, TagRange, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use serde_json::Value;

use crate::error::ApiError;
use crate::json::{tag_key, texts};
use crate::store::{Level, Record};

/// Which attributes beyond the defaults a response carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Include {
    /// Every attribute the record has.
    All,
    /// These tags as well as the defaults.
    Tags(Vec<Tag>),
}

/// A parsed QIDO-RS query.
#[derive(Debug, Clone)]
pub struct QidoQuery {
    /// Matching keys: tag and the (percent-decoded) value; an empty value only asks for the
    /// attribute to be returned.
    pub keys: Vec<(Tag, String)>,
    /// `includefield`.
    pub include: Include,
    /// `limit`, if given.
    pub limit: Option<usize>,
    /// `offset`.
    pub offset: usize,
    /// `fuzzymatching=true`.
    pub fuzzy: bool,
}

/// Decodes `application/x-www-form-urlencoded` query text into pairs; bad escapes are errors.
pub fn parse_query_string(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::bad_request("malformed percent-encoding in query"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("query is not valid UTF-8"))
}

/// Resolves an attribute given as eight hex digits or a keyword (`PatientID`).
pub fn resolve_attribute(name: &str) -> Result<Tag, ApiError> {
    if name.contains('.') {
        return Err(ApiError::bad_request(format!(
            "sequence attribute paths are not supported in queries: {name}"
        )));
    }
    if name.len() == 8 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        let group = u16::from_str_radix(&name[..4], 16)
            .map_err(|_| ApiError::bad_request(format!("bad tag {name}")))?;
        let element = u16::from_str_radix(&name[4..], 16)
            .map_err(|_| ApiError::bad_request(format!("bad tag {name}")))?;
        return Ok(Tag(group, element));
    }
    match StandardDataDictionary.by_name(name).map(|e| e.tag_range()) {
        Some(TagRange::Single(tag)) => Ok(tag),
        _ => Err(ApiError::bad_request(format!(
            "unknown attribute or query parameter: {name}"
        ))),
    }
}

/// The value representation of a standard attribute (LO when unknown).
pub fn vr_of(tag: Tag) -> VR {
    match StandardDataDictionary.by_tag(tag).map(|e| e.vr()) {
        Some(VirtualVr::Exact(vr)) => vr,
        Some(VirtualVr::Xs) => VR::US,
        Some(_) => VR::OB,
        None => VR::LO,
    }
}

/// Parses QIDO-RS parameters.
pub fn parse_qido(pairs: &[(String, String)]) -> Result<QidoQuery, ApiError> {
    let mut query = QidoQuery {
        keys: Vec::new(),
        include: Include::Tags(Vec::new()),
        limit: None,
        offset: 0,
        fuzzy: false,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "limit" => {
                query.limit =
                    Some(value.trim().parse().map_err(|_| {
                        ApiError::bad_request("limit must be a non-negative integer")
                    })?)
            }
            "offset" => {
                query.offset = value
                    .trim()
                    .parse()
                    .map_err(|_| ApiError::bad_request("offset must be a non-negative integer"))?
            }
            "fuzzymatching" => {
                query.fuzzy = match value.trim() {
                    "true" => true,
                    "false" | "" => false,
                    _ => return Err(ApiError::bad_request("fuzzymatching must be true or false")),
                }
            }
            "includefield" => {
                for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if field == "all" {
                        query.include = Include::All;
                    } else {
                        let tag = resolve_attribute(field)?;
                        if let Include::Tags(tags) = &mut query.include {
                            tags.push(tag);
                        }
                    }
                }
            }
            // Cache busters and response-format hints some clients add.
            "_" | "accept" | "charset" => {}
            name => query.keys.push((resolve_attribute(name)?, value.clone())),
        }
    }
    Ok(query)
}

/// Default return attributes per level (PS3.18 Table 6.7.1-2a).
pub fn default_attributes(level: Level) -> &'static [u32] {
    match level {
        Level::Study => &[
            0x0008_0005,
            0x0008_0020,
            0x0008_0030,
            0x0008_0050,
            0x0008_0056,
            0x0008_0061,
            0x0008_0090,
            0x0008_0201,
            0x0008_1190,
            0x0010_0010,
            0x0010_0020,
            0x0010_0030,
            0x0010_0040,
            0x0020_000D,
            0x0020_0010,
            0x0020_1206,
            0x0020_1208,
        ],
        Level::Series => &[
            0x0008_0005,
            0x0008_0060,
            0x0008_0201,
            0x0008_103E,
            0x0008_1190,
            0x0020_000D,
            0x0020_000E,
            0x0020_0011,
            0x0020_1209,
            0x0040_0244,
            0x0040_0245,
            0x0040_0275,
        ],
        Level::Instance => &[
            0x0008_0005,
            0x0008_0016,
            0x0008_0018,
            0x0008_0056,
            0x0008_0201,
            0x0008_1190,
            0x0020_000D,
            0x0020_000E,
            0x0020_0013,
            0x0028_0008,
            0x0028_0010,
            0x0028_0011,
            0x0028_0100,
        ],
    }
}

/// Whether a record satisfies every matching key of the query.
pub fn matches(record: &Record, query: &QidoQuery) -> bool {
    query.keys.iter().all(|(tag, wanted)| {
        if wanted.is_empty() || wanted == "*" {
            return true;
        }
        let Some(attr) = record.get(&tag_key(*tag)) else {
            return false;
        };
        let vr = attr
            .get("vr")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<VR>().ok())
            .unwrap_or_else(|| vr_of(*tag));
        let values = texts(attr);
        values
            .iter()
            .any(|have| value_matches(vr, wanted, have, query.fuzzy))
    })
}

fn value_matches(vr: VR, wanted: &str, have: &str, fuzzy: bool) -> bool {
    match vr {
        VR::UI => wanted
            .split([',', '\\'])
            .map(str::trim)
            .any(|w| !w.is_empty() && w == have),
        VR::DA | VR::TM | VR::DT => wanted.split('\\').any(|w| range_matches(vr, w, have)),
        VR::PN => wanted.split('\\').any(|w| {
            if fuzzy {
                let w = w.to_lowercase();
                let h = have.to_lowercase();
                let w = if w.ends_with('*') { w } else { format!("{w}*") };
                // Fuzzy matching also tries each name component (family, given, ...).
                wildcard(&w, &h) || h.split('^').any(|part| wildcard(&w, part))
            } else {
                wildcard(w, have)
            }
        }),
        VR::IS | VR::DS | VR::US | VR::SS | VR::UL | VR::SL | VR::FL | VR::FD => {
            wanted.split('\\').any(|w| {
                match (w.trim().parse::<f64>(), have.trim().parse::<f64>()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => w.trim() == have.trim(),
                }
            })
        }
        _ => wanted.split('\\').any(|w| wildcard(w, have)),
    }
}

fn normalise_time(vr: VR, s: &str) -> String {
    match vr {
        VR::TM => s.replace(':', ""),
        _ => s.to_string(),
    }
}

fn range_matches(vr: VR, wanted: &str, have: &str) -> bool {
    let have = normalise_time(vr, have.trim());
    match wanted.split_once('-') {
        // A DT value may carry a UTC offset like `-0500`; only treat `-` as a range
        // separator for DA and TM, or when DT's right side is empty or a full date.
        Some((lo, hi)) if vr != VR::DT || hi.is_empty() || lo.is_empty() || hi.len() >= 8 => {
            let lo = normalise_time(vr, lo.trim());
            let hi = normalise_time(vr, hi.trim());
            let above = lo.is_empty() || have.as_str() >= lo.as_str();
            // Compare only as many characters as the bound has: `2020` includes `20201231`.
            let below = hi.is_empty() || {
                let n = hi.len().min(have.len());
                have[..n] <= hi[..n]
            };
            above && below
        }
        _ => {
            let w = normalise_time(vr, wanted.trim());
            have == w || (vr != VR::DA && !w.is_empty() && have.starts_with(&w))
        }
    }
}

/// `*` matches any run of characters, `?` any single character.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The attributes of a matching record that the response carries.
pub fn select(record: &Record, level: Level, query: &QidoQuery) -> Record {
    match &query.include {
        Include::All => record.clone(),
        Include::Tags(extra) => {
            let mut wanted: Vec<String> = default_attributes(level)
                .iter()
                .map(|t| tag_key(Tag((t >> 16) as u16, (t & 0xFFFF) as u16)))
                .collect();
            wanted.extend(extra.iter().map(|t| tag_key(*t)));
            wanted.extend(query.keys.iter().map(|(t, _)| tag_key(*t)));
            let mut out = Record::new();
            for key in wanted {
                if let Some(v) = record.get(&key) {
                    out.insert(key, v.clone());
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("DOE*", "DOE^JANE"));
        assert!(wildcard("D?E*", "DOE^JANE"));
        assert!(!wildcard("DOE", "DOE^JANE"));
        assert!(wildcard("*", ""));
        assert!(wildcard("*JANE", "DOE^JANE"));
    }

    #[test]
    fn date_ranges() {
        assert!(range_matches(VR::DA, "20200101-20201231", "20200615"));
        assert!(!range_matches(VR::DA, "20200101-20201231", "20210101"));
        assert!(range_matches(VR::DA, "-20200101", "20191231"));
        assert!(range_matches(VR::DA, "20200101-", "20250101"));
        assert!(range_matches(VR::DA, "20200101", "20200101"));
        assert!(range_matches(VR::TM, "10:00-12", "120000.5"));
    }

    #[test]
    fn keywords_and_tags() {
        assert_eq!(resolve_attribute("PatientID").unwrap(), Tag(0x0010, 0x0020));
        assert_eq!(resolve_attribute("00100020").unwrap(), Tag(0x0010, 0x0020));
        assert!(resolve_attribute("NoSuchKeyword").is_err());
        assert!(parse_query_string(Some("a=%zz")).is_err());
    }
}
