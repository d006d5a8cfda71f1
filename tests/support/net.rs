//! Network partitions between brokers on loopback, cut by the kernel.
//!
//! Each broker runs as a system user of its own (`rumor-b0`, `rumor-b1`,
//! ...; `.ci/run` creates them). A chain of iptables rules on `lo`'s OUTPUT
//! marks every connection with a bit per broker user that sends on it, so a
//! connection between two brokers carries both their bits. Cutting two
//! brokers apart drops every packet of a connection marked with both bits
//! (in either direction, including those of sockets being closed) and every
//! new connection either of them opens to the other's port. The test's own
//! requests (its user is none of the brokers') are never cut.
//!
//! Only one [`Net`] exists at a time in a test process ([`Net::new`] waits
//! for the previous one): the marks are per user, so two sets of rules
//! would cut each other's brokers. Dropping the `Net` removes every rule,
//! also when the test fails.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tempfile::TempDir;
use tokio::sync::{Mutex, MutexGuard};

/// One partition set-up at a time in this process.
static ONE_NET: Mutex<()> = Mutex::const_new(());

/// The connmark bit of broker user `i`.
fn bit(i: usize) -> u32 {
    0x100 << i
}

/// A system user a broker runs as.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// A copy of the broker binary every user may run (the build directory
    /// may be closed to other users), kept while any user needs it.
    program: Arc<(TempDir, PathBuf)>,
}

impl User {
    /// A command that runs `program` as this user (the broker binary is
    /// replaced by the copy this user may run).
    pub fn command(&self, program: &str) -> Command {
        let program = if program == env!("CARGO_BIN_EXE_broker") {
            self.program.1.as_path()
        } else {
            Path::new(program)
        };
        let mut command = Command::new(program);
        command.uid(self.uid).gid(self.gid);
        command
    }

    /// Gives `dir` to this user.
    pub fn own(&self, dir: &Path) {
        std::os::unix::fs::chown(dir, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|e| panic!("chown {} to {}: {e}", dir.display(), self.name));
    }
}

/// Lets every user read (and enter) `dir`.
pub fn readable_by_all(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
}

/// Why this machine cannot cut brokers apart, if it cannot: the test
/// needs root, iptables and the broker users.
fn missing_prerequisite(n: usize) -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".to_string());
    }
    if !iptables_ok(&["-L", "OUTPUT", "-n"]) {
        return Some("iptables does not work here".to_string());
    }
    (0..n)
        .find(|i| lookup(&format!("rumor-b{i}"), "-u").is_none())
        .map(|i| format!("no system user rumor-b{i} (.ci/run creates them)"))
}

/// `id <flag> <name>` as a number.
fn lookup(name: &str, flag: &str) -> Option<u32> {
    let output = Command::new("id").args([flag, name]).output().ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

fn iptables_ok(args: &[&str]) -> bool {
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success())
}

