//! kedge's native kustomize build against `kubectl kustomize` on the same
//! inputs, in the same run: every case of `tests/fixtures/kustomize-corpus`
//! that both build successfully, `ROUNDS` times each.
//!
//! Prints, per tool, the total time and the median per case, and the
//! ratios: kedge in-process vs kubectl (which includes kubectl's process
//! start), and kedge as a subprocess (`kedge build`, apples to apples).
//!
//! Run: `cargo bench --bench kustomize_corpus` (needs `kubectl` on PATH).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;

fn build_dir(case: &Path) -> Option<PathBuf> {
    let rel = std::fs::read_to_string(case.join("build-dir.txt")).ok()?;
    Some(case.join("input").join(rel.trim()))
}

fn run(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kustomize-corpus");
    let kedge_bin = env!("CARGO_BIN_EXE_kedge");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("corpus directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.yaml").is_file())
        .filter_map(|p| build_dir(&p))
        .collect();
    dirs.sort();
    if !run(Command::new("kubectl").args(["version", "--client"])) {
        eprintln!("kubectl not on PATH: nothing to compare against");
        return;
    }
    // Same inputs for both: only cases both tools build.
    dirs.retain(|d| {
        kedge::kustomize::build(d).is_ok() && run(Command::new("kubectl").arg("kustomize").arg(d))
    });
    let (mut native, mut subprocess, mut kubectl) = (Vec::new(), Vec::new(), Vec::new());
    for dir in &dirs {
        for _ in 0..ROUNDS {
            let start = Instant::now();
            let resources = kedge::kustomize::build(dir).expect("built before");
            std::hint::black_box(kedge::kustomize::to_yaml(&resources));
            native.push(start.elapsed());

            let start = Instant::now();
            run(Command::new(kedge_bin).arg("build").arg(dir));
            subprocess.push(start.elapsed());

            let start = Instant::now();
            run(Command::new("kubectl").arg("kustomize").arg(dir));
            kubectl.push(start.elapsed());
        }
    }
    let total = |v: &[Duration]| v.iter().sum::<Duration>();
    let (tn, ts, tk) = (total(&native), total(&subprocess), total(&kubectl));
    println!("kustomize corpus: {} cases x {ROUNDS} rounds", dirs.len());
    println!("{:<28} {:>10} {:>14}", "tool", "total", "median/case");
    for (name, t, v) in [
        ("kedge (in-process)", tn, &native),
        ("kedge build (subprocess)", ts, &subprocess),
        ("kubectl kustomize", tk, &kubectl),
    ] {
        println!(
            "{name:<28} {:>9.3}s {:>12.3}ms",
            t.as_secs_f64(),
            median(v.clone()).as_secs_f64() * 1e3
        );
    }
    println!(
        "ratio kubectl / kedge in-process: {:.1}x",
        tk.as_secs_f64() / tn.as_secs_f64()
    );
    println!(
        "ratio kubectl / kedge subprocess: {:.1}x",
        tk.as_secs_f64() / ts.as_secs_f64()
    );
}
