//! The DICOMweb handlers.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dicom_core::Tag;
use dicom_core::value::Value as DicomValue;
use dicom_dictionary_std::tags;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::instance::{
    EXPLICIT_VR_LE, IMPLICIT_VR_LE, InstanceError, ParsedInstance, RenderFormat, Window,
    WindowFunction, render,
};
use crate::json::{self, Binary, PIXEL_DATA, first_text, tag_key};
use crate::multipart::{
    MediaType, MultipartWriter, parse_accept, parse_media_type, parse_multipart,
};
use crate::query::{matches, parse_qido, parse_query_string, select};
use crate::store::{InstanceLocator, Level, Record, Scope, StoreError, StoreOutcome};

type Shared = State<Arc<AppState>>;
type ApiResult = Result<Response, ApiError>;

const DICOM_JSON: &str = "application/dicom+json";

/// Runs blocking store or parsing work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// UIDs in paths: digits and dots, at most 64 characters (PS3.5 9.1).
fn check_uid(uid: &str) -> Result<(), ApiError> {
    let ok = !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !uid.starts_with('.')
        && !uid.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request("malformed UID in path"))
    }
}

fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(base) = &state.config.base_url {
        return base.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    format!(
        "http://{host}{}",
        state.config.path_prefix.trim_end_matches('/')
    )
}

fn accept_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(DICOM_JSON));
    response
}

/// Whether the client accepts a JSON answer (QIDO-RS, metadata).
fn accepts_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ranges = parse_accept(accept_header(headers));
    if ranges.is_empty()
        || ranges.iter().any(|m| {
            matches!(
                m.essence.as_str(),
                "application/dicom+json" | "application/json" | "*/*" | "application/*"
            )
        })
    {
        Ok(())
    } else {
        Err(ApiError::not_acceptable(
            "only application/dicom+json is offered for this resource",
        ))
    }
}

fn retrieve_url(base: &str, level: Level, record: &Record) -> Option<String> {
    let study = first_text(record, tags::STUDY_INSTANCE_UID)?;
    let mut url = format!("{base}/studies/{study}");
    if level != Level::Study {
        url.push_str(&format!(
            "/series/{}",
            first_text(record, tags::SERIES_INSTANCE_UID)?
        ));
    }
    if level == Level::Instance {
        url.push_str(&format!(
            "/instances/{}",
            first_text(record, tags::SOP_INSTANCE_UID)?
        ));
    }
    Some(url)
}

async fn qido(
    state: Arc<AppState>,
    level: Level,
    scope: Scope,
    headers: HeaderMap,
    raw_query: Option<String>,
) -> ApiResult {
    accepts_json(&headers)?;
    let pairs = parse_query_string(raw_query.as_deref())?;
    let query = parse_qido(&pairs)?;
    let store = state.store.clone();
    let records = blocking(move || Ok(store.find(level, &scope)?)).await?;
    let matching: Vec<&Record> = records.iter().filter(|r| matches(r, &query)).collect();
    let limit = query
        .limit
        .unwrap_or(state.config.max_results)
        .min(state.config.max_results);
    let total = matching.len();
    let base = base_url(&state, &headers);
    let page: Vec<Value> = matching
        .into_iter()
        .skip(query.offset)
        .take(limit)
        .map(|r| {
            let mut out = select(r, level, &query);
            if let Some(url) = retrieve_url(&base, level, r) {
                out.insert(
                    tag_key(tags::RETRIEVE_URL),
                    json!({"vr": "UR", "Value": [url]}),
                );
            }
            Value::Object(out)
        })
        .collect();
    let remaining = total.saturating_sub(query.offset.saturating_add(page.len()));
    let mut response = json_response(StatusCode::OK, Value::Array(page));
    if remaining > 0
        && let Ok(v) = HeaderValue::from_str(&format!(
            "299 bedside: \"There are {remaining} additional results that can be requested\""
        ))
    {
        response.headers_mut().insert(header::WARNING, v);
    }
    Ok(response)
}

