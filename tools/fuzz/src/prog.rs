// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The fuzzer's operations as values: generated from a seeded [`Rng`],
//! mutated field by field, executed on an open instance, and written and
//! read back as text, one operation a line (the corpus and reproducer
//! format; `#` starts a comment):
//!
//! ```text
//! send 0x4008af00 0 0300000000000000     # request code, flags, payload (hex)
//! msg_write 0x0 0x... <hex>              # offset in the message region, bytes
//! read 0x10000 16                        # device-fd offset, length
//! notify 0x1000 0100                     # offset from the notify region, bytes
//! set_irqs 0 0x24 0 2 efd,-1             # index flags start count fds (efd: ours)
//! ioeventfd 0x10000 2 0 efd              # offset flags data fd
//! mmap 0x10000 4096                      # offset length
//! ioctl 0x3b6d 16 0x1234 1 0             # code argsz fill-seed [flags index]
//! transport ioctl                        # requests over the ioctl or region
//! reset                                  # VFIO_DEVICE_RESET
//! traffic 2 packed                       # bring-up, N frames, stop
//! check                                  # reset + traffic that must work
//! ```

use std::fmt::Write as _;
use std::os::fd::AsRawFd;
use std::time::Duration;

use vhost_mdev::driver::{self, NetDriver, NetDriverConfig};
use vhost_mdev::uapi::*;
use vhost_mdev::{MdevDevice, VhostBackend};
use vmm_sys_util::eventfd::EventFd;

/// xorshift64*: small, fast and reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// "Interesting" integers: boundaries more often than uniform ones.
    pub fn interesting(&mut self) -> u64 {
        match self.below(10) {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3 => u32::MAX as u64,
            4 => self.pick(&[2, 3, 255, 256, 1023, 1024, 1025, 4096, 32768, 65535, 65536]),
            5 => 1 << self.below(64),
            6 => (1 << self.below(64)) - 1,
            _ => self.next(),
        }
    }
}

/// A file descriptor argument: the fuzzer's eventfd, or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fd {
    Efd,
    Raw(i32),
}

/// One operation on an open instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Send {
        code: u64,
        flags: u32,
        payload: Vec<u8>,
    },
    MsgWrite {
        off: u64,
        msg: Vec<u8>,
    },
    Read {
        off: u64,
        len: usize,
    },
    /// `off` is relative to the notify region (region 1).
    Notify {
        off: u64,
        val: Vec<u8>,
    },
    SetIrqs {
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<Fd>,
    },
    Ioeventfd {
        off: u64,
        flags: u32,
        data: u64,
        fd: Fd,
    },
    Mmap {
        off: u64,
        len: usize,
    },
    /// A raw ioctl on a 64 KiB buffer filled from `fill` (a seed), with
    /// `argsz` first and, if given, flags and index after it.
    Ioctl {
        code: u64,
        argsz: u32,
        fill: u64,
        head: Option<(u32, u32)>,
    },
    /// Requests over the ioctl transport (or the message region).
    Transport {
        ioctl: bool,
    },
    Reset,
    /// A valid bring-up that moves frames (not asserted: earlier
    /// operations may have broken it).
    Traffic {
        frames: u64,
        packed: bool,
    },
    /// A reset and a bring-up that must move frames.
    Check,
}

/// What the generator needs to know about the device.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub nvqs: u32,
    pub features: u64,
    pub page: u64,
    /// The notify region's offset.
    pub r1: u64,
    /// Distance between regions.
    pub stride: u64,
    /// Where a third region would be (nothing is there).
    pub beyond: u64,
    pub packed: bool,
}

impl Ctx {
    pub fn of(dev: &MdevDevice) -> Result<Self, String> {
        let r1 = dev.regions().notify.offset;
        let stride = r1.abs_diff(dev.regions().msg.offset).max(1);
        let features = dev.get_features().map_err(|e| e.to_string())?;
        Ok(Self {
            nvqs: dev.get_vqs_count().map_err(|e| e.to_string())?,
            features,
            page: vhost_mdev::device::page_size(),
            r1,
            stride,
            beyond: r1.saturating_add(stride),
            packed: features & (1 << VIRTIO_F_RING_PACKED) != 0,
        })
    }
}

