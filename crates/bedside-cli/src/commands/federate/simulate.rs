//! `bedside federate simulate`: a whole federation on loopback in one command — a phantom
//! cohort whose sites differ (vendor, gain, noise, sector, frame rate), curated and split by
//! site; a stock Flower SuperLink; one Bedside site agent per site training the video model
//! with `bedside train`'s code; Bedside's server app submitted with `flwr run`. With
//! `--compare`, the same model trained on the pooled data and on each site alone, all
//! evaluated on every site's held-out test patients.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;

use bedside_ml::data::clips::Normalization;
use bedside_ml::data::loader::MODEL_CHANNELS;
use bedside_ml::train::arrays::NamedArray;
use bedside_ml::train::config::ExperimentConfig;
use bedside_phantom::PhantomConfig;

use crate::ui::Ctx;

/// The server app, embedded so that the command works from any folder.
const APP_FILES: [(&str, &str); 4] = [
    (
        "pyproject.toml",
        include_str!("../../../../../tools/flower/bedside_fl/pyproject.toml"),
    ),
    (
        "bedside_fl/__init__.py",
        include_str!("../../../../../tools/flower/bedside_fl/bedside_fl/__init__.py"),
    ),
    (
        "bedside_fl/server_app.py",
        include_str!("../../../../../tools/flower/bedside_fl/bedside_fl/server_app.py"),
    ),
    (
        "bedside_fl/client_app.py",
        include_str!("../../../../../tools/flower/bedside_fl/bedside_fl/client_app.py"),
    ),
];

const RUN_NAME: &str = "bedside-simulate";

/// Arguments of `bedside federate simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Folder for everything (cohort, curated arrays, sites, federation output).
    #[arg(long, default_value = "bedside-federation")]
    pub dir: PathBuf,
    /// Sites (hospitals) of the phantom cohort, one agent each (1–6).
    #[arg(long, default_value_t = 3)]
    pub sites: usize,
    /// Patients of the phantom cohort (all sites together).
    #[arg(long, default_value_t = 240)]
    pub patients: usize,
    /// Federated rounds.
    #[arg(long, default_value_t = 8)]
    pub rounds: u32,
    /// Local epochs per round.
    #[arg(long, default_value_t = 1)]
    pub local_epochs: u32,
    /// Side of the sector-cropped frames the model reads.
    #[arg(long, default_value_t = 48)]
    pub size: u32,
    /// Learning rate of the sites' optimiser.
    #[arg(long, default_value_t = 0.001)]
    pub lr: f64,
    /// Seed of the cohort and of every model.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Also train on the pooled data and on each site alone, and compare all models on
    /// every site's test patients (writes comparison.csv and comparison.md).
    #[arg(long)]
    pub compare: bool,
    /// Folder holding `flower-superlink` and `flwr` (a virtual environment's `bin`);
    /// default: `.venv/bin` if it has them, else the PATH.
    #[arg(long)]
    pub flower_bin: Option<PathBuf>,
    /// Seconds to wait for the federation to finish.
    #[arg(long, default_value_t = 3600)]
    pub timeout_s: u64,
}

/// Kills a child and its process group when dropped.
struct Spawned {
    name: String,
    child: Child,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let pid = self.child.id();
        // The SuperLink starts SuperExec and ServerApp processes in its group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", format!("-{pid}").as_str()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", format!("-{pid}").as_str()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        tracing::debug!(process = %self.name, "stopped");
    }
}

fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Spawned> {
    use std::os::unix::process::CommandExt as _;
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = file.try_clone()?;
    let child = cmd
        .stdout(file)
        .stderr(err)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Spawned {
        name: name.to_string(),
        child,
    })
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn flower_bin(args: &SimulateArgs) -> anyhow::Result<PathBuf> {
    let has = |dir: &Path| dir.join("flower-superlink").is_file() && dir.join("flwr").is_file();
    if let Some(dir) = &args.flower_bin {
        if has(dir) {
            return Ok(dir.clone());
        }
        bail!("{} has no flower-superlink and flwr", dir.display());
    }
    let venv = PathBuf::from(".venv/bin");
    if has(&venv) {
        return Ok(std::fs::canonicalize(venv)?);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if has(&dir) {
            return Ok(dir);
        }
    }
    bail!(
        "Flower is not installed: `pip install flwr==1.42.0` in a virtual environment and pass \
         --flower-bin VENV/bin (scripts/setup.sh puts it in .venv)"
    )
}

/// The experiment every site (and the comparison models) trains: a compact R(2+1)D
/// classifying reduced EF from the sector-cropped frames.
fn experiment_toml(manifest: &str, labels: &str, args: &SimulateArgs, epochs: u32) -> String {
    format!(
        r#"# Written by `bedside federate simulate`: reduced EF < 40 % (classification).
name = "federated-reduced-ef"
seed = {seed}

[data]
manifest = "{manifest}"
labels = "{labels}"
join_key = "input_sha256"
clip_length = 16
period = 2
size = {size}
resized_copy = {size}
workers = 1

[data.columns]
study = "study_key"
class = "reduced_ef_observed"

[data.augment]
shift_pad = {pad}

[model]
backbone = "r2plus1d_18"
width = 0.25
layers = [1, 1, 1, 1]

[task]
kind = "classification"
classes = 2

[optimizer]
kind = "adamw"
lr = {lr}
weight_decay = 0.0001

[schedule]
kind = "constant"

[training]
epochs = {epochs}
batch_size = 8
grad_clip_norm = 5.0

[training.early_stopping]
metric = "val_auroc"
"#,
        seed = args.seed,
        size = args.size,
        pad = (args.size / 16).max(1),
        lr = args.lr,
    )
}