fn iptables(args: &[String]) {
    let output = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .expect("run iptables");
    assert!(
        output.status.success(),
        "iptables {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The kernel rules that cut brokers apart; removed when dropped.
pub struct Net {
    chain: String,
    users: Vec<User>,
    ports: Vec<u16>,
    /// The pairs cut now, each `(low, high)`.
    cuts: Vec<(usize, usize)>,
    _one: MutexGuard<'static, ()>,
}

impl Net {
    /// Users for `n` brokers and the marking rules, or `None` (the test is
    /// skipped, with the reason printed) where partitions cannot be made;
    /// under CI (`CI` set) a missing prerequisite fails the test instead.
    pub async fn new(n: usize) -> Option<(Net, Vec<User>)> {
        if let Some(reason) = missing_prerequisite(n) {
            assert!(
                std::env::var_os("CI").is_none(),
                "partition tests cannot run: {reason}"
            );
            eprintln!("skipped: partition tests need root, iptables and users: {reason}");
            return None;
        }
        let one = ONE_NET.lock().await;
        let dir = tempfile::tempdir().expect("temp dir");
        readable_by_all(dir.path());
        let program = dir.path().join("broker");
        std::fs::copy(env!("CARGO_BIN_EXE_broker"), &program).expect("copy the broker binary");
        let program = Arc::new((dir, program));
        let users: Vec<User> = (0..n)
            .map(|i| {
                let name = format!("rumor-b{i}");
                User {
                    uid: lookup(&name, "-u").expect("checked above"),
                    gid: lookup(&name, "-g").expect("the user's group"),
                    name,
                    program: program.clone(),
                }
            })
            .collect();
        let net = Net {
            chain: format!("RUMOR_CUT_{}", std::process::id()),
            users: users.clone(),
            ports: Vec::new(),
            cuts: Vec::new(),
            _one: one,
        };
        net.install();
        Some((net, users))
    }

    /// The chain, hooked into OUTPUT on `lo`, with one marking rule per user.
    fn install(&self) {
        let chain = self.chain.clone();
        // A chain of an earlier run of this process id cannot be left, but
        // a crashed run of another test binary could have left its own.
        let _ = iptables_ok(&["-D", "OUTPUT", "-o", "lo", "-j", &chain]);
        let _ = iptables_ok(&["-F", &chain]);
        let _ = iptables_ok(&["-X", &chain]);
        iptables(&strings(&["-N", &chain]));
        iptables(&strings(&["-I", "OUTPUT", "-o", "lo", "-j", &chain]));
        for (i, user) in self.users.iter().enumerate() {
            let mark = format!("{:#x}", bit(i));
            let uid = user.uid.to_string();
            iptables(&strings(&[
                "-A",
                &chain,
                "-m",
                "owner",
                "--uid-owner",
                &uid,
                "-j",
                "CONNMARK",
                "--or-mark",
                &mark,
            ]));
        }
    }

    /// Tells which port broker `i` listens on (`ports[i]`): cuts also drop
    /// new connections to it.
    pub fn set_ports(&mut self, ports: Vec<u16>) {
        self.ports = ports;
    }

    /// The three rules that cut `a` and `b` apart (for `-A` or `-D`).
    fn cut_rules(&self, a: usize, b: usize) -> Vec<Vec<String>> {
        let both = format!("{:#x}/{:#x}", bit(a) | bit(b), bit(a) | bit(b));
        let mut rules = vec![strings(&["-m", "connmark", "--mark", &both, "-j", "DROP"])];
        for (from, to) in [(a, b), (b, a)] {
            let uid = self.users[from].uid.to_string();
            let port = self.ports[to].to_string();
            rules.push(strings(&[
                "-m",
                "owner",
                "--uid-owner",
                &uid,
                "-p",
                "tcp",
                "--dport",
                &port,
                "-j",
                "DROP",
            ]));
        }
        rules
    }

    /// Cuts brokers `a` and `b` apart (no-op when they are cut already).
    pub fn cut(&mut self, a: usize, b: usize) {
        let pair = (a.min(b), a.max(b));
        if a == b || self.cuts.contains(&pair) {
            return;
        }
        for rule in self.cut_rules(a, b) {
            iptables(&[strings(&["-A", &self.chain]), rule].concat());
        }
        self.cuts.push(pair);
    }

    /// Cuts broker `a` apart from every other.
    pub fn isolate(&mut self, a: usize) {
        for b in 0..self.users.len() {
            self.cut(a, b);
        }
    }

    /// Joins brokers `a` and `b` again.
    pub fn heal(&mut self, a: usize, b: usize) {
        let pair = (a.min(b), a.max(b));
        if !self.cuts.contains(&pair) {
            return;
        }
        for rule in self.cut_rules(a, b) {
            iptables(&[strings(&["-D", &self.chain]), rule].concat());
        }
        self.cuts.retain(|cut| *cut != pair);
    }

    /// Removes every cut.
    pub fn heal_all(&mut self) {
        for (a, b) in self.cuts.clone() {
            self.heal(a, b);
        }
    }

    /// Checks that the kernel really blocks `a` and `b`: a connection that
    /// each opens, as its broker's user, to the other's port gets nowhere
    /// within a second.
    pub fn assert_cut(&self, a: usize, b: usize) {
        for (from, to) in [(a, b), (b, a)] {
            assert!(
                !self.connects(from, to),
                "broker {from} still reaches broker {to}'s port {} after the cut",
                self.ports[to]
            );
        }
    }

    /// Whether a connection from broker `from`'s user to broker `to`'s port
    /// is established within a second.
    pub fn connects(&self, from: usize, to: usize) -> bool {
        let script = format!("exec 3<>/dev/tcp/127.0.0.1/{}", self.ports[to]);
        let status = self.users[from]
            .command("timeout")
            .args(["1", "bash", "-c", &script])
            .status()
            .expect("run a connection probe");
        status.success()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let chain = self.chain.clone();
        let removed = iptables_ok(&["-D", "OUTPUT", "-o", "lo", "-j", &chain])
            && iptables_ok(&["-F", &chain])
            && iptables_ok(&["-X", &chain]);
        if !removed {
            eprintln!("could not remove the iptables chain {chain}: remove it by hand");
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}
