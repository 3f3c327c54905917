//! DICOM upper layer: a storage SCP (C-STORE, C-ECHO) that acknowledges an instance only after
//! the store holds it on disk, and a storage SCU that sends reports to the destination PACS.
//!
//! Command sets are encoded here (dicom-ul moves PDUs, not DIMSE messages): Implicit VR Little
//! Endian with the Command Group Length first. Anything malformed gets a failure status when a
//! response can be addressed (a data set that does not parse, a UID that disagrees with the
//! command) and an A-ABORT when it cannot (an unreadable command set); the thread serving the
//! association ends either way and the service carries on.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::Pdu;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::pdu::{AssociationRJServiceUserReason, PDataValue, PDataValueType, UserIdentity};

use crate::config::{Destination, ServeConfig};
use crate::metrics;
use crate::store::{Intake, QueueError, Source, Store};

/// Verification SOP Class.
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

/// DIMSE status values used here.
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0x0000;
    /// Refused: out of resources.
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class (here: the UIDs disagree with the command).
    pub const DATASET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Error: an instance with this SOP Instance UID and other content is stored.
    pub const DUPLICATE_CONFLICT: u16 = 0xC001;
    /// Processing failure.
    pub const PROCESSING_FAILURE: u16 = 0x0110;
}

/// Why sending failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DimseError {
    /// Association could not be established or broke.
    #[error("association with {peer}: {message}")]
    Association {
        /// host:port.
        peer: String,
        /// What failed.
        message: String,
    },
    /// The peer answered with a failure status.
    #[error("peer answered status 0x{0:04X}")]
    Status(u16),
    /// Encoding failed.
    #[error("encoding: {0}")]
    Encode(String),
}

fn put_uid(obj: &mut InMemDicomObject, tag: Tag, uid: &str) {
    obj.put(DataElement::new(tag, VR::UI, PrimitiveValue::from(uid)));
}

fn put_us(obj: &mut InMemDicomObject, tag: Tag, v: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
}

/// Encodes a command set with its group length, in Implicit VR Little Endian.
pub fn encode_command(mut obj: InMemDicomObject) -> Result<Vec<u8>, DimseError> {
    let ts = IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let mut body = Vec::new();
    obj.write_dataset_with_ts(&mut body, &ts)
        .map_err(|e| DimseError::Encode(e.to_string()))?;
    obj.put(DataElement::new(
        tags::COMMAND_GROUP_LENGTH,
        VR::UL,
        PrimitiveValue::from(body.len() as u32),
    ));
    let mut out = Vec::with_capacity(body.len() + 12);
    obj.write_dataset_with_ts(&mut out, &ts)
        .map_err(|e| DimseError::Encode(e.to_string()))?;
    Ok(out)
}

/// A response command (C-STORE-RSP, C-ECHO-RSP).
fn response(
    field: u16,
    class: &str,
    instance: Option<&str>,
    msg_id: u16,
    status: u16,
    comment: Option<&str>,
) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    put_uid(&mut obj, tags::AFFECTED_SOP_CLASS_UID, class);
    put_us(&mut obj, tags::COMMAND_FIELD, field);
    put_us(&mut obj, tags::MESSAGE_ID_BEING_RESPONDED_TO, msg_id);
    put_us(&mut obj, tags::COMMAND_DATA_SET_TYPE, 0x0101);
    put_us(&mut obj, tags::STATUS, status);
    if let Some(uid) = instance {
        put_uid(&mut obj, tags::AFFECTED_SOP_INSTANCE_UID, uid);
    }
    if let Some(c) = comment {
        // Error Comment is LO: at most 64 characters.
        let c: String = c.chars().take(64).collect();
        obj.put(DataElement::new(
            tags::ERROR_COMMENT,
            VR::LO,
            PrimitiveValue::from(c),
        ));
    }
    obj
}

/// The calling AE titles allowed in (empty: any) and the called title that must match.
struct Allowed(Vec<String>);

