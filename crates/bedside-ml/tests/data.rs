#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The data side: `.npy` reading against NumPy-written files, manifest validation, clip
//! sampling, seeded augmentations, normalisation and batching.

use std::path::PathBuf;

use bedside_core::npy::{Dtype, write_npy};
use bedside_core::rng::Rng;
use bedside_ml::data::clips::{
    ClipSamplerConfig, Normalization, RandFlipHorizontal, RandIntensityScale, RandPipeline,
    RandSpatialShift, RandTransform, VideoArray, clips_to_tensor,
};
use bedside_ml::data::manifest::{Manifest, ManifestColumns, ManifestError, resized_copy_path};
use bedside_ml::data::npy::read_npy;
use burn::tensor::Device;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn reads_numpy_written_arrays() {
    let rgb = read_npy(&fixture("rgb_u8.npy")).unwrap();
    assert_eq!(rgb.shape, vec![3, 4, 5, 3]);
    let video = VideoArray::from_npy(rgb).unwrap();
    assert_eq!(
        (video.channels, video.frames, video.height, video.width),
        (3, 3, 4, 5)
    );
    for (c, f, y, x) in [(0, 0, 0, 0), (2, 1, 3, 4), (1, 2, 2, 1)] {
        let want = ((f * 100 + y * 10 + x * 3 + c) % 256) as f32;
        assert_eq!(video.get(c, f, y, x), want);
    }
    let gray = read_npy(&fixture("gray_i16.npy")).unwrap();
    assert_eq!(gray.shape, vec![2, 3, 4]);
    let video = VideoArray::from_npy(gray).unwrap();
    assert_eq!(video.get(0, 1, 2, 3), (1000 - 2 * 37 + 3) as f32);
    assert_eq!(video.get(0, 0, 2, 0), -74.0);
    let f64s = read_npy(&fixture("f64.npy")).unwrap();
    assert_eq!(f64s.data, vec![-1.0, -0.6, -0.2, 0.2, 0.6, 1.0]);
    let err = read_npy(&fixture("fortran_f32.npy"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("Fortran"), "{err}");
}

fn write_video(dir: &std::path::Path, name: &str, frames: usize) {
    let data: Vec<u8> = (0..frames * 6 * 8).map(|i| (i % 251) as u8).collect();
    let mut file = std::fs::File::create(dir.join(name)).unwrap();
    write_npy(&mut file, Dtype::U8, &[frames, 6, 8], &data).unwrap();
}

#[test]
fn manifest_loads_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    write_video(dir.path(), "a.npy", 10);
    write_video(dir.path(), "b.npy", 4);
    let columns = ManifestColumns {
        class: Some("reduced_ef".into()),
        value: Some("ef".into()),
        time: Some("time_days".into()),
        event: Some("event".into()),
        covariates: vec!["age".into()],
        groups: vec!["sex".into(), "site".into()],
        ..ManifestColumns::default()
    };
    let header = "study_id,array,split,reduced_ef,ef,time_days,event,age,sex,site\n";
    let write = |body: &str| {
        let path = dir.path().join("manifest.csv");
        std::fs::write(&path, format!("{header}{body}")).unwrap();
        path
    };
    let path = write("s1,a.npy,train,1,35.5,120,1,61,F,A\ns2,b.npy,test,0,60,400,0,48,M,B\n");
    let manifest = Manifest::from_csv(&path, columns.clone()).unwrap();
    assert_eq!(manifest.studies.len(), 2);
    assert_eq!(manifest.split("train")[0].class, Some(1));
    assert_eq!(manifest.studies[1].event, Some(false));
    assert_eq!(
        manifest.studies[1].groups,
        vec!["M".to_string(), "B".to_string()]
    );
    assert_eq!(manifest.studies[0].array, dir.path().join("a.npy"));

    let path = write("s1,a.npy,train,1,NaN,120,1,61,F,A\n");
    let err = Manifest::from_csv(&path, columns.clone()).unwrap_err();
    assert!(
        matches!(&err, ManifestError::BadValue { row: 1, column, .. } if column == "ef"),
        "{err}"
    );
    let path = write("s1,missing.npy,train,1,30,120,1,61,F,A\n");
    let err = Manifest::from_csv(&path, columns.clone()).unwrap_err();
    assert!(
        matches!(err, ManifestError::MissingArray { row: 1, .. }),
        "{err}"
    );
    let path = write("s1,a.npy,train,1,30,120,2,61,F,A\n");
    let err = Manifest::from_csv(&path, columns.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("event indicator"), "{err}");
    let path = write("s1,a.npy,train,1,30,120,1,61,F,A\n");
    let unknown = ManifestColumns {
        covariates: vec!["bmi".into()],
        ..columns
    };
    let err = Manifest::from_csv(&path, unknown).unwrap_err().to_string();
    assert!(err.contains("no column `bmi`"), "{err}");
    // Unknown keys in a column mapping read from a config file are refused.
    let bad: Result<ManifestColumns, _> = serde_json::from_str(r#"{"studdy": "x"}"#);
    assert!(bad.is_err());
}

#[test]
fn resized_copies_replace_the_native_arrays_or_are_named_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    write_video(dir.path(), "a.npy", 10);
    write_video(dir.path(), "a.32x32.npy", 10);
    write_video(dir.path(), "b.npy", 10);
    assert_eq!(
        resized_copy_path(&dir.path().join("x.y.npy"), 64),
        dir.path().join("x.y.64x64.npy")
    );
    let path = dir.path().join("manifest.csv");
    std::fs::write(&path, "study_id,array,split\ns1,a.npy,train\n").unwrap();
    let mut manifest = Manifest::from_csv(&path, ManifestColumns::default()).unwrap();
    manifest.use_resized_copies(&path, 32).unwrap();
    assert_eq!(manifest.studies[0].array, dir.path().join("a.32x32.npy"));

    std::fs::write(
        &path,
        "study_id,array,split\ns1,a.npy,train\ns2,b.npy,val\n",
    )
    .unwrap();
    let mut manifest = Manifest::from_csv(&path, ManifestColumns::default()).unwrap();
    let err = manifest.use_resized_copies(&path, 32).unwrap_err();
    assert!(
        matches!(&err, ManifestError::MissingResizedCopy { array, size: 32, .. } if array.ends_with("b.npy")),
        "{err}"
    );
    assert!(err.to_string().contains("--resize 32"), "{err}");
}

