// SPDX-License-Identifier: GPL-2.0 OR MIT

//! KCOV from userspace (Documentation/dev-tools/kcov.rst): the coverage of
//! the calling thread (`KCOV_ENABLE`), and of the kernel tasks that work for
//! this process (`KCOV_REMOTE_ENABLE` with a common handle: the device's
//! worker, which the modules run in a remote KCOV section).
//!
//! Only the project's modules are instrumented (the test kernel has
//! `KCOV_INSTRUMENT_ALL=n`): every PC is one of theirs. [`Modules`] maps a
//! PC to its module and section, through `/sys/module/*/sections`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

const KCOV_INIT_TRACE: u64 = 0x8008_6301; // _IOR('c', 1, unsigned long)
const KCOV_ENABLE: u64 = 0x6364; // _IO('c', 100)
const KCOV_DISABLE: u64 = 0x6365; // _IO('c', 101)
const KCOV_REMOTE_ENABLE: u64 = 0x4018_6366; // _IOW('c', 102, struct kcov_remote_arg)
const KCOV_TRACE_PC: u64 = 0;
const PATH: &str = "/sys/kernel/debug/kcov";

/// `struct kcov_remote_arg` without handles.
#[repr(C)]
struct RemoteArg {
    trace_mode: u32,
    area_size: u32,
    num_handles: u32,
    common_handle: u64,
}

/// One KCOV descriptor and its buffer: word 0 counts the PCs after it.
pub struct Kcov {
    file: File,
    area: *mut AtomicU64,
    words: usize,
}

// SAFETY: the buffer is shared memory that the kernel writes and we read
// with atomics; the descriptor may be used from any thread.
unsafe impl Send for Kcov {}
// SAFETY: as above.
unsafe impl Sync for Kcov {}

impl Kcov {
    /// Whether this kernel has KCOV (and debugfs is mounted).
    pub fn available() -> bool {
        fs::metadata(PATH).is_ok()
    }

    /// A descriptor with a buffer of `words` entries.
    pub fn open(words: usize) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(PATH)?;
        // SAFETY: KCOV_INIT_TRACE takes the size by value.
        if unsafe { libc::ioctl(file.as_raw_fd(), KCOV_INIT_TRACE as _, words) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: maps the buffer KCOV_INIT_TRACE sized; unmapped in drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                words * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            file,
            area: p.cast(),
            words,
        })
    }

    /// Collects the calling thread's coverage (until it exits or
    /// [`Kcov::disable`]).
    pub fn enable(&self) -> io::Result<()> {
        // SAFETY: an ioctl without a pointer argument.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), KCOV_ENABLE as _, KCOV_TRACE_PC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.reset();
        Ok(())
    }

    /// Stops collecting the calling thread's coverage.
    pub fn disable(&self) -> io::Result<()> {
        // SAFETY: an ioctl without a pointer argument.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), KCOV_DISABLE as _, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Collects the coverage of the remote sections with the common handle
    /// `handle` (non-zero, below 2^32), which the kernel gives the calling
    /// thread and the threads it creates from now on: the tasks they start
    /// (device workers) run with it. The calling thread cannot also
    /// collect its own coverage.
    pub fn remote_enable(&self, handle: u64) -> io::Result<()> {
        let arg = RemoteArg {
            trace_mode: KCOV_TRACE_PC as u32,
            area_size: self.words as u32,
            num_handles: 0,
            common_handle: handle,
        };
        // SAFETY: `arg` is a `struct kcov_remote_arg` with no handles,
        // read during the call.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), KCOV_REMOTE_ENABLE as _, &arg) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.reset();
        Ok(())
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        // SAFETY: `i < words` (callers), and the mapping lives as long as
        // `self`.
        unsafe { &*self.area.add(i) }
    }

    /// Forgets the PCs collected so far.
    pub fn reset(&self) {
        self.word(0).store(0, Ordering::Relaxed);
    }

    /// How many PCs are in the buffer.
    pub fn len(&self) -> usize {
        (self.word(0).load(Ordering::Relaxed) as usize).min(self.words - 1)
    }

    /// Drops the PCs after the first `n` (what an operation that is not
    /// being measured added).
    pub fn truncate(&self, n: usize) {
        self.word(0).store(n as u64, Ordering::Relaxed);
    }

    /// Calls `f` for each PC collected.
    pub fn for_each(&self, mut f: impl FnMut(u64)) {
        for i in 0..self.len() {
            f(self.word(i + 1).load(Ordering::Relaxed));
        }
    }
}

impl Drop for Kcov {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, not used after this.
        unsafe { libc::munmap(self.area.cast(), self.words * 8) };
    }
}

/// Where the project's modules are: each loaded section's start address.
pub struct Modules {
    /// Start address → (module, section), executable sections only.
    starts: BTreeMap<u64, (String, String)>,
}

/// The modules the fuzzer reaches.
pub const MODULES: &[&str] = &["vhost_mdev", "vhost_mdev_net"];

impl Modules {
    /// Reads `/sys/module/M/sections` of `MODULES` (root only).
    pub fn load() -> io::Result<Self> {
        let mut starts = BTreeMap::new();
        for m in MODULES {
            for e in fs::read_dir(format!("/sys/module/{m}/sections"))? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                // Code only: .text, .text.*, .init.text, .exit.text, ...
                if !name.contains("text") {
                    continue;
                }
                let v = fs::read_to_string(e.path())?;
                let a = u64::from_str_radix(v.trim().trim_start_matches("0x"), 16)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if a != 0 {
                    starts.insert(a, (m.to_string(), name));
                }
            }
        }
        Ok(Self { starts })
    }

    /// The module, section and offset in it of `pc` (a return address
    /// from an instrumented call: in the section that starts last below
    /// it).
    pub fn locate(&self, pc: u64) -> Option<(&str, &str, u64)> {
        self.starts
            .range(..=pc)
            .next_back()
            .map(|(a, (m, s))| (m.as_str(), s.as_str(), pc - a))
    }
}
