//! What drover knows of itself as an engine sees it: the id of the container it runs in,
//! found from what the engine sets up in every container, so drover never touches itself
//! and the lease knows where a holder's pid means something.

use super::is_full_id;

/// Find the id of the container this process runs in, if any, so drover never touches itself.
///
/// In order:
/// 1. `/proc/self/mountinfo`: the engine bind-mounts `<data-root>/containers/<id>/hostname`
///    (and `hosts`, `resolv.conf`) onto `/etc/...` in every container, on cgroup v1 and v2
///    alike. Only those three mount points count: on a host, the engine's own
///    `containers/<id>/mounts/shm` mounts can show up too, and are not ours.
/// 2. `/proc/self/cgroup`: `/docker/<id>` (cgroupfs driver) or `docker-<id>.scope`
///    (systemd driver); empty under a private cgroup namespace (cgroup v2 default).
/// 3. The hostname, which the engine sets to the 12-character short id unless told
///    otherwise; trusted only inside a container (`/.dockerenv` exists) and when it is 12
///    hex digits. Callers match ids by prefix.
pub fn own_container_id() -> Option<String> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    read("/proc/self/mountinfo")
        .and_then(|m| container_id_from_mountinfo(&m))
        .or_else(|| read("/proc/self/cgroup").and_then(|c| container_id_from_cgroup(&c)))
        .or_else(|| {
            if !std::path::Path::new("/.dockerenv").exists() {
                return None;
            }
            read("/etc/hostname").and_then(|h| short_id_from_hostname(h.trim()))
        })
}

fn container_id_from_mountinfo(mountinfo: &str) -> Option<String> {
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options ... - fstype source options
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(root), Some(mount_point)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        if !matches!(
            *mount_point,
            "/etc/hostname" | "/etc/hosts" | "/etc/resolv.conf"
        ) {
            continue;
        }
        let segments: Vec<&str> = root.split('/').collect();
        for pair in segments.windows(2) {
            if matches!(pair[0], "containers" | "overlay-containers") && is_full_id(pair[1]) {
                return Some(pair[1].to_string());
            }
        }
    }
    None
}

fn container_id_from_cgroup(cgroup: &str) -> Option<String> {
    for line in cgroup.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        let segments: Vec<&str> = path.split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            if let Some(id) = seg
                .strip_prefix("docker-")
                .and_then(|s| s.strip_suffix(".scope"))
                .filter(|id| is_full_id(id))
            {
                return Some(id.to_string());
            }
            if i > 0 && segments[i - 1] == "docker" && is_full_id(seg) {
                return Some(seg.to_string());
            }
        }
    }
    None
}

fn short_id_from_hostname(hostname: &str) -> Option<String> {
    (hostname.len() == 12
        && hostname
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| hostname.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_container_id_in_mountinfo() {
        let id = "a".repeat(64);
        let info = format!(
            "1 2 0:1 / / rw - overlay overlay rw\n\
             3 1 8:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&info), Some(id));
        assert_eq!(
            container_id_from_mountinfo("1 2 0:1 / / rw - ext4 x rw\n"),
            None
        );
    }

    /// What a container sees on Engine 20.10 with cgroup v1 (Debian 12).
    #[test]
    fn finds_own_container_id_on_engine_20_10_cgroup_v1() {
        let id = "ee73a2c95f07be8d491bae4889624543aac31f20816e252b8874e6705f458691";
        let info = format!(
            "142 109 0:72 / / rw,relatime master:6 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/244G:/var/lib/docker/overlay2/l/RIXG,upperdir=/var/lib/docker/overlay2/0518/diff,workdir=/var/lib/docker/overlay2/0518/work\n\
             191 190 0:29 /docker/{id} /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu\n\
             202 142 254:0 /var/lib/docker/containers/{id}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw\n\
             203 142 254:0 /var/lib/docker/containers/{id}/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw\n\
             204 142 254:0 /var/lib/docker/containers/{id}/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&info).as_deref(), Some(id));
        let cgroup = format!("9:name=systemd:/docker/{id}\n1:cpu:/docker/{id}\n0::/docker/{id}\n");
        assert_eq!(container_id_from_cgroup(&cgroup).as_deref(), Some(id));
    }

    #[test]
    fn ignores_other_containers_mounts_seen_from_a_host() {
        let other = "b".repeat(64);
        let host = format!(
            "30 1 0:50 / /var/lib/docker/containers/{other}/mounts/shm rw - tmpfs shm rw\n\
             31 1 254:0 /var/lib/docker/containers/{other}/hostname /mnt/x rw - ext4 /dev/vda rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&host), None);
        assert_eq!(container_id_from_cgroup("0::/user.slice\n1:cpu:/\n"), None);
    }

    #[test]
    fn cgroup_and_hostname_fallbacks() {
        let id = "c".repeat(64);
        assert_eq!(
            container_id_from_cgroup(&format!("0::/system.slice/docker-{id}.scope\n")),
            Some(id.clone())
        );
        assert_eq!(container_id_from_cgroup("0::/\n"), None);
        assert_eq!(
            short_id_from_hostname("ee73a2c95f07").as_deref(),
            Some("ee73a2c95f07")
        );
        assert_eq!(short_id_from_hostname("web-1"), None);
        assert_eq!(short_id_from_hostname("EE73A2C95F07"), None);
    }
}
