//! One study as a DICOM file: the US Multi-frame Image IOD with realistic header PHI (recorded as
//! it is planted), pixel data native or JPEG baseline, and the ultrasound region calibration.

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::Serialize;

use bedside_dicom::elements::{
    code_item, put_ds, put_empty, put_f64, put_i32, put_is, put_seq, put_str, put_tag, put_u16,
    put_u32,
};
use bedside_dicom::{pixel, sop, ts};

use crate::cohort::{InSectorText, Patient, Study};
use crate::render::{Placement, Region, TextSpec};
use crate::sites::{DateStyle, NameStyle, Site};

/// The private creator under which the phantom plants PHI, as scanners do in their own blocks.
pub const PRIVATE_CREATOR: &str = "BEDSIDE PHANTOM 1";

/// One planted header value.
#[derive(Debug, Clone, Serialize)]
pub struct HeaderPhi {
    /// Location: `(gggg,eeee)`, nested as `(0010,1002)[0].(0010,0020)`.
    pub path: String,
    /// Attribute keyword (or a description for private elements).
    pub keyword: String,
    /// Value representation.
    pub vr: String,
    /// The exact value written.
    pub value: String,
    /// `name`, `id`, `date`, `time`, `datetime`, `uid`, `institution`, `address`, `phone`,
    /// `free_text`, `device`, `private` or `characteristic` (not identifying on its own).
    pub category: &'static str,
    /// Private creator of the block, for private elements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_creator: Option<&'static str>,
}

/// Kinds of burned-in items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextKind {
    /// Institution name.
    Institution,
    /// Study date and time.
    StudyDatetime,
    /// Patient name.
    PatientName,
    /// Record number.
    PatientId,
    /// Date of birth.
    BirthDate,
}

fn tag_text(t: Tag) -> String {
    format!("({:04X},{:04X})", t.group(), t.element())
}

/// Collects header PHI while the data set is built.
struct Planter {
    entries: Vec<HeaderPhi>,
}

impl Planter {
    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        obj: &mut InMemDicomObject,
        prefix: &str,
        tag: Tag,
        keyword: &str,
        vr: VR,
        value: &str,
        category: &'static str,
    ) {
        put_str(obj, tag, vr, value);
        self.entries.push(HeaderPhi {
            path: format!("{prefix}{}", tag_text(tag)),
            keyword: keyword.to_string(),
            vr: vr.to_string().to_string(),
            value: value.to_string(),
            category,
            private_creator: None,
        });
    }
}

/// Formats a name as the site's scanner shows it.
pub fn styled_name(p: &Patient, style: NameStyle) -> String {
    match style {
        NameStyle::LastCommaFirst => format!("{}, {}", p.family, p.given),
        NameStyle::FirstLast => format!("{} {}", p.given, p.family),
        NameStyle::Caret => p.pn(),
    }
}

/// Formats a date as the site's scanner shows it.
pub fn styled_date(d: crate::date::Date, style: DateStyle) -> String {
    match style {
        DateStyle::Iso => d.iso(),
        DateStyle::Us => d.us(),
        DateStyle::European => d.european(),
    }
}

