//! The one list of files a container binds from the mount, and the helpers
//! that print it for each runtime: `proclens docker-args` (docker/podman
//! `-v` flags), `proclens k8s-volumes` (pod spec YAML), the OCI hook
//! (`super::ocihook`) and the LXC entries in `packaging/lxc/proclens.conf`
//! (a unit test checks that file against this list).

use std::fmt::Write as _;
use std::path::Path;

/// Where the daemon serves unless told otherwise (`proclens mount`, the
/// unit, and every helper's default).
pub const DEFAULT_MOUNTPOINT: &str = "/var/lib/proclens";
/// Where the daemon takes containers' seccomp descriptors, for sysinfo(2)
/// (`proclens mount --seccomp-socket`, and proclens-runc's default).
pub const DEFAULT_SECCOMP_SOCKET: &str = "/run/proclens/seccomp.sock";

/// Whether a bind is one file or a whole directory (Kubernetes `hostPath`
/// types, LXC `create=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// One bind: `source` below the mountpoint onto `target` in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind {
    /// Relative to the daemon's mountpoint, e.g. `proc/meminfo`.
    pub source: &'static str,
    /// Absolute path inside the container, e.g. `/proc/meminfo`.
    pub target: &'static str,
    pub kind: Kind,
    /// A short name usable as a Kubernetes volume name suffix.
    pub name: &'static str,
    /// Bound read-write: PSI triggers are written through it (the daemon
    /// takes a write there as a trigger and refuses every other). Every
    /// other bind is read-only.
    pub writable: bool,
    /// runc accepts a bind at `target` from the container's config: it
    /// refuses binds inside /proc but over a fixed list of files
    /// (libcontainer/rootfs_linux.go checkProcMount: cpuinfo, diskstats,
    /// meminfo, stat, swaps, uptime, loadavg, slabinfo, sys/kernel/
    /// ns_last_pid, and net/dev in 1.1 or sys/crypto/fips_enabled since
    /// 1.2; neither vmstat nor pressure/* in any release), and a container
    /// with one fails to start ("... cannot be mounted because it is inside
    /// /proc"). What goes through config mounts (`docker -v`, Kubernetes
    /// volumes) leaves the others out; the OCI hook and LXC make the mounts
    /// themselves and take every bind.
    pub via_runc: bool,
}

/// A read-only file bind that runc accepts.
const fn file(name: &'static str, source: &'static str, target: &'static str) -> Bind {
    Bind {
        source,
        target,
        kind: Kind::File,
        name,
        writable: false,
        via_runc: true,
    }
}

/// A bind of a pressure file: read-write (for triggers), not through runc.
const fn pressure(name: &'static str, source: &'static str, target: &'static str) -> Bind {
    Bind {
        writable: true,
        via_runc: false,
        ..file(name, source, target)
    }
}

/// Every bind, in the order runtimes should apply them. The CPU directory
/// goes whole so that `online`, `possible`, `present` and the `cpuN` entries
/// agree; `sys/block` because iostat reads `/sys/block/<disk>/stat`, not
/// `/proc/diskstats`; the pressure files one by one, because the kernel's
/// `/proc/pressure` may hold others (`irq`) that stay the kernel's.
pub const BINDS: [Bind; 13] = [
    file("meminfo", "proc/meminfo", "/proc/meminfo"),
    file("cpuinfo", "proc/cpuinfo", "/proc/cpuinfo"),
    file("stat", "proc/stat", "/proc/stat"),
    file("loadavg", "proc/loadavg", "/proc/loadavg"),
    file("uptime", "proc/uptime", "/proc/uptime"),
    file("diskstats", "proc/diskstats", "/proc/diskstats"),
    file("swaps", "proc/swaps", "/proc/swaps"),
    Bind {
        source: "sys/devices/system/cpu",
        target: "/sys/devices/system/cpu",
        kind: Kind::Dir,
        name: "cpu",
        writable: false,
        via_runc: true,
    },
    Bind {
        source: "sys/block",
        target: "/sys/block",
        kind: Kind::Dir,
        name: "block",
        writable: false,
        via_runc: true,
    },
    Bind {
        via_runc: false,
        ..file("vmstat", "proc/vmstat", "/proc/vmstat")
    },
    pressure("pressure-cpu", "proc/pressure/cpu", "/proc/pressure/cpu"),
    pressure(
        "pressure-memory",
        "proc/pressure/memory",
        "/proc/pressure/memory",
    ),
    pressure("pressure-io", "proc/pressure/io", "/proc/pressure/io"),
];