fn ramp_video(frames: usize) -> VideoArray {
    // value = frame index, so a clip's frames are readable from its values.
    let (h, w) = (4, 5);
    VideoArray {
        channels: 1,
        frames,
        height: h,
        width: w,
        data: (0..frames).flat_map(|f| vec![f as f32; h * w]).collect(),
    }
}

#[test]
fn clip_sampling_follows_echonet() {
    let sampler = ClipSamplerConfig::new()
        .with_length(4)
        .with_period(2)
        .init()
        .unwrap();
    // EchoNet: starts = arange(f − (length − 1)·period) = arange(20 − 6).
    assert_eq!(sampler.all_starts(20), (0..14).collect::<Vec<_>>());
    let clip = sampler.extract(&ramp_video(20), 3);
    let frames: Vec<f32> = (0..4).map(|k| clip.get(0, k, 0, 0)).collect();
    assert_eq!(frames, vec![3.0, 5.0, 7.0, 9.0]);
    // Too short: one clip, zero-padded.
    assert_eq!(sampler.all_starts(5), vec![0]);
    let clip = sampler.extract(&ramp_video(5), 0);
    let frames: Vec<f32> = (0..4).map(|k| clip.get(0, k, 1, 1)).collect();
    assert_eq!(frames, vec![0.0, 2.0, 4.0, 0.0]);
    // Random starts are seeded and cover the valid range.
    let mut a = Rng::seed_from(9);
    let mut b = Rng::seed_from(9);
    let starts: Vec<usize> = (0..200).map(|_| sampler.random_start(20, &mut a)).collect();
    let again: Vec<usize> = (0..200).map(|_| sampler.random_start(20, &mut b)).collect();
    assert_eq!(starts, again);
    assert!(starts.iter().all(|&s| s < 14));
    assert!(starts.contains(&0) && starts.contains(&13));
    assert!(ClipSamplerConfig::new().with_length(0).init().is_err());
}