/// `GET /studies`
pub async fn search_studies(
    State(s): Shared,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    qido(s, Level::Study, Scope::all(), headers, q).await
}

/// `GET /series`
pub async fn search_all_series(
    State(s): Shared,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    qido(s, Level::Series, Scope::all(), headers, q).await
}

/// `GET /instances`
pub async fn search_all_instances(
    State(s): Shared,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    qido(s, Level::Instance, Scope::all(), headers, q).await
}

/// `GET /studies/{study}/series`
pub async fn search_series(
    State(s): Shared,
    Path(study): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    check_uid(&study)?;
    qido(s, Level::Series, Scope::study(&study), headers, q).await
}

/// `GET /studies/{study}/instances`
pub async fn search_study_instances(
    State(s): Shared,
    Path(study): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    check_uid(&study)?;
    qido(s, Level::Instance, Scope::study(&study), headers, q).await
}

/// `GET /studies/{study}/series/{series}/instances`
pub async fn search_instances(
    State(s): Shared,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    check_uid(&study)?;
    check_uid(&series)?;
    qido(
        s,
        Level::Instance,
        Scope::series(&study, &series),
        headers,
        q,
    )
    .await
}

async fn locate(state: &Arc<AppState>, scope: Scope) -> Result<Vec<InstanceLocator>, ApiError> {
    let store = state.store.clone();
    let found = blocking(move || Ok(store.locate(&scope)?)).await?;
    if found.is_empty() {
        return Err(ApiError::not_found("no such study, series or instance"));
    }
    Ok(found)
}

fn instance_error(err: InstanceError) -> ApiError {
    match err {
        InstanceError::NoPixelData => ApiError::not_found("instance has no pixel data"),
        InstanceError::Geometry(_) | InstanceError::Decode(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string())
        }
        other => ApiError::internal(other),
    }
}

/// The parsed instance, from the cache or freshly read.
async fn load(
    state: &Arc<AppState>,
    locator: InstanceLocator,
) -> Result<Arc<ParsedInstance>, ApiError> {
    if let Some(hit) = state.cache.get(&locator.sop_instance_uid)
        && hit.locator.content_key == locator.content_key
    {
        return Ok(hit);
    }
    // One parse at a time bounds memory when many requests ask for cold instances at once.
    let _guard = state.load_lock.lock().await;
    if let Some(hit) = state.cache.get(&locator.sop_instance_uid)
        && hit.locator.content_key == locator.content_key
    {
        return Ok(hit);
    }
    let store = state.store.clone();
    let parsed = blocking(move || {
        let bytes = store.read(&locator)?;
        ParsedInstance::parse(locator, &bytes).map_err(instance_error)
    })
    .await?;
    let parsed = Arc::new(parsed);
    state.cache.insert(parsed.clone());
    Ok(parsed)
}

/// Loads one instance named by the path, using the cache without touching the store when the
/// cached instance sits at the same place in the hierarchy.
async fn load_by_path(
    state: &Arc<AppState>,
    study: &str,
    series: &str,
    instance: &str,
) -> Result<Arc<ParsedInstance>, ApiError> {
    check_uid(study)?;
    check_uid(series)?;
    check_uid(instance)?;
    if let Some(hit) = state.cache.get(instance) {
        let l = &hit.locator;
        if l.study_instance_uid == study && l.series_instance_uid == series {
            return Ok(hit);
        }
    }
    let mut found = locate(state, Scope::instance(study, series, instance)).await?;
    let locator = found
        .pop()
        .ok_or_else(|| ApiError::not_found("no such instance"))?;
    load(state, locator).await
}

fn instance_url(base: &str, l: &InstanceLocator) -> String {
    format!(
        "{base}/studies/{}/series/{}/instances/{}",
        l.study_instance_uid, l.series_instance_uid, l.sop_instance_uid
    )
}

