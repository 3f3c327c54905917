//! `multipart/related` (RFC 2387) reading and writing, and media-type parameters.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use bytes::{Bytes, BytesMut};

use crate::error::ApiError;

/// A media type with its parameters, e.g. `multipart/related; type="application/dicom"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// `type/subtype`, lower case.
    pub essence: String,
    /// Parameters in order; names lower case, values unquoted.
    pub params: Vec<(String, String)>,
}

impl MediaType {
    /// The value of a parameter, if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// Parses one media type; parameter values may be quoted or not.
pub fn parse_media_type(s: &str) -> Option<MediaType> {
    let mut parts = split_unquoted(s, ';').into_iter();
    let essence = parts.next()?.trim().to_ascii_lowercase();
    if essence.is_empty() || !essence.contains('/') {
        return None;
    }
    let params = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    Some(MediaType { essence, params })
}

/// Parses an `Accept` header into media ranges, highest `q` first (stable otherwise).
pub fn parse_accept(header: Option<&str>) -> Vec<MediaType> {
    let Some(header) = header else {
        return Vec::new();
    };
    let mut ranges: Vec<(f32, MediaType)> = split_unquoted(header, ',')
        .into_iter()
        .filter_map(parse_media_type)
        .map(|m| {
            let q = m
                .param("q")
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (q, m)
        })
        .filter(|(q, _)| *q > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    ranges.into_iter().map(|(_, m)| m).collect()
}

/// One part of a multipart body.
#[derive(Debug, Clone)]
pub struct Part {
    /// The part's Content-Type, if it had one.
    pub content_type: Option<MediaType>,
    /// The part's bytes.
    pub body: Bytes,
}

/// Splits a `multipart/related` body into parts.
pub fn parse_multipart(body: &Bytes, boundary: &str) -> Result<Vec<Part>, ApiError> {
    if boundary.is_empty() || boundary.len() > 200 {
        return Err(ApiError::bad_request(
            "multipart boundary is empty or too long",
        ));
    }
    let delimiter = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delimiter.as_bytes());
    let data = body.as_ref();
    let mut positions: Vec<usize> = Vec::new();
    let mut search = 0;
    // A delimiter counts only at the start of the body or right after a line break.
    while let Some(found) = finder.find(&data[search..]) {
        let at = search + found;
        if at == 0 || data[at - 1] == b'\n' {
            positions.push(at);
        }
        search = at + delimiter.len();
    }
    if positions.is_empty() {
        return Err(ApiError::bad_request(
            "multipart body has no part delimited by the declared boundary",
        ));
    }
    let mut parts = Vec::new();
    let mut closed = false;
    for window in 0..positions.len() {
        let start = positions[window] + delimiter.len();
        if data[start..].starts_with(b"--") {
            closed = true;
            break;
        }
        let Some(end) = positions.get(window + 1).copied() else {
            break;
        };
        // The line break before the next delimiter belongs to the delimiter.
        let mut content_end = end;
        if content_end > start && data[content_end - 1] == b'\n' {
            content_end -= 1;
            if content_end > start && data[content_end - 1] == b'\r' {
                content_end -= 1;
            }
        }
        let section = &data[start..content_end];
        // Skip transport padding and the line break after the delimiter.
        let line_end = memchr::memchr(b'\n', section)
            .ok_or_else(|| ApiError::bad_request("multipart delimiter line is not terminated"))?;
        let headers_start = line_end + 1;
        let rest = &section[headers_start..];
        let (header_len, sep_len) = if let Some(i) = memchr::memmem::find(rest, b"\r\n\r\n") {
            (i, 4)
        } else if rest.starts_with(b"\r\n") {
            (0, 2)
        } else if let Some(i) = memchr::memmem::find(rest, b"\n\n") {
            (i, 2)
        } else if rest.starts_with(b"\n") {
            (0, 1)
        } else {
            return Err(ApiError::bad_request(
                "multipart part has no end of headers",
            ));
        };
        let header_text = std::str::from_utf8(&rest[..header_len])
            .map_err(|_| ApiError::bad_request("multipart part headers are not text"))?;
        let mut content_type = None;
        for line in header_text.lines() {
            if let Some((name, value)) = line.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-type")
            {
                content_type = Some(parse_media_type(value.trim()).ok_or_else(|| {
                    ApiError::bad_request("multipart part has a malformed Content-Type")
                })?);
            }
        }
        let body_start = positions[window] + delimiter.len() + headers_start + header_len + sep_len;
        let body_end = content_end.max(body_start);
        parts.push(Part {
            content_type,
            body: body.slice(body_start..body_end),
        });
    }
    if !closed {
        return Err(ApiError::bad_request(
            "multipart body is not closed by its final boundary",
        ));
    }
    Ok(parts)
}

/// A fresh boundary that is vanishingly unlikely to occur in binary content.
pub fn new_boundary() -> String {
    let mut out = String::from("bedside-");
    for i in 0..2u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(i);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// Builds a multipart/related body part by part.
#[derive(Debug)]
pub struct MultipartWriter {
    boundary: String,
    buf: BytesMut,
}

impl MultipartWriter {
    /// A writer with a fresh boundary.
    pub fn new() -> Self {
        Self {
            boundary: new_boundary(),
            buf: BytesMut::new(),
        }
    }

    /// The boundary, for the response Content-Type.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// The header block that opens a part.
    pub fn part_header(boundary: &str, content_type: &str, location: Option<&str>) -> String {
        let mut head = format!("--{boundary}\r\nContent-Type: {content_type}\r\n");
        if let Some(location) = location {
            head.push_str(&format!("Content-Location: {location}\r\n"));
        }
        head.push_str("\r\n");
        head
    }

    /// The closing delimiter.
    pub fn closing(boundary: &str) -> String {
        format!("--{boundary}--\r\n")
    }

    /// Appends one part.
    pub fn part(&mut self, content_type: &str, location: Option<&str>, body: &[u8]) {
        self.buf.extend_from_slice(
            Self::part_header(&self.boundary, content_type, location).as_bytes(),
        );
        self.buf.extend_from_slice(body);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Closes the body.
    pub fn finish(mut self) -> (String, Bytes) {
        self.buf
            .extend_from_slice(Self::closing(&self.boundary).as_bytes());
        (self.boundary, self.buf.freeze())
    }
}

impl Default for MultipartWriter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn media_type_quotes_optional() {
        let a = parse_media_type(
            "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*",
        )
        .unwrap();
        let b =
            parse_media_type("multipart/related; type=application/octet-stream; transfer-syntax=*")
                .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.param("type"), Some("application/octet-stream"));
    }

    #[test]
    fn round_trip() {
        let mut w = MultipartWriter::new();
        w.part("application/dicom", None, b"one\r\n--x");
        w.part("application/dicom", None, b"");
        let (boundary, body) = w.finish();
        let parts = parse_multipart(&body, &boundary).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[0].body[..], b"one\r\n--x");
        assert!(parts[1].body.is_empty());
    }

    #[test]
    fn unclosed_is_refused() {
        let body = Bytes::from_static(b"--b\r\nContent-Type: a/b\r\n\r\nxyz\r\n");
        assert!(parse_multipart(&body, "b").is_err());
    }
}
