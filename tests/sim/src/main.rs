//! `deskew-sim`: run or replay schedules of the protocol simulation.
//!
//! ```text
//! cargo run -p deskew-sim --release -- --model s3 --seed 42 --trace   # replay one schedule
//! cargo run -p deskew-sim --release -- --model dir --count 100000       # look for failures
//! cargo run -p deskew-sim --release -- --fault no_tombstones --count 1000 # watch a weakened protocol fail
//! ```

use std::process::ExitCode;

use deskew_sim::world::Model;

fn main() -> ExitCode {
    let mut model = Model::S3;
    let (mut seed, mut count, mut trace) = (0u64, None::<u64>, false);
    let mut faults = deskew_core::faults::Faults::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--model" => model = if value("--model") == "dir" { Model::Dir } else { Model::S3 },
            "--seed" => seed = value("--seed").parse().expect("--seed takes a number"),
            "--count" => count = Some(value("--count").parse().expect("--count takes a number")),
            "--trace" => trace = true,
            "--fault" => {
                let name = value("--fault");
                match deskew_core::faults::Faults::each().into_iter().find(|(n, _)| *n == name) {
                    Some((_, f)) => faults = f,
                    None => {
                        eprintln!("unknown fault `{name}`");
                        return ExitCode::from(2);
                    }
                }
            }
            _ => {
                eprintln!("usage: deskew-sim [--model s3|dir] [--seed N] [--count N] [--trace] [--fault NAME]");
                return ExitCode::from(2);
            }
        }
    }
    match count {
        None => {
            let o = deskew_sim::run_with(seed, model, faults, trace);
            for line in &o.log {
                println!("{line}");
            }
            eprintln!("seed {} model {}: {} steps, {} publishes, {} crashes", o.seed, model.name(), o.steps, o.published, o.crashes);
            for v in &o.violations {
                eprintln!("VIOLATION {v}");
            }
            if o.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Some(n) => {
            let start = std::time::Instant::now();
            let s = deskew_sim::run_many_with(seed, n, model, faults, false);
            eprintln!(
                "{} schedules on {} ({} distinct interleavings ({} distinct orders of protocol steps), {} steps, {} publishes, {} crashes) in {:.1}s: {} failed",
                s.schedules,
                model.name(),
                s.distinct,
                s.distinct_orders,
                s.steps,
                s.published,
                s.crashes,
                start.elapsed().as_secs_f64(),
                s.failures.len()
            );
            for o in s.failures.iter().take(10) {
                eprintln!("seed {}: {}", o.seed, o.violations[0]);
            }
            if s.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
    }
}