fn metadata_of(state: &AppState, base: &str, inst: &ParsedInstance) -> Value {
    let url = instance_url(base, &inst.locator);
    let mut record = json::to_json(
        &inst.header,
        &Binary::BulkData {
            instance_url: &url,
            threshold: state.config.inline_binary_threshold,
        },
    );
    if inst.frames.is_some() {
        record.insert(
            tag_key(PIXEL_DATA),
            json!({"vr": if bits_allocated(inst) > 8 { "OW" } else { "OB" },
                   "BulkDataURI": format!("{url}/bulkdata/{}", tag_key(PIXEL_DATA))}),
        );
    }
    record.insert(
        "00083002".into(),
        json!({"vr": "UI", "Value": [inst.stored_transfer_syntax]}),
    );
    Value::Object(record)
}

fn bits_allocated(inst: &ParsedInstance) -> i64 {
    inst.header
        .element_opt(tags::BITS_ALLOCATED)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<i64>().ok())
        .unwrap_or(8)
}

async fn metadata(state: Arc<AppState>, scope: Scope, headers: HeaderMap) -> ApiResult {
    accepts_json(&headers)?;
    let base = base_url(&state, &headers);
    let locators = locate(&state, scope).await?;
    let mut out = Vec::with_capacity(locators.len());
    for locator in locators {
        let inst = load(&state, locator).await?;
        out.push(metadata_of(&state, &base, &inst));
    }
    Ok(json_response(StatusCode::OK, Value::Array(out)))
}

/// `GET /studies/{study}/metadata`
pub async fn study_metadata(
    State(s): Shared,
    Path(study): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    check_uid(&study)?;
    metadata(s, Scope::study(&study), headers).await
}

/// `GET /studies/{study}/series/{series}/metadata`
pub async fn series_metadata(
    State(s): Shared,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    check_uid(&study)?;
    check_uid(&series)?;
    metadata(s, Scope::series(&study, &series), headers).await
}

/// `GET /studies/{study}/series/{series}/instances/{instance}/metadata`
pub async fn instance_metadata(
    State(s): Shared,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    accepts_json(&headers)?;
    let inst = load_by_path(&s, &study, &series, &instance).await?;
    let base = base_url(&s, &headers);
    Ok(json_response(
        StatusCode::OK,
        Value::Array(vec![metadata_of(&s, &base, &inst)]),
    ))
}

