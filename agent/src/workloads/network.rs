//! The network of a sandboxed workload in a one-device cluster: a network namespace of its own,
//! so nothing the renter runs reaches the provider's loopback (databases, admin pages, the
//! agent) or listens on the provider's interfaces. Outbound connections go through
//! slirp4netns (user-mode NAT, with the provider's loopback refused), and the ports the device
//! serves its renter are forwarded from the provider's loopback alone, where the agent's
//! tunnel connects them.
//!
//! bubblewrap is told to wait (`--block-fd`) until the network is ready and to say which
//! process holds the namespace (`--info-fd`); slirp4netns joins that namespace (handed over as
//! a descriptor, with the user namespace owning it), says when it is
//! configured (`--ready-fd`), takes its port forwards over its API socket, and ends when the
//! agent drops this side of its `--exit-fd` (the workload ended, or the agent died).

use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where bubblewrap finds the two descriptors in the sandbox's process.
const INFO_FD: RawFd = 3;
const BLOCK_FD: RawFd = 4;
/// And slirp4netns its own.
const READY_FD: RawFd = 3;
const EXIT_FD: RawFd = 4;
const NETNS_FD: RawFd = 5;
const USERNS_FD: RawFd = 6;

/// `ioctl_ns(2)`'s request for the user namespace that owns a namespace.
const NS_GET_USERNS: u64 = 0xb701;

/// How long slirp4netns gets to answer.
const SLIRP_WAIT: Duration = Duration::from_secs(10);

/// bubblewrap's arguments that keep the sandbox waiting until its control groups (and, when
/// it has its own, its network) are ready, and say which process it is.
pub fn bwrap_args() -> [String; 4] {
    [
        "--info-fd".into(),
        INFO_FD.to_string(),
        "--block-fd".into(),
        BLOCK_FD.to_string(),
    ]
}

/// The agent's ends of bubblewrap's two descriptors, and the sandbox's ends until it is
/// spawned.
pub struct Gate {
    info: PipeReader,
    block: PipeWriter,
    child_ends: Option<(PipeWriter, PipeReader)>,
    /// The sandbox's first process, once bubblewrap said it.
    sandbox_pid: Option<u32>,
}

impl Gate {
    /// Makes the pipes and has `command` (bubblewrap, with [`bwrap_args`]) inherit its ends.
    pub fn attach(command: &mut tokio::process::Command) -> std::io::Result<Gate> {
        let (info, info_child) = std::io::pipe()?;
        let (block_child, block) = std::io::pipe()?;
        let ends = [
            (info_child.as_raw_fd(), INFO_FD),
            (block_child.as_raw_fd(), BLOCK_FD),
        ];
        // SAFETY: the closure only calls fcntl and dup2, async-signal-safe, between fork and
        // exec.
        unsafe { command.pre_exec(onto(ends)) };
        Ok(Gate {
            info,
            block,
            child_ends: Some((info_child, block_child)),
            sandbox_pid: None,
        })
    }

    /// The sandbox's first process (whose namespaces it has; every process of the workload
    /// descends from it), once bubblewrap has made it. Call after the spawn.
    pub fn sandbox_pid(&mut self) -> Result<u32, String> {
        if let Some(pid) = self.sandbox_pid {
            return Ok(pid);
        }
        // The sandbox holds its ends now; ours would keep the pipes open past its end.
        drop(self.child_ends.take());
        let pid = child_pid(&mut self.info)?;
        self.sandbox_pid = Some(pid);
        Ok(pid)
    }

    /// Lets the sandbox start.
    pub fn open(mut self) -> Result<(), String> {
        self.block
            .write_all(b"1")
            .map_err(|e| format!("the sandbox ended before it could start: {e}"))
    }
}

/// A sandbox's network, alive as long as this is.
pub struct SandboxNetwork {
    slirp: Child,
    /// Dropping it ends slirp4netns, even if the agent dies.
    _exit: PipeWriter,
    socket_dir: PathBuf,
}

impl Drop for SandboxNetwork {
    fn drop(&mut self) {
        let _ = self.slirp.kill();
        let _ = self.slirp.wait();
        let _ = std::fs::remove_dir_all(&self.socket_dir);
    }
}

/// Whether slirp4netns, which one-device sandboxes need, is installed.
pub fn installed() -> bool {
    super::installed("slirp4netns")
}

