// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Instance lifecycle: many instances at once, close while the device
//! moves frames (in-process and by killing the process), remove while
//! open on both IOMMU back ends.

use std::time::{Duration, Instant};

use vhost_mdev::driver::{self, NetDriver, NetDriverConfig, TEST_SRC_MAC};
use vhost_mdev::net::build_frame;
use vhost_mdev::{IommuKind, MdevDevice, VhostBackend};

use crate::check;
use crate::util::*;

fn open_kind(inst: &Inst, kind: IommuKind) -> Result<MdevDevice, String> {
    if kind == IommuKind::Iommufd {
        iommufd_available(inst).map_err(|e| format!("iommufd prerequisite missing: {e}"))?;
    }
    inst.open(kind)
}

fn kind_of(i: usize) -> IommuKind {
    if i.is_multiple_of(2) {
        IommuKind::Type1
    } else {
        IommuKind::Iommufd
    }
}

fn available(env: &Env) -> Result<u32, String> {
    Ok(env
        .sysfs
        .find_type(&env.ty.parent, &env.ty.id)
        .ctx("type")?
        .available_instances)
}

/// 16 instances: create, open (type1 and iommufd alternating), bring up
/// and move frames on all at once, close, remove; in rounds.
pub fn sixteen_instances(env: &Env) -> TestResult {
    const N: usize = 16;
    let avail = available(env)?;
    check!(
        avail >= N as u32,
        "only {avail} instances available: the sample must be loaded with max_instances >= \
         {N} (default 16) for this test"
    );
    for round in 0..scale(1, 3) {
        let insts: Vec<Inst> = (0..N)
            .map(|_| Inst::create(env))
            .collect::<Result<_, _>>()?;
        let now = available(env)?;
        check!(
            now == avail - N as u32,
            "round {round}: available_instances {now} with {N} created (was {avail})"
        );
        if avail == N as u32 {
            check!(
                env.sysfs.create(&env.ty, None).is_err(),
                "a 17th instance was created beyond max_instances=16"
            );
        }
        let devs: Vec<MdevDevice> = insts
            .iter()
            .enumerate()
            .map(|(i, inst)| open_kind(inst, kind_of(i)))
            .collect::<Result<_, _>>()?;
        let mut drvs = Vec::new();
        for (i, d) in devs.iter().enumerate() {
            let drv = NetDriver::start(
                d,
                NetDriverConfig {
                    queue_size: 64,
                    ..Default::default()
                },
            )
            .ctx(&format!("round {round}: start instance {i}"))?;
            drvs.push(drv);
        }
        for (i, drv) in drvs.iter_mut().enumerate() {
            let macs_differ = drv.mac();
            driver::ping(drv, 3, 0).ctx(&format!(
                "round {round}: traffic on instance {i} ({macs_differ})"
            ))?;
        }
        drop(drvs);
        drop(devs);
        for (i, mut inst) in insts.into_iter().enumerate() {
            inst.remove()
                .ctx(&format!("round {round}: remove instance {i}"))?;
            check!(!inst.exists(), "instance {i} still exists after remove");
        }
        let now = available(env)?;
        check!(
            now == avail,
            "round {round}: available_instances {now} after removing all (was {avail})"
        );
    }
    Ok(())
}

/// Closes the device while its worker moves a full TX ring; the instance
/// must reopen and work each time.
pub fn close_while_traffic(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let rounds = scale(4, 12);
    let mut queued = 0u64;
    for r in 0..rounds {
        let kind = kind_of(r);
        let dev = open_kind(&inst, kind)?;
        let mut drv = NetDriver::start(
            &dev,
            NetDriverConfig {
                queue_size: 256,
                ..Default::default()
            },
        )
        .ctx(&format!("round {r} ({kind}): start"))?;
        let f = build_frame(drv.mac(), TEST_SRC_MAC, r as u64, 1400).ctx("frame")?;
        let mut n = 0;
        while n < 256 && drv.queue_tx(&f).ctx("queue")? {
            n += 1;
        }
        drv.flush_tx().ctx("kick")?;
        queued += n;
        // Let the worker get going on some rounds, close at once on others.
        if r % 3 == 1 {
            std::thread::sleep(Duration::from_millis(2));
        }
        // Close without a reset: the queue memory stays allocated (leaked)
        // and mapped until the close tears the device down.
        std::mem::forget(drv);
        drop(dev);
    }
    let tx = inst.stat("tx_packets")?;
    let rx = inst.stat("rx_packets")?;
    check!(
        tx <= queued && rx <= tx,
        "counters after closes: tx {tx}, rx {rx}, {queued} frames queued"
    );
    for kind in [IommuKind::Type1, IommuKind::Iommufd] {
        let dev = open_kind(&inst, kind)?;
        let s = dev.get_status().ctx("GET_STATUS")?;
        check!(s == 0, "status {s:#x} after reopen ({kind})");
        let mut drv =
            NetDriver::start(&dev, NetDriverConfig::default()).ctx("start after closes")?;
        driver::ping(&mut drv, 20, 0).ctx(&format!("traffic after closes ({kind})"))?;
    }
    Ok(())
}