/// What the client accepts for whole instances: `Ok(true)` for a single `application/dicom`
/// body, `Ok(false)` for multipart.
fn negotiate_instances(
    headers: &HeaderMap,
    locators: &[InstanceLocator],
) -> Result<bool, ApiError> {
    let ranges = parse_accept(accept_header(headers));
    if ranges.is_empty() {
        return Ok(false);
    }
    for range in &ranges {
        match range.essence.as_str() {
            "*/*" => return Ok(false),
            "application/dicom" if locators.len() == 1 => return Ok(true),
            "multipart/related" => {
                let kind = range.param("type").unwrap_or("application/dicom");
                if kind != "application/dicom" {
                    continue;
                }
                match range.param("transfer-syntax") {
                    None | Some("*") => return Ok(false),
                    Some(ts) if locators.iter().all(|l| l.transfer_syntax_uid == ts) => {
                        return Ok(false);
                    }
                    Some(_) => continue,
                }
            }
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(
        "instances are offered as multipart/related; type=\"application/dicom\" in their stored transfer syntax",
    ))
}

async fn retrieve(state: Arc<AppState>, scope: Scope, headers: HeaderMap) -> ApiResult {
    let locators = locate(&state, scope).await?;
    let single = negotiate_instances(&headers, &locators)?;
    let base = base_url(&state, &headers);
    if single {
        let store = state.store.clone();
        let locator = locators[0].clone();
        let bytes = blocking(move || Ok(store.read(&locator)?)).await?;
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/dicom"),
            )],
            bytes,
        )
            .into_response());
    }
    let boundary = crate::multipart::new_boundary();
    let content_type =
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}");
    let store = state.store.clone();
    // Streams instance by instance, so a large study is never held in memory at once.
    let stream = futures_util::stream::unfold(
        (0usize, locators, store, boundary, base, false),
        |(i, locators, store, boundary, base, done)| async move {
            if done {
                return None;
            }
            if i == locators.len() {
                let closing = MultipartWriter::closing(&boundary);
                return Some((
                    Ok::<Bytes, std::io::Error>(Bytes::from(closing)),
                    (i, locators, store, boundary, base, true),
                ));
            }
            let locator = locators[i].clone();
            let reader = store.clone();
            let location = instance_url(&base, &locator);
            let read = tokio::task::spawn_blocking(move || reader.read(&locator)).await;
            let chunk = match read {
                Ok(Ok(bytes)) => {
                    let head = MultipartWriter::part_header(
                        &boundary,
                        &format!(
                            "application/dicom; transfer-syntax={}",
                            locators[i].transfer_syntax_uid
                        ),
                        Some(&location),
                    );
                    let mut buf = Vec::with_capacity(head.len() + bytes.len() + 2);
                    buf.extend_from_slice(head.as_bytes());
                    buf.extend_from_slice(&bytes);
                    buf.extend_from_slice(b"\r\n");
                    Ok(Bytes::from(buf))
                }
                Ok(Err(e)) => Err(std::io::Error::other(e.to_string())),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            Some((chunk, (i + 1, locators, store, boundary, base, false)))
        },
    );
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// `GET /studies/{study}`
pub async fn retrieve_study(
    State(s): Shared,
    Path(study): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    check_uid(&study)?;
    retrieve(s, Scope::study(&study), headers).await
}

/// `GET /studies/{study}/series/{series}`
pub async fn retrieve_series(
    State(s): Shared,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    check_uid(&study)?;
    check_uid(&series)?;
    retrieve(s, Scope::series(&study, &series), headers).await
}

/// `GET /studies/{study}/series/{series}/instances/{instance}`
pub async fn retrieve_instance(
    State(s): Shared,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    check_uid(&study)?;
    check_uid(&series)?;
    check_uid(&instance)?;
    retrieve(s, Scope::instance(&study, &series, &instance), headers).await
}

/// The media type of a frame in its own transfer syntax (PS3.18 Table 8.7.3-2).
fn natural_media_type(ts: &str) -> &'static str {
    match ts {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        _ => "application/octet-stream",
    }
}

/// How frames are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FramePlan {
    /// Decode to Explicit VR Little Endian instead of sending the stored bytes.
    decode: bool,
    /// Part media type (without parameters).
    media_type: String,
    /// Transfer syntax named in the part's Content-Type.
    transfer_syntax: String,
}

