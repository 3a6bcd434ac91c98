//! What "the container" of a reader is (DESIGN 2.3): the cgroup every
//! process of one container is rendered from, so that all of them see one
//! machine, as in a VM. Pure rules on cgroup paths as `/proc/<pid>/cgroup`
//! shows them, decided per hierarchy (every v1 controller, and v2):
//!
//! 1. the root of the reader's cgroup namespace, when it has its own (docker
//!    and podman on cgroup v2, containerd/Kubernetes, LXC, Incus);
//! 2. else, in a pid namespace of its own, the cgroup of that namespace's
//!    init with a trailing `init.scope` removed, when that is the reader's
//!    cgroup or an ancestor of it (systemd inside a container);
//! 3. else the reader's own cgroup.
//!
//! A Kubernetes pod sharing one pid namespace has the pause process as init
//! in a sibling cgroup: rule 2 does not hold there and a member gets its own
//! cgroup, which is right.

use crate::source::cgroup::Membership;

/// Which rule decided the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Why {
    /// The root of the reader's cgroup namespace.
    Namespace,
    /// The cgroup of its pid namespace's init (`init.scope` removed).
    Init,
    /// Its own cgroup.
    Own,
}

impl Why {
    pub fn describe(self) -> &'static str {
        match self {
            Why::Namespace => "the root of its cgroup namespace",
            Why::Init => "the cgroup of its pid namespace's init",
            Why::Own => "its own cgroup",
        }
    }
}

/// Whether cgroup path `a` is `b` or below it.
fn at_or_below(a: &str, b: &str) -> bool {
    b == "/" || a == b || a.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'))
}

/// The root of a cgroup namespace on one hierarchy, from a member's path
/// seen from the host (`abs`) and from inside its namespace (`rel`, where
/// the root is `/`): `abs` without the `rel` it ends with. `None` when the
/// member is outside its namespace's root (`rel` starts with `/..`).
pub fn ns_root(abs: &str, rel: &str) -> Option<String> {
    if rel == "/.." || rel.starts_with("/../") {
        return None;
    }
    if rel == "/" {
        return Some(abs.to_owned());
    }
    let root = abs.strip_suffix(rel)?;
    if root.is_empty() {
        return Some("/".to_owned());
    }
    // The suffix must be whole components.
    (!root.ends_with('/')).then(|| root.to_owned())
}

/// The roots of a cgroup namespace, per hierarchy, from one member's
/// membership seen from the host and from inside the namespace.
pub fn ns_roots(abs: &Membership, rel: &Membership) -> Membership {
    Membership {
        v2: abs
            .v2
            .as_deref()
            .zip(rel.v2.as_deref())
            .and_then(|(a, r)| ns_root(a, r)),
        v1: abs
            .v1
            .iter()
            .filter_map(|(c, a)| Some((*c, ns_root(a, rel.v1.get(c)?)?)))
            .collect(),
    }
}

/// `init`'s cgroup with a trailing `init.scope` removed, when that is
/// `reader`'s cgroup or an ancestor of it.
fn by_init(reader: &str, init: &str) -> Option<String> {
    let unit = match init.strip_suffix("/init.scope") {
        Some("") => "/",
        Some(parent) => parent,
        None => init,
    };
    at_or_below(reader, unit).then(|| unit.to_owned())
}

