//! `smpp-bench`: the SMSC simulator and the load generator from the command line.
//!
//! ```text
//! smpp-bench smsc [--listen 127.0.0.1:2776] [--system-id ID --password PW] [--dlr-delay-ms 0]
//!                 [--dlr-ratio 1.0] [--error-rate 0] [--error-status 0x45]
//!                 [--throttle-rate 0] [--mo-per-sec 0] [--window 64]
//! smpp-bench load [--target 127.0.0.1:2775] [--binds 1] [--window 64] [--count 100000]
//!                 [--system-id load] [--password load] [--body-len 32]
//! smpp-bench self-test [--count 30000] [--window 64]   # load against an in-process simulator
//! ```
//! `smsc` prints `listening on ADDR` and serves until killed; `load` prints one JSON line
//! and exits 1 if any submit failed (every error counted by cause).

use std::process::ExitCode;
use std::time::Duration;

use siphon_bench_smpp::load::{LoadConfig, run};
use siphon_bench_smpp::smsc::{Smsc, SmscConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        eprintln!("usage: smpp-bench smsc|load|self-test [--flag value]...");
        return ExitCode::from(2);
    };
    let mut flags = std::collections::HashMap::new();
    let mut it = args[1..].iter();
    while let Some(k) = it.next() {
        let Some(v) = it.next() else {
            eprintln!("{k}: missing value");
            return ExitCode::from(2);
        };
        flags.insert(k.trim_start_matches("--").to_owned(), v.clone());
    }
    match run_cmd(&cmd, &flags) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("smpp-bench: {e}");
            ExitCode::from(2)
        }
    }
}

type Flags = std::collections::HashMap<String, String>;

fn get<T: std::str::FromStr>(f: &Flags, k: &str, d: T) -> Result<T, String> {
    match f.get(k) {
        None => Ok(d),
        Some(v) => v.parse().map_err(|_| format!("--{k} {v}: bad value")),
    }
}

fn load_cfg(f: &Flags) -> Result<LoadConfig, String> {
    let d = LoadConfig::default();
    Ok(LoadConfig {
        target: get(f, "target", d.target)?,
        binds: get(f, "binds", d.binds)?.max(1),
        window: get(f, "window", d.window)?.max(1),
        count: get(f, "count", d.count)?,
        system_id: get(f, "system-id", d.system_id)?,
        password: get(f, "password", d.password)?,
        body_len: get(f, "body-len", d.body_len)?,
        timeout: d.timeout,
    })
}

fn run_cmd(cmd: &str, f: &Flags) -> Result<ExitCode, String> {
    match cmd {
        "smsc" => {
            let d = SmscConfig::default();
            let status = f.get("error-status").map_or(Ok(d.error_status), |s| {
                let s = s.trim_start_matches("0x");
                u32::from_str_radix(s, 16).map_err(|_| format!("--error-status {s}: bad value"))
            })?;
            let cfg = SmscConfig {
                listen: get(f, "listen", "127.0.0.1:2776".parse().map_err(|_| "addr")?)?,
                system_id: get(f, "system-id", String::new())?,
                password: get(f, "password", String::new())?,
                dlr_delay: Duration::from_millis(get(f, "dlr-delay-ms", 0u64)?),
                dlr_ratio: get(f, "dlr-ratio", d.dlr_ratio)?,
                error_rate: get(f, "error-rate", d.error_rate)?,
                error_status: status,
                throttle_rate: get(f, "throttle-rate", d.throttle_rate)?,
                mo_per_sec: get(f, "mo-per-sec", 0u32)?,
                window: get(f, "window", d.window)?,
                ..d
            };
            let s = Smsc::start(cfg).map_err(|e| e.to_string())?;
            s.set_recording(false);
            println!("listening on {}", s.addr());
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "load" => {
            let cfg = load_cfg(f)?;
            let r = run(&cfg);
            println!("{}", r.json(&cfg));
            Ok(if r.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        "self-test" => {
            let s = Smsc::start(SmscConfig::default()).map_err(|e| e.to_string())?;
            s.set_recording(false);
            let mut cfg = load_cfg(f)?;
            cfg.target = s.addr();
            if !f.contains_key("count") {
                cfg.count = 30_000;
            }
            let r = run(&cfg);
            println!("{}", r.json(&cfg));
            Ok(if r.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        c => Err(format!("unknown command {c}")),
    }
}
