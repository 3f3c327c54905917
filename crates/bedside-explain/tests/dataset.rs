#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The dataset-level tests on a model trained here, where the label is carried by one region
//! only (a bright or dark "ventricle" square): masking that region must destroy the AUROC,
//! masks of the same area elsewhere must not; the attribution mass must concentrate on the
//! region; the sanity checks must see the randomised models.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use bedside_core::npy::{Dtype, NpzMember, write_npy, write_npz};
use bedside_core::rng::Rng;
use bedside_eval::bootstrap::BootstrapOptions;
use bedside_eval::explanations::read_section;
use bedside_explain::dataset::{DatasetOptions, MaskSource, SanityOptions, explain_dataset};
use bedside_explain::region::PlacementOptions;
use bedside_explain::study::Method;
use bedside_ml::bundle;
use bedside_ml::train::config::ExperimentConfig;
use bedside_ml::train::train;
use burn::tensor::Device;

const FRAMES: usize = 6;
const SIDE: usize = 16;
/// The region: rows and columns 2..7.
const LV: std::ops::Range<usize> = 2..7;

/// 48 studies of 24 patients: background texture, the region bright (label 1) or dark
/// (label 0) with a little flicker, and a distractor square whose brightness is random.
fn cohort(dir: &Path) -> PathBuf {
    let mut rng = Rng::seed_from(11);
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    let mut csv = String::from("study_id,patient,array,split,label,shuffled,mask_file\n");
    let n = 48;
    let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
    let shuffled = {
        let mut s = labels.clone();
        rng.shuffle(&mut s);
        s
    };
    for i in 0..n {
        let label = labels[i];
        let distractor = 40 + rng.below(180) as u8;
        let mut data = Vec::with_capacity(FRAMES * SIDE * SIDE);
        for f in 0..FRAMES {
            for y in 0..SIDE {
                for x in 0..SIDE {
                    let v = if LV.contains(&y) && LV.contains(&x) {
                        let base = if label == 1 { 210 } else { 50 };
                        base + (f as u8 % 2) * 10
                    } else if (10..14).contains(&y) && (10..14).contains(&x) {
                        distractor
                    } else {
                        100 + rng.below(30) as u8
                    };
                    data.push(v);
                }
            }
        }
        let name = format!("v{i:02}.npy");
        let mut file = std::fs::File::create(dir.join(&name)).unwrap();
        write_npy(&mut file, Dtype::U8, &[FRAMES, SIDE, SIDE], &data).unwrap();
        // The mask as the phantom writes it: an .npz with an `lv` member, one plane per frame.
        let mask: Vec<u8> = (0..FRAMES * SIDE * SIDE)
            .map(|k| {
                let (y, x) = ((k / SIDE) % SIDE, k % SIDE);
                u8::from(LV.contains(&y) && LV.contains(&x))
            })
            .collect();
        let mpath = dir.join("masks").join(format!("v{i:02}.npz"));
        let mut buf = std::io::Cursor::new(Vec::new());
        write_npz(
            &mut buf,
            &[NpzMember {
                name: "lv",
                dtype: Dtype::U8,
                shape: &[FRAMES, SIDE, SIDE],
                data: &mask,
            }],
        )
        .unwrap();
        std::fs::write(&mpath, buf.into_inner()).unwrap();
        let split = if i % 6 == 0 { "val" } else { "train" };
        csv.push_str(&format!(
            "S{i:02},P{:02},{name},{split},{label},{},masks/v{i:02}.npz\n",
            i / 2,
            shuffled[i]
        ));
    }
    let path = dir.join("manifest.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn train_bundle(manifest: &Path, root: &Path, label: &str, epochs: usize) -> PathBuf {
    let text = format!(
        r#"
seed = 5
[data]
manifest = "{}"
clip_length = 4
period = 1
size = {SIDE}
[data.columns]
class = "{label}"
[model]
width = 0.0625
layers = [1, 1, 1, 1]
[task]
kind = "classification"
classes = 2
[training]
epochs = {epochs}
batch_size = 8
[optimizer]
kind = "adamw"
lr = 0.01
"#,
        manifest.display()
    );
    let config: ExperimentConfig = bedside_core::config::from_str(&text, "test config").unwrap();
    let run = root.join(format!("run-{label}"));
    train(&config, &run, false, &mut |_| ControlFlow::Continue(())).unwrap();
    let out = root.join(format!("bundle-{label}"));
    bundle::export(&run, &out).unwrap();
    out
}

#[test]
fn masking_the_region_that_carries_the_label_collapses_the_auroc() {
    let data = tempfile::tempdir().unwrap();
    let manifest = cohort(data.path());
    let root = tempfile::tempdir().unwrap();
    let model_dir = train_bundle(&manifest, root.path(), "label", 12);
    let random_dir = train_bundle(&manifest, root.path(), "shuffled", 3);
    let device = Device::flex();
    let model = bundle::load(&model_dir, &device).unwrap();
    let random = bundle::load(&random_dir, &device).unwrap();

    let mut options = DatasetOptions {
        patient_column: Some("patient".into()),
        label_column: Some("label".into()),
        class: Some(1),
        mask: MaskSource::Column {
            column: "mask_file".into(),
            root: None,
            member: None,
        },
        dilate: 0,
        placements: PlacementOptions {
            count: 6,
            ..PlacementOptions::default()
        },
        max_clips: Some(2),
        methods: vec![
            Method::Saliency,
            Method::IntegratedGradients,
            Method::GradCam,
        ],
        mass_studies: 12,
        sanity: Some(SanityOptions {
            studies: 2,
            ..SanityOptions::default()
        }),
        bootstrap: BootstrapOptions {
            replicates: 300,
            seed: 2,
            confidence: 0.95,
        },
        ..DatasetOptions::default()
    };
    options.method_options.ig.steps = 8;
    let out = root.path().join("explain");
    let mut calls = 0;
    let section = explain_dataset(
        &model,
        Some(&random),
        &manifest,
        &options,
        &out,
        &device,
        &mut |_, _| calls += 1,
    )
    .unwrap();
    assert_eq!(calls, 48 + 1);
    assert_eq!(section.studies, 48);
    assert_eq!(section.patients, 24);
    let o = section.occlusion.as_ref().unwrap();
    let (intact, region, random_mean) = (&o.rows[0], &o.rows[1], &o.rows[2]);
    eprintln!("{:#?}", o);
    assert!(intact.metric.value.unwrap() > 0.95, "{intact:?}");
    // The region's mask removes the evidence; equal-area masks elsewhere do not.
    assert!(region.degradation.value.unwrap() > 0.3, "{region:?}");
    assert!(
        random_mean.degradation.value.unwrap().abs() < 0.1,
        "{random_mean:?}"
    );
    assert!(o.region_minus_random.lower.unwrap() > 0.0);
    assert_eq!(o.random_overlap, 0.0);
    assert!((o.region_area_share - 25.0 / 256.0).abs() < 1e-12);
    assert_eq!(o.rows.len(), 3 + 6);

    // Attribution mass: concentrated on the region for the gradient methods.
    eprintln!("{:#?}", section.attribution_mass);
    assert_eq!(section.attribution_mass.len(), 3);
    for m in &section.attribution_mass {
        assert!(m.studies <= 12);
        assert!((m.area_share - 25.0 / 256.0).abs() < 1e-12);
    }
    // Gradients concentrate on the region; Grad-CAM at layer4 of a 16×16 clip has one
    // spatial cell, so its upsampled map is flat: mass = area share exactly, and with ReLU it
    // is all zero where the evidence is against the class (those clips are noted).
    let by = |name: &str| {
        section
            .attribution_mass
            .iter()
            .find(|m| m.method == name)
            .unwrap()
    };
    for name in ["saliency", "ig"] {
        assert_eq!(by(name).studies, 12);
        assert!(by(name).concentration.unwrap() > 1.5, "{:?}", by(name));
    }
    assert!((by("gradcam").concentration.unwrap() - 1.0).abs() < 1e-6);
    assert!(section.notes.iter().any(|n| n.starts_with("gradcam: ")));

    // Sanity checks: six cascade steps and the data randomisation per method; identical
    // models would give a similarity of one, the randomised ones give less.
    let sanity = section.sanity.as_ref().unwrap();
    eprintln!("{:#?}", sanity);
    assert_eq!(sanity.rows.len(), 3 * 7);
    assert!(
        sanity
            .rows
            .iter()
            .filter(|r| r.test.starts_with("model"))
            .all(|r| r.spearman.unwrap_or(0.0) < 0.999)
    );
    assert!(
        sanity
            .rows
            .iter()
            .any(|r| r.test == "model: fc+layer4+layer3+layer2+layer1+stem")
    );
    assert_eq!(sanity.verdicts.len(), 3);
    assert!(
        sanity
            .verdicts
            .iter()
            .all(|v| v.data_randomisation.is_some())
    );

    // Files: the tables and the section, which reads back.
    for f in [
        "occlusion_test.csv",
        "occlusion_studies.csv",
        "attribution_mass.csv",
        "sanity.csv",
        "sanity_verdicts.csv",
        "explanations.html",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // (Floats go through JSON text, so compare what survives it exactly.)
    let back = read_section(&out.join("explanations.json")).unwrap();
    assert_eq!(back.studies, section.studies);
    assert_eq!(back.occlusion.as_ref().unwrap().rows.len(), o.rows.len());
    assert_eq!(back.sanity.as_ref().unwrap().verdicts, sanity.verdicts);
    assert_eq!(back.notes, section.notes);
    let studies = std::fs::read_to_string(out.join("occlusion_studies.csv")).unwrap();
    assert_eq!(studies.lines().count(), 49);
    assert!(studies.lines().next().unwrap().ends_with("random_6"));

    // The same masks as one file for every study, and the same numbers come back.
    options.mask = MaskSource::File {
        path: data.path().join("masks").join("v00.npz"),
        member: Some("lv".into()),
    };
    options.sanity = None;
    options.methods.clear();
    let again = explain_dataset(
        &model,
        None,
        &manifest,
        &options,
        &root.path().join("again"),
        &device,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(again.occlusion, section.occlusion);
}