/// A process moving frames is killed (SIGKILL): the kernel closes the
/// device under the running worker; the instance must work afterwards.
pub fn kill_while_traffic(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    for kind in [IommuKind::Type1, IommuKind::Iommufd] {
        if kind == IommuKind::Iommufd {
            iommufd_available(&inst).map_err(|e| format!("iommufd prerequisite missing: {e}"))?;
        }
        let before = inst.stat("rx_packets")?;
        let mut cmd = std::process::Command::new("vhost-mdev");
        cmd.args([
            "bench",
            &inst.uuid.to_string(),
            "--seconds",
            "60",
            "--depth",
            "128",
        ]);
        if kind == IommuKind::Iommufd {
            cmd.arg("--iommufd");
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .ctx("spawn `vhost-mdev bench` (the CLI must be in PATH)")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if inst.stat("rx_packets")? > before + 200 {
                break;
            }
            if let Some(st) = child.try_wait().ctx("wait")? {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!(
                    "vhost-mdev bench exited early ({st}): {}",
                    err.trim()
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "vhost-mdev bench ({kind}) moved no frames within 20 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().ctx("SIGKILL")?;
        child.wait().ctx("wait")?;
        let dev = open_kind(&inst, kind)?;
        let s = dev.get_status().ctx("GET_STATUS")?;
        check!(
            s == 0,
            "status {s:#x} after the killed process's close ({kind})"
        );
        let mut drv = NetDriver::start(&dev, NetDriverConfig::default()).ctx("start after kill")?;
        driver::ping(&mut drv, 20, 0).ctx(&format!("traffic after kill ({kind})"))?;
    }
    Ok(())
}

/// Removal from another thread while the device is open and running: the
/// request IRQ fires, the device keeps working, the removal completes
/// only after the close.
pub fn remove_while_open(env: &Env, kind: IommuKind) -> TestResult {
    let mut inst = Inst::create(env)?;
    let avail = available(env)?;
    let dev = open_kind(&inst, kind)?;
    let mut drv = NetDriver::start(&dev, NetDriverConfig::default()).ctx("start")?;
    driver::ping(&mut drv, 5, 0).ctx("traffic before remove")?;
    let req = eventfd()?;
    dev.set_req_irq(Some(&req)).ctx("attach request eventfd")?;
    let sysfs = inst.sysfs.clone();
    let uuid = inst.uuid;
    let (tx, rx) = std::sync::mpsc::channel();
    let remover = std::thread::spawn(move || {
        let r = sysfs.remove(&uuid).map_err(|e| e.to_string());
        let _ = tx.send(r);
    });
    let fired = fired(&req, Duration::from_secs(10))?;
    check!(fired, "request IRQ did not fire within 10 s of remove");
    check!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "remove completed while the device was open"
    );
    // Still a working device until userspace lets go.
    driver::ping(&mut drv, 5, 0).ctx("traffic while the removal waits")?;
    check!(
        rx.try_recv().is_err(),
        "remove completed while the device was open"
    );
    drop(drv);
    drop(dev);
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "remove did not complete within 10 s of close".to_string())?;
    r.map_err(|e| format!("remove: {e}"))?;
    let _ = remover.join();
    inst.remove().ok();
    check!(!inst.exists(), "instance still exists after remove");
    let now = available(env)?;
    check!(
        now == avail + 1,
        "available_instances {now} after remove (was {avail} with the instance)"
    );
    Ok(())
}

/// Helper process (`vhost-mdev-tests --hold-fds UUID type1|iommufd`):
/// opens the instance, prints `fds DEVICE OTHER... ioas ID`, and holds
/// the fds until its stdin closes.
pub fn hold_fds(args: &[String]) -> std::process::ExitCode {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let run = || -> Result<(), String> {
        let uuid = args
            .first()
            .and_then(|u| uuid::Uuid::parse_str(u).ok())
            .ok_or("usage: --hold-fds UUID type1|iommufd")?;
        let kind = match args.get(1).map(String::as_str) {
            Some("iommufd") => IommuKind::Iommufd,
            _ => IommuKind::Type1,
        };
        let sysfs = vhost_mdev::Sysfs::system();
        let i = sysfs.instance(&uuid).ctx("instance")?;
        let v = vhost_mdev::VfioDevice::open(&sysfs, &i, kind).ctx("open")?;
        let (dev, others, ioas) = v.into_parts();
        let mut line = format!("fds {}", dev.as_raw_fd());
        for f in &others {
            line += &format!(" {}", f.as_raw_fd());
        }
        line += &format!(" ioas {}\n", ioas.unwrap_or(0));
        let mut out = std::io::stdout();
        out.write_all(line.as_bytes()).ctx("stdout")?;
        out.flush().ctx("stdout")?;
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        drop((dev, others));
        Ok(())
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hold-fds: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn pidfd_getfd(pid: u32, fd: i32) -> Result<std::fs::File, String> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscalls with integer arguments.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_long, 0) };
    if pidfd < 0 {
        return Err(format!(
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: as above.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd as libc::c_long, 0) };
    let err = std::io::Error::last_os_error();
    // SAFETY: pidfd is ours.
    unsafe { libc::close(pidfd as i32) };
    if r < 0 {
        return Err(format!("pidfd_getfd({pid}, {fd}): {err}"));
    }
    // SAFETY: a new fd that we own.
    Ok(unsafe { std::fs::File::from_raw_fd(r as i32) })
}

/// Another process opens the instance and hands its fds over (as a
/// management process does for a VMM); this process maps its own memory
/// and drives the device. DMA must reach the mapper's memory, whether the
/// opener is still alive or already gone.
pub fn fds_from_opener(env: &Env, kind: IommuKind, opener_exits: bool) -> TestResult {
    use std::io::BufRead;
    let inst = Inst::create(env)?;
    if kind == IommuKind::Iommufd {
        iommufd_available(&inst).map_err(|e| format!("iommufd prerequisite missing: {e}"))?;
    }
    let exe = std::env::current_exe().ctx("current_exe")?;
    let mut child = std::process::Command::new(exe)
        .args([
            "--hold-fds",
            &inst.uuid.to_string(),
            if kind == IommuKind::Iommufd {
                "iommufd"
            } else {
                "type1"
            },
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ctx("spawn the opener")?;
    let pid = child.id();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?)
        .read_line(&mut line)
        .ctx("read the opener's fds")?;
    let r = (|| -> TestResult {
        let w: Vec<&str> = line.split_whitespace().collect();
        check!(w.first() == Some(&"fds"), "opener said {line:?}");
        let ioas_at = w.iter().position(|x| *x == "ioas").ok_or("no ioas")?;
        let nums: Vec<i32> = w[1..ioas_at]
            .iter()
            .map(|x| x.parse().map_err(|_| format!("bad fd {x}")))
            .collect::<Result<_, _>>()?;
        let ioas: u32 = w
            .get(ioas_at + 1)
            .and_then(|x| x.parse().ok())
            .ok_or("bad ioas")?;
        let mut files: Vec<std::fs::File> = nums
            .iter()
            .map(|fd| pidfd_getfd(pid, *fd))
            .collect::<Result<_, _>>()?;
        let device = files.remove(0);
        let name = inst.uuid.to_string();
        let v = match kind {
            IommuKind::Type1 => {
                check!(files.len() == 2, "opener passed {} fds", files.len() + 1);
                let group = files.pop().ok_or("group")?;
                let container = files.pop().ok_or("container")?;
                vhost_mdev::VfioDevice::from_type1_fds(container, group, device, &name)
            }
            IommuKind::Iommufd => {
                let fd = files.pop().ok_or("iommufd")?;
                vhost_mdev::VfioDevice::from_iommufd_fds(fd, ioas, device, &name)
            }
        };
        let dev = MdevDevice::from_vfio(v, format!("vhost-mdev {name} (fds of pid {pid})"))
            .ctx("region info of the passed device")?;
        if opener_exits {
            drop(child.stdin.take());
            child.wait().ctx("wait for the opener")?;
        }
        let mut drv = NetDriver::start(
            &dev,
            NetDriverConfig {
                timeout: Duration::from_secs(3),
                ..Default::default()
            },
        )
        .ctx("start")?;
        let who = if opener_exits { "gone" } else { "alive" };
        driver::ping(&mut drv, 20, 0).ctx(&format!(
            "traffic with memory mapped by this process, opener pid {pid} {who}"
        ))?;
        Ok(())
    })();
    drop(child.stdin.take());
    let _ = child.wait();
    r
}
