// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The sysfs fixture under tests/fixtures/sysfs, shared by the tests that
//! read it (sysfs.rs) and run the binary on it (cli.rs).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs")
}

/// Copies the fixture (keeping symlinks) to a fresh directory named after
/// `prefix`, `name` and the process, so tests can write `create`, `remove`
/// and attributes.
pub fn scratch(prefix: &str, name: &str) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let (src, dst) = (e.path(), to.join(e.file_name()));
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
            } else if ft.is_dir() {
                copy(&src, &dst);
            } else {
                fs::copy(&src, &dst).unwrap();
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    copy(&fixture(), &dir);
    dir
}
