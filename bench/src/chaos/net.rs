//! The soak's network and disks: a network namespace per master on one bridge in the bench's
//! own namespace (where the agents and the bench run, reaching every master over the bridge),
//! so that a master's link can be cut; and a small tmpfs per agent work dir, so that one agent's
//! disk can be filled without touching the machine's. Both need root; both are removed on drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Port every master serves gRPC on, in its own namespace.
pub const GRPC_PORT: u16 = 5050;
/// Port every master serves HTTP on (the master's default beside `GRPC_PORT`).
pub const HTTP_PORT: u16 = 5051;

/// Runs `ip ARGS`; whether it succeeded.
fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must_ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether this process runs as root (namespaces, links and mounts need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The masters' namespaces on one bridge.
pub struct Net {
    tag: String,
    subnet: String,
    masters: usize,
}

impl Net {
    /// The namespace of master `i` (from 0).
    pub fn ns(&self, i: usize) -> String {
        format!("{}m{i}", self.tag)
    }
    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }
    fn host_veth(&self, i: usize) -> String {
        format!("{}v{i}", self.tag)
    }
    /// Master `i`'s IP address.
    pub fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }
    /// Master `i`'s gRPC address.
    pub fn grpc(&self, i: usize) -> String {
        format!("{}:{GRPC_PORT}", self.ip(i))
    }
    /// Master `i`'s HTTP address.
    pub fn http(&self, i: usize) -> String {
        format!("{}:{HTTP_PORT}", self.ip(i))
    }

    /// Sets up `masters` namespaces, each with one address on the bridge, or says why not.
    pub fn setup(masters: usize) -> anyhow::Result<Net> {
        if !is_root() {
            bail!(
                "the chaos soak needs root: it puts each master in its own network namespace \
                 and each agent's work dir on its own tmpfs (run it as root)"
            );
        }
        let pid = std::process::id();
        let net = Net {
            tag: format!("wc{}", pid % 100_000),
            subnet: format!("10.{}.{}", 200 + pid % 50, (pid / 50) % 250),
            masters: 0,
        };
        must_ip(&["link", "add", &net.bridge(), "type", "bridge"])
            .context("cannot create a bridge (needs root, `ip` and network namespaces)")?;
        let mut net = net;
        must_ip(&[
            "addr",
            "add",
            &format!("{}.254/24", net.subnet),
            "dev",
            &net.bridge(),
        ])?;
        must_ip(&["link", "set", &net.bridge(), "up"])?;
        for i in 0..masters {
            let (ns, veth) = (net.ns(i), net.host_veth(i));
            must_ip(&["netns", "add", &ns])?;
            net.masters = i + 1;
            must_ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            must_ip(&["link", "set", &veth, "master", &net.bridge()])?;
            must_ip(&["link", "set", &veth, "up"])?;
            let inside = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &ns, "ip"];
                all.extend_from_slice(args);
                must_ip(&all)
            };
            inside(&["link", "set", "lo", "up"])?;
            inside(&["addr", "add", &format!("{}/24", net.ip(i)), "dev", "eth0"])?;
            inside(&["link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    /// Cuts (`up` false) or restores master `i`'s link to the bridge.
    pub fn set_link(&self, i: usize, up: bool) -> anyhow::Result<()> {
        must_ip(&[
            "link",
            "set",
            &self.host_veth(i),
            if up { "up" } else { "down" },
        ])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.masters {
            ip(&["link", "del", &self.host_veth(i)]);
            ip(&["netns", "del", &self.ns(i)]);
        }
        ip(&["link", "del", &self.bridge()]);
    }
}

/// A tmpfs mounted on a directory; unmounted on drop.
pub struct Tmpfs {
    dir: PathBuf,
}

/// Name of the file that fills a tmpfs.
const FILL: &str = "chaos-fill";

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB on `dir` (created).
    pub fn mount(dir: &Path, mib: u64) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .context("cannot run `mount`")?;
        if !out.status.success() {
            bail!(
                "cannot mount a tmpfs on {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// Fills the tmpfs to the last byte with one file; returns the bytes written.
    pub fn fill(&self) -> anyhow::Result<u64> {
        let path = self.dir.join(FILL);
        let mut f = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let chunk = vec![0xA5u8; 1 << 20];
        let mut written = 0u64;
        let mut piece = chunk.len();
        // Whole MiBs first, then smaller pieces down to one byte.
        while piece > 0 {
            match f.write(&chunk[..piece]) {
                Ok(0) => piece /= 2,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => piece /= 2,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot fill {}", path.display()));
                }
            }
        }
        Ok(written)
    }

    /// Removes the fill.
    pub fn drain(&self) -> anyhow::Result<()> {
        let path = self.dir.join(FILL);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a process still holding a file there must not keep the mount.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
