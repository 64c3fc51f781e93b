//! `chart-check [--crd FILE]... [--keda-kafka-scaler FILE] [--check-config BINARY --work-dir DIR]
//! [--unchecked-kind APIVERSION/KIND]... MANIFEST...`: checks every object of the rendered
//! manifests (see the library's docs); prints one line per object and exits 1 when any check
//! fails. An object of an `--unchecked-kind` (one another check covers) is listed as `SKIP`,
//! never as passed.

use anyhow::{bail, Context, Result};
use chart_check::{
    check_config, describe, documents, selector_overlaps, type_of, worker_configs, ScalerParams,
    Schemas,
};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Default)]
struct Args {
    crds: Vec<PathBuf>,
    kafka_scaler: Option<PathBuf>,
    binary: Option<PathBuf>,
    work_dir: Option<PathBuf>,
    unchecked: Vec<String>,
    manifests: Vec<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args::default();
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<PathBuf> {
            it.next()
                .map(PathBuf::from)
                .with_context(|| format!("{name} needs a value"))
        };
        match arg.to_str() {
            Some("--crd") => args.crds.push(value("--crd")?),
            Some("--keda-kafka-scaler") => args.kafka_scaler = Some(value("--keda-kafka-scaler")?),
            Some("--check-config") => args.binary = Some(value("--check-config")?),
            Some("--work-dir") => args.work_dir = Some(value("--work-dir")?),
            Some("--unchecked-kind") => args
                .unchecked
                .push(value("--unchecked-kind")?.to_string_lossy().into_owned()),
            Some(flag) if flag.starts_with("--") => bail!("unknown option {flag}"),
            _ => args.manifests.push(PathBuf::from(arg)),
        }
    }
    if args.manifests.is_empty() {
        bail!("usage: chart-check [--crd FILE]... [--keda-kafka-scaler FILE] [--check-config BINARY --work-dir DIR] [--unchecked-kind APIVERSION/KIND]... MANIFEST...");
    }
    Ok(args)
}

fn run() -> Result<bool> {
    let args = parse_args()?;
    let mut schemas = Schemas::default();
    for crd in &args.crds {
        let text = std::fs::read_to_string(crd).with_context(|| crd.display().to_string())?;
        schemas
            .add_crd(&text)
            .with_context(|| crd.display().to_string())?;
    }
    if let Some(path) = &args.kafka_scaler {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        let params =
            ScalerParams::from_go_source(&text).with_context(|| path.display().to_string())?;
        schemas.set_kafka_scaler(params);
    }
    let mut ok = true;
    for manifest in &args.manifests {
        let text =
            std::fs::read_to_string(manifest).with_context(|| manifest.display().to_string())?;
        let objects = documents(&text).with_context(|| manifest.display().to_string())?;
        if objects.is_empty() {
            println!("FAIL {}: no objects", manifest.display());
            ok = false;
        }
        for object in &objects {
            let name = describe(object);
            let (api_version, kind) = type_of(object);
            if args.unchecked.contains(&format!("{api_version}/{kind}")) {
                println!(
                    "SKIP {}: {name}: {api_version} {kind} is left to another check (--unchecked-kind)",
                    manifest.display()
                );
                continue;
            }
            match schemas.check(object) {
                Ok(problems) if problems.is_empty() => {
                    println!("ok   {}: {name}", manifest.display());
                }
                Ok(problems) => {
                    ok = false;
                    println!("FAIL {}: {name}", manifest.display());
                    for p in problems {
                        println!("       {p}");
                    }
                }
                Err(e) => {
                    ok = false;
                    println!("FAIL {}: {name}: {e:#}", manifest.display());
                }
            }
        }
        for overlap in selector_overlaps(&objects) {
            ok = false;
            println!("FAIL {}: {overlap}", manifest.display());
        }
        if let Some(binary) = &args.binary {
            let dir = args
                .work_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir)
                .join(manifest.file_stem().unwrap_or_default());
            std::fs::create_dir_all(&dir)?;
            let configs =
                worker_configs(&objects).with_context(|| manifest.display().to_string())?;
            if configs.is_empty() {
                println!(
                    "FAIL {}: no Deployment runs the worker with --config",
                    manifest.display()
                );
                ok = false;
            }
            for config in &configs {
                let verdict = check_config(binary, config, &dir)?;
                if verdict.code == 0 {
                    println!(
                        "ok   {}: {} --config {} passes check-config ({} environment variables)",
                        manifest.display(),
                        config.deployment,
                        config.path,
                        config.env.len()
                    );
                } else {
                    ok = false;
                    println!(
                        "FAIL {}: {} --config {}: check-config exited {}:\n{}",
                        manifest.display(),
                        config.deployment,
                        config.path,
                        verdict.code,
                        verdict.output
                    );
                }
            }
        }
    }
    Ok(ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chart-check: {e:#}");
            ExitCode::from(2)
        }
    }
}