/// Splits `labels.csv` by its `site` column into `sites/site-K/labels.csv`; returns the
/// site names and their row counts.
fn split_by_site(labels: &Path, sites_dir: &Path) -> anyhow::Result<Vec<(String, usize)>> {
    let mut reader =
        csv::Reader::from_path(labels).with_context(|| format!("reading {}", labels.display()))?;
    let header = reader.headers()?.clone();
    let col = header
        .iter()
        .position(|h| h == "site")
        .context("the label sheet has no `site` column")?;
    let mut by_site: BTreeMap<String, Vec<csv::StringRecord>> = BTreeMap::new();
    for r in reader.records() {
        let r = r?;
        by_site
            .entry(r.get(col).unwrap_or_default().to_string())
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for (site, rows) in by_site {
        let name = format!("site-{site}");
        let folder = sites_dir.join(&name);
        std::fs::create_dir_all(&folder)?;
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&header)?;
        for r in &rows {
            w.write_record(r)?;
        }
        let bytes = w.into_inner().map_err(|e| anyhow::anyhow!(e.to_string()))?;
        bedside_core::fsio::write_atomic(&folder.join("labels.csv"), &bytes)?;
        out.push((name, rows.len()));
    }
    Ok(out)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    bedside_core::fsio::write_atomic(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs the command.
pub fn run(args: SimulateArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let start = Instant::now();
    if !(1..=bedside_phantom::sites::MAX_SITES).contains(&args.sites) {
        return Err(crate::ui::Exit::invalid(format!(
            "--sites must be between 1 and {}",
            bedside_phantom::sites::MAX_SITES
        ))
        .into());
    }
    let bin = flower_bin(&args)?;
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let stages = if args.compare { 5 } else { 4 };
    let mut stage = 0;
    let mut next = |what: &str| {
        stage += 1;
        ctx.say(format!(
            "[{stage}/{stages}] {what}  ({:.0} s)",
            start.elapsed().as_secs_f64()
        ));
    };

    next("data: phantom cohort, curated, labels split by site");
    let cohort = dir.join("cohort");
    let config = PhantomConfig {
        seed: args.seed,
        patients: args.patients,
        sites: args.sites,
        rows: 240,
        columns: 320,
        ..PhantomConfig::default()
    };
    let curated = dir.join("curated");
    if !curated.join("metadata.csv").exists() {
        let summary = crate::commands::synth::phantom(&config, &cohort, true, ctx)?;
        crate::commands::synth::print_summary(&summary, ctx);
        crate::commands::demo::curate_cohort(
            &cohort.join("dicom"),
            &curated,
            &dir.join("secret"),
            args.size,
            ctx,
        )?;
    } else {
        ctx.say(format!("  reusing {}", curated.display()));
    }
    let labels = dir.join("labels.csv");
    crate::commands::demo::models::label_sheet(&cohort, &labels)?;
    let sites_dir = dir.join("sites");
    let sites = split_by_site(&labels, &sites_dir)?;
    let epochs = args.rounds * args.local_epochs;
    for (name, rows) in &sites {
        ctx.say(format!("  {name}: {rows} studies"));
        write(
            &sites_dir.join(name).join("experiment.toml"),
            &experiment_toml("../../curated/metadata.csv", "labels.csv", &args, epochs),
        )?;
    }
    write(
        &dir.join("pooled").join("experiment.toml"),
        &experiment_toml("../curated/metadata.csv", "../labels.csv", &args, epochs),
    )?;

    next("federation: SuperLink, one Bedside agent per site, server app via `flwr run`");
    let out = dir.join("federation");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    let final_arrays = federate(&args, &bin, &dir, &sites, &out, ctx)?;
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json"))?)?;
    for e in summary["evaluations"].as_array().into_iter().flatten() {
        ctx.say(format!(
            "  round {:>2}: federated validation AUROC {:.3}, loss {:.3}",
            e["round"],
            e["metrics"]["eval-auroc"].as_f64().unwrap_or(f64::NAN),
            e["metrics"]["eval-loss"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    ctx.say(format!(
        "  data-quality statistics of every site: {}",
        out.join("stats.html").display()
    ));

    let mut summary_lines = vec![format!(
        "federated model after {} rounds: {}",
        args.rounds,
        out.join("final").display()
    )];
    if args.compare {
        next("compare: pooled and single-site models, every model on every site's test split");
        let norm = federation_normalization(&out)?;
        let table = compare(&args, &dir, &sites, &final_arrays, norm, ctx)?;
        summary_lines.push(format!(
            "comparison: {} and {}",
            dir.join("comparison.md").display(),
            dir.join("comparison.csv").display()
        ));
        for line in table.lines() {
            ctx.say(format!("  {line}"));
        }
    }
    next("done");
    for line in summary_lines {
        ctx.say(format!("  {line}"));
    }
    ctx.say(format!(
        "  {} sites, {} rounds in {:.0} s",
        sites.len(),
        args.rounds,
        start.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Runs the federation; returns the final global arrays.
fn federate(
    args: &SimulateArgs,
    bin: &Path,
    dir: &Path,
    sites: &[(String, usize)],
    out: &Path,
    ctx: &Ctx,
) -> anyhow::Result<Vec<NamedArray>> {
    let port = free_port()?;
    let address = format!("127.0.0.1:{port}");
    let home = dir.join("flwr-home");
    write(
        &home.join("config.toml"),
        &format!(
            "[superlink]\ndefault = \"local\"\n\n[superlink.local]\naddress = \"{address}\"\ninsecure = true\n"
        ),
    )?;
    let app = dir.join("flower-app");
    for (name, text) in APP_FILES {
        write(&app.join(name), text)?;
    }
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let _link = spawn(
        "flower-superlink",
        Command::new(bin.join("flower-superlink"))
            .args(["--host", "127.0.0.1", "--port", port.to_string().as_str()])
            .args(["--insecure", "--disable-runtime-dependency-installation"])
            .env("FLWR_HOME", &home)
            .env("PATH", &path),
        &logs.join("superlink.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&address).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the SuperLink did not start; see {}",
                logs.join("superlink.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let exe = std::env::current_exe().context("locating the bedside binary")?;
    let mut agents = Vec::new();
    for (name, _) in sites {
        let folder = dir.join("sites").join(name);
        write(
            &folder.join("site.toml"),
            &format!(
                "# Written by `bedside federate simulate`.\nsite = \"{name}\"\nfolder = \".\"\n\n\
                 [superlink]\naddress = \"{address}\"\ninsecure = true\n\n\
                 [node]\nself_register = true\nheartbeat_interval_s = 10\npoll_interval_ms = 200\n\
                 exit_after_runs = 1\n\n[allow]\nruns = [\"{RUN_NAME}\"]\n\n\
                 [egress]\nclip_norm = 0.0\n\n\
                 [trainer]\nkind = \"video\"\nexperiment = \"experiment.toml\"\n"
            ),
        )?;
        agents.push(spawn(
            name,
            Command::new(&exe)
                .args(["federate", "site", "--config"])
                .arg(folder.join("site.toml")),
            &logs.join(format!("{name}.log")),
        )?);
    }
    let run_config = format!(
        "model=\"video\" bedside-run=\"{RUN_NAME}\" num-server-rounds={rounds} local-epochs={le} \
         lr={lr} min-nodes={k} stats=true fraction-evaluate=1.0 round-timeout=1800.0 out-dir=\"{out}\"",
        rounds = args.rounds,
        le = args.local_epochs,
        lr = args.lr,
        k = sites.len(),
        out = out.display()
    );
    let submitted = Command::new(bin.join("flwr"))
        .arg("run")
        .arg(&app)
        .args(["local", "--run-config", &run_config])
        .env("FLWR_HOME", &home)
        .env("PATH", &path)
        .output()
        .context("running `flwr run`")?;
    if !submitted.status.success() {
        bail!(
            "`flwr run` failed: {}",
            String::from_utf8_lossy(&submitted.stderr)
        );
    }
    // "Successfully started run <id>": the id names the server app's log.
    let stdout = String::from_utf8_lossy(&submitted.stdout).to_string();
    let run_id = stdout
        .split_whitespace()
        .skip_while(|w| *w != "run")
        .nth(1)
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_digit()).to_string())
        .filter(|w| !w.is_empty());
    let save_server_log = || -> String {
        let Some(id) = &run_id else {
            return String::new();
        };
        let text = Command::new(bin.join("flwr"))
            .args(["log", id, "local", "--show"])
            .env("FLWR_HOME", &home)
            .env("PATH", &path)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let _ = std::fs::write(logs.join("serverapp.log"), &text);
        text
    };
    let bar = ctx.progress(u64::from(args.rounds), "rounds");
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    loop {
        let summary: serde_json::Value = std::fs::read(out.join("summary.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let rounds = summary["rounds"].as_array().cloned().unwrap_or_default();
        bar.set_position(rounds.iter().filter(|r| r.get("round").is_some()).count() as u64);
        if rounds.iter().any(|r| r["done"] == true) {
            break;
        }
        let mut left = 0;
        for a in &mut agents {
            if let Ok(Some(status)) = a.child.try_wait() {
                if !status.success() {
                    bail!(
                        "agent {} stopped ({status}); see {}",
                        a.name,
                        logs.join(format!("{}.log", a.name)).display()
                    );
                }
                left += 1;
            }
        }
        // Agents leave when the run has ended: without the final model, the server app failed.
        if left == agents.len() {
            let text = save_server_log();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            bail!(
                "the run ended without a final model; server app log ({}):\n{}",
                logs.join("serverapp.log").display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the federation did not finish in {} s; logs in {}",
                args.timeout_s,
                logs.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bar.finish_and_clear();
    save_server_log();
    read_arrays(&out.join("final"))
}

/// The `.npy` files of a folder as named arrays (file stem = array name).
fn read_arrays(folder: &Path) -> anyhow::Result<Vec<NamedArray>> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        .collect();
    entries.sort();
    for path in entries {
        let bytes = std::fs::read(&path)?;
        let (t, _) = bedside_federate::npy::decode(&bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        out.push(NamedArray {
            name,
            shape: t.shape,
            data: t.data,
        });
    }
    Ok(out)
}

/// The normalisation the federation sent (pooled from the sites' statistics).
fn federation_normalization(out: &Path) -> anyhow::Result<Option<Normalization>> {
    let path = out.join("normalization.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    Ok(match (v["mean"].as_f64(), v["std"].as_f64()) {
        (Some(m), Some(s)) => Some(Normalization {
            mean: vec![m; MODEL_CHANNELS],
            std: vec![s; MODEL_CHANNELS],
        }),
        _ => None,
    })
}

fn load_experiment(path: &Path) -> anyhow::Result<ExperimentConfig> {
    crate::commands::train::load_config_file(path)
}

/// AUROC of `arrays` on the test split of `experiment`'s data.
fn test_auroc(
    experiment: &ExperimentConfig,
    arrays: &[NamedArray],
    norm: Option<&Normalization>,
) -> anyhow::Result<(usize, f64)> {
    let mut config = experiment.clone();
    config.data.val_split = "test".into();
    let (n, metrics) = bedside_ml::train::evaluate_arrays(&config, arrays, norm)
        .map_err(crate::commands::train::train_error)?;
    let auroc = metrics
        .iter()
        .find(|(k, _)| k == "auroc")
        .map_or(f64::NAN, |(_, v)| *v);
    Ok((n, auroc))
}

/// Test studies and how many are positive (reduced EF observed), from `experiment`'s label
/// sheet: the size behind each AUROC, so that its noise can be judged.
fn test_counts(experiment: &ExperimentConfig) -> anyhow::Result<(usize, usize)> {
    let labels = experiment
        .data
        .labels
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the experiment has no label sheet"))?;
    let mut reader = csv::Reader::from_path(labels)?;
    let header = reader.headers()?.clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| anyhow::anyhow!("{} has no `{name}` column", labels.display()))
    };
    let (split, class) = (column("split")?, column("reduced_ef_observed")?);
    let (mut studies, mut positive) = (0, 0);
    for record in reader.records() {
        let record = record?;
        if record.get(split) == Some("test") {
            studies += 1;
            positive += usize::from(record.get(class) == Some("1"));
        }
    }
    Ok((studies, positive))
}

/// An AUROC for the table; "n/a" where the test set holds one class only.
fn auroc_cell(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        format!("{v:.3}")
    }
}

fn train_baseline(
    experiment: &Path,
    run: &Path,
    ctx: &Ctx,
) -> anyhow::Result<(Vec<NamedArray>, Normalization)> {
    let config = load_experiment(experiment)?;
    if run.exists() {
        std::fs::remove_dir_all(run)?;
    }
    let bar = ctx.progress(config.training.epochs as u64, "epochs");
    bedside_ml::train::train(&config, run, false, &mut |e| {
        if let bedside_ml::train::TrainEvent::EpochEnd { .. } = e {
            bar.inc(1);
        }
        std::ops::ControlFlow::Continue(())
    })
    .map_err(crate::commands::train::train_error)?;
    bar.finish_and_clear();
    bedside_ml::train::run_arrays(run, false).map_err(crate::commands::train::train_error)
}

fn compare(
    args: &SimulateArgs,
    dir: &Path,
    sites: &[(String, usize)],
    federated: &[NamedArray],
    federated_norm: Option<Normalization>,
    ctx: &Ctx,
) -> anyhow::Result<String> {
    // Models: federated, pooled, each site alone.
    let mut models: Vec<(String, Vec<NamedArray>, Option<Normalization>)> =
        vec![("federated".into(), federated.to_vec(), federated_norm)];
    ctx.say("  training on the pooled data");
    let (arrays, norm) = train_baseline(
        &dir.join("pooled").join("experiment.toml"),
        &dir.join("pooled").join("run"),
        ctx,
    )?;
    models.push(("pooled".into(), arrays, Some(norm)));
    for (name, _) in sites {
        ctx.say(format!("  training on {name} alone"));
        let folder = dir.join("sites").join(name);
        let (arrays, norm) =
            train_baseline(&folder.join("experiment.toml"), &folder.join("alone"), ctx)?;
        models.push((format!("{name} only"), arrays, Some(norm)));
    }
    // Test sets: each site's, and all together.
    let mut tests: Vec<(String, ExperimentConfig)> = Vec::new();
    for (name, _) in sites {
        tests.push((
            name.clone(),
            load_experiment(&dir.join("sites").join(name).join("experiment.toml"))?,
        ));
    }
    tests.push((
        "all sites".into(),
        load_experiment(&dir.join("pooled").join("experiment.toml"))?,
    ));
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["model", "test_set", "studies", "auroc"])?;
    let mut grid: Vec<Vec<f64>> = Vec::new();
    for (model, arrays, norm) in &models {
        let mut row = Vec::new();
        for (test, experiment) in &tests {
            let (n, auroc) = test_auroc(experiment, arrays, norm.as_ref())?;
            csv.write_record([
                model.as_str(),
                test.as_str(),
                n.to_string().as_str(),
                format!("{auroc:.4}").as_str(),
            ])?;
            row.push(auroc);
        }
        grid.push(row);
    }
    let bytes = csv
        .into_inner()
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    bedside_core::fsio::write_atomic(&dir.join("comparison.csv"), &bytes)?;
    let mut heads = Vec::new();
    for (test, experiment) in &tests {
        let (studies, positive) = test_counts(experiment)?;
        heads.push(format!("{test} ({studies} studies, {positive} positive)"));
    }
    let mut md = format!(
        "Test AUROC of reduced EF (< 40 %), {} rounds × {} local epoch(s) federated; the other models trained {} epochs. \
         With few positive studies in a column, one study moves its AUROC a lot.\n\n| model | {} |\n|---|{}\n",
        args.rounds,
        args.local_epochs,
        args.rounds * args.local_epochs,
        heads.join(" | "),
        "---|".repeat(tests.len())
    );
    for ((model, _, _), row) in models.iter().zip(&grid) {
        md.push_str(&format!(
            "| {model} | {} |\n",
            row.iter()
                .map(|&v| auroc_cell(v))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    // The issue's two checks, stated with their numbers.
    let all = tests.len() - 1;
    let fed_all = grid[0][all];
    let pooled_all = grid[1][all];
    md.push_str(&format!(
        "\nFederated vs pooled on all test patients: {fed_all:.3} vs {pooled_all:.3} (gap {:.3}; goal ≤ 0.03).\n",
        pooled_all - fed_all
    ));
    for (s, (site, _)) in sites.iter().enumerate() {
        let single = &grid[2 + s];
        let others: Vec<String> = (0..sites.len())
            .filter(|&t| t != s)
            .map(|t| {
                format!(
                    "{}: {} vs federated {}{}",
                    sites[t].0,
                    auroc_cell(single[t]),
                    auroc_cell(grid[0][t]),
                    if grid[0][t].is_nan() || single[t].is_nan() {
                        " (not measurable: one class)"
                    } else if grid[0][t] > single[t] {
                        ""
                    } else {
                        " (not beaten)"
                    }
                )
            })
            .collect();
        md.push_str(&format!(
            "- {site} only, on the other sites: {}\n",
            others.join("; ")
        ));
    }
    bedside_core::fsio::write_atomic(&dir.join("comparison.md"), md.as_bytes())?;
    Ok(md)
}
