//! Least privilege: what the daemon gives up once it is set up.
//!
//! [`forbid_core_dumps`] runs first, before any key is read: no core file (RLIMIT_CORE 0)
//! and not dumpable (no core either way; `ptrace` and `/proc/PID/mem`, `environ`, ... are
//! closed to every process without CAP_SYS_PTRACE, even one of the same user).
//! [`drop_privileges`] runs once the TUN device, the sockets, the routes and the
//! control socket exist, before any other thread starts: it sets NO_NEW_PRIVS and keeps
//! only the capabilities in [`DAEMON_CAPS`] in the effective, permitted and bounding sets
//! (inheritable and ambient emptied). The process stays uid 0 (the control socket
//! checks its clients against root, and files it still touches are root's), but without
//! CAP_DAC_OVERRIDE, CAP_SYS_ADMIN, CAP_SYS_MODULE, CAP_SYS_PTRACE, ... uid 0 is an
//! ordinary user for everything but networking.
//!
//! Capabilities belong to threads, not processes: dropping them in one thread leaves the
//! others as they were. So [`drop_privileges`] refuses to run with more than one thread;
//! threads started afterwards inherit the reduced sets. Written with libc's `prctl` and
//! the raw `capget`/`capset` system calls (a dozen lines) rather than a crate, like the
//! rest of this module.
#![allow(unsafe_code)]

use std::io;

/// `CAP_NET_BIND_SERVICE` (linux/capability.h).
pub const CAP_NET_BIND_SERVICE: u32 = 10;
/// `CAP_NET_ADMIN`.
pub const CAP_NET_ADMIN: u32 = 12;
/// `CAP_NET_RAW`.
pub const CAP_NET_RAW: u32 = 13;

/// What the running daemon keeps. CAP_NET_ADMIN: routes are removed at shutdown by
/// spawning `ip`, which inherits exactly these (uid 0 gets its bounding set on exec, and
/// NO_NEW_PRIVS keeps it there), and interface ioctls (TUN queue length) and forced
/// socket buffer sizes need it. CAP_NET_RAW and CAP_NET_BIND_SERVICE: to reopen the raw
/// ESP socket and the sockets on ports 500/4500 should that ever be needed; both sockets
/// are open already, so they grant little more.
pub const DAEMON_CAPS: [u32; 3] = [CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE];