#[test]
fn augmentations_are_seeded_and_do_what_they_say() {
    let mut video = ramp_video(3);
    for (i, v) in video.data.iter_mut().enumerate() {
        *v += (i % 5) as f32 * 0.1; // column index in the low digits
    }
    let flip = RandFlipHorizontal { probability: 1.0 };
    let mut flipped = video.clone();
    flip.apply(&mut flipped, &mut Rng::seed_from(1));
    assert_eq!(flipped.get(0, 2, 1, 0), video.get(0, 2, 1, 4));
    flip.apply(&mut flipped, &mut Rng::seed_from(1));
    assert_eq!(flipped, video);

    // A shift moves every frame by the same offset and fills with zeros.
    let shift = RandSpatialShift { pad: 2 };
    let mut shifted = video.clone();
    shift.apply(&mut shifted, &mut Rng::seed_from(4));
    let offset = (-2i64..=2)
        .flat_map(|dy| (-2i64..=2).map(move |dx| (dy, dx)))
        .find(|&(dy, dx)| {
            (0..3).all(|f| {
                (0..4).all(|y| {
                    (0..5).all(|x| {
                        let (sy, sx) = (y as i64 + dy, x as i64 + dx);
                        let want = if (0..4).contains(&sy) && (0..5).contains(&sx) {
                            video.get(0, f, sy as usize, sx as usize)
                        } else {
                            0.0
                        };
                        shifted.get(0, f, y, x) == want
                    })
                })
            })
        });
    assert!(offset.is_some(), "the result must be one shifted copy");

    let pipeline = RandPipeline::new(
        42,
        vec![
            Box::new(RandFlipHorizontal { probability: 0.5 }),
            Box::new(RandSpatialShift { pad: 1 }),
            Box::new(RandIntensityScale {
                low: 0.8,
                high: 1.2,
            }),
        ],
    );
    let run = |epoch, index| {
        let mut clip = video.clone();
        pipeline.apply(&mut clip, epoch, index);
        clip
    };
    assert_eq!(run(3, 7), run(3, 7));
    let distinct = (0..8)
        .map(|i| run(0, i))
        .filter(|c| *c != run(0, 0))
        .count();
    assert!(distinct >= 5, "different clips get different draws");
}

#[test]
fn normalisation_and_batching() {
    let videos = [ramp_video(4), ramp_video(6)];
    let stats = Normalization::from_videos(videos.iter()).unwrap();
    // Frames 0..4 and 0..6, each frame 20 voxels.
    let values: Vec<f64> = (0..4).chain(0..6).map(f64::from).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    assert!((stats.mean[0] - mean).abs() < 1e-12);
    assert!((stats.std[0] - var.sqrt()).abs() < 1e-12);
    let sampler = ClipSamplerConfig::new()
        .with_length(3)
        .with_period(1)
        .init()
        .unwrap();
    let mut clips: Vec<VideoArray> = videos.iter().map(|v| sampler.extract(v, 1)).collect();
    for clip in &mut clips {
        stats.apply(clip).unwrap();
    }
    let expected = ((1.0 - mean) / var.sqrt()) as f32;
    assert!((clips[0].get(0, 0, 0, 0) - expected).abs() < 1e-6);
    let batch = clips_to_tensor(&clips, &Device::flex()).unwrap();
    assert_eq!(batch.dims(), [2, 1, 3, 4, 5]);
    let mismatched = [clips[0].clone(), ramp_video(2)];
    assert!(clips_to_tensor(&mismatched, &Device::flex()).is_err());
}