fn negotiate_frames(
    ranges: &[MediaType],
    stored_ts: &str,
    encapsulated: bool,
) -> Result<FramePlan, ApiError> {
    let as_stored = |media_type: &str| FramePlan {
        decode: false,
        media_type: media_type.to_string(),
        transfer_syntax: stored_ts.to_string(),
    };
    let natural = natural_media_type(if encapsulated {
        stored_ts
    } else {
        EXPLICIT_VR_LE
    });
    if ranges.is_empty() {
        return Ok(as_stored(natural));
    }
    for range in ranges {
        let (kind, ts) = match range.essence.as_str() {
            "*/*" => return Ok(as_stored(natural)),
            "multipart/related" => (
                range.param("type").unwrap_or("application/octet-stream"),
                range.param("transfer-syntax"),
            ),
            _ => continue,
        };
        match kind {
            "*/*" | "*" => return Ok(as_stored(natural)),
            "application/octet-stream" => match ts {
                Some("*") => return Ok(as_stored("application/octet-stream")),
                None | Some(EXPLICIT_VR_LE) | Some(IMPLICIT_VR_LE) => {
                    let wanted = ts.unwrap_or(EXPLICIT_VR_LE).to_string();
                    return Ok(FramePlan {
                        decode: encapsulated,
                        media_type: "application/octet-stream".into(),
                        transfer_syntax: if encapsulated {
                            EXPLICIT_VR_LE.into()
                        } else {
                            wanted
                        },
                    });
                }
                Some(t) if t == stored_ts => return Ok(as_stored("application/octet-stream")),
                Some(_) => continue,
            },
            other if encapsulated && other == natural => match ts {
                None | Some("*") => return Ok(as_stored(natural)),
                Some(t) if t == stored_ts => return Ok(as_stored(natural)),
                Some(_) => continue,
            },
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(format!(
        "frames are offered in their stored transfer syntax {stored_ts} or as Explicit VR Little Endian"
    )))
}

fn parse_frame_list(list: &str, count: usize) -> Result<Vec<usize>, ApiError> {
    let numbers: Vec<usize> = list
        .split(',')
        .map(|n| {
            n.trim().parse::<usize>().map_err(|_| {
                ApiError::bad_request("frame list must be comma-separated numbers from 1")
            })
        })
        .collect::<Result<_, _>>()?;
    if numbers.is_empty() || numbers.len() > 100_000 {
        return Err(ApiError::bad_request("frame list is empty or too long"));
    }
    if let Some(bad) = numbers.iter().find(|&&n| n == 0 || n > count) {
        return Err(ApiError::not_found(format!(
            "frame {bad} does not exist (the instance has {count})"
        )));
    }
    Ok(numbers)
}

/// `GET /studies/{study}/series/{series}/instances/{instance}/frames/{frames}`
pub async fn frames(
    State(s): Shared,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let inst = load_by_path(&s, &study, &series, &instance).await?;
    let Some(frames) = inst.frames.as_ref() else {
        return Err(ApiError::not_found("instance has no pixel data"));
    };
    let numbers = parse_frame_list(&list, frames.frames.len())?;
    let ranges = parse_accept(accept_header(&headers));
    let plan = negotiate_frames(&ranges, &frames.transfer_syntax, frames.encapsulated)?;
    let part_type = format!(
        "{}; transfer-syntax={}",
        plan.media_type, plan.transfer_syntax
    );
    let base = base_url(&s, &headers);
    let url = instance_url(&base, &inst.locator);
    let (boundary, body) = if plan.decode {
        let inst = inst.clone();
        blocking(move || {
            let mut writer = MultipartWriter::new();
            for n in numbers {
                let decoded = inst.decode_frame(n).map_err(instance_error)?;
                writer.part(&part_type, Some(&format!("{url}/frames/{n}")), &decoded.raw);
            }
            Ok(writer.finish())
        })
        .await?
    } else {
        let mut writer = MultipartWriter::new();
        for n in numbers {
            if let Some(bytes) = inst.frame(n) {
                writer.part(&part_type, Some(&format!("{url}/frames/{n}")), bytes);
            }
        }
        writer.finish()
    };
    let content_type = format!(
        "multipart/related; type=\"{}\"; transfer-syntax={}; boundary={boundary}",
        plan.media_type, plan.transfer_syntax
    );
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).map_err(ApiError::internal)?,
    );
    Ok(response)
}

fn parse_window(pairs: &[(String, String)]) -> Result<Option<Window>, ApiError> {
    let Some((_, value)) = pairs.iter().find(|(k, _)| k == "window") else {
        return Ok(None);
    };
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    let bad = || ApiError::bad_request("window must be center,width[,linear|linear-exact|sigmoid]");
    if parts.len() < 2 || parts.len() > 3 {
        return Err(bad());
    }
    let center: f64 = parts[0].parse().map_err(|_| bad())?;
    let width: f64 = parts[1].parse().map_err(|_| bad())?;
    if !center.is_finite() || !width.is_finite() || width <= 0.0 {
        return Err(bad());
    }
    let function = match parts.get(2).map(|f| f.to_ascii_lowercase()) {
        None => WindowFunction::Linear,
        Some(f) if f == "linear" => WindowFunction::Linear,
        Some(f) if f == "linear-exact" => WindowFunction::LinearExact,
        Some(f) if f == "sigmoid" => WindowFunction::Sigmoid,
        Some(_) => return Err(bad()),
    };
    Ok(Some(Window {
        center,
        width,
        function,
    }))
}