/// The binds a runtime's config can carry to runc.
pub fn via_runc() -> impl Iterator<Item = &'static Bind> {
    BINDS.iter().filter(|b| b.via_runc)
}

fn src(mountpoint: &Path, b: &Bind) -> String {
    mountpoint.join(b.source).to_string_lossy().into_owned()
}

/// Quotes a word for a POSIX shell only when it needs it, so that the usual
/// output stays usable unquoted as `docker run $(proclens docker-args)`.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=+,@".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// One line of `-v SRC:DST:ro` flags for `docker run` / `podman run`: the
/// binds runc accepts (vmstat and pressure come through the OCI hook).
pub fn docker_args(mountpoint: &Path) -> String {
    let flags: Vec<String> = via_runc()
        .map(|b| {
            format!(
                "-v {}",
                shell_word(&format!("{}:{}:ro", src(mountpoint, b), b.target))
            )
        })
        .collect();
    flags.join(" ")
}

/// A double-quoted YAML scalar (JSON string syntax is valid YAML).
fn yaml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `volumes:` (pod spec) and `volumeMounts:` (container) YAML for a
/// pod, as two top-level keys to paste into the right places: the binds
/// runc accepts.
pub fn k8s_volumes(mountpoint: &Path) -> String {
    let mut out = String::new();
    out.push_str("# proclens: paste under the pod's spec\nvolumes:\n");
    for b in via_runc() {
        let kind = match b.kind {
            Kind::File => "File",
            Kind::Dir => "Directory",
        };
        let _ = writeln!(out, "  - name: proclens-{}", b.name);
        let _ = writeln!(out, "    hostPath:");
        let _ = writeln!(out, "      path: {}", yaml_str(&src(mountpoint, b)));
        let _ = writeln!(out, "      type: {kind}");
    }
    out.push_str("# proclens: paste under each container\nvolumeMounts:\n");
    for b in via_runc() {
        let _ = writeln!(out, "  - name: proclens-{}", b.name);
        let _ = writeln!(out, "    mountPath: {}", yaml_str(b.target));
        let _ = writeln!(out, "    readOnly: true");
    }
    out
}