impl AccessControl for Allowed {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if this_ae_title.trim() != called_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.0.is_empty() && !self.0.iter().any(|a| a.trim() == calling_ae_title.trim()) {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

/// Builds a Part 10 file from a data set received in `ts`, keeping its bytes as they came.
pub fn part10(
    dataset: &[u8],
    class: &str,
    instance: &str,
    ts: &str,
) -> Result<Vec<u8>, DimseError> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid(instance)
        .transfer_syntax(ts)
        .implementation_class_uid(bedside_dicom::write::IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(bedside_dicom::write::IMPLEMENTATION_VERSION_NAME)
        .build()
        .map_err(|e| DimseError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(dataset.len() + 512);
    out.extend_from_slice(&[0u8; 128]);
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| DimseError::Encode(e.to_string()))?;
    out.extend_from_slice(dataset);
    Ok(out)
}

/// Listens for associations until `stop` is set; one thread per association.
pub fn serve(
    listener: TcpListener,
    config: Arc<ServeConfig>,
    store: Arc<Store>,
    stop: Arc<AtomicBool>,
) {
    listener.set_nonblocking(true).ok();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).ok();
                let (config, store) = (Arc::clone(&config), Arc::clone(&store));
                let spawned = std::thread::Builder::new()
                    .name("dimse-association".into())
                    .spawn(move || associate(stream, &config, &store));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start an association thread");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Serves one association to its end (release, abort, error or idle timeout).
pub fn associate(stream: TcpStream, config: &ServeConfig, store: &Store) {
    // PDUs go out in several writes; without this a delayed ACK can hold each response ~40 ms.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot disable Nagle's algorithm");
    }
    let timeout = Duration::from_secs(config.intake.idle_timeout_s);
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(Allowed(config.allowed_calling_aes.clone()))
        .ae_title(config.ae_title.clone())
        .max_pdu_length(config.intake.max_pdu_length)
        .promiscuous(true)
        .read_timeout(timeout)
        .write_timeout(timeout)
        .with_abstract_syntax(VERIFICATION);
    for ts in TransferSyntaxRegistry.iter() {
        if !ts.is_unsupported() {
            options = options.with_transfer_syntax(ts.uid());
        }
    }
    let mut association = match options.establish(stream) {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(error = %e, "association refused or failed");
            return;
        }
    };
    tracing::info!("association accepted");
    let mut command: Vec<u8> = Vec::new();
    let mut current: Option<(u16, String, String, u8)> = None; // message id, class, instance, pc
    let mut dataset: Vec<u8> = Vec::new();
    let mut too_large = false;
    loop {
        let pdu = match association.receive() {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(error = %e, "association ended without release");
                return;
            }
        };
        match pdu {
            Pdu::PData { data } => {
                for pdv in data {
                    match pdv.value_type {
                        PDataValueType::Command => {
                            command.extend_from_slice(&pdv.data);
                            if !pdv.is_last {
                                continue;
                            }
                            let parsed = InMemDicomObject::read_dataset_with_ts(
                                command.as_slice(),
                                &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
                            );
                            command.clear();
                            let Ok(cmd) = parsed else {
                                tracing::warn!("unreadable command set: aborting the association");
                                let _ = association.abort();
                                return;
                            };
                            let field = cmd
                                .element(tags::COMMAND_FIELD)
                                .ok()
                                .and_then(|e| e.to_int::<u16>().ok());
                            let msg_id = cmd
                                .element(tags::MESSAGE_ID)
                                .ok()
                                .and_then(|e| e.to_int::<u16>().ok());
                            let text = |tag| {
                                cmd.element(tag)
                                    .ok()
                                    .and_then(|e| e.to_str().ok())
                                    .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
                            };
                            match (field, msg_id) {
                                (Some(0x0030), Some(id)) => {
                                    let rsp = response(
                                        0x8030,
                                        VERIFICATION,
                                        None,
                                        id,
                                        status::SUCCESS,
                                        None,
                                    );
                                    if send_command(
                                        &mut association,
                                        pdv.presentation_context_id,
                                        rsp,
                                    )
                                    .is_err()
                                    {
                                        return;
                                    }
                                }
                                (Some(0x0001), Some(id)) => {
                                    let (Some(class), Some(instance)) = (
                                        text(tags::AFFECTED_SOP_CLASS_UID),
                                        text(tags::AFFECTED_SOP_INSTANCE_UID),
                                    ) else {
                                        tracing::warn!(
                                            "C-STORE-RQ without affected UIDs: aborting"
                                        );
                                        let _ = association.abort();
                                        return;
                                    };
                                    current =
                                        Some((id, class, instance, pdv.presentation_context_id));
                                    dataset.clear();
                                    too_large = false;
                                }
                                _ => {
                                    tracing::warn!(command = ?field, "unsupported or malformed command: aborting");
                                    let _ = association.abort();
                                    return;
                                }
                            }
                        }
                        PDataValueType::Data => {
                            if current.is_none() {
                                tracing::warn!("data without a C-STORE-RQ: aborting");
                                let _ = association.abort();
                                return;
                            }
                            if dataset.len() + pdv.data.len() > config.intake.max_instance_bytes {
                                too_large = true;
                                dataset = Vec::new();
                            } else if !too_large {
                                dataset.extend_from_slice(&pdv.data);
                            }
                            if !pdv.is_last {
                                continue;
                            }
                            let Some((id, class, instance, pc)) = current.take() else {
                                continue;
                            };
                            let started = Instant::now();
                            let ts = association
                                .presentation_contexts()
                                .iter()
                                .find(|p| p.id == pc)
                                .map(|p| p.transfer_syntax.trim_end_matches('\0').to_string())
                                .unwrap_or_default();
                            let (code, comment) = if too_large {
                                metrics::global().rejected("too_large");
                                (
                                    status::OUT_OF_RESOURCES,
                                    Some(
                                        "instance larger than intake.max_instance_bytes"
                                            .to_string(),
                                    ),
                                )
                            } else {
                                store_one(store, &dataset, &class, &instance, &ts)
                            };
                            dataset = Vec::new();
                            metrics::global().observe("receive", started.elapsed().as_secs_f64());
                            let rsp = response(
                                0x8001,
                                &class,
                                Some(&instance),
                                id,
                                code,
                                comment.as_deref(),
                            );
                            if send_command(&mut association, pc, rsp).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                let _ = association.send(&Pdu::ReleaseRP);
                tracing::info!("association released");
                return;
            }
            Pdu::AbortRQ { .. } => {
                tracing::info!("association aborted by the peer");
                return;
            }
            other => {
                tracing::warn!(pdu = %other.short_description(), "unexpected PDU: aborting");
                let _ = association.abort();
                return;
            }
        }
    }
}

fn store_one(
    store: &Store,
    dataset: &[u8],
    class: &str,
    instance: &str,
    ts: &str,
) -> (u16, Option<String>) {
    metrics::global().received(Source::Dimse);
    if !bedside_dicom::uid::is_valid(instance) || !bedside_dicom::uid::is_valid(class) {
        metrics::global().rejected("invalid_uid");
        return (
            status::CANNOT_UNDERSTAND,
            Some("invalid affected SOP UIDs".into()),
        );
    }
    let bytes = match part10(dataset, class, instance, ts) {
        Ok(b) => b,
        Err(e) => return (status::PROCESSING_FAILURE, Some(e.to_string())),
    };
    let obj = match bedside_dicom::read::read_bytes(&bytes) {
        Ok(o) => o,
        Err(_) => {
            metrics::global().rejected("unreadable");
            return (
                status::CANNOT_UNDERSTAND,
                Some("data set cannot be parsed".into()),
            );
        }
    };
    let uid = |tag| {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
    };
    if uid(tags::SOP_INSTANCE_UID).as_deref() != Some(instance)
        || uid(tags::SOP_CLASS_UID).as_deref() != Some(class)
    {
        metrics::global().rejected("uid_mismatch");
        return (
            status::DATASET_MISMATCH,
            Some("SOP UIDs differ from the command".into()),
        );
    }
    match store.put(&bytes, &obj, Source::Dimse) {
        Ok(Intake::Stored(_) | Intake::AlreadyStored(_)) => (status::SUCCESS, None),
        Err(QueueError::Conflict) => {
            metrics::global().rejected("duplicate_conflict");
            (
                status::DUPLICATE_CONFLICT,
                Some("other content already stored under this UID".into()),
            )
        }
        Err(QueueError::Refused(m)) => {
            metrics::global().rejected("refused");
            (status::CANNOT_UNDERSTAND, Some(m))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store a received instance");
            (status::OUT_OF_RESOURCES, Some("storage failure".into()))
        }
    }
}

fn send_command(
    association: &mut dicom_ul::ServerAssociation<TcpStream>,
    pc: u8,
    cmd: InMemDicomObject,
) -> Result<(), ()> {
    let data = encode_command(cmd).map_err(|_| ())?;
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Command,
                is_last: true,
                data,
            }],
        })
        .map_err(|e| tracing::info!(error = %e, "cannot send a response"))
}