/// Valid requests with their payloads, to be mutated.
pub fn valid_request(rng: &mut Rng, nvqs: u32, features: u64) -> (u64, u32, Vec<u8>) {
    let q = rng.below(u64::from(nvqs)) as u32;
    let state = |idx: u32, num: u32| {
        let mut p = idx.to_ne_bytes().to_vec();
        p.extend_from_slice(&num.to_ne_bytes());
        p
    };
    match rng.below(20) {
        0 => (VHOST_GET_FEATURES, 1, vec![]),
        1 => (VHOST_SET_FEATURES, 0, features.to_ne_bytes().to_vec()),
        2 => (VHOST_VDPA_GET_STATUS, 1, vec![]),
        3 => (
            VHOST_VDPA_SET_STATUS,
            0,
            vec![rng.pick(&[0u8, 1, 3, 11, 15, 0x80])],
        ),
        4 => (VHOST_VDPA_GET_CONFIG, 1, state(0, 12)),
        5 => (VHOST_VDPA_SET_CONFIG, 0, {
            let mut p = state(0, 6);
            p.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
            p
        }),
        6 => (VHOST_SET_VRING_NUM, 0, state(q, 256)),
        7 => (VHOST_SET_VRING_BASE, 0, state(q, packed_base(rng))),
        8 => (VHOST_GET_VRING_BASE, 1, state(q, 0)),
        9 => (VHOST_VDPA_SET_VRING_ENABLE, 0, state(q, 1)),
        10 => (VHOST_SET_VRING_ADDR, 0, {
            let mut p = q.to_ne_bytes().to_vec();
            p.extend_from_slice(&0u32.to_ne_bytes());
            for a in [0x1000_0000u64, 0x1000_2000, 0x1000_1000, 0] {
                p.extend_from_slice(&a.to_ne_bytes());
            }
            p
        }),
        11 => (VHOST_VDPA_SUSPEND, 0, vec![]),
        12 => (VHOST_VDPA_RESUME, 0, vec![]),
        // Ring user addresses: usually nowhere mapped in this process, and
        // kernel addresses too; the device must fault cleanly on them.
        13 => (VHOST_VFIO_SET_VRING_HVA, 0, {
            let mut p = q.to_ne_bytes().to_vec();
            p.extend_from_slice(&0u32.to_ne_bytes());
            let base = rng.pick(&[0x3000_0000_0000u64, 0xffff_8880_0000_0000, 0x1000, 0]);
            for a in [base, base + 0x2000, base + 0x1000, 0] {
                p.extend_from_slice(&a.to_ne_bytes());
            }
            p
        }),
        15 => (VHOST_SET_OWNER, 0, vec![]),
        16 => (VHOST_VDPA_GET_DEVICE_ID, 1, vec![]),
        17 => (VHOST_VDPA_GET_CONFIG_SIZE, 1, vec![]),
        18 => (VHOST_VDPA_GET_VRING_NUM, 1, vec![]),
        // A memory table (struct vhost_memory): regions that may overlap,
        // wrap, be empty or sit nowhere mapped.
        19 => (VHOST_SET_MEM_TABLE, 0, {
            let n = rng.pick(&[0u32, 1, 1, 2, 3]);
            let mut p = n.to_ne_bytes().to_vec();
            p.extend_from_slice(&0u32.to_ne_bytes());
            for i in 0..u64::from(n) {
                let any = [rng.interesting(), rng.interesting(), rng.interesting()];
                let gpa = rng.pick(&[0, 0x1000_0000, i << 20, any[0]]);
                let size = rng.pick(&[0x10_0000, 0x1000, 0, any[1]]);
                let uaddr = rng.pick(&[0x1000_0000, 0x3000_0000_0000, 0, any[2]]);
                for v in [gpa, size, uaddr, 0] {
                    p.extend_from_slice(&v.to_ne_bytes());
                }
            }
            p
        }),
        _ => (VHOST_VDPA_GET_VQS_COUNT, 1, vec![]),
    }
}

