//! `bedside seg`: binary masks as a DICOM Segmentation of a source image.

use std::path::PathBuf;

use anyhow::Context as _;
use bedside_dicom::seg::{Segment, SegmentAlgorithm, SegmentFrame, Segmentation, SourceImage};
use bedside_dicom::sr::{Code, SourceStudy};

use crate::ui::{Ctx, Exit};

/// Write binary masks as a DICOM Segmentation (SEG) that references the source image's frames.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  # the phantom's left-ventricle masks of one study as SEG
  bedside synth phantom cohort/ --patients 2
  bedside seg cohort/dicom/site-1/P0001/S0001.dcm cohort/truth/masks/S0001.npz -o S0001-seg.dcm

  # a reader's mask stack saved with numpy.save (uint8, [frames, rows, columns])
  bedside seg cine.dcm reader1.npy --label 'LV cavity' --algorithm manual --creator 'DOE^JANE'

The masks array has one frame per source frame ([frames, rows, columns]; [rows, columns] for a
single-frame source); non-zero is inside. Frame k of the array refers to frame k+1 of the
source. The segment is the left ventricle (SCT 87878005) unless --property says otherwise.")]
pub struct Args {
    /// Source DICOM image (multi-frame cine or single-frame image).
    pub source: PathBuf,
    /// Masks: .npy, or .npz with the array named by --array.
    pub masks: PathBuf,
    /// Array inside a .npz file.
    #[arg(long, default_value = "lv")]
    pub array: String,
    /// Output SEG file.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Segment label.
    #[arg(long, default_value = "Left ventricle")]
    pub label: String,
    /// Segmented property type as SCT code and meaning, CODE:MEANING.
    #[arg(long, default_value = "87878005:Left ventricle of heart")]
    pub property: String,
    /// Segmented property category as SCT code and meaning, CODE:MEANING.
    #[arg(long, default_value = "91723000:Anatomical Structure")]
    pub category: String,
    /// How the masks were made: manual, semiautomatic:NAME or automatic:NAME.
    #[arg(long, default_value = "automatic:Bedside phantom ground truth")]
    pub algorithm: String,
    /// Content Creator's Name (DICOM PN, e.g. DOE^JANE).
    #[arg(long, default_value = "")]
    pub creator: String,
    /// Leave out frames whose mask is empty.
    #[arg(long)]
    pub skip_empty: bool,
}

fn code(text: &str, what: &str) -> anyhow::Result<Code> {
    let (value, meaning) = text
        .split_once(':')
        .filter(|(v, m)| !v.is_empty() && !m.is_empty())
        .ok_or_else(|| Exit::invalid(format!("--{what} `{text}`: expected CODE:MEANING")))?;
    Ok(Code::new(value, "SCT", meaning))
}

fn algorithm(text: &str) -> anyhow::Result<SegmentAlgorithm> {
    let (kind, name) = text.split_once(':').unwrap_or((text, ""));
    match (kind.to_ascii_lowercase().as_str(), name) {
        ("manual", _) => Ok(SegmentAlgorithm::Manual),
        ("semiautomatic", n) if !n.is_empty() => Ok(SegmentAlgorithm::SemiAutomatic(n.into())),
        ("automatic", n) if !n.is_empty() => Ok(SegmentAlgorithm::Automatic(n.into())),
        _ => Err(Exit::invalid(format!(
            "--algorithm `{text}`: expected manual, semiautomatic:NAME or automatic:NAME"
        ))
        .into()),
    }
}

/// Current UTC date and time as DICOM DA and TM.
fn now_utc() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (y, m, d) = bedside_deid::temporal::civil_from_days(days);
    let s = secs % 86_400;
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", s / 3600, s / 60 % 60, s % 60),
    )
}

/// Runs the subcommand.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.source)
        .with_context(|| format!("cannot read {}", args.source.display()))?;
    let obj = bedside_dicom::read::read_bytes(&bytes)
        .map_err(|e| Exit::invalid(format!("{}: {e}", args.source.display())))?;
    let source = SourceImage::from_object(&obj)
        .map_err(|e| Exit::invalid(format!("{}: {e}", args.source.display())))?;
    let study = SourceStudy::from_object(&obj);
    let (frame_len, data) = super::agreement::read_mask(&args.masks, &args.array)?;
    let pixels = source.rows as usize * source.columns as usize;
    if frame_len != pixels {
        return Err(Exit::invalid(format!(
            "the masks have frames of {frame_len} pixels, the source {}x{} = {pixels}",
            source.rows, source.columns
        ))
        .into());
    }
    let n_frames = data.len() / frame_len;
    if n_frames != source.number_of_frames as usize {
        return Err(Exit::invalid(format!(
            "the masks have {n_frames} frames, the source {}",
            source.number_of_frames
        ))
        .into());
    }
    let frames: Vec<SegmentFrame> = data
        .chunks(frame_len)
        .enumerate()
        .map(|(k, m)| SegmentFrame {
            source: 0,
            frame: k as u32 + 1,
            mask: m.to_vec(),
        })
        .collect();
    let (date, time) = now_utc();
    let seed = format!(
        "bedside-seg/{}/{}/{date}{time}/{}",
        source.sop_instance_uid,
        args.label,
        std::process::id()
    );
    let series_uid = bedside_dicom::uid::from_hash(format!("{seed}/series").as_bytes());
    let sop_uid = bedside_dicom::uid::from_hash(format!("{seed}/instance").as_bytes());
    let mut seg = Segmentation::new(study, vec![source], &series_uid, &sop_uid);
    seg.content_date = date;
    seg.content_time = time;
    seg.content_creator = args.creator.clone();
    seg.series_description = format!("Segmentation: {}", args.label);
    seg.skip_empty_frames = args.skip_empty;
    seg.segments.push(Segment {
        label: args.label.clone(),
        category: code(&args.category, "category")?,
        property_type: code(&args.property, "property")?,
        algorithm: algorithm(&args.algorithm)?,
        frames,
    });
    let written = seg.to_object().map_err(|e| Exit::invalid(e.to_string()))?;
    let size =
        bedside_dicom::write::write_file(written, bedside_dicom::ts::EXPLICIT_VR_LE, &args.out)?;
    let foreground = data.iter().filter(|&&v| v != 0).count();
    ctx.say(format!("Wrote {} ({size} bytes)", args.out.display()));
    ctx.say(format!(
        "  segment   {} ({}), {} frames of {}x{}, {foreground} foreground pixels",
        args.label, args.property, n_frames, seg.sources[0].rows, seg.sources[0].columns
    ));
    ctx.say(format!("  series    {series_uid}"));
    Ok(())
}