async fn rendered_response(
    inst: Arc<ParsedInstance>,
    frame: usize,
    headers: HeaderMap,
    raw_query: Option<String>,
) -> ApiResult {
    let pairs = parse_query_string(raw_query.as_deref())?;
    let window = parse_window(&pairs)?;
    let quality = match pairs.iter().find(|(k, _)| k == "quality") {
        Some((_, q)) => q
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|q| (1..=100).contains(q))
            .ok_or_else(|| ApiError::bad_request("quality must be 1 to 100"))?,
        None => 90,
    };
    let accept_param = pairs
        .iter()
        .find(|(k, _)| k == "accept")
        .map(|(_, v)| v.clone());
    let accept = accept_param.as_deref().or(accept_header(&headers));
    let ranges = parse_accept(accept);
    let format = if ranges.is_empty() {
        RenderFormat::Jpeg(quality)
    } else {
        ranges
            .iter()
            .find_map(|m| match m.essence.as_str() {
                "image/jpeg" | "image/*" | "*/*" => Some(RenderFormat::Jpeg(quality)),
                "image/png" => Some(RenderFormat::Png),
                _ => None,
            })
            .ok_or_else(|| {
                ApiError::not_acceptable("rendered frames are offered as image/jpeg or image/png")
            })?
    };
    if frame == 0 || frame > inst.frame_count() {
        return Err(ApiError::not_found("no such frame"));
    }
    let image =
        blocking(move || render(&inst, frame, window, format).map_err(instance_error)).await?;
    let content_type = match format {
        RenderFormat::Jpeg(_) => "image/jpeg",
        RenderFormat::Png => "image/png",
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        image,
    )
        .into_response())
}

/// `GET /studies/{study}/series/{series}/instances/{instance}/rendered` (first frame)
pub async fn instance_rendered(
    State(s): Shared,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let inst = load_by_path(&s, &study, &series, &instance).await?;
    rendered_response(inst, 1, headers, q).await
}

/// `GET /studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered`
pub async fn frame_rendered(
    State(s): Shared,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let inst = load_by_path(&s, &study, &series, &instance).await?;
    let numbers = parse_frame_list(&list, inst.frame_count())?;
    rendered_response(inst, numbers[0], headers, q).await
}

/// `GET /studies/{study}/series/{series}/instances/{instance}/bulkdata/{*path}`
pub async fn bulkdata(
    State(s): Shared,
    Path((study, series, instance, path)): Path<(String, String, String, String)>,
) -> ApiResult {
    let inst = load_by_path(&s, &study, &series, &instance).await?;
    let segments: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let bad = || ApiError::bad_request("bulk data path must be TAG or TAG/ITEM/TAG...");
    let parse_tag = |t: &str| -> Result<Tag, ApiError> {
        if t.len() != 8 {
            return Err(bad());
        }
        let group = u16::from_str_radix(&t[..4], 16).map_err(|_| bad())?;
        let element = u16::from_str_radix(&t[4..], 16).map_err(|_| bad())?;
        Ok(Tag(group, element))
    };
    if segments.len().is_multiple_of(2) {
        return Err(bad());
    }
    let mut writer = MultipartWriter::new();
    if segments.len() == 1 && parse_tag(segments[0])? == PIXEL_DATA {
        let frames = inst
            .frames
            .as_ref()
            .ok_or_else(|| ApiError::not_found("instance has no pixel data"))?;
        let part_type = format!(
            "{}; transfer-syntax={}",
            natural_media_type(&frames.transfer_syntax),
            frames.transfer_syntax
        );
        if frames.encapsulated {
            for f in &frames.frames {
                writer.part(&part_type, None, f);
            }
        } else {
            writer.part(&part_type, None, &frames.native);
        }
    } else {
        let mut obj = &inst.header;
        let mut i = 0;
        let bytes = loop {
            let tag = parse_tag(segments[i])?;
            let elem = obj
                .element_opt(tag)
                .ok()
                .flatten()
                .ok_or_else(|| ApiError::not_found("no such bulk data element"))?;
            if i + 1 == segments.len() {
                match elem.value() {
                    DicomValue::Primitive(p) => break p.to_bytes().into_owned(),
                    _ => return Err(ApiError::not_found("no such bulk data element")),
                }
            }
            let index: usize = segments[i + 1].parse().map_err(|_| bad())?;
            obj = match elem.value() {
                DicomValue::Sequence(seq) => seq
                    .items()
                    .get(index)
                    .ok_or_else(|| ApiError::not_found("no such sequence item"))?,
                _ => return Err(ApiError::not_found("no such sequence")),
            };
            i += 2;
        };
        writer.part("application/octet-stream", None, &bytes);
    }
    let (boundary, body) = writer.finish();
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&format!(
            "multipart/related; type=\"application/octet-stream\"; boundary={boundary}"
        ))
        .map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// Failure reasons (0008,1197) for STOW-RS, as DIMSE C-STORE statuses.