/// A vring base: 0 (split), the packed initial one, or a packed encoding
/// of random indexes and wrap counters (in range for 256 entries or not).
fn packed_base(rng: &mut Rng) -> u32 {
    let half = |rng: &mut Rng| -> u32 {
        let idx = rng.pick(&[0u32, 1, 255, 256, 0x7fff]) & 0x7fff;
        idx | (rng.below(2) as u32) << 15
    };
    match rng.below(4) {
        0 => 0,
        1 => 1 << 15 | 1 << 31,
        _ => half(rng) | half(rng) << 16,
    }
}

/// Mutates one field of a request.
pub fn mutate_request(rng: &mut Rng, code: &mut u64, flags: &mut u32, payload: &mut Vec<u8>) {
    match rng.below(6) {
        0 => *flags = rng.below(4) as u32,
        1 if !payload.is_empty() => {
            // One 32- or 64-bit field (or a byte) replaced.
            let at = rng.below(payload.len() as u64) as usize;
            let v = rng.interesting().to_ne_bytes();
            let w = rng.pick(&[1usize, 4, 8]).min(payload.len() - at);
            payload[at..at + w].copy_from_slice(&v[..w]);
        }
        2 => payload.truncate(rng.below(payload.len() as u64 + 1) as usize),
        3 => {
            let extra = rng.below(16) as usize;
            payload.extend(rng.bytes(extra));
        }
        4 => *code ^= 1 << rng.below(32),
        _ => *code = rng.interesting(),
    }
}