/// The burned-in text items of a study, laid out for an image `columns` wide.
pub fn text_specs(
    p: &Patient,
    s: &Study,
    site: &Site,
    rows: usize,
    columns: usize,
) -> Vec<(TextKind, TextSpec)> {
    let time = format!("{}:{}:{}", &s.time[0..2], &s.time[2..4], &s.time[4..6]);
    let name = styled_name(p, site.name_style);
    let items = [
        (TextKind::Institution, "", site.institution.to_string()),
        (
            TextKind::StudyDatetime,
            "",
            format!("{} {time}", styled_date(s.date, site.date_style)),
        ),
        (TextKind::PatientName, "", name.clone()),
        (TextKind::PatientId, "ID ", p.mrn.clone()),
        (
            TextKind::BirthDate,
            "DOB ",
            styled_date(p.birth_date, site.date_style),
        ),
    ];
    let scale = (rows / 240).max(1);
    let usable = columns.saturating_sub(4 * scale + 8 * scale);
    let width = |i: usize| (items[i].1.len() + items[i].2.chars().count()) * 8 * scale;
    let pairs_fit = width(0) + width(1) <= usable && width(2) + width(3) <= usable;
    let placement = |i: usize| {
        if pairs_fit {
            match i {
                0 => Placement::HeaderLeft(0),
                1 => Placement::HeaderRight(0),
                2 => Placement::HeaderLeft(1),
                3 => Placement::HeaderRight(1),
                _ => Placement::HeaderLeft(2),
            }
        } else {
            Placement::HeaderLeft(i)
        }
    };
    let mut out: Vec<(TextKind, TextSpec)> = items
        .iter()
        .enumerate()
        .map(|(i, (kind, prefix, value))| {
            (
                *kind,
                TextSpec {
                    prefix: prefix.to_string(),
                    value: value.clone(),
                    placement: placement(i),
                },
            )
        })
        .collect();
    if let Some(which) = s.in_sector_text {
        let (kind, value) = match which {
            InSectorText::Name => (TextKind::PatientName, name),
            InSectorText::Mrn => (TextKind::PatientId, p.mrn.clone()),
            InSectorText::BirthDate => (
                TextKind::BirthDate,
                styled_date(p.birth_date, site.date_style),
            ),
        };
        out.push((
            kind,
            TextSpec {
                prefix: String::new(),
                value,
                placement: Placement::InSector,
            },
        ));
    }
    out
}

/// Pixel encoding choices of a file.
#[derive(Debug, Clone, Copy)]
pub struct Encoding {
    /// RGB (else MONOCHROME2).
    pub rgb: bool,
    /// JPEG baseline (else explicit VR little endian, native).
    pub jpeg: bool,
    /// JPEG quality.
    pub quality: u8,
}

impl Encoding {
    /// PhotometricInterpretation as written.
    pub fn photometric(&self) -> &'static str {
        match (self.rgb, self.jpeg) {
            (false, _) => "MONOCHROME2",
            (true, false) => "RGB",
            (true, true) => "YBR_FULL_422",
        }
    }

    /// Transfer syntax UID as written.
    pub fn transfer_syntax(&self) -> &'static str {
        if self.jpeg {
            ts::JPEG_BASELINE
        } else {
            ts::EXPLICIT_VR_LE
        }
    }
}