/// `lxc.mount.entry` lines (targets relative to the container's rootfs;
/// `optional`, so that a container starts with the kernel's files when the
/// daemon does not serve, as with the OCI hook).
pub fn lxc_entries(mountpoint: &Path) -> String {
    let mut out = String::new();
    for b in &BINDS {
        let create = match b.kind {
            Kind::File => "file",
            Kind::Dir => "dir",
        };
        let ro = if b.writable { "" } else { "ro," };
        let _ = writeln!(
            out,
            "lxc.mount.entry = {} {} none bind,{ro}optional,create={create} 0 0",
            src(mountpoint, b),
            b.target.trim_start_matches('/')
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const MP: &str = "/var/lib/proclens";

    /// The binds runc accepts: written out, not taken from BINDS.
    fn expected() -> BTreeSet<(String, String)> {
        [
            "meminfo",
            "cpuinfo",
            "stat",
            "loadavg",
            "uptime",
            "diskstats",
            "swaps",
        ]
        .iter()
        .map(|f| (format!("{MP}/proc/{f}"), format!("/proc/{f}")))
        .chain([
            (
                format!("{MP}/sys/devices/system/cpu"),
                "/sys/devices/system/cpu".to_owned(),
            ),
            (format!("{MP}/sys/block"), "/sys/block".to_owned()),
        ])
        .collect()
    }

    /// And those that only the hook and LXC can make.
    fn beyond_runc() -> BTreeSet<(String, String)> {
        ["vmstat", "pressure/cpu", "pressure/memory", "pressure/io"]
            .iter()
            .map(|f| (format!("{MP}/proc/{f}"), format!("/proc/{f}")))
            .collect()
    }

    /// runc 1.1.5's (Debian 12) list of /proc files a config may bind over
    /// (libcontainer/rootfs_linux.go checkProcMount), and what 1.2 and
    /// later changed in it.
    const RUNC_PROC: &[&str] = &[
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
        "/proc/loadavg",
        "/proc/slabinfo",
        "/proc/net/dev",
        "/proc/sys/kernel/ns_last_pid",
        "/proc/sys/crypto/fips_enabled",
    ];

    #[test]
    fn what_goes_through_runc_is_what_runc_accepts() {
        for b in &BINDS {
            if let Some(rest) = b.target.strip_prefix("/proc/") {
                assert_eq!(
                    b.via_runc,
                    RUNC_PROC.contains(&b.target),
                    "/proc/{rest}: via_runc must say whether runc accepts it"
                );
            }
            // Only pressure files are written through.
            assert_eq!(
                b.writable,
                b.target.starts_with("/proc/pressure/"),
                "{}",
                b.target
            );
        }
    }

    /// Splits docker-args output the way a shell would for these words
    /// (whitespace, single quotes), then reads the `-v` pairs.
    fn parse_docker(line: &str) -> Vec<(String, String, String)> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut in_word = false;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' if !quoted => {
                    cur.extend(chars.next());
                    in_word = true;
                }
                '\'' => {
                    quoted = !quoted;
                    in_word = true;
                }
                c if c.is_whitespace() && !quoted => {
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                }
                c => {
                    cur.push(c);
                    in_word = true;
                }
            }
        }
        if in_word {
            words.push(cur);
        }
        assert!(words.len() % 2 == 0, "odd number of words: {words:?}");
        words
            .chunks(2)
            .map(|p| {
                assert_eq!(p[0], "-v", "flag in {line}");
                let parts: Vec<&str> = p[1].rsplitn(3, ':').collect();
                assert_eq!(parts.len(), 3, "SRC:DST:MODE in {}", p[1]);
                (
                    parts[2].to_owned(),
                    parts[1].to_owned(),
                    parts[0].to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn docker_args_is_one_line_of_read_only_binds() {
        let out = docker_args(Path::new(MP));
        assert!(!out.contains('\n'));
        let binds = parse_docker(&out);
        assert!(binds.iter().all(|(_, _, mode)| mode == "ro"));
        let got: BTreeSet<(String, String)> = binds.into_iter().map(|(s, d, _)| (s, d)).collect();
        assert_eq!(got, expected());
    }

    #[test]
    fn docker_args_quotes_odd_mountpoints() {
        let out = docker_args(Path::new("/srv/my mount's"));
        let binds = parse_docker(&out);
        assert_eq!(binds.len(), expected().len());
        assert_eq!(binds[0].0, "/srv/my mount's/proc/meminfo");
    }

    #[test]
    fn k8s_volumes_parse_back() {
        let out = k8s_volumes(Path::new(MP));
        let docs = yaml_rust2::YamlLoader::load_from_str(&out).expect("valid YAML");
        let doc = &docs[0];
        let vols = doc["volumes"].as_vec().expect("volumes list");
        let mounts = doc["volumeMounts"].as_vec().expect("volumeMounts list");
        assert_eq!(vols.len(), expected().len());
        assert_eq!(mounts.len(), expected().len());
        let mut got = BTreeSet::new();
        for m in mounts {
            let name = m["name"].as_str().expect("mount name");
            assert_eq!(m["readOnly"].as_bool(), Some(true), "{name} read-only");
            let v = vols
                .iter()
                .find(|v| v["name"].as_str() == Some(name))
                .unwrap_or_else(|| panic!("no volume {name}"));
            let path = v["hostPath"]["path"].as_str().expect("hostPath.path");
            let target = m["mountPath"].as_str().expect("mountPath");
            let ty = v["hostPath"]["type"].as_str().expect("hostPath.type");
            let want = if target.starts_with("/proc/") {
                "File"
            } else {
                "Directory"
            };
            assert_eq!(ty, want, "{name}");
            got.insert((path.to_owned(), target.to_owned()));
        }
        assert_eq!(got, expected());
    }

    /// (source, target) of every `lxc.mount.entry` line of an LXC config,
    /// targets made absolute; read-only but for the pressure files.
    fn parse_lxc(text: &str) -> BTreeSet<(String, String)> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("lxc.mount.entry"))
            .map(|rest| {
                let rest = rest.trim_start().strip_prefix('=').expect("key = value");
                let f: Vec<&str> = rest.split_whitespace().collect();
                assert_eq!(f.len(), 6, "six fstab fields: {rest}");
                let ro = f[3].split(',').any(|o| o == "ro");
                assert_eq!(ro, !f[1].starts_with("proc/pressure/"), "read-only: {rest}");
                assert!(f[3].split(',').any(|o| o == "bind"), "bind: {rest}");
                (f[0].to_owned(), format!("/{}", f[1]))
            })
            .collect()
    }

    #[test]
    fn lxc_conf_holds_docker_args_and_the_rest() {
        let shipped = include_str!("../../packaging/lxc/proclens.conf");
        let docker: BTreeSet<(String, String)> = parse_docker(&docker_args(Path::new(MP)))
            .into_iter()
            .map(|(s, d, _)| (s, d))
            .collect();
        assert_eq!(docker, expected());
        let all: BTreeSet<(String, String)> = docker.union(&beyond_runc()).cloned().collect();
        assert_eq!(parse_lxc(shipped), all);
        assert_eq!(parse_lxc(&lxc_entries(Path::new(MP))), all);
    }

    /// The shipped Kubernetes files mount the same set.
    #[test]
    fn kubernetes_files_mount_every_bind() {
        for (file, text) in [(
            "pod.yaml",
            include_str!("../../packaging/kubernetes/pod.yaml"),
        )] {
            let docs = yaml_rust2::YamlLoader::load_from_str(text).expect("valid YAML");
            let spec = &docs[0]["spec"];
            let vols = spec["volumes"].as_vec().expect("volumes");
            let mut got = BTreeSet::new();
            for m in spec["containers"][0]["volumeMounts"]
                .as_vec()
                .expect("volumeMounts")
            {
                let name = m["name"].as_str().expect("name");
                let Some(v) = vols.iter().find(|v| v["name"].as_str() == Some(name)) else {
                    panic!("{file}: no volume {name}");
                };
                assert_eq!(m["readOnly"].as_bool(), Some(true), "{file}: {name}");
                got.insert((
                    v["hostPath"]["path"].as_str().expect("path").to_owned(),
                    m["mountPath"].as_str().expect("mountPath").to_owned(),
                ));
            }
            assert_eq!(got, expected(), "{file}");
        }
    }

    /// The DaemonSet runs the daemon where it can work and propagates its
    /// mount to the node path the pods bind from.
    #[test]
    fn daemonset_shares_the_mount_with_the_node() {
        let text = include_str!("../../packaging/kubernetes/daemonset.yaml");
        let docs = yaml_rust2::YamlLoader::load_from_str(text).expect("valid YAML");
        let ds = &docs[0];
        assert_eq!(ds["kind"].as_str(), Some("DaemonSet"));
        let spec = &ds["spec"]["template"]["spec"];
        assert_eq!(spec["hostPID"].as_bool(), Some(true));
        let c = &spec["containers"][0];
        assert_eq!(c["securityContext"]["privileged"].as_bool(), Some(true));
        let mounts = c["volumeMounts"].as_vec().expect("volumeMounts");
        let m = mounts
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(MP))
            .expect("the mountpoint is a volume");
        assert_eq!(m["mountPropagation"].as_str(), Some("Bidirectional"));
        let vols = spec["volumes"].as_vec().expect("volumes");
        let host = |name: &str| {
            vols.iter()
                .find(|v| v["name"].as_str() == Some(name))
                .map(|v| v["hostPath"]["path"].as_str().unwrap_or("").to_owned())
        };
        assert_eq!(host(m["name"].as_str().expect("name")).as_deref(), Some(MP));
        assert!(mounts
            .iter()
            .any(|m| m["mountPath"].as_str() == Some("/dev/fuse")
                && host(m["name"].as_str().unwrap_or("")).as_deref() == Some("/dev/fuse")));
        let cmd: Vec<&str> = c["command"]
            .as_vec()
            .expect("command")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert_eq!(cmd, ["/usr/bin/proclens", "mount", MP]);
    }
}