/// A random operation, with the weights of the original stream fuzzer;
/// `compound` adds bring-ups with traffic and transport switches (the
/// coverage-guided mode).
pub fn gen_op(rng: &mut Rng, c: &Ctx, compound: bool) -> Op {
    if compound {
        // Rare: a bring-up costs as much as a hundred other operations.
        match rng.below(1000) {
            0..=2 => {
                return Op::Traffic {
                    frames: rng.pick(&[1, 2, 4]),
                    packed: c.packed && rng.chance(50),
                }
            }
            3..=7 => {
                return Op::Transport {
                    ioctl: rng.chance(50),
                }
            }
            _ => {}
        }
    }
    let (r1, page, stride, beyond, nvqs) = (c.r1, c.page, c.stride, c.beyond, c.nvqs);
    match rng.below(100) {
        // A valid request over the message region, mutated or not.
        0..=34 => {
            let (mut code, mut flags, mut payload) = valid_request(rng, nvqs, c.features);
            if rng.chance(70) {
                mutate_request(rng, &mut code, &mut flags, &mut payload);
            }
            Op::Send {
                code,
                flags,
                payload,
            }
        }
        // A raw message: header size disagreeing with the write, oversize.
        35..=44 => {
            let size = rng.pick(&[0u32, 1, 7, 8, 9, 40, 4080, 4081, u32::MAX]);
            let len = rng.pick(&[0usize, 15, 16, 17, 24, 56, 4096, 4097]);
            let mut m = vec![0u8; len.max(16)];
            m[..8].copy_from_slice(&rng.interesting().to_ne_bytes());
            m[8..12].copy_from_slice(&(rng.below(4) as u32).to_ne_bytes());
            m[12..16].copy_from_slice(&size.to_ne_bytes());
            m.truncate(len);
            let off = rng.pick(&[0, 0, 0, 1, 8, 4096, u64::MAX >> 24]);
            Op::MsgWrite { off, msg: m }
        }
        // Reads at random offsets and lengths.
        45..=52 => Op::Read {
            off: rng.pick(&[0, 0, 1, 16, 4096, r1, r1 + page, beyond, u64::MAX >> 1]),
            len: rng.pick(&[0usize, 1, 16, 17, 24, 36, 4096, 8192]),
        },
        // Notify writes at random offsets with random values.
        53..=62 => {
            let q = rng.below(u64::from(nvqs) + 2);
            let off = match rng.below(4) {
                0 => r1 + q * page,
                1 => r1 + q * page + rng.below(page),
                2 => r1 + rng.interesting() % stride,
                _ => rng.interesting(),
            };
            let len = rng.pick(&[0usize, 1, 2, 2, 2, 4, 8]);
            let mut v = rng.bytes(len);
            if len == 2 && rng.chance(50) {
                v.copy_from_slice(&(q as u16).to_ne_bytes());
            }
            Op::Notify {
                off: off.wrapping_sub(r1),
                val: v,
            }
        }
        // SET_IRQS with random arguments.
        63..=72 => {
            let index = rng.pick(&[0u32, 0, 1, 2, 3, 9, u32::MAX]);
            let any = rng.next() as u32;
            let flags = rng.pick(&[
                0x24u32, 0x21, 0x22, 0x04, 0x01, 0x02, 0x08, 0x10, 0x20, 0x44, any,
            ]);
            let start = rng.pick(&[0u32, 0, 1, nvqs, u32::MAX]);
            let count = rng.pick(&[0u32, 1, 2, nvqs, nvqs + 1, u32::MAX]);
            let fds = (0..count.min(8))
                .map(|_| {
                    rng.pick(&[
                        Fd::Efd,
                        Fd::Raw(-1),
                        Fd::Raw(-2),
                        Fd::Raw(0),
                        Fd::Raw(1),
                        Fd::Raw(9999),
                    ])
                })
                .collect();
            Op::SetIrqs {
                index,
                flags,
                start,
                count,
                fds,
            }
        }
        // IOEVENTFD with random arguments.
        73..=80 => {
            let q = rng.below(u64::from(nvqs) + 1);
            let any_off = rng.interesting();
            let off = rng.pick(&[r1 + q * page, r1 + q * page + 2, 0, beyond, any_off]);
            let any = rng.next() as u32;
            let flags = rng.pick(&[2u32, 2, 1, 4, 8, 0, 3, any]);
            let data = if rng.chance(70) { q } else { rng.interesting() };
            let fd = rng.pick(&[Fd::Efd, Fd::Raw(-1), Fd::Raw(0), Fd::Raw(9999)]);
            Op::Ioeventfd {
                off,
                flags,
                data,
                fd,
            }
        }
        // mmap attempts.
        81..=83 => Op::Mmap {
            off: rng.pick(&[0, r1, r1 + page, beyond]),
            len: rng.pick(&[page as usize, 4096, 8192, 1]),
        },
        // Ioctls with random argsz/flags/indexes, VFIO's and vhost's.
        84..=96 => {
            let code = match rng.below(4) {
                0 => rng.pick(&[
                    VFIO_DEVICE_GET_INFO(),
                    VFIO_DEVICE_GET_REGION_INFO(),
                    VFIO_DEVICE_GET_IRQ_INFO(),
                    VFIO_DEVICE_SET_IRQS(),
                    VFIO_DEVICE_IOEVENTFD(),
                ]),
                1 => valid_request(rng, nvqs, c.features).0,
                // Random vhost codes: vmm-sys-util's _IOC.
                2 => vmm_sys_util::ioctl::ioctl_expr(
                    rng.below(4) as u32,
                    VHOST_VIRTIO,
                    rng.below(0x90) as u32,
                    rng.below(64) as u32,
                ),
                _ => rng.interesting() & 0xffff_ffff,
            };
            let fill = rng.next();
            let argsz = rng.pick(&[0u32, 4, 8, 15, 16, 20, 24, 32, 36, 4096, u32::MAX]);
            let head = rng
                .chance(50)
                .then(|| (rng.below(8) as u32, rng.below(4) as u32));
            Op::Ioctl {
                code,
                argsz,
                fill,
                head,
            }
        }
        // VFIO_DEVICE_RESET now and then.
        _ => Op::Reset,
    }
}