/// Why a study could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StudyError {
    /// Pixel encoding failed.
    #[error(transparent)]
    Pixel(#[from] pixel::EncodeError),
    /// File writing failed.
    #[error(transparent)]
    Write(#[from] bedside_dicom::write::WriteError),
}

/// Builds the data set of one study around its rendered `pixels` (all frames, interleaved
/// samples) and records every planted header value.
#[allow(clippy::too_many_arguments)]
pub fn build(
    p: &Patient,
    s: &Study,
    site: &Site,
    rows: usize,
    columns: usize,
    region: &Region,
    pixels: Vec<u8>,
    enc: Encoding,
) -> Result<(InMemDicomObject, Vec<HeaderPhi>), StudyError> {
    let mut obj = InMemDicomObject::new_empty();
    let mut pl = Planter {
        entries: Vec::new(),
    };
    let da = s.date.da();
    let stamp_time = s.time.clone();
    let acq_time = format!(
        "{}{:02}",
        &s.time[..4],
        (s.time[4..6].parse::<u32>().unwrap_or(0) + 7) % 60
    );

    // SOP Common.
    put_str(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
    put_str(&mut obj, tags::SOP_CLASS_UID, VR::UI, sop::US_MULTIFRAME);
    pl.put(
        &mut obj,
        "",
        tags::SOP_INSTANCE_UID,
        "SOPInstanceUID",
        VR::UI,
        &s.sop_uid,
        "uid",
    );
    pl.put(
        &mut obj,
        "",
        tags::INSTANCE_CREATION_DATE,
        "InstanceCreationDate",
        VR::DA,
        &da,
        "date",
    );
    pl.put(
        &mut obj,
        "",
        tags::INSTANCE_CREATION_TIME,
        "InstanceCreationTime",
        VR::TM,
        &acq_time,
        "time",
    );

    // General Study.
    pl.put(
        &mut obj,
        "",
        tags::STUDY_INSTANCE_UID,
        "StudyInstanceUID",
        VR::UI,
        &s.study_uid,
        "uid",
    );
    pl.put(
        &mut obj,
        "",
        tags::STUDY_DATE,
        "StudyDate",
        VR::DA,
        &da,
        "date",
    );
    pl.put(
        &mut obj,
        "",
        tags::STUDY_TIME,
        "StudyTime",
        VR::TM,
        &stamp_time,
        "time",
    );
    let referring = format!("{}^{}^^DR", s.referring.0, s.referring.1);
    pl.put(
        &mut obj,
        "",
        tags::REFERRING_PHYSICIAN_NAME,
        "ReferringPhysicianName",
        VR::PN,
        &referring,
        "name",
    );
    pl.put(
        &mut obj,
        "",
        tags::STUDY_ID,
        "StudyID",
        VR::SH,
        &s.study_id,
        "id",
    );
    pl.put(
        &mut obj,
        "",
        tags::ACCESSION_NUMBER,
        "AccessionNumber",
        VR::SH,
        &s.accession,
        "id",
    );
    put_str(
        &mut obj,
        tags::STUDY_DESCRIPTION,
        VR::LO,
        "ECHO TTE COMPLETE",
    );

    // Patient.
    pl.put(
        &mut obj,
        "",
        tags::PATIENT_NAME,
        "PatientName",
        VR::PN,
        &p.pn(),
        "name",
    );
    pl.put(
        &mut obj,
        "",
        tags::PATIENT_ID,
        "PatientID",
        VR::LO,
        &p.mrn,
        "id",
    );
    let issuer = format!("{} MRN", site.institution);
    pl.put(
        &mut obj,
        "",
        tags::ISSUER_OF_PATIENT_ID,
        "IssuerOfPatientID",
        VR::LO,
        &issuer,
        "institution",
    );
    pl.put(
        &mut obj,
        "",
        tags::PATIENT_BIRTH_DATE,
        "PatientBirthDate",
        VR::DA,
        &p.birth_date.da(),
        "date",
    );
    pl.put(
        &mut obj,
        "",
        tags::PATIENT_SEX,
        "PatientSex",
        VR::CS,
        &p.sex.to_string(),
        "characteristic",
    );
    {
        let mut item = InMemDicomObject::new_empty();
        let prefix = format!("{}[0].", tag_text(tags::OTHER_PATIENT_I_DS_SEQUENCE));
        pl.put(
            &mut item,
            &prefix,
            tags::PATIENT_ID,
            "PatientID",
            VR::LO,
            &p.other_mrn,
            "id",
        );
        put_str(&mut item, tags::TYPE_OF_PATIENT_ID, VR::CS, "TEXT");
        let other_issuer = format!("{} LEGACY", site.station);
        pl.put(
            &mut item,
            &prefix,
            tags::ISSUER_OF_PATIENT_ID,
            "IssuerOfPatientID",
            VR::LO,
            &other_issuer,
            "institution",
        );
        put_seq(&mut obj, tags::OTHER_PATIENT_I_DS_SEQUENCE, vec![item]);
    }
    if let Some(birth) = &p.birth_family {
        let other = format!("{}^{}", birth, p.given);
        pl.put(
            &mut obj,
            "",
            tags::OTHER_PATIENT_NAMES,
            "OtherPatientNames",
            VR::PN,
            &other,
            "name",
        );
    }
    pl.put(
        &mut obj,
        "",
        tags::PATIENT_ADDRESS,
        "PatientAddress",
        VR::LO,
        &p.address,
        "address",
    );
    pl.put(
        &mut obj,
        "",
        tags::PATIENT_TELEPHONE_NUMBERS,
        "PatientTelephoneNumbers",
        VR::SH,
        &p.phone,
        "phone",
    );
    pl.put(
        &mut obj,
        "",
        Tag(0x0010, 0x2160),
        "EthnicGroup",
        VR::SH,
        p.ethnicity,
        "characteristic",
    );
    let comments = format!(
        "Pt {} {} (MRN {}) transferred from {}; prior echo {}.",
        p.given,
        p.family,
        p.mrn,
        site.institution,
        p.birth_date.iso()
    );
    pl.put(
        &mut obj,
        "",
        tags::PATIENT_COMMENTS,
        "PatientComments",
        VR::LT,
        &comments,
        "free_text",
    );

    // Patient Study.
    let age = p.birth_date.years_until(s.date);
    pl.put(
        &mut obj,
        "",
        tags::PATIENT_AGE,
        "PatientAge",
        VR::AS,
        &format!("{age:03}Y"),
        "characteristic",
    );
    let history = format!(
        "{} {} DOB {} dyspnoea on exertion",
        p.given,
        p.family,
        p.birth_date.us()
    );
    pl.put(
        &mut obj,
        "",
        tags::ADDITIONAL_PATIENT_HISTORY,
        "AdditionalPatientHistory",
        VR::LT,
        &history,
        "free_text",
    );

    // General Series.
    put_str(&mut obj, tags::MODALITY, VR::CS, "US");
    pl.put(
        &mut obj,
        "",
        tags::SERIES_INSTANCE_UID,
        "SeriesInstanceUID",
        VR::UI,
        &s.series_uid,
        "uid",
    );
    put_is(&mut obj, tags::SERIES_NUMBER, 1);
    pl.put(
        &mut obj,
        "",
        tags::SERIES_DATE,
        "SeriesDate",
        VR::DA,
        &da,
        "date",
    );
    pl.put(
        &mut obj,
        "",
        tags::SERIES_TIME,
        "SeriesTime",
        VR::TM,
        &stamp_time,
        "time",
    );
    put_str(&mut obj, tags::SERIES_DESCRIPTION, VR::LO, "A4C");
    let performing = format!("{}^{}^^DR", s.performing.0, s.performing.1);
    pl.put(
        &mut obj,
        "",
        tags::PERFORMING_PHYSICIAN_NAME,
        "PerformingPhysicianName",
        VR::PN,
        &performing,
        "name",
    );
    let operator = format!("{}^{}", s.operator.0, s.operator.1);
    pl.put(
        &mut obj,
        "",
        tags::OPERATORS_NAME,
        "OperatorsName",
        VR::PN,
        &operator,
        "name",
    );
    {
        let mut item = InMemDicomObject::new_empty();
        let prefix = format!("{}[0].", tag_text(tags::REQUEST_ATTRIBUTES_SEQUENCE));
        let rp = format!("RP{}", &s.accession[2..]);
        let sps = format!("SPS{}", &s.accession[2..]);
        pl.put(
            &mut item,
            &prefix,
            tags::REQUESTED_PROCEDURE_ID,
            "RequestedProcedureID",
            VR::SH,
            &rp,
            "id",
        );
        pl.put(
            &mut item,
            &prefix,
            tags::SCHEDULED_PROCEDURE_STEP_ID,
            "ScheduledProcedureStepID",
            VR::SH,
            &sps,
            "id",
        );
        put_seq(&mut obj, tags::REQUEST_ATTRIBUTES_SEQUENCE, vec![item]);
    }
    pl.put(
        &mut obj,
        "",
        tags::PERFORMED_PROCEDURE_STEP_START_DATE,
        "PerformedProcedureStepStartDate",
        VR::DA,
        &da,
        "date",
    );

    // General Equipment.
    put_str(&mut obj, tags::MANUFACTURER, VR::LO, site.manufacturer);
    pl.put(
        &mut obj,
        "",
        tags::INSTITUTION_NAME,
        "InstitutionName",
        VR::LO,
        site.institution,
        "institution",
    );
    pl.put(
        &mut obj,
        "",
        tags::INSTITUTION_ADDRESS,
        "InstitutionAddress",
        VR::ST,
        site.address,
        "address",
    );
    pl.put(
        &mut obj,
        "",
        tags::INSTITUTIONAL_DEPARTMENT_NAME,
        "InstitutionalDepartmentName",
        VR::LO,
        site.department,
        "institution",
    );
    let station = format!("{}{:02}", site.station, 1 + s.index % 3);
    pl.put(
        &mut obj,
        "",
        tags::STATION_NAME,
        "StationName",
        VR::SH,
        &station,
        "device",
    );
    put_str(&mut obj, tags::MANUFACTURER_MODEL_NAME, VR::LO, site.model);
    pl.put(
        &mut obj,
        "",
        tags::DEVICE_SERIAL_NUMBER,
        "DeviceSerialNumber",
        VR::LO,
        &s.serial,
        "device",
    );
    put_str(&mut obj, tags::SOFTWARE_VERSIONS, VR::LO, site.software);

    // General Image / acquisition.
    put_is(&mut obj, tags::INSTANCE_NUMBER, 1);
    put_empty(&mut obj, tags::PATIENT_ORIENTATION, VR::CS);
    pl.put(
        &mut obj,
        "",
        tags::CONTENT_DATE,
        "ContentDate",
        VR::DA,
        &da,
        "date",
    );
    pl.put(
        &mut obj,
        "",
        tags::CONTENT_TIME,
        "ContentTime",
        VR::TM,
        &acq_time,
        "time",
    );
    pl.put(
        &mut obj,
        "",
        tags::ACQUISITION_DATE,
        "AcquisitionDate",
        VR::DA,
        &da,
        "date",
    );
    pl.put(
        &mut obj,
        "",
        tags::ACQUISITION_TIME,
        "AcquisitionTime",
        VR::TM,
        &acq_time,
        "time",
    );
    let dt = format!("{da}{acq_time}");
    pl.put(
        &mut obj,
        "",
        tags::ACQUISITION_DATE_TIME,
        "AcquisitionDateTime",
        VR::DT,
        &dt,
        "datetime",
    );
    let image_comments = format!("{} {} limited apical windows", p.family, p.mrn);
    pl.put(
        &mut obj,
        "",
        tags::IMAGE_COMMENTS,
        "ImageComments",
        VR::LT,
        &image_comments,
        "free_text",
    );
    put_str(&mut obj, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY");

    // Cine and multi-frame.
    let frame_time_ms = 1000.0 / s.fps;
    put_ds(&mut obj, tags::FRAME_TIME, &[frame_time_ms]);
    put_is(&mut obj, tags::CINE_RATE, s.fps.round() as i64);
    put_is(
        &mut obj,
        tags::RECOMMENDED_DISPLAY_FRAME_RATE,
        s.fps.round() as i64,
    );
    put_ds(
        &mut obj,
        tags::EFFECTIVE_DURATION,
        &[s.frames as f64 / s.fps],
    );
    put_u16(&mut obj, tags::PREFERRED_PLAYBACK_SEQUENCING, &[0]);
    put_is(&mut obj, tags::HEART_RATE, p.heart_rate.round() as i64);
    put_is(&mut obj, tags::NUMBER_OF_FRAMES, s.frames as i64);
    put_tag(&mut obj, tags::FRAME_INCREMENT_POINTER, tags::FRAME_TIME);
    put_ds(&mut obj, tags::FRAME_DELAY, &[0.0]);

    // US Region Calibration.
    put_seq(
        &mut obj,
        tags::SEQUENCE_OF_ULTRASOUND_REGIONS,
        vec![region_item(region)],
    );
    put_str(&mut obj, tags::TRANSDUCER_DATA, VR::LO, "M5Sc\\\\");
    put_str(&mut obj, tags::PROCESSING_FUNCTION, VR::LO, "CARDIAC");
    put_seq(
        &mut obj,
        tags::ANATOMIC_REGION_SEQUENCE,
        vec![code_item("80891009", "SCT", "Heart")],
    );

    // Image pixel.
    put_u16(
        &mut obj,
        tags::SAMPLES_PER_PIXEL,
        &[if enc.rgb { 3 } else { 1 }],
    );
    put_str(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        enc.photometric(),
    );
    if enc.rgb {
        put_u16(&mut obj, tags::PLANAR_CONFIGURATION, &[0]);
    }
    put_u16(&mut obj, tags::ROWS, &[rows as u16]);
    put_u16(&mut obj, tags::COLUMNS, &[columns as u16]);
    put_u16(&mut obj, tags::BITS_ALLOCATED, &[8]);
    put_u16(&mut obj, tags::BITS_STORED, &[8]);
    put_u16(&mut obj, tags::HIGH_BIT, &[7]);
    put_u16(&mut obj, tags::PIXEL_REPRESENTATION, &[0]);

    // Private block with PHI inside, as vendors keep their own copies.
    let creator_tag = Tag(0x0009, 0x0010);
    put_str(&mut obj, creator_tag, VR::LO, PRIVATE_CREATOR);
    for (element, description, value) in [
        (0x1001u16, "private patient name", p.pn()),
        (0x1002, "private record number", p.mrn.clone()),
        (0x1003, "private exam date", s.date.iso()),
    ] {
        let tag = Tag(0x0009, element);
        put_str(&mut obj, tag, VR::LO, &value);
        pl.entries.push(HeaderPhi {
            path: tag_text(tag),
            keyword: description.to_string(),
            vr: "LO".into(),
            value,
            category: "private",
            private_creator: Some(PRIVATE_CREATOR),
        });
    }

    // Pixel data.
    let samples = if enc.rgb { 3 } else { 1 };
    let frame_len = rows * columns * samples;
    if enc.jpeg {
        let frames: Result<Vec<Vec<u8>>, pixel::EncodeError> = pixels
            .chunks_exact(frame_len)
            .map(|f| {
                if enc.rgb {
                    pixel::jpeg_baseline_ybr_full_422(f, rows, columns, enc.quality)
                } else {
                    pixel::jpeg_baseline_gray(f, rows, columns, enc.quality)
                }
            })
            .collect();
        let frames = frames?;
        let compressed: usize = frames.iter().map(Vec::len).sum();
        put_str(&mut obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01");
        put_ds(
            &mut obj,
            tags::LOSSY_IMAGE_COMPRESSION_RATIO,
            &[pixels.len() as f64 / compressed.max(1) as f64],
        );
        put_str(
            &mut obj,
            tags::LOSSY_IMAGE_COMPRESSION_METHOD,
            VR::CS,
            "ISO_10918_1",
        );
        obj.put(pixel::encapsulated_pixel_data(frames));
    } else {
        put_str(&mut obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
        obj.put(pixel::native_pixel_data_8bit(pixels));
    }
    Ok((obj, pl.entries))
}

fn region_item(r: &Region) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    put_u16(&mut item, tags::REGION_SPATIAL_FORMAT, &[1]); // 2D
    put_u16(&mut item, tags::REGION_DATA_TYPE, &[1]); // tissue
    put_u32(&mut item, tags::REGION_FLAGS, &[0]);
    put_u32(&mut item, tags::REGION_LOCATION_MIN_X0, &[r.x0]);
    put_u32(&mut item, tags::REGION_LOCATION_MIN_Y0, &[r.y0]);
    put_u32(&mut item, tags::REGION_LOCATION_MAX_X1, &[r.x1]);
    put_u32(&mut item, tags::REGION_LOCATION_MAX_Y1, &[r.y1]);
    put_i32(&mut item, tags::REFERENCE_PIXEL_X0, &[r.reference_x]);
    put_i32(&mut item, tags::REFERENCE_PIXEL_Y0, &[r.reference_y]);
    put_u16(&mut item, tags::PHYSICAL_UNITS_X_DIRECTION, &[3]); // cm
    put_u16(&mut item, tags::PHYSICAL_UNITS_Y_DIRECTION, &[3]);
    put_f64(&mut item, tags::REFERENCE_PIXEL_PHYSICAL_VALUE_X, &[0.0]);
    put_f64(&mut item, tags::REFERENCE_PIXEL_PHYSICAL_VALUE_Y, &[0.0]);
    put_f64(&mut item, tags::PHYSICAL_DELTA_X, &[r.delta_cm]);
    put_f64(&mut item, tags::PHYSICAL_DELTA_Y, &[r.delta_cm]);
    item
}