/// The container of a reader whose cgroups are `own`, given the roots of
/// its cgroup namespace (when it has one of its own) and its pid
/// namespace's init's cgroups (when it has a pid namespace of its own).
/// Decided per hierarchy; the reason given is the widest rule any
/// hierarchy used.
pub fn container_of(
    own: &Membership,
    ns: Option<&Membership>,
    init: Option<&Membership>,
) -> (Membership, Why) {
    let mut why = Why::Own;
    let mut pick = |reader: &str, root: Option<&str>, init: Option<&str>| -> String {
        if let Some(r) = root.filter(|r| at_or_below(reader, r)) {
            why = why.min(Why::Namespace);
            return r.to_owned();
        }
        if let Some(unit) = init.and_then(|i| by_init(reader, i)) {
            why = why.min(Why::Init);
            return unit;
        }
        reader.to_owned()
    };
    let v2 = own.v2.as_deref().map(|r| {
        pick(
            r,
            ns.and_then(|n| n.v2.as_deref()),
            init.and_then(|i| i.v2.as_deref()),
        )
    });
    let v1 = own
        .v1
        .iter()
        .map(|(c, r)| {
            let root = ns.and_then(|n| n.v1.get(c)).map(String::as_str);
            let init = init.and_then(|i| i.v1.get(c)).map(String::as_str);
            (*c, pick(r, root, init))
        })
        .collect();
    (Membership { v2, v1 }, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::cgroup::mounts::parse_proc_cgroup;

    fn m(text: &str) -> Membership {
        parse_proc_cgroup(text).expect("parses")
    }

    #[test]
    fn namespace_roots_from_the_two_views() {
        assert_eq!(
            ns_root("/lxc.payload.c1/init.scope", "/init.scope").as_deref(),
            Some("/lxc.payload.c1")
        );
        assert_eq!(ns_root("/docker/abc", "/").as_deref(), Some("/docker/abc"));
        assert_eq!(ns_root("/a/b", "/a/b").as_deref(), Some("/"));
        // Not a whole component, or outside the root: no root.
        assert_eq!(ns_root("/ab", "/b"), None);
        assert_eq!(ns_root("/x/y", "/../y"), None);
        assert_eq!(ns_root("/x/y", "/z"), None);
    }

    #[test]
    fn a_system_container_with_a_cgroup_namespace_is_its_root() {
        // LXC/Incus: the shell in S/session, the namespace rooted at S.
        let own = m("4:memory:/S/session\n3:cpu:/S/session\n0::/S/session\n");
        let inside = m("4:memory:/session\n3:cpu:/session\n0::/session\n");
        let roots = ns_roots(&own, &inside);
        let (c, why) = container_of(&own, Some(&roots), None);
        assert_eq!(c, m("4:memory:/S\n3:cpu:/S\n0::/S\n"));
        assert_eq!(why, Why::Namespace);
    }

    #[test]
    fn without_a_namespace_the_init_decides() {
        // systemd inside: init in S/init.scope, the shell in S/session.
        let own = m("4:memory:/S/session\n0::/S/session\n");
        let init = m("4:memory:/S/init.scope\n0::/S/init.scope\n");
        let (c, why) = container_of(&own, None, Some(&init));
        assert_eq!(c, m("4:memory:/S\n0::/S\n"));
        assert_eq!(why, Why::Init);
        // init in the container's own cgroup (docker, runc): the same.
        let (c, why) = container_of(&own, None, Some(&m("4:memory:/S\n0::/S\n")));
        assert_eq!((c, why), (m("4:memory:/S\n0::/S\n"), Why::Init));
    }

    #[test]
    fn a_pod_member_beside_its_pause_process_is_its_own() {
        let own = m("4:memory:/kubepods/pod1/app\n0::/kubepods/pod1/app\n");
        let pause = m("4:memory:/kubepods/pod1/pause\n0::/kubepods/pod1/pause\n");
        let (c, why) = container_of(&own, None, Some(&pause));
        assert_eq!((c, why), (own.clone(), Why::Own));
        // No namespaces of its own at all: its own cgroup.
        assert_eq!(container_of(&own, None, None), (own, Why::Own));
    }

    #[test]
    fn a_reader_outside_its_namespace_root_keeps_its_own() {
        let own = m("0::/elsewhere\n");
        let roots = m("0::/S\n");
        assert_eq!(container_of(&own, Some(&roots), None), (own, Why::Own));
        // init.scope is removed only as a whole last component.
        let own = m("0::/S/x\n");
        let init = m("0::/S/notinit.scope\n");
        assert_eq!(container_of(&own, None, Some(&init)).1, Why::Own);
        // An init in the root cgroup: the root (the host) is the container.
        let (c, why) = container_of(&own, None, Some(&m("0::/init.scope\n")));
        assert_eq!((c, why), (m("0::/\n"), Why::Init));
    }

    #[test]
    fn each_v1_hierarchy_is_decided_on_its_own() {
        // Only the memory hierarchy has a namespace root covering the
        // reader; cpu falls to the init rule.
        let own = m("4:memory:/S/session\n3:cpu:/S/session\n");
        let roots = m("4:memory:/S\n3:cpu:/T\n");
        let init = m("4:memory:/S/init.scope\n3:cpu:/S/init.scope\n");
        let (c, why) = container_of(&own, Some(&roots), Some(&init));
        assert_eq!(c, m("4:memory:/S\n3:cpu:/S\n"));
        assert_eq!(why, Why::Namespace);
    }
}