mod failure {
    /// Processing failure.
    pub const PROCESSING: u16 = 0x0110;
    /// Duplicate SOP instance (different content under an existing UID).
    pub const DUPLICATE: u16 = 0x0111;
    /// Refused: out of resources.
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// The instance's Study Instance UID differs from the one in the request path.
    pub const STUDY_MISMATCH: u16 = 0xA900;
}

fn failed_item(class: Option<&str>, instance: Option<&str>, reason: u16) -> Value {
    let mut item = serde_json::Map::new();
    if let Some(c) = class {
        item.insert("00081150".into(), json!({"vr": "UI", "Value": [c]}));
    }
    if let Some(i) = instance {
        item.insert("00081155".into(), json!({"vr": "UI", "Value": [i]}));
    }
    item.insert("00081197".into(), json!({"vr": "US", "Value": [reason]}));
    Value::Object(item)
}

/// `POST /studies` and `POST /studies/{study}`
pub async fn store_instances(
    State(s): Shared,
    study: Option<Path<String>>,
    headers: HeaderMap,
    request: Request,
) -> ApiResult {
    let study = study.map(|Path(p)| p);
    if let Some(study) = &study {
        check_uid(study)?;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_media_type)
        .ok_or_else(|| {
            ApiError::unsupported_media_type("Content-Type multipart/related is required")
        })?;
    if content_type.essence != "multipart/related" {
        return Err(ApiError::unsupported_media_type(
            "STOW-RS takes multipart/related; type=\"application/dicom\"",
        ));
    }
    if let Some(kind) = content_type.param("type")
        && kind != "application/dicom"
    {
        return Err(ApiError::unsupported_media_type(
            "only application/dicom parts are accepted (not the JSON or XML metadata forms)",
        ));
    }
    let boundary = content_type
        .param("boundary")
        .ok_or_else(|| ApiError::bad_request("multipart/related without boundary"))?
        .to_string();
    let limit = s.config.max_request_bytes;
    let body = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than the limit of {limit} bytes or was cut short"),
            )
        })?;
    let parts = parse_multipart(&body, &boundary)?;
    if parts.is_empty() {
        return Err(ApiError::bad_request("multipart body has no parts"));
    }
    let base = base_url(&s, &headers);
    let store = s.store.clone();
    let (referenced, failed, studies) = blocking(move || {
        let mut referenced = Vec::new();
        let mut failed = Vec::new();
        let mut studies = Vec::new();
        for part in parts {
            if let Some(ct) = &part.content_type
                && ct.essence != "application/dicom"
            {
                failed.push(failed_item(None, None, failure::CANNOT_UNDERSTAND));
                continue;
            }
            let parsed = match bedside_dicom::read::read_bytes(&part.body) {
                Ok(p) => p,
                Err(_) => {
                    failed.push(failed_item(None, None, failure::CANNOT_UNDERSTAND));
                    continue;
                }
            };
            let text = |tag| {
                parsed
                    .element_opt(tag)
                    .ok()
                    .flatten()
                    .and_then(|e| e.to_str().ok())
                    .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
            };
            let class = text(tags::SOP_CLASS_UID);
            let uid = text(tags::SOP_INSTANCE_UID);
            let this_study = text(tags::STUDY_INSTANCE_UID);
            if let Some(wanted) = &study
                && this_study.as_deref() != Some(wanted.as_str())
            {
                failed.push(failed_item(
                    class.as_deref(),
                    uid.as_deref(),
                    failure::STUDY_MISMATCH,
                ));
                continue;
            }
            drop(parsed);
            match store.store(part.body) {
                Ok(outcome) => {
                    let l = match &outcome {
                        StoreOutcome::Stored(l) | StoreOutcome::AlreadyStored(l) => l,
                    };
                    if !studies.contains(&l.study_instance_uid) {
                        studies.push(l.study_instance_uid.clone());
                    }
                    referenced.push(json!({
                        "00081150": {"vr": "UI", "Value": [l.sop_class_uid]},
                        "00081155": {"vr": "UI", "Value": [l.sop_instance_uid]},
                        "00081190": {"vr": "UR", "Value": [instance_url(&base, l)]},
                    }));
                }
                Err(err) => {
                    let reason = match &err {
                        StoreError::Conflict => failure::DUPLICATE,
                        StoreError::Refused(_) => failure::CANNOT_UNDERSTAND,
                        StoreError::Backend(_) => {
                            tracing::error!(error = %err, "STOW-RS store failed");
                            failure::OUT_OF_RESOURCES
                        }
                        _ => failure::PROCESSING,
                    };
                    failed.push(failed_item(class.as_deref(), uid.as_deref(), reason));
                }
            }
        }
        Ok((referenced, failed, studies))
    })
    .await?;
    let base = base_url(&s, &headers);
    let mut response = serde_json::Map::new();
    if studies.len() == 1 {
        response.insert(
            "00081190".into(),
            json!({"vr": "UR", "Value": [format!("{base}/studies/{}", studies[0])]}),
        );
    }
    if !failed.is_empty() {
        response.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
    }
    if !referenced.is_empty() {
        response.insert("00081199".into(), json!({"vr": "SQ", "Value": referenced}));
    }
    let status = if failed.is_empty() {
        StatusCode::OK
    } else if referenced.is_empty() {
        StatusCode::CONFLICT
    } else {
        StatusCode::ACCEPTED
    };
    Ok(json_response(status, Value::Object(response)))
}

