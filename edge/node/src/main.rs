//! The `siphon` binary: CLI, config and the wiring of edge + reactors + scripting.
//!
//! ```text
//! siphon [-c siphon.yaml]          run (no -c and no ./siphon.yaml: the embedded default)
//! siphon check [-c siphon.yaml]    validate everything a start would, exit 1 on the first error
//! siphon --version
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use mimalloc::MiMalloc;
use siphon_bin::{check, config, node};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Run { config: Option<PathBuf> },
    Check { config: Option<PathBuf> },
    Version,
    Help,
}

const USAGE: &str = "usage: siphon [check] [-c|--config siphon.yaml]\n       siphon --version";

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut check = false;
    let mut config = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "check" if !check && config.is_none() => check = true,
            "-c" | "--config" => match it.next() {
                Some(p) => config = Some(PathBuf::from(p)),
                None => return Err(format!("{a} needs a path")),
            },
            s if s.starts_with("--config=") => config = Some(PathBuf::from(&s[9..])),
            "-V" | "--version" => return Ok(Command::Version),
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(if check {
        Command::Check { config }
    } else {
        Command::Run { config }
    })
}

/// The config to use: `-c`, else `./siphon.yaml`, else the embedded default.
fn load_config(explicit: Option<PathBuf>) -> Result<config::Loaded, config::ConfigError> {
    let path = explicit.or_else(|| {
        let p = PathBuf::from("siphon.yaml");
        p.exists().then_some(p)
    });
    match path {
        Some(p) => config::load(&p),
        None => {
            eprintln!(
                "siphon: no -c and no ./siphon.yaml: running the embedded default \
                 (loopback proxy + registrar, default script)"
            );
            check::embedded_default()
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("siphon: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        Command::Version => {
            println!("siphon {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Check { config } => {
            let loaded = match load_config(config) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            for w in &loaded.warnings {
                eprintln!(
                    "{}:{}: warning: {}",
                    loaded.path.display(),
                    w.line,
                    w.message
                );
            }
            match check::deep_check(&loaded) {
                Ok(summary) => {
                    println!("{}: OK ({summary})", loaded.path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Run { config } => {
            let loaded = match load_config(config) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            init_logging(&loaded.config.log);
            for w in &loaded.warnings {
                tracing::warn!("{}:{}: {}", loaded.path.display(), w.line, w.message);
            }
            run(&loaded)
        }
    }
}

fn init_logging(log: &config::Log) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SIPHON_LOG").unwrap_or_else(|_| EnvFilter::new(&log.level));
    let file = log.file.as_ref().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| {
                eprintln!(
                    "siphon: cannot open log file {}: {e}; logging to stderr",
                    p.display()
                )
            })
            .ok()
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_thread_names(true);
    let res = match (log.format, file) {
        (config::LogFormat::Json, Some(f)) => builder
            .json()
            .with_writer(std::sync::Mutex::new(f))
            .try_init(),
        (config::LogFormat::Json, None) => builder.json().with_writer(std::io::stderr).try_init(),
        (_, Some(f)) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .try_init(),
        (_, None) => builder.with_writer(std::io::stderr).try_init(),
    };
    if let Err(e) = res {
        eprintln!("siphon: logging not initialised: {e}");
    }
}

fn run(loaded: &config::Loaded) -> ExitCode {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // Install the handlers before any thread exists, so every signal lands here.
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("siphon: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let node = match node::Node::start(loaded) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("siphon: {e}");
            return ExitCode::from(1);
        }
    };
    for sig in signals.forever() {
        match sig {
            SIGHUP => node.reload(),
            _ => {
                tracing::info!(
                    signal = sig,
                    "stopping (a second SIGTERM/SIGINT stops at once)"
                );
                node.drain_and_stop(|| signals.pending().any(|s| s != SIGHUP));
                return ExitCode::SUCCESS;
            }
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn cli_forms() {
        assert_eq!(parse_args(&args("")), Ok(Command::Run { config: None }));
        assert_eq!(
            parse_args(&args("-c x.yaml")),
            Ok(Command::Run {
                config: Some("x.yaml".into())
            })
        );
        assert_eq!(
            parse_args(&args("check --config=y.yaml")),
            Ok(Command::Check {
                config: Some("y.yaml".into())
            })
        );
        assert_eq!(parse_args(&args("--version")), Ok(Command::Version));
        assert!(parse_args(&args("-c")).is_err());
        assert!(parse_args(&args("frobnicate")).is_err());
    }
}
