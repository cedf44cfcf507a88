//! Runs the real `trailvault` binary as a user would, with the collector's
//! credentials and a hermetic environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use trailvault_integration_tests::sim::Sim;

/// The `trailvault` binary: `TRAILVAULT_BIN`, else beside this test binary in
/// the target directory (scripts/test builds it first).
pub fn trailvault_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TRAILVAULT_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/trailvault
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("trailvault");
    assert!(
        bin.exists(),
        "the trailvault binary is not built at {}; run scripts/test, or `cargo build -p trailvault` first, or set TRAILVAULT_BIN",
        bin.display()
    );
    bin
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "stdout is not the JSON report ({error}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A prepared `trailvault` command for `sim`, with `config` as its config file.
pub fn command(sim: &Sim, config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(trailvault_bin());
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (name, value) in sim.collector_env() {
        command.env(name, value);
    }
    command.env(
        "RUST_LOG",
        std::env::var("TRAILVAULT_TEST_LOG").unwrap_or_else(|_| "warn,trailvault=info".into()),
    );
    command.arg("--config").arg(config).args(args);
    command.stdin(Stdio::null());
    command
}

pub fn run(sim: &Sim, config: &Path, args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = command(sim, config, args).output().expect("run trailvault");
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    eprintln!(
        "--- trailvault {} -> exit {}\n{}",
        args.join(" "),
        run.code,
        run.stderr
    );
    run
}

/// Writes the simulator's trailvault config (plus `extra` TOML appended to
/// named sections by simple replacement) into `dir`.
pub fn write_config(
    sim: &Sim,
    dir: &Path,
    options: trailvault_integration_tests::sim::ConfigOptions,
) -> PathBuf {
    let path = dir.join("trailvault.toml");
    std::fs::write(&path, sim.trailvault_config_toml_with(&options)).expect("write config");
    path
}

/// A twin of `options`' configuration, written beside it, that reads each
/// source bucket at `requests_per_second` through the rate cap: a run that a
/// test must stop midway then lasts seconds on any host. Same store.
pub fn write_throttled_config(
    sim: &Sim,
    dir: &Path,
    options: trailvault_integration_tests::sim::ConfigOptions,
    requests_per_second: u32,
) -> PathBuf {
    let path = dir.join("throttled.toml");
    let options = trailvault_integration_tests::sim::ConfigOptions {
        source_requests_per_second: requests_per_second,
        ..options
    };
    std::fs::write(&path, sim.trailvault_config_toml_with(&options)).expect("write config");
    path
}

/// The usual options of a test working in `dir`: its store there, and the
/// simulator's public keys written there as the `[verify]` key file (the
/// emulator has no ListPublicKeys).
pub fn options_in(sim: &Sim, dir: &Path) -> trailvault_integration_tests::sim::ConfigOptions {
    let keys = dir.join("public-keys.json");
    std::fs::write(&keys, sim.public_keys_json()).expect("write the public keys");
    trailvault_integration_tests::sim::ConfigOptions {
        public_keys_file: Some(keys),
        ..trailvault_integration_tests::sim::ConfigOptions::new(&dir.join("store"))
    }
}
