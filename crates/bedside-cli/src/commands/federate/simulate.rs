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

use bedside_eval::bootstrap::{BootstrapOptions, Clusters, Estimate, bootstrap_ci_many};
use bedside_eval::classification::RankedScores;
use bedside_ml::data::clips::Normalization;
use bedside_ml::data::loader::MODEL_CHANNELS;
use bedside_ml::train::Evaluation;
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
    /// Patients of the phantom cohort (all sites together), split 70/15/15 into training,
    /// validation and test.
    #[arg(long, default_value_t = 240)]
    pub patients: usize,
    /// Extra patients for the test split only: they cost curation and evaluation but no
    /// training, and narrow the comparison's intervals.
    #[arg(long, default_value_t = 120)]
    pub test_patients: usize,
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
    /// Aggregation strategy of the server app.
    #[arg(long, value_enum, default_value_t = Strategy::Fedavg)]
    pub strategy: Strategy,
    /// FedProx's proximal weight μ (with `--strategy fedprox`): each site's loss gains
    /// μ/2 · ‖w − w_global‖².
    #[arg(long, default_value_t = 0.01)]
    pub proximal_mu: f64,
    /// Normalisation layers of the model (`model.norm`): BatchNorm, or GroupNorm, whose
    /// per-clip statistics need no site statistics but which learns this task far more
    /// slowly (see the README).
    #[arg(long, value_enum, default_value_t = Norm::Batch)]
    pub norm: Norm,
    /// GroupNorm's groups (`model.norm_groups`). Few, because the model is narrow: at 32,
    /// its 16- and 32-channel layers would normalise each channel alone (InstanceNorm),
    /// which discards more than it should (Wu & He 2018).
    #[arg(long, default_value_t = 4)]
    pub norm_groups: usize,
    /// Seed of the cohort and of every model.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Also train on the pooled data and on each site alone, and compare all models on
    /// every site's test patients (writes comparison.csv and comparison.md).
    #[arg(long)]
    pub compare: bool,
    /// Score the federated model with the federation's averaged BatchNorm statistics only.
    /// By default each site re-estimates them on its own training studies (one pass, no
    /// training) for the federation's evaluation rounds and for its test patients; the
    /// averaged version is then an extra row of the comparison.
    #[arg(long)]
    pub averaged_statistics: bool,
    /// Folder holding `flower-superlink` and `flwr` (a virtual environment's `bin`);
    /// default: `.venv/bin` if it has them, else the PATH.
    #[arg(long)]
    pub flower_bin: Option<PathBuf>,
    /// Seconds to wait for the federation to finish.
    #[arg(long, default_value_t = 3600)]
    pub timeout_s: u64,
}

/// Flower strategies of the server app.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Federated averaging, weighted by each site's training studies.
    Fedavg,
    /// FedAvg plus a proximal term in every site's local training.
    Fedprox,
}

/// Normalisation layers (`model.norm`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// BatchNorm (torchvision's default).
    Batch,
    /// GroupNorm (per-clip statistics).
    Group,
}

impl Norm {
    fn toml(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::Group => "group",
        }
    }
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
norm = "{norm}"
norm_groups = {norm_groups}

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
        norm = args.norm.toml(),
        norm_groups = args.norm_groups,
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

/// The phantom cohort: `patients` split 70/15/15 as usual, plus `test_patients` that all go
/// to the test split (the training and validation counts are those of `patients` alone).
fn cohort_config(args: &SimulateArgs) -> PhantomConfig {
    let defaults = PhantomConfig::default();
    let total = args.patients + args.test_patients;
    let train = (defaults.split[0] * args.patients as f64).round();
    let val = (defaults.split[1] * args.patients as f64).round();
    let share = |n: f64| if total == 0 { 0.0 } else { n / total as f64 };
    PhantomConfig {
        seed: args.seed,
        patients: total,
        sites: args.sites,
        rows: 240,
        columns: 320,
        split: [share(train), share(val), 1.0 - share(train) - share(val)],
        ..defaults
    }
}

/// The record of which cohort configuration the curated arrays in a simulation folder came
/// from. Compared as text: serde_json's parser may round a float by one unit in the last
/// place, so a parsed `cohort.json` need not equal the configuration it was written from.
const COHORT_RECORD: &str = "cohort-config.json";

/// The cohort configuration and the side of the curated copies, as recorded.
fn cohort_record(config: &PhantomConfig, size: u32) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&serde_json::json!({
        "phantom": config,
        "resize": size,
    }))?)
}