/// Connects the sandbox bubblewrap was just spawned with `gate` to the outside (it still
/// waits): slirp4netns on its namespace, `ports` forwarded from the provider's loopback. Runs
/// slirp4netns as `user` when the agent is root (as the sandbox itself runs); its API socket
/// lives in `socket_dir`, made here. Why not, in words, on failure (the sandbox must then be
/// killed).
pub fn connect(
    gate: &mut Gate,
    ports: &[u16],
    user: Option<u32>,
    socket_dir: &Path,
) -> Result<SandboxNetwork, String> {
    let pid = gate.sandbox_pid()?;
    wait_for_id_maps(pid)?;
    let (netns, userns) = namespaces_of(pid)?;
    make_socket_dir(socket_dir, user).map_err(|e| {
        format!(
            "could not make {} for the sandbox's network: {e}",
            socket_dir.display()
        )
    })?;
    let socket = socket_dir.join("slirp.sock");
    let (mut ready, ready_child) = std::io::pipe().map_err(|e| e.to_string())?;
    let (exit_child, exit) = std::io::pipe().map_err(|e| e.to_string())?;
    let mut command = Command::new("slirp4netns");
    command
        .args(["--configure", "--mtu=65520", "--disable-host-loopback"])
        // No `--enable-sandbox`: it needs root in the user namespace it joins, which the
        // sandbox's namespace does not map; slirp4netns runs as the sandbox's unprivileged user
        // (when the agent is root) and with its system calls filtered instead.
        .arg("--enable-seccomp")
        .arg("--api-socket")
        .arg(&socket)
        .args(["--ready-fd", &READY_FD.to_string()])
        .args(["--exit-fd", &EXIT_FD.to_string()])
        .arg(format!("--userns-path=/proc/self/fd/{USERNS_FD}"))
        .arg("--netns-type=path")
        .arg(format!("/proc/self/fd/{NETNS_FD}"))
        .arg("tap0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    {
        use std::os::unix::process::CommandExt;
        if let Some(id) = user {
            command.uid(id).gid(id);
        }
        let ends = [
            (ready_child.as_raw_fd(), READY_FD),
            (exit_child.as_raw_fd(), EXIT_FD),
            (netns.as_raw_fd(), NETNS_FD),
            (userns.as_raw_fd(), USERNS_FD),
        ];
        // SAFETY: as in `Gate::attach`.
        unsafe { command.pre_exec(onto(ends)) };
    }
    let slirp = command
        .spawn()
        .map_err(|e| format!("could not start slirp4netns for the sandbox's network: {e}"))?;
    drop((ready_child, exit_child, netns, userns));
    let network = SandboxNetwork {
        slirp,
        _exit: exit,
        socket_dir: socket_dir.to_owned(),
    };
    let mut signal = [0u8; 1];
    if ready.read(&mut signal).map_err(|e| e.to_string())? == 0 {
        return Err("slirp4netns ended before the sandbox's network was ready".into());
    }
    for &port in ports {
        forward(&socket, port)?;
    }
    Ok(network)
}

/// The namespace holder's process id, from bubblewrap's JSON on its info descriptor.
fn child_pid(info: &mut PipeReader) -> Result<u32, String> {
    let mut text = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let read = info.read(&mut chunk).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("bubblewrap could not make the sandbox (it ended at once)".into());
        }
        text.extend_from_slice(&chunk[..read]);
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&text) {
            return value["child-pid"]
                .as_u64()
                .and_then(|pid| u32::try_from(pid).ok())
                .ok_or_else(|| format!("bubblewrap said no child pid: {value}"));
        }
        if text.len() > 64 * 1024 {
            return Err("bubblewrap's sandbox information is not JSON".into());
        }
    }
}

/// Waits until the sandbox's process has written its user namespace's id maps: bubblewrap
/// says which process it is as soon as it exists, before that, and slirp4netns cannot act in
/// a user namespace without them.
fn wait_for_id_maps(pid: u32) -> Result<(), String> {
    let deadline = std::time::Instant::now() + SLIRP_WAIT;
    loop {
        let map = std::fs::read_to_string(format!("/proc/{pid}/gid_map"))
            .map_err(|e| format!("the sandbox ended while it was being made: {e}"))?;
        if !map.trim().is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err("the sandbox's user namespace was never given its ids".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The sandbox's network namespace and the user namespace that owns it, which slirp4netns
/// must join: not the one the sandbox's process is in by then, because bubblewrap nests a
/// second user namespace (mapping only the sandbox's user) once its mounts are made, which has
/// no rights over the network namespace (`setns(CLONE_NEWNET)` is refused from there).
fn namespaces_of(pid: u32) -> Result<(std::fs::File, OwnedFd), String> {
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| format!("could not open the sandbox's network namespace: {e}"))?;
    // SAFETY: an ioctl on a descriptor this process holds; its result is checked.
    let owner = unsafe { libc::ioctl(netns.as_raw_fd(), NS_GET_USERNS as _) };
    if owner < 0 {
        return Err(format!(
            "could not find the user namespace of the sandbox's network: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the ioctl returned a new descriptor that nothing else owns.
    Ok((netns, unsafe { OwnedFd::from_raw_fd(owner) }))
}

fn make_socket_dir(dir: &Path, user: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if let Some(id) = user {
        std::os::unix::fs::chown(dir, Some(id), Some(id))?;
    }
    Ok(())
}

/// Forwards `port` on the provider's loopback to the same port in the sandbox.
fn forward(socket: &Path, port: u16) -> Result<(), String> {
    let request = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {
            "proto": "tcp",
            "host_addr": "127.0.0.1",
            "host_port": port,
            "guest_port": port,
        }
    });
    let answer = (|| -> std::io::Result<String> {
        let mut stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(SLIRP_WAIT))?;
        stream.write_all(request.to_string().as_bytes())?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })()
    .map_err(|e| format!("could not ask slirp4netns to forward port {port}: {e}"))?;
    let answer: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|_| format!("slirp4netns answered the forward of port {port} with {answer:?}"))?;
    if answer.get("return").is_some() {
        return Ok(());
    }
    Err(format!(
        "port {port} cannot be forwarded to the workload on this device (is another program \
         using it?): {}",
        answer["error"]["desc"]
            .as_str()
            .unwrap_or("no reason given")
    ))
}

/// What a child runs between fork and exec to find each `(ours, theirs)` descriptor of ours
/// at `theirs`, open across exec.
fn onto<const N: usize>(
    ends: [(RawFd, RawFd); N],
) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
    move || {
        // First out of the way of every target (a source may sit on another's target), then
        // onto the targets; dup2 leaves the copies open across exec.
        let mut moved = [0 as RawFd; N];
        for (slot, (ours, _)) in moved.iter_mut().zip(ends.iter()) {
            // SAFETY: plain descriptor calls on descriptors this process holds.
            *slot = unsafe { libc::fcntl(*ours, libc::F_DUPFD_CLOEXEC, 10) };
            if *slot < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        for (from, (_, theirs)) in moved.iter().zip(ends.iter()) {
            // SAFETY: as above.
            if unsafe { libc::dup2(*from, *theirs) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}
