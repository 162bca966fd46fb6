// SPDX-License-Identifier: GPL-2.0 OR MIT
//! `vhost-mdev-tests`: the in-guest end-to-end suite of vhost-mdev.
//!
//! Run as root in a VM with `vhost_mdev` and a `vfio-vhost` parent (the
//! virtio-net loopback sample) loaded, and for the `blk_` tests the
//! virtio-blk RAM disk sample (`vhost_mdev_blk`):
//!
//! ```text
//! vhost-mdev-tests [--list] [--quick] [FILTER...]
//! ```
//!
//! Prints one `PASS: <name> (<secs>s)` or `FAIL: <name>: <reason>` line per
//! test, then `N passed, N failed`, and exits non-zero on any failure.

mod blk;
mod bridge;
mod cparent;
mod diff;
mod dirty;
mod faults;
mod hostile;
mod lifecycle;
mod migrate;
mod mq;
mod raw;
mod sample;
mod stress;
mod tests;
mod util;
mod vp_vdpa;

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tests::{
    Test, BRIDGE, BRIDGE_BLK, BRIDGE_PA, C_PARENT, DIFFERENTIAL, FAULTS, STRESS, TESTS, VP_VDPA,
};
use util::Env;

/// Longest a single test may run before the suite gives up on it.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);

const USAGE: &str =
    "usage: vhost-mdev-tests [--list] [--quick | --stress | --c-parent | --bridge | --bridge-blk
                         | --bridge-pa | --differential | --vp-vdpa | --faults
                         | --hub-check]
                        [FILTER...]

Runs the vhost-mdev end-to-end tests (as root, with vhost_mdev and a
vfio-vhost parent driver loaded). FILTERs select tests whose name contains
one of them; --quick selects the fast subset; --stress runs the ring-index
stress runs instead (STRESS_FRAMES frames per configuration, default
100000); --c-parent runs the tests of what the core forwards to a
parent, on the C test parent (tests/kmod/c_parent.ko, loaded); --bridge
runs the tests of the vDPA bridge (a vdpa_sim_net device bound to
vhost_mdev_vdpa), --bridge-blk those on a vdpa_sim_blk device bound to
it, --bridge-pa those of PA mode (a vdpa_sim_net device of vdpa_sim
use_va=0); --differential compares a vdpa_sim_net device bound to the bridge
with one bound to vhost_vdpa, request by request (tests/vm/bridge.sh
sets both up); --vp-vdpa runs those of a vp_vdpa device bound to it
(tests/vm/vp-vdpa.sh, on scripts/vm --machine q35-iommu), and
--hub-check, alone, checks that the two NICs of that machine reach each
other; --faults runs the fault-injection suite (tests/vm/faults.sh: a debug
kernel with CONFIG_FAULT_INJECTION; MODDIR says where the .ko files are,
for the module loads); --list prints the selection.";

fn main() -> ExitCode {
    // Helper mode of the fd-passing tests (lifecycle::fds_from_opener).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--hold-fds") {
        return lifecycle::hold_fds(&args[2..]);
    }
    // The two NICs of `scripts/vm --machine q35-iommu` reach each other.
    if args.get(1).map(String::as_str) == Some("--hub-check") {
        return match vp_vdpa::hub_check() {
            Ok(()) => {
                println!("PASS: vp_vdpa_hub_path");
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("FAIL: vp_vdpa_hub_path: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut list = false;
    let mut quick = false;
    let mut stress = false;
    let mut c_parent = false;
    let mut bridge = false;
    let mut bridge_blk = false;
    let mut bridge_pa = false;
    let mut vp = false;
    let mut differential = false;
    let mut faults = false;
    let mut filters = Vec::new();
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--list" => list = true,
            "--quick" => quick = true,
            "--stress" => stress = true,
            "--c-parent" => c_parent = true,
            "--bridge" => bridge = true,
            "--bridge-blk" => bridge_blk = true,
            "--bridge-pa" => bridge_pa = true,
            "--vp-vdpa" => vp = true,
            "--differential" => differential = true,
            "--faults" => faults = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            s if s.starts_with('-') => {
                eprintln!("unknown option {s}\n{USAGE}");
                return ExitCode::from(2);
            }
            s => filters.push(s.to_string()),
        }
    }
    let all = if stress {
        STRESS
    } else if c_parent {
        C_PARENT
    } else if bridge {
        BRIDGE
    } else if bridge_blk {
        BRIDGE_BLK
    } else if bridge_pa {
        BRIDGE_PA
    } else if vp {
        VP_VDPA
    } else if differential {
        DIFFERENTIAL
    } else if faults {
        FAULTS
    } else {
        TESTS
    };
    // A stress run takes as long as its frames: about 1 ms per frame at
    // worst on the debug kernel under TCG, and never less than a test.
    let timeout = if stress {
        TEST_TIMEOUT.max(Duration::from_millis(stress::frames().saturating_mul(2)))
    } else {
        TEST_TIMEOUT
    };
    let selected: Vec<&'static Test> = all
        .iter()
        .filter(|t| !quick || t.quick)
        .filter(|t| filters.is_empty() || filters.iter().any(|f| t.name.contains(f.as_str())))
        .collect();
    if list {
        for t in &selected {
            println!("{}{}", t.name, if t.quick { " [quick]" } else { "" });
        }
        return ExitCode::SUCCESS;
    }
    if selected.is_empty() {
        eprintln!("no test matches {filters:?}");
        println!("0 passed, 1 failed");
        return ExitCode::FAILURE;
    }

    util::QUICK.store(quick, std::sync::atomic::Ordering::Relaxed);
    let found = if bridge || bridge_blk || bridge_pa || vp || differential {
        Env::discover_bridge()
    } else {
        Env::discover()
    };
    let env = match found {
        Ok(e) => e,
        Err(e) => {
            // Without a parent every selected test fails for that reason.
            for t in &selected {
                println!("FAIL: {}: {e}", t.name);
            }
            println!("0 passed, {} failed", selected.len());
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "vhost-mdev-tests: type {} of parent {} ({} tests)",
        env.ty.id,
        env.ty.parent,
        selected.len()
    );
    let env: &'static Env = Box::leak(Box::new(env));

    let (mut passed, mut failed) = (0usize, 0usize);
    let suite_start = Instant::now();
    for t in selected {
        let start = Instant::now();
        let (tx, rx) = mpsc::channel();
        let run = t.run;
        let spawned = std::thread::Builder::new()
            .name(t.name.into())
            .spawn(move || {
                let r = std::panic::catch_unwind(|| run(env))
                    .unwrap_or_else(|_| Err("panicked".to_string()));
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            println!("FAIL: {}: cannot spawn the test thread: {e}", t.name);
            failed += 1;
            continue;
        }
        match rx.recv_timeout(timeout) {
            Ok(Ok(())) => {
                println!("PASS: {} ({:.2}s)", t.name, start.elapsed().as_secs_f64());
                passed += 1;
            }
            Ok(Err(reason)) => {
                println!("FAIL: {}: {reason}", t.name);
                failed += 1;
            }
            Err(_) => {
                // The thread is stuck in the kernel: nothing later can be
                // trusted to run, so stop here.
                println!(
                    "FAIL: {}: timed out after {} s (stuck; remaining tests not run)",
                    t.name,
                    timeout.as_secs()
                );
                failed += 1;
                println!("{passed} passed, {failed} failed");
                return ExitCode::FAILURE;
            }
        }
    }
    if faults {
        faults::summary(suite_start.elapsed().as_secs_f64());
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
