#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The service feeds a bundle trained on `bedside curate --resize S` copies exactly those
//! copies: the frames `pipeline::decode` gives for a phantom cine (grayscale and colour,
//! native and JPEG) equal the resized `.npy` array curate writes for the same file.

use std::path::PathBuf;

use bedside_curate::arrays::{ArrayOptions, Member, write_series_with};
use bedside_phantom::PhantomConfig;

fn npy_u8(path: &std::path::Path) -> (Vec<usize>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'|u1'"), "{header}");
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    (shape, bytes[10 + header_len..].to_vec())
}

#[test]
fn served_frames_equal_curates_resized_copies() {
    let dir = tempfile::tempdir().unwrap();
    let config = PhantomConfig {
        seed: 5,
        patients: 4,
        rows: 96,
        columns: 128,
        frames: [10, 12],
        rgb_fraction: 0.5,
        in_sector_text_fraction: 0.0,
        write_masks: false,
        ..PhantomConfig::default()
    };
    bedside_phantom::generate(&config, &dir.path().join("cohort"), false, &|| {}).unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.path().join("cohort").join("dicom")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 4);
    let size = 24;
    let mut colour = 0;
    for (i, file) in files.iter().enumerate() {
        let obj = dicom_object::open_file(file).unwrap();
        let out = dir.path().join(format!("arrays{i}"));
        std::fs::create_dir_all(&out).unwrap();
        let member = Member::from_object(file.clone(), &obj);
        write_series_with(
            &[member],
            &out,
            "s",
            &ArrayOptions {
                resize: Some(size as u32),
            },
        )
        .unwrap();
        let (shape, expected) = npy_u8(&out.join(format!("s.{size}x{size}.npy")));
        let video = bedside_serve::pipeline::decode(&obj, Some(size)).unwrap();
        assert_eq!(
            [video.frames, video.height, video.width],
            [shape[0], shape[1], shape[2]],
            "{}",
            file.display()
        );
        let spp = shape.get(3).copied().unwrap_or(1);
        assert_eq!(video.channels, spp);
        colour += usize::from(spp == 3);
        let plane = size * size;
        for f in 0..video.frames {
            for p in 0..plane {
                for c in 0..spp {
                    let served = video.data[(c * video.frames + f) * plane + p];
                    let curated = expected[(f * plane + p) * spp + c];
                    assert_eq!(
                        served,
                        f32::from(curated),
                        "{} frame {f} pixel {p} channel {c}",
                        file.display()
                    );
                }
            }
        }
    }
    assert!(colour > 0, "no colour cine in the sample");
}