/// Mutates an operation in place: one field of it (or a new one of the
/// same kind).
pub fn mutate_op(rng: &mut Rng, c: &Ctx, op: &mut Op) {
    match op {
        Op::Send {
            code,
            flags,
            payload,
        } => mutate_request(rng, code, flags, payload),
        Op::MsgWrite { off, msg } => match rng.below(4) {
            0 => *off = rng.pick(&[0, 0, 1, 8, 4096, u64::MAX >> 24]),
            1 if msg.len() >= 16 => {
                let at = rng.pick(&[0usize, 8, 12]);
                let v = rng.interesting().to_ne_bytes();
                let w = if at == 0 { 8 } else { 4 };
                msg[at..at + w].copy_from_slice(&v[..w]);
            }
            2 => msg.truncate(rng.below(msg.len() as u64 + 1) as usize),
            _ => {
                let extra = rng.below(64) as usize;
                msg.extend(rng.bytes(extra));
            }
        },
        Op::Read { off, len } => {
            if rng.chance(50) {
                *off = off.wrapping_add(rng.pick(&[1, 2, 4, 8, 16, c.page]));
            } else {
                *len = rng.pick(&[0usize, 1, 2, 4, 8, 16, 17, 24, 36, 4096, 8192]);
            }
        }
        Op::Notify { off, val } => {
            if rng.chance(50) {
                *off =
                    rng.below(u64::from(c.nvqs) + 2) * c.page + rng.pick(&[0, 0, 1, 2, c.page - 2]);
            } else {
                let len = rng.pick(&[0usize, 1, 2, 2, 4, 8]);
                *val = rng.bytes(len);
            }
        }
        Op::SetIrqs {
            index,
            flags,
            start,
            count,
            fds,
        } => match rng.below(5) {
            0 => *index = rng.pick(&[0u32, 1, 2, 3, u32::MAX]),
            1 => *flags ^= 1 << rng.below(8),
            2 => *start = rng.pick(&[0u32, 1, c.nvqs, u32::MAX]),
            3 => {
                *count = rng.pick(&[0u32, 1, 2, c.nvqs, c.nvqs + 1]);
                fds.resize(*count as usize, Fd::Efd);
            }
            _ => {
                if !fds.is_empty() {
                    let i = rng.below(fds.len() as u64) as usize;
                    fds[i] = rng.pick(&[Fd::Efd, Fd::Raw(-1), Fd::Raw(0), Fd::Raw(9999)]);
                }
            }
        },
        Op::Ioeventfd {
            off,
            flags,
            data,
            fd,
        } => match rng.below(4) {
            0 => *off = c.r1 + rng.below(u64::from(c.nvqs) + 1) * c.page + rng.pick(&[0, 2]),
            1 => *flags ^= 1 << rng.below(4),
            2 => *data = rng.interesting(),
            _ => *fd = rng.pick(&[Fd::Efd, Fd::Raw(-1), Fd::Raw(0)]),
        },
        Op::Ioctl {
            code,
            argsz,
            fill,
            head,
        } => match rng.below(4) {
            0 => *argsz = rng.pick(&[0u32, 8, 16, 20, 24, 32, 4096]),
            1 => *head = Some((rng.below(8) as u32, rng.below(4) as u32)),
            2 => *fill = rng.next(),
            _ => *code ^= 1 << rng.below(32),
        },
        Op::Traffic { frames, packed } => {
            *frames = rng.pick(&[1, 2, 4]);
            *packed = c.packed && !*packed;
        }
        Op::Transport { ioctl } => *ioctl = !*ioctl,
        _ => *op = gen_op(rng, c, true),
    }
}

/// The result of one operation.
pub struct Done {
    pub what: String,
    /// Rejected with an error (the device state must be unchanged).
    pub rejected: bool,
    /// Changes state even when rejected (resets, bring-ups): not checked.
    pub compound: bool,
}

