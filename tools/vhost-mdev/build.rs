// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Generates the man pages (one per command, `vhost-mdev.1` and
//! `vhost-mdev-SUBCOMMAND.1`) and the bash, zsh and fish completions from
//! the clap definitions of src/cli.rs, into OUT_DIR, and `assets.rs`,
//! which the binary includes: `vhost-mdev install-assets DIR` (what `make
//! install` runs) writes them under a share directory.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

#[path = "src/cli.rs"]
#[allow(dead_code)]
mod cli;

/// The top page: clap_mangen's sections, with the exit statuses under
/// their own heading.
fn top_page(cmd: &clap::Command, out: &Path) -> io::Result<PathBuf> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    man.render_options_section(&mut buf)?;
    man.render_subcommands_section(&mut buf)?;
    let mut roff = String::from(".SH \"EXIT STATUS\"\n");
    for line in cli::EXIT_STATUS_HELP.lines().skip(1) {
        let (code, what) = line.trim().split_once("  ").unwrap_or(("", line));
        let _ = write!(roff, ".TP\n\\fB{code}\\fR\n{}\n", what.trim());
    }
    roff.push_str(
        ".SH \"SEE ALSO\"\nmdevctl(8), vdpa(8); Documentation/cli.rst and \
         Documentation/admin-guide.rst of vhost-mdev\n",
    );
    buf.write_all(roff.as_bytes())?;
    man.render_version_section(&mut buf)?;
    let path = out.join("vhost-mdev.1");
    fs::write(&path, buf)?;
    Ok(path)
}

/// The pages of every visible subcommand, nested ones included.
fn sub_pages(cmd: &clap::Command, out: &Path, pages: &mut Vec<PathBuf>) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        sub_pages(sub, out, pages)?;
        pages.push(clap_mangen::Man::new(sub.clone()).generate_to(out)?);
    }
    Ok(())
}

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=src/cli.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    fs::create_dir_all(&man_dir)?;
    fs::create_dir_all(&comp_dir)?;

    let mut cmd = cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    // Subcommand pages are named after the path to them
    // (vhost-mdev-config-set.1), as clap_mangen does when it is given the
    // built command.
    let mut pages = vec![top_page(&cmd, &man_dir)?];
    sub_pages(&cmd, &man_dir, &mut pages)?;

    let mut assets: Vec<(String, PathBuf)> = pages
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (format!("man/man1/{name}"), p)
        })
        .collect();
    for (shell, dest) in [
        (Shell::Bash, "bash-completion/completions/vhost-mdev"),
        (Shell::Zsh, "zsh/site-functions/_vhost-mdev"),
        (Shell::Fish, "fish/vendor_completions.d/vhost-mdev.fish"),
    ] {
        let p = clap_complete::generate_to(shell, &mut cmd, "vhost-mdev", &comp_dir)?;
        assets.push((dest.to_string(), p));
    }
    assets.sort();

    let mut rs = String::from(
        "/// The generated files: path under the share directory, contents.\n\
         pub const ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for (dest, p) in &assets {
        let _ = writeln!(
            rs,
            "    ({dest:?}, include_bytes!({:?})),",
            p.display().to_string()
        );
    }
    rs.push_str("];\n");
    fs::write(out.join("assets.rs"), rs)
}
