//! `proof-bench`: what a proof of hardware costs on this machine, at the server's default
//! challenge sizes (`platform::agents::FleetConfig`): the agent's time to answer (all of each
//! product) and the server's time to check an answer (only the opened rows), for a GPU device
//! with one to eight claimed GPUs, a CPU device, and the spot check of a hired device.
//!
//! Today's proof computes on the CPU, so an honest GPU agent and a GPU-less host pretending to
//! be one answer in the same time: the "answer" column is both, and the ratio that matters for
//! issue 23 (honest GPU vs dishonest CPU) can only be measured once the proof runs on the GPU.
//! Reports a Markdown table.

use std::time::Instant;

use clap::Parser;
use domain::proof_of_work::{check, solve, Challenge};
use loadtest::percentile;
use platform::agents::FleetConfig;

#[derive(Debug, Parser)]
#[command(
    name = "proof-bench",
    about = "Time to answer and to check a proof of hardware"
)]
struct Args {
    /// Answers made per case (each checked as many times as --checks).
    #[arg(long, default_value_t = 3)]
    answers: u32,
    /// Checks timed per answer.
    #[arg(long, default_value_t = 200)]
    checks: u32,
}

struct Case {
    name: &'static str,
    size: u32,
    products: u32,
}

fn main() {
    let args = Args::parse();
    let config = FleetConfig::default();
    let spot = (config.gpu_challenge_size / 2).max(config.challenge_openings);
    let cases = [
        Case {
            name: "GPU device, 1 GPU",
            size: config.gpu_challenge_size,
            products: 1,
        },
        Case {
            name: "GPU device, 8 GPUs",
            size: config.gpu_challenge_size,
            products: 8,
        },
        Case {
            name: "CPU device",
            size: config.cpu_challenge_size,
            products: 1,
        },
        Case {
            name: "spot check while hired",
            size: spot,
            products: 1,
        },
    ];
    println!(
        "| case | side × products | answer (agent, ms) p50 | check (server, µs) p50 | p99 | deadline (s) |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (n, case) in cases.iter().enumerate() {
        let mut answer_ms = Vec::new();
        let mut check_us = Vec::new();
        for run in 0..args.answers {
            let challenge = Challenge {
                id: format!("chl-bench-{n}-{run}"),
                seed: 0x5eed_0000 + u64::from(run) * 7919 + n as u64,
                size: case.size,
                products: case.products,
                openings: config.challenge_openings,
                deadline_secs: config.challenge_deadline_secs,
            };
            let started = Instant::now();
            let answer = solve(&challenge, |_| {});
            answer_ms.push(started.elapsed().as_millis() as u32);
            for _ in 0..args.checks {
                let started = Instant::now();
                let verdict = check(&challenge, &answer);
                check_us.push(started.elapsed().as_micros() as u32);
                assert!(verdict.is_ok(), "an honest answer must pass: {verdict:?}");
            }
        }
        answer_ms.sort_unstable();
        check_us.sort_unstable();
        println!(
            "| {} | {}³ × {} | {} | {} | {} | {} |",
            case.name,
            case.size,
            case.products,
            percentile(&answer_ms, 0.5),
            percentile(&check_us, 0.5),
            percentile(&check_us, 0.99),
            config.challenge_deadline_secs
        );
    }
}