/// A bring-up that moves `frames` frames; the driver resets on drop.
pub fn traffic(
    dev: &MdevDevice,
    frames: u64,
    packed: bool,
    timeout: Duration,
) -> Result<(), String> {
    let cfg = NetDriverConfig {
        timeout,
        packed,
        ..Default::default()
    };
    let mut drv = NetDriver::start(dev, cfg).map_err(|e| format!("bring-up: {e}"))?;
    driver::ping(&mut drv, frames, 0).map_err(|e| format!("ping: {e}"))?;
    drv.stop().map_err(|e| format!("stop: {e}"))
}

/// Executes one operation. `Err` only for [`Op::Check`] failing.
pub fn exec(op: &Op, dev: &MdevDevice, c: &Ctx, efd: &EventFd) -> Result<Done, String> {
    let fd = |f: Fd| match f {
        Fd::Efd => efd.as_raw_fd(),
        Fd::Raw(n) => n,
    };
    let done = |what: String, rejected: bool| Done {
        what,
        rejected,
        compound: false,
    };
    Ok(match op {
        Op::Send {
            code,
            flags,
            payload,
        } => {
            let r = dev.send(*code, *flags, payload);
            done(
                format!("send({code:#x}, {flags}, {payload:02x?}) -> {r:?}"),
                r.is_err(),
            )
        }
        Op::MsgWrite { off, msg } => {
            let r = dev.msg_write(*off, msg);
            done(
                format!("msg_write({off:#x}, len {}) -> {r:?}", msg.len()),
                r.is_err(),
            )
        }
        Op::Read { off, len } => {
            let mut buf = vec![0u8; *len];
            let r = dev.vfio().read_at(*off, &mut buf);
            done(format!("read_at({off:#x}, {len}) -> {r:?}"), r.is_err())
        }
        Op::Notify { off, val } => {
            let r = dev.notify_raw(*off, val);
            done(
                format!(
                    "notify(+{:#x}, {val:02x?}) -> {r:?}",
                    c.r1.wrapping_add(*off)
                ),
                r.is_err(),
            )
        }
        Op::SetIrqs {
            index,
            flags,
            start,
            count,
            fds,
        } => {
            let raw: Vec<u8> = fds.iter().flat_map(|f| fd(*f).to_ne_bytes()).collect();
            let r = dev
                .vfio()
                .set_irqs_raw(*index, *flags, *start, *count, &raw);
            done(
                format!("set_irqs({index}, {flags:#x}, {start}, {count}) -> {r:?}"),
                r.is_err(),
            )
        }
        Op::Ioeventfd {
            off,
            flags,
            data,
            fd: f,
        } => {
            let r = dev.vfio().ioeventfd_raw(*off, *flags, *data, fd(*f));
            done(
                format!(
                    "ioeventfd({off:#x}, {flags:#x}, {data}, {}) -> {r:?}",
                    fd(*f)
                ),
                r.is_err(),
            )
        }
        Op::Mmap { off, len } => {
            let r = dev.vfio().try_mmap(*off, *len);
            done(format!("mmap({off:#x}, {len}) -> {r:?}"), r.is_err())
        }
        Op::Ioctl {
            code,
            argsz,
            fill,
            head,
        } => {
            // A large buffer, so that no argsz makes the kernel read or
            // write outside it: argsz is capped by what VFIO accepts.
            // The first 4 KiB random (what the requests' headers and
            // SET_IRQS data read), zeros after.
            let mut buf = vec![0u8; 65536];
            let mut g = Rng(*fill | 1);
            for w in buf[..4096].chunks_exact_mut(8) {
                w.copy_from_slice(&g.next().to_ne_bytes());
            }
            buf[..4].copy_from_slice(&argsz.to_ne_bytes());
            if let Some((f, i)) = head {
                buf[4..8].copy_from_slice(&f.to_ne_bytes());
                buf[8..12].copy_from_slice(&i.to_ne_bytes());
            }
            // SAFETY: `buf` is 64 KiB, more than any request here reads or
            // writes for these argsz values, and outlives the call.
            let r = unsafe { dev.vfio().ioctl_ptr(*code, buf.as_mut_ptr()) };
            done(
                format!("ioctl({code:#x}, argsz {argsz}) -> {r:?}"),
                r.is_err(),
            )
        }
        Op::Transport { ioctl } => {
            dev.set_transport(if *ioctl {
                vhost_mdev::device::Transport::Ioctl
            } else {
                vhost_mdev::device::Transport::Region
            });
            done(format!("transport ioctl={ioctl}"), false)
        }
        Op::Reset => {
            let r = dev.vfio_reset();
            Done {
                what: format!("VFIO_DEVICE_RESET -> {r:?}"),
                rejected: r.is_err(),
                compound: true,
            }
        }
        Op::Traffic { frames, packed } => {
            let r = traffic(dev, *frames, *packed, Duration::from_millis(100));
            Done {
                what: format!("traffic({frames}, packed {packed}) -> {r:?}"),
                rejected: r.is_err(),
                compound: true,
            }
        }
        Op::Check => {
            dev.set_transport(vhost_mdev::device::Transport::Region);
            dev.vfio_reset().map_err(|e| format!("check: reset: {e}"))?;
            traffic(dev, 4, false, Duration::from_secs(10))
                .map_err(|e| format!("check: valid traffic after a reset failed: {e}"))?;
            if c.packed {
                dev.vfio_reset().map_err(|e| format!("check: reset: {e}"))?;
                traffic(dev, 4, true, Duration::from_secs(10)).map_err(|e| {
                    format!("check: valid packed traffic after a reset failed: {e}")
                })?;
            }
            Done {
                what: "check -> Ok".into(),
                rejected: false,
                compound: true,
            }
        }
    })
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "-".into();
    }
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s == "-" {
        return Ok(vec![]);
    }
    if !s.len().is_multiple_of(2) {
        return Err(format!("{s:?}: odd number of hex digits"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("{s:?}: {e}")))
        .collect()
}