/// Whether the cohort and curated arrays in `dir` were made from `config` at `size`, so that
/// a rerun in the same folder reuses them only for the requested cohort.
fn same_cohort(dir: &Path, config: &PhantomConfig, size: u32) -> bool {
    match (
        std::fs::read_to_string(dir.join(COHORT_RECORD)),
        cohort_record(config, size),
    ) {
        (Ok(written), Ok(wanted)) => written == wanted,
        _ => false,
    }
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
    if !(args.proximal_mu.is_finite() && args.proximal_mu >= 0.0) {
        return Err(crate::ui::Exit::invalid("--proximal-mu must be a non-negative number").into());
    }
    if args.norm_groups == 0 {
        return Err(crate::ui::Exit::invalid("--norm-groups must be at least 1").into());
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
    let config = cohort_config(&args);
    let curated = dir.join("curated");
    if !same_cohort(&dir, &config, args.size) || !curated.join("metadata.csv").exists() {
        // Arrays of another cohort would stay in the manifest beside the new ones.
        let _ = std::fs::remove_file(dir.join(COHORT_RECORD));
        for stale in [&cohort, &curated] {
            if stale.exists() {
                std::fs::remove_dir_all(stale)
                    .with_context(|| format!("removing {}", stale.display()))?;
            }
        }
        let summary = crate::commands::synth::phantom(&config, &cohort, true, ctx)?;
        crate::commands::synth::print_summary(&summary, ctx);
        crate::commands::demo::curate_cohort(
            &cohort.join("dicom"),
            &curated,
            &dir.join("secret"),
            args.size,
            ctx,
        )?;
        write(
            &dir.join(COHORT_RECORD),
            &cohort_record(&config, args.size)?,
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
        let value = |key: &str| {
            e["metrics"][key]
                .as_f64()
                .map_or("n/a".to_string(), |v| format!("{v:.3}"))
        };
        ctx.say(format!(
            "  round {:>2}: federated validation AUROC {}, loss {}",
            e["round"],
            value("eval-auroc"),
            value("eval-loss")
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
    let site_statistics = uses_site_statistics(args);
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
                 [trainer]\nkind = \"video\"\nexperiment = \"experiment.toml\"\n\
                 site_statistics = {site_statistics}\n"
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
    let (strategy, mu) = match args.strategy {
        Strategy::Fedavg => ("fedavg", 0.0),
        Strategy::Fedprox => ("fedprox", args.proximal_mu),
    };
    let run_config = format!(
        "model=\"video\" bedside-run=\"{RUN_NAME}\" num-server-rounds={rounds} local-epochs={le} \
         lr={lr} min-nodes={k} stats=true fraction-evaluate=1.0 round-timeout=1800.0 out-dir=\"{out}\" \
         strategy=\"{strategy}\" proximal-mu={mu:?}",
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

/// `arrays` evaluated on the test split of `experiment`'s data.
fn test_evaluation(
    experiment: &ExperimentConfig,
    arrays: &[NamedArray],
    norm: Option<&Normalization>,
) -> anyhow::Result<Evaluation> {
    let mut config = experiment.clone();
    config.data.val_split = "test".into();
    bedside_ml::train::evaluate_arrays(&config, arrays, norm)
        .map_err(crate::commands::train::train_error)
}

/// Study key → patient key, from the cohort's label sheet: the bootstrap resamples patients,
/// since a patient's studies are not independent.
fn patients_of_studies(labels: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut reader =
        csv::Reader::from_path(labels).with_context(|| format!("reading {}", labels.display()))?;
    let header = reader.headers()?.clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| anyhow::anyhow!("{} has no `{name}` column", labels.display()))
    };
    let (study, patient) = (column("study_key")?, column("patient_key")?);
    let mut out = BTreeMap::new();
    for record in reader.records() {
        let record = record?;
        out.insert(
            record.get(study).unwrap_or_default().to_string(),
            record.get(patient).unwrap_or_default().to_string(),
        );
    }
    Ok(out)
}

/// A value with its interval, for the table; "n/a" where the test set holds one class only.
fn cell(e: &Estimate) -> String {
    if !e.value.is_finite() {
        "n/a".into()
    } else if e.lower.is_finite() && e.upper.is_finite() {
        format!("{:.3} [{:.3}, {:.3}]", e.value, e.lower, e.upper)
    } else {
        format!("{:.3}", e.value)
    }
}

/// Every model's test scores on one test set, in the same study order.
struct TestSet {
    name: String,
    studies: Vec<String>,
    patients: Vec<String>,
    positive: Vec<bool>,
    /// Per model: the probability of reduced EF for each study.
    scores: Vec<Vec<f64>>,
}

impl TestSet {
    fn positives(&self) -> usize {
        self.positive.iter().filter(|&&p| p).count()
    }

    fn distinct_patients(&self) -> usize {
        self.patients
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    }

    /// AUROC of each model, then federated (model 0) minus each other model, with
    /// patient-level bootstrap intervals; the models are compared on the same replicates.
    fn estimates(&self, options: &BootstrapOptions) -> anyhow::Result<Vec<Estimate>> {
        let ranked: Vec<RankedScores> = self.scores.iter().map(|s| RankedScores::new(s)).collect();
        let metrics = |weights: Option<&[u32]>| -> Vec<Option<f64>> {
            let auroc: Vec<Option<f64>> = ranked
                .iter()
                .map(|r| r.auroc_weighted(&self.positive, weights))
                .collect();
            let mut out = auroc.clone();
            for other in &auroc[1..] {
                out.push(auroc[0].zip(*other).map(|(f, o)| f - o));
            }
            out
        };
        let values: Vec<f64> = metrics(None)
            .into_iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect();
        let clusters = Clusters::from_ids(&self.patients);
        Ok(bootstrap_ci_many(&values, &clusters, options, |r| {
            metrics(Some(&r.counts))
        })?)
    }
}

/// Trains a comparison model on one data set with the sites' own procedure: `rounds` times
/// `local_epochs` from the previous weights, the optimiser fresh each round, as a federation
/// of one site would. Each round is a run under `folder/rounds/`; returns the last round's
/// arrays and normalisation (that of its training split).
fn train_baseline(
    experiment: &Path,
    folder: &Path,
    args: &SimulateArgs,
    ctx: &Ctx,
) -> anyhow::Result<(Vec<NamedArray>, Normalization)> {
    use bedside_federate::trainer::{TrainConfig, Trainer as _};
    let rounds = folder.join("rounds");
    if rounds.exists() {
        std::fs::remove_dir_all(&rounds)?;
    }
    let mut trainer = super::video::VideoTrainer::new(experiment, folder)?;
    let bar = ctx.progress(u64::from(args.rounds), "rounds");
    let mut weights = Vec::new();
    for round in 1..=args.rounds {
        let config = TrainConfig {
            server_round: u64::from(round),
            local_epochs: args.local_epochs,
            lr: Some(args.lr),
            proximal_mu: 0.0,
            normalization: None,
            frozen_noise: 0.0,
        };
        weights = trainer
            .train(&weights, &config)
            .map_err(|e| anyhow::anyhow!("training {}: {e}", folder.display()))?
            .arrays;
        bar.inc(1);
    }
    bar.finish_and_clear();
    bedside_ml::train::run_arrays(&rounds.join(format!("round-{:04}", args.rounds)), false)
        .map_err(crate::commands::train::train_error)
}

/// Whether sites evaluate (and the comparison scores) the federated model with BatchNorm
/// statistics of their own; GroupNorm has no running statistics to re-estimate.
fn uses_site_statistics(args: &SimulateArgs) -> bool {
    !args.averaged_statistics && args.norm == Norm::Batch
}

/// A comparison model's weights: one set, or one per site (the federated model with each
/// site's own BatchNorm statistics), in the order of the sites.
enum Weights {
    Shared(Vec<NamedArray>),
    PerSite(Vec<Vec<NamedArray>>),
}

impl Weights {
    fn at_site(&self, site: usize) -> &[NamedArray] {
        match self {
            Self::Shared(arrays) => arrays,
            Self::PerSite(per_site) => per_site.get(site).map_or(&[], Vec::as_slice),
        }
    }
}

fn compare(
    args: &SimulateArgs,
    dir: &Path,
    sites: &[(String, usize)],
    federated: &[NamedArray],
    federated_norm: Option<Normalization>,
    ctx: &Ctx,
) -> anyhow::Result<String> {
    // Models: federated, pooled, each site alone (and the federated model with averaged
    // statistics, last, when the first row uses the sites' own).
    let site_statistics = uses_site_statistics(args);
    let weights = if site_statistics {
        ctx.say("  re-estimating the federated model's BatchNorm statistics at each site");
        let bar = ctx.progress(sites.len() as u64, "sites");
        let mut per_site = Vec::with_capacity(sites.len());
        for (name, _) in sites {
            let folder = dir.join("sites").join(name);
            let trainer =
                super::video::VideoTrainer::new(&folder.join("experiment.toml"), &folder)?;
            per_site.push(trainer.site_statistics(federated, federated_norm.clone())?);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Weights::PerSite(per_site)
    } else {
        Weights::Shared(federated.to_vec())
    };
    let mut models: Vec<(String, Weights, Option<Normalization>)> =
        vec![("federated".into(), weights, federated_norm.clone())];
    ctx.say("  training on the pooled data");
    let pooled = dir.join("pooled");
    let (arrays, norm) = train_baseline(&pooled.join("experiment.toml"), &pooled, args, ctx)?;
    models.push(("pooled".into(), Weights::Shared(arrays), Some(norm)));
    for (name, _) in sites {
        ctx.say(format!("  training on {name} alone"));
        let folder = dir.join("sites").join(name);
        let (arrays, norm) = train_baseline(
            &folder.join("experiment.toml"),
            &folder.join("alone"),
            args,
            ctx,
        )?;
        models.push((format!("{name} only"), Weights::Shared(arrays), Some(norm)));
    }
    if site_statistics {
        models.push((
            "federated, averaged statistics".into(),
            Weights::Shared(federated.to_vec()),
            federated_norm,
        ));
    }

    // Every model on every site's test patients; "all sites" is their union.
    let patients = patients_of_studies(&dir.join("labels.csv"))?;
    ctx.say("  evaluating every model on every site's test patients");
    let bar = ctx.progress((models.len() * sites.len()) as u64, "evaluations");
    let mut tests: Vec<TestSet> = Vec::new();
    for (s, (name, _)) in sites.iter().enumerate() {
        let experiment = load_experiment(&dir.join("sites").join(name).join("experiment.toml"))?;
        let mut set: Option<TestSet> = None;
        for (model, weights, norm) in &models {
            let evaluation = test_evaluation(&experiment, weights.at_site(s), norm.as_ref())?;
            bar.inc(1);
            let scores: Vec<f64> = evaluation
                .outputs
                .iter()
                .map(|o| o.get(1).copied().unwrap_or(f64::NAN))
                .collect();
            match &mut set {
                None => {
                    set = Some(TestSet {
                        name: name.clone(),
                        patients: evaluation
                            .studies
                            .iter()
                            .map(|s| patients.get(s).cloned().unwrap_or_else(|| s.clone()))
                            .collect(),
                        positive: evaluation.classes.iter().map(|&c| c == 1).collect(),
                        studies: evaluation.studies,
                        scores: vec![scores],
                    })
                }
                Some(set) => {
                    if set.studies != evaluation.studies {
                        bail!(
                            "{model} was evaluated on other studies of {name} than the federated model"
                        );
                    }
                    set.scores.push(scores);
                }
            }
        }
        tests.extend(set);
    }
    bar.finish_and_clear();
    let mut all = TestSet {
        name: "all sites".into(),
        studies: Vec::new(),
        patients: Vec::new(),
        positive: Vec::new(),
        scores: vec![Vec::new(); models.len()],
    };
    for t in &tests {
        all.studies.extend(t.studies.iter().cloned());
        all.patients.extend(t.patients.iter().cloned());
        all.positive.extend(t.positive.iter().copied());
        for (m, s) in t.scores.iter().enumerate() {
            all.scores[m].extend(s.iter().copied());
        }
    }
    tests.push(all);

    let options = BootstrapOptions {
        replicates: 2000,
        seed: args.seed,
        confidence: 0.95,
    };
    let estimates: Vec<Vec<Estimate>> = tests
        .iter()
        .map(|t| t.estimates(&options))
        .collect::<anyhow::Result<_>>()?;
    let k = models.len();
    let auroc = |m: usize, t: usize| &estimates[t][m];
    // Federated minus model `m` (m ≥ 1) on test set `t`.
    let gain = |m: usize, t: usize| &estimates[t][k + m - 1];

    // comparison.csv: one row per model and test set; comparison-scores.csv: every score.
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "model",
        "test_set",
        "studies",
        "positive",
        "patients",
        "auroc",
        "auroc_lower",
        "auroc_upper",
        "federated_minus_model",
        "difference_lower",
        "difference_upper",
    ])?;
    let number = |v: f64| {
        if v.is_finite() {
            format!("{v:.4}")
        } else {
            String::new()
        }
    };
    for (m, (model, _, _)) in models.iter().enumerate() {
        for (t, test) in tests.iter().enumerate() {
            let a = auroc(m, t);
            let (d, lo, hi) = if m == 0 {
                (f64::NAN, f64::NAN, f64::NAN)
            } else {
                let g = gain(m, t);
                (g.value, g.lower, g.upper)
            };
            csv.write_record([
                model.clone(),
                test.name.clone(),
                test.studies.len().to_string(),
                test.positives().to_string(),
                test.distinct_patients().to_string(),
                number(a.value),
                number(a.lower),
                number(a.upper),
                number(d),
                number(lo),
                number(hi),
            ])?;
        }
    }
    let bytes = csv
        .into_inner()
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    bedside_core::fsio::write_atomic(&dir.join("comparison.csv"), &bytes)?;
    let mut scores = csv::Writer::from_writer(Vec::new());
    scores.write_record([
        "model",
        "site",
        "study_key",
        "patient_key",
        "reduced_ef",
        "score",
    ])?;
    for (m, (model, _, _)) in models.iter().enumerate() {
        for test in &tests[..tests.len() - 1] {
            for (i, study) in test.studies.iter().enumerate() {
                scores.write_record([
                    model.as_str(),
                    test.name.as_str(),
                    study.as_str(),
                    test.patients[i].as_str(),
                    if test.positive[i] { "1" } else { "0" },
                    format!("{:.8}", test.scores[m][i]).as_str(),
                ])?;
            }
        }
    }
    let bytes = scores
        .into_inner()
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    bedside_core::fsio::write_atomic(&dir.join("comparison-scores.csv"), &bytes)?;

    // comparison.md: the table, the differences, and the issue's two checks.
    let heads: Vec<String> = tests
        .iter()
        .map(|t| {
            format!(
                "{} ({} studies of {} patients, {} positive)",
                t.name,
                t.studies.len(),
                t.distinct_patients(),
                t.positives()
            )
        })
        .collect();
    let rule = "---|".repeat(tests.len());
    let mut md = format!(
        "Test AUROC of reduced EF (< 40 %) with 95 % intervals from {} patient-level bootstrap \
         replicates. Every model trained {} rounds × {} local epoch(s) with the sites' procedure (the \
         optimiser fresh each round): federated across the sites, or as one site holding the \
         pooled data or one site's data.\n\n\
         | model | {} |\n|---|{rule}\n",
        options.replicates,
        args.rounds,
        args.local_epochs,
        heads.join(" | "),
    );
    if site_statistics {
        md.insert_str(
            md.find("\n\n| model").unwrap_or(md.len()),
            " The federated model scores each site's patients with BatchNorm statistics \
             re-estimated on that site's training studies (one pass, no training); \
             \"federated, averaged statistics\" is the same model with the federation's \
             averaged ones.",
        );
    }
    for (m, (model, _, _)) in models.iter().enumerate() {
        let row: Vec<String> = (0..tests.len()).map(|t| cell(auroc(m, t))).collect();
        md.push_str(&format!("| {model} | {} |\n", row.join(" | ")));
    }
    md.push_str(&format!(
        "\nFederated minus each model, on the same bootstrap replicates (paired):\n\n\
         | federated minus | {} |\n|---|{rule}\n",
        tests
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    ));
    for (m, (model, _, _)) in models.iter().enumerate().skip(1) {
        let row: Vec<String> = (0..tests.len()).map(|t| cell(gain(m, t))).collect();
        md.push_str(&format!("| {model} | {} |\n", row.join(" | ")));
    }
    let everyone = tests.len() - 1;
    let gap = gain(1, everyone);
    let verdict = if !gap.value.is_finite() {
        "not measurable (one class)".to_string()
    } else if -gap.value > 0.03 {
        "not met".to_string()
    } else if -gap.lower <= 0.03 {
        "met, and the whole interval is within 0.03".to_string()
    } else {
        format!(
            "met at the point estimate; the interval reaches {:.3} below pooled",
            -gap.lower
        )
    };
    md.push_str(&format!(
        "\nFederated vs pooled on all test patients: {} vs {}; pooled minus federated {:.3} \
         [{:.3}, {:.3}] (goal ≤ 0.03): {verdict}.\n",
        cell(auroc(0, everyone)),
        cell(auroc(1, everyone)),
        -gap.value,
        -gap.upper,
        -gap.lower,
    ));
    for (s, (site, _)) in sites.iter().enumerate() {
        let others: Vec<String> = (0..sites.len())
            .filter(|&t| t != s)
            .map(|t| {
                let g = gain(2 + s, t);
                let how = if !g.value.is_finite() {
                    "not measurable: one class"
                } else if g.lower > 0.0 {
                    "beaten; the interval excludes 0"
                } else if g.value > 0.0 {
                    "beaten at the point estimate"
                } else {
                    "not beaten"
                };
                format!(
                    "{}: {} vs federated {}, difference {} ({how})",
                    tests[t].name,
                    cell(auroc(2 + s, t)),
                    cell(auroc(0, t)),
                    cell(g)
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