/// Anything else under the DICOMweb root.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such DICOMweb resource")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn accept(s: &str) -> Vec<MediaType> {
        parse_accept(Some(s))
    }

    #[test]
    fn ohif_frame_accept_sends_stored_bytes() {
        let plan = negotiate_frames(
            &accept("multipart/related; type=application/octet-stream; transfer-syntax=*"),
            "1.2.840.10008.1.2.4.50",
            true,
        )
        .unwrap();
        assert!(!plan.decode);
        assert_eq!(plan.transfer_syntax, "1.2.840.10008.1.2.4.50");
    }

    #[test]
    fn uncompressed_request_decodes_compressed_frames() {
        let plan = negotiate_frames(
            &accept("multipart/related; type=\"application/octet-stream\""),
            "1.2.840.10008.1.2.4.50",
            true,
        )
        .unwrap();
        assert!(plan.decode);
        assert_eq!(plan.transfer_syntax, EXPLICIT_VR_LE);
        assert!(
            negotiate_frames(
                &accept("multipart/related; type=image/jp2"),
                "1.2.840.10008.1.2.4.50",
                true
            )
            .is_err()
        );
    }

    #[test]
    fn uid_checks() {
        assert!(check_uid("1.2.3").is_ok());
        assert!(check_uid("1.2.3/../x").is_err());
        assert!(check_uid("").is_err());
        assert!(check_uid(&"1".repeat(65)).is_err());
    }
}