/// Sends Part 10 files to `dest` by C-STORE over one association; each file's transfer syntax
/// is proposed as it is (reports are Explicit VR Little Endian).
pub fn send(dest: &Destination, calling: &str, files: &[Vec<u8>]) -> Result<(), DimseError> {
    let peer = format!("{}:{}", dest.host, dest.port);
    let fail = |message: String| DimseError::Association {
        peer: peer.clone(),
        message,
    };
    let mut objects = Vec::with_capacity(files.len());
    for f in files {
        let obj =
            bedside_dicom::read::read_bytes(f).map_err(|e| DimseError::Encode(e.to_string()))?;
        objects.push(obj);
    }
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(calling.to_string())
        .called_ae_title(dest.ae_title.clone())
        .connection_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .write_timeout(Duration::from_secs(60));
    let mut classes: Vec<(String, String)> = Vec::new();
    for o in &objects {
        let key = (
            o.meta()
                .media_storage_sop_class_uid()
                .trim_end_matches('\0')
                .to_string(),
            o.meta()
                .transfer_syntax()
                .trim_end_matches('\0')
                .to_string(),
        );
        if !classes.contains(&key) {
            classes.push(key);
        }
    }
    for (class, ts) in &classes {
        options = options.with_presentation_context(class.clone(), vec![ts.clone()]);
    }
    let mut association = options
        .establish(peer.as_str())
        .map_err(|e| fail(e.to_string()))?;
    // As on the receiving side: small PDU writes must not wait for delayed ACKs.
    if let Err(e) = association.inner_stream().set_nodelay(true) {
        tracing::debug!(error = %e, "cannot disable Nagle's algorithm");
    }
    for (i, o) in objects.iter().enumerate() {
        let class = o
            .meta()
            .media_storage_sop_class_uid()
            .trim_end_matches('\0')
            .to_string();
        let instance = o
            .meta()
            .media_storage_sop_instance_uid()
            .trim_end_matches('\0')
            .to_string();
        let ts_uid = o
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        let pc = association
            .presentation_contexts()
            .iter()
            .find(|p| {
                p.abstract_syntax == class && p.transfer_syntax.trim_end_matches('\0') == ts_uid
            })
            .map(|p| p.id)
            .ok_or_else(|| fail(format!("presentation context for {class} refused")))?;
        let ts = TransferSyntaxRegistry
            .get(&ts_uid)
            .ok_or_else(|| DimseError::Encode(format!("unknown transfer syntax {ts_uid}")))?;
        let mut data = Vec::new();
        o.write_dataset_with_ts(&mut data, ts)
            .map_err(|e| DimseError::Encode(e.to_string()))?;
        let mut cmd = InMemDicomObject::new_empty();
        put_uid(&mut cmd, tags::AFFECTED_SOP_CLASS_UID, &class);
        put_us(&mut cmd, tags::COMMAND_FIELD, 0x0001);
        put_us(&mut cmd, tags::MESSAGE_ID, (i + 1) as u16);
        put_us(&mut cmd, tags::PRIORITY, 0);
        put_us(&mut cmd, tags::COMMAND_DATA_SET_TYPE, 0x0000);
        put_uid(&mut cmd, tags::AFFECTED_SOP_INSTANCE_UID, &instance);
        let cmd = encode_command(cmd)?;
        association
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: cmd,
                }],
            })
            .map_err(|e| fail(e.to_string()))?;
        {
            use std::io::Write;
            let mut writer = association.send_pdata(pc);
            writer.write_all(&data).map_err(|e| fail(e.to_string()))?;
            writer.finish().map_err(|e| fail(e.to_string()))?;
        }
        let rsp = receive_command(&mut association).map_err(fail)?;
        let code = rsp
            .element(tags::STATUS)
            .ok()
            .and_then(|e| e.to_int::<u16>().ok())
            .unwrap_or(0xFFFF);
        // 0xB000-0xBFFF are warnings: the instance is stored.
        if code != status::SUCCESS && !(0xB000..=0xBFFF).contains(&code) {
            let _ = association.abort();
            return Err(DimseError::Status(code));
        }
    }
    association.release().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// Receives PDUs until a complete command set arrives.
fn receive_command(
    association: &mut dicom_ul::ClientAssociation<TcpStream>,
) -> Result<InMemDicomObject, String> {
    let mut buf = Vec::new();
    loop {
        match association.receive().map_err(|e| e.to_string())? {
            Pdu::PData { data } => {
                for pdv in data {
                    if pdv.value_type == PDataValueType::Command {
                        buf.extend_from_slice(&pdv.data);
                        if pdv.is_last {
                            return InMemDicomObject::read_dataset_with_ts(
                                buf.as_slice(),
                                &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
                            )
                            .map_err(|e| e.to_string());
                        }
                    }
                }
            }
            other => return Err(format!("unexpected {}", other.short_description())),
        }
    }
}