/// A number, decimal or 0x-hex (negative decimal allowed for fds).
pub fn num(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).map_err(|e| format!("{s:?}: {e}")),
        None => s.parse().map_err(|e| format!("{s:?}: {e}")),
    }
}

fn fd_text(f: Fd) -> String {
    match f {
        Fd::Efd => "efd".into(),
        Fd::Raw(n) => n.to_string(),
    }
}

fn fd_parse(s: &str) -> Result<Fd, String> {
    if s == "efd" {
        Ok(Fd::Efd)
    } else {
        s.parse().map(Fd::Raw).map_err(|e| format!("fd {s:?}: {e}"))
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Send {
                code,
                flags,
                payload,
            } => write!(f, "send {code:#x} {flags} {}", hex(payload)),
            Op::MsgWrite { off, msg } => write!(f, "msg_write {off:#x} {}", hex(msg)),
            Op::Read { off, len } => write!(f, "read {off:#x} {len}"),
            Op::Notify { off, val } => write!(f, "notify {off:#x} {}", hex(val)),
            Op::SetIrqs {
                index,
                flags,
                start,
                count,
                fds,
            } => {
                let fds: Vec<String> = fds.iter().map(|x| fd_text(*x)).collect();
                let fds = if fds.is_empty() {
                    "-".into()
                } else {
                    fds.join(",")
                };
                write!(f, "set_irqs {index} {flags:#x} {start} {count} {fds}")
            }
            Op::Ioeventfd {
                off,
                flags,
                data,
                fd,
            } => write!(
                f,
                "ioeventfd {off:#x} {flags:#x} {data:#x} {}",
                fd_text(*fd)
            ),
            Op::Mmap { off, len } => write!(f, "mmap {off:#x} {len}"),
            Op::Ioctl {
                code,
                argsz,
                fill,
                head,
            } => {
                write!(f, "ioctl {code:#x} {argsz} {fill:#x}")?;
                if let Some((fl, i)) = head {
                    write!(f, " {fl} {i}")?;
                }
                Ok(())
            }
            Op::Transport { ioctl } => {
                write!(f, "transport {}", if *ioctl { "ioctl" } else { "region" })
            }
            Op::Reset => write!(f, "reset"),
            Op::Traffic { frames, packed } => {
                write!(
                    f,
                    "traffic {frames} {}",
                    if *packed { "packed" } else { "split" }
                )
            }
            Op::Check => write!(f, "check"),
        }
    }
}