/// The capability bit mask of `caps`.
pub fn mask(caps: &[u32]) -> u64 {
    caps.iter().filter(|&&c| c < 64).fold(0, |m, &c| m | 1u64 << c)
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets as two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`; version 3 takes two (low and high 32 bits).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's capability sets, as bit masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    /// Effective.
    pub effective: u64,
    /// Permitted.
    pub permitted: u64,
    /// Inheritable.
    pub inheritable: u64,
}

fn join(lo: u32, hi: u32) -> u64 {
    u64::from(hi) << 32 | u64::from(lo)
}

/// The calling thread's effective, permitted and inheritable capabilities.
pub fn thread_capabilities() -> io::Result<CapSets> {
    let mut header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget reads `header` and writes two `CapData` (what version 3 asks for)
    // into `data`, which is valid for writes of exactly that; pid 0 is the caller.
    let rc = unsafe { libc::syscall(libc::SYS_capget, std::ptr::from_mut(&mut header), data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// Sets the calling thread's capability sets.
fn set_thread_capabilities(sets: CapSets) -> io::Result<()> {
    let mut header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    // Truncation is the point: each half carries 32 bits of the mask.
    #[allow(clippy::cast_possible_truncation)]
    let half = |m: u64, hi: bool| if hi { (m >> 32) as u32 } else { m as u32 };
    let data: [CapData; 2] = [false, true].map(|hi| CapData {
        effective: half(sets.effective, hi),
        permitted: half(sets.permitted, hi),
        inheritable: half(sets.inheritable, hi),
    });
    // SAFETY: capset reads `header` and two `CapData` (version 3) from valid memory that
    // outlives the call; pid 0 is the caller.
    let rc = unsafe { libc::syscall(libc::SYS_capset, std::ptr::from_mut(&mut header), data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `prctl(option, arg2, 0, 0, 0)`.
fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> io::Result<libc::c_int> {
    let zero: libc::c_ulong = 0;
    // SAFETY: every prctl option used in this module takes integer arguments only (no
    // pointers); unused arguments are passed as 0 as the man page requires.
    let rc = unsafe { libc::prctl(option, arg2, zero, zero, zero) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// The calling thread's bounding set, as a bit mask.
pub fn bounding_set() -> io::Result<u64> {
    let mut m = 0u64;
    for cap in 0..64u32 {
        match prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap)) {
            Ok(1) => m |= 1 << cap,
            Ok(_) => {}
            // Past the kernel's last capability.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(m)
}

/// True when the process is dumpable (PR_GET_DUMPABLE).
pub fn is_dumpable() -> io::Result<bool> {
    Ok(prctl(libc::PR_GET_DUMPABLE, 0)? != 0)
}

/// No core file, whatever the signal: RLIMIT_CORE 0 (soft and hard, so nothing in the
/// process can raise it again) and PR_SET_DUMPABLE 0 (which also closes `ptrace` and
/// `/proc/PID/mem` to processes without CAP_SYS_PTRACE). Process-wide. Call before any key
/// is in memory.
pub fn forbid_core_dumps() -> io::Result<()> {
    let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `none` is a valid rlimit read during the call; lowering a limit needs no
    // privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) } != 0 {
        return Err(io::Error::last_os_error());
    }
    prctl(libc::PR_SET_DUMPABLE, 0).map(drop)
}

/// Keeps only `keep` (as far as the thread has them) in the calling thread's
/// effective, permitted and bounding sets, and empties its inheritable and ambient sets.
/// Other threads keep theirs: see [`drop_privileges`] for the whole process. Needs
/// CAP_SETPCAP to shrink the bounding set.
pub fn limit_thread_capabilities(keep: &[u32]) -> io::Result<()> {
    let keep = mask(keep);
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes next.
    let bounding = bounding_set()?;
    for cap in 0..64u32 {
        if bounding & !keep & (1 << cap) != 0 {
            prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap)).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot drop capability {cap} from the bounding set: {e}"))
            })?;
        }
    }
    match prctl(libc::PR_CAP_AMBIENT, libc::c_ulong::try_from(libc::PR_CAP_AMBIENT_CLEAR_ALL).unwrap_or(4)) {
        // Kernels before 4.3 have no ambient set: nothing to clear.
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
        _ => {}
    }
    let now = thread_capabilities()?;
    let kept = now.permitted & keep;
    set_thread_capabilities(CapSets { effective: kept, permitted: kept, inheritable: 0 })
        .map_err(|e| io::Error::new(e.kind(), format!("capset: {e}")))?;
    // Trust, but verify: the kernel must now report exactly that.
    let after = thread_capabilities()?;
    let bounding = bounding_set()?;
    if after != (CapSets { effective: kept, permitted: kept, inheritable: 0 }) || bounding & !keep != 0 {
        return Err(io::Error::other(format!(
            "capabilities not dropped: effective {:#x}, permitted {:#x}, bounding {bounding:#x} (wanted {kept:#x})",
            after.effective, after.permitted
        )));
    }
    Ok(())
}

/// The number of threads of this process (`Threads:` in /proc/self/status).
fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

/// The daemon's privilege drop: NO_NEW_PRIVS (nothing it executes can gain privileges,
/// setuid binaries and file capabilities included), then [`limit_thread_capabilities`]
/// to `keep`, then non-dumpable again (a credential change may reset it). Refuses when
/// the process already runs other threads, which would keep their capabilities.
pub fn drop_privileges(keep: &[u32]) -> io::Result<()> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "cannot drop capabilities with {threads} threads running (capabilities are per thread)"
        )));
    }
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    limit_thread_capabilities(keep)?;
    prctl(libc::PR_SET_DUMPABLE, 0).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask(&DAEMON_CAPS), 0x3400);
        assert_eq!(mask(&[]), 0);
        assert_eq!(mask(&[63, 64]), 1 << 63);
        assert_eq!(join(0x3400, 0x1ff), 0x1ff_0000_3400);
    }

    /// In a thread of its own (capabilities are per thread, so the test process keeps
    /// its own): afterwards the thread holds DAEMON_CAPS at most, and exactly those it
    /// had of them.
    #[test]
    fn a_thread_keeps_only_what_it_asks_for() {
        let before = thread_capabilities().unwrap();
        let (after, bounding) = std::thread::spawn(|| {
            limit_thread_capabilities(&DAEMON_CAPS).unwrap();
            (thread_capabilities().unwrap(), bounding_set().unwrap())
        })
        .join()
        .unwrap();
        let want = before.permitted & mask(&DAEMON_CAPS);
        assert_eq!(after, CapSets { effective: want, permitted: want, inheritable: 0 });
        assert_eq!(bounding & !mask(&DAEMON_CAPS), 0, "bounding {bounding:#x}");
        // This thread is untouched.
        assert_eq!(thread_capabilities().unwrap(), before);
    }

    #[test]
    fn drop_privileges_refuses_with_other_threads_running() {
        // A second thread for sure, whatever the harness does.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        let e = drop_privileges(&DAEMON_CAPS).unwrap_err();
        drop(tx);
        let _ = other.join();
        assert!(e.to_string().contains("threads running"), "{e}");
    }
}