impl std::str::FromStr for Op {
    type Err = String;
    fn from_str(line: &str) -> Result<Self, String> {
        let w: Vec<&str> = line.split_whitespace().collect();
        let arg = |i: usize| w.get(i).copied().ok_or(format!("{line:?}: too few fields"));
        let n = |i: usize| arg(i).and_then(num);
        let n32 = |i: usize| {
            n(i).and_then(|v| {
                u32::try_from(v).map_err(|_| format!("{line:?}: field {i} exceeds 32 bits"))
            })
        };
        let op = match arg(0)? {
            "send" => Op::Send {
                code: n(1)?,
                flags: n32(2)?,
                payload: unhex(arg(3)?)?,
            },
            "msg_write" => Op::MsgWrite {
                off: n(1)?,
                msg: unhex(arg(2)?)?,
            },
            "read" => Op::Read {
                off: n(1)?,
                len: n(2)? as usize,
            },
            "notify" => Op::Notify {
                off: n(1)?,
                val: unhex(arg(2)?)?,
            },
            "set_irqs" => Op::SetIrqs {
                index: n32(1)?,
                flags: n32(2)?,
                start: n32(3)?,
                count: n32(4)?,
                fds: match arg(5)? {
                    "-" => vec![],
                    s => s.split(',').map(fd_parse).collect::<Result<_, _>>()?,
                },
            },
            "ioeventfd" => Op::Ioeventfd {
                off: n(1)?,
                flags: n32(2)?,
                data: n(3)?,
                fd: fd_parse(arg(4)?)?,
            },
            "mmap" => Op::Mmap {
                off: n(1)?,
                len: n(2)? as usize,
            },
            "ioctl" => Op::Ioctl {
                code: n(1)?,
                argsz: n32(2)?,
                fill: n(3)?,
                head: if w.len() > 4 {
                    Some((n32(4)?, n32(5)?))
                } else {
                    None
                },
            },
            "transport" => Op::Transport {
                ioctl: arg(1)? == "ioctl",
            },
            "reset" => Op::Reset,
            "traffic" => Op::Traffic {
                frames: n(1)?,
                packed: arg(2)? == "packed",
            },
            "check" => Op::Check,
            other => return Err(format!("{line:?}: unknown operation {other:?}")),
        };
        Ok(op)
    }
}

/// A program: operations run in order after a reset.
pub type Prog = Vec<Op>;

/// The text of a program, one operation a line.
pub fn to_text(p: &[Op]) -> String {
    p.iter().map(|o| format!("{o}\n")).collect()
}

/// Reads a program back (comments and blank lines skipped).
pub fn from_text(s: &str) -> Result<Prog, String> {
    s.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let c = Ctx {
            nvqs: 2,
            features: 0x1_3000_0000,
            page: 4096,
            r1: 0x100_0000_0000,
            stride: 0x100_0000_0000,
            beyond: 0x200_0000_0000,
            packed: true,
        };
        let mut rng = Rng(7);
        let mut p: Prog = (0..2000).map(|_| gen_op(&mut rng, &c, true)).collect();
        p.push(Op::Check);
        for o in p.iter_mut().take(500) {
            mutate_op(&mut rng, &c, o);
        }
        let t = to_text(&p);
        assert_eq!(from_text(&t).unwrap(), p);
    }
}
