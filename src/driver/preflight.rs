//! The offline pre-flight: what the ceremony laptop is, what time it thinks it is, and whether any
//! network interface is up. Linux only (it reads /proc, /sys and /etc), like the ceremony laptops.

use crate::evidence::events::{HostFacts, NetworkInterface};
use std::fs;
use std::path::Path;

/// ARPHRD_LOOPBACK from <linux/if_arp.h>.
const ARPHRD_LOOPBACK: &str = "772";
/// IFF_UP from <net/if.h>.
const IFF_UP: u32 = 0x1;

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

pub fn gather(utc_time: String) -> HostFacts {
    HostFacts {
        hostname: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into()),
        os: os_name(),
        kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
        utc_time,
        time_zone: time_zone(),
        interfaces: interfaces(Path::new("/sys/class/net")),
    }
}

fn os_name() -> String {
    let release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

/// TZ wins over the system setting, as it does for the C library.
fn time_zone() -> String {
    if let Ok(tz) = std::env::var("TZ") {
        if !tz.is_empty() {
            return tz.trim_start_matches(':').to_string();
        }
    }
    if let Some(tz) = read_trimmed("/etc/timezone").filter(|s| !s.is_empty()) {
        return tz;
    }
    fs::read_link("/etc/localtime")
        .ok()
        .and_then(|p| {
            let s = p.to_string_lossy().into_owned();
            s.split("zoneinfo/").nth(1).map(str::to_string)
        })
        .unwrap_or_else(|| "UTC".into())
}

pub fn is_utc(zone: &str) -> bool {
    matches!(
        zone,
        "UTC"
            | "Etc/UTC"
            | "Etc/UCT"
            | "UCT"
            | "Universal"
            | "Etc/Universal"
            | "Zulu"
            | "Etc/Zulu"
            | "GMT"
            | "Etc/GMT"
            | "GMT0"
            | "UTC0"
    )
}

/// Every interface under `dir`. What cannot be read counts as up: the pre-flight must never call a
/// laptop offline because it could not look.
fn interfaces(dir: &Path) -> Vec<NetworkInterface> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return vec![NetworkInterface {
                name: format!("(cannot list {}: {e})", dir.display()),
                operstate: "unknown".into(),
                up: true,
                loopback: false,
            }]
        }
    };
    let mut out: Vec<NetworkInterface> = entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let path = e.path();
            let flags = read_trimmed(path.join("flags"))
                .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok());
            NetworkInterface {
                name: e.file_name().to_string_lossy().into_owned(),
                operstate: read_trimmed(path.join("operstate")).unwrap_or_else(|| "unknown".into()),
                up: flags.is_none_or(|f| f & IFF_UP != 0),
                loopback: read_trimmed(path.join("type")).as_deref() == Some(ARPHRD_LOOPBACK),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Warnings for the log and the room: a non-UTC zone, and interfaces that are up.
/// The non-loopback interfaces that are up, less the network HSM's own (`[hsm] network_interface`).
pub fn online_except(facts: &HostFacts, hsm_interface: Option<&str>) -> Vec<String> {
    facts
        .online_interfaces()
        .into_iter()
        .filter(|i| Some(*i) != hsm_interface)
        .map(str::to_string)
        .collect()
}

pub fn warnings(facts: &HostFacts, hsm_interface: Option<&str>) -> Vec<String> {
    let mut warnings = Vec::new();
    if !is_utc(&facts.time_zone) {
        warnings.push(format!(
            "the system time zone is {}, not UTC; keyrite logs UTC, but set the laptop to UTC so that times on screen and in the log agree",
            facts.time_zone
        ));
    }
    if let Some(i) = hsm_interface {
        let up = facts.online_interfaces().contains(&i);
        warnings.push(if up {
            format!(
                "network interface {i} is up for the network HSM ([hsm] network_interface); check that its cable \
                 goes to the HSM alone"
            )
        } else {
            format!("the network HSM's interface {i} ([hsm] network_interface) is not up")
        });
    }
    let online = online_except(facts, hsm_interface);
    if !online.is_empty() {
        warnings.push(format!(
            "network interface(s) up: {}; a ceremony laptop must be offline — unplug the cable, disable Wi-Fi, or `ip link set DEV down`",
            online.join(", ")
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_interfaces_from_a_sysfs_like_tree() {
        let dir = tempfile::tempdir().unwrap();
        for (name, flags, ty, state) in [
            ("lo", "0x9", "772", "unknown"),
            ("eth0", "0x1003", "1", "up"),
            ("wlan0", "0x1002", "1", "down"),
        ] {
            let d = dir.path().join(name);
            fs::create_dir(&d).unwrap();
            fs::write(d.join("flags"), format!("{flags}\n")).unwrap();
            fs::write(d.join("type"), format!("{ty}\n")).unwrap();
            fs::write(d.join("operstate"), format!("{state}\n")).unwrap();
        }
        // An interface whose flags cannot be read counts as up.
        fs::create_dir(dir.path().join("usb0")).unwrap();
        let ifs = interfaces(dir.path());
        let facts = HostFacts {
            hostname: "h".into(),
            os: "o".into(),
            kernel: "k".into(),
            utc_time: "t".into(),
            time_zone: "Europe/Berlin".into(),
            interfaces: ifs,
        };
        assert_eq!(facts.online_interfaces(), vec!["eth0", "usb0"]);
        let missing = interfaces(&dir.path().join("nope"));
        assert!(missing[0].up && missing[0].name.starts_with("(cannot list"));
        let w = warnings(&facts, None);
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("Europe/Berlin") && w[1].contains("eth0, usb0"));
        // A network HSM's interface is allowed up, said so, and only that one.
        assert_eq!(online_except(&facts, Some("eth0")), vec!["usb0"]);
        let w = warnings(&facts, Some("eth0"));
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[1].contains("eth0 is up for the network HSM") && w[2].contains("usb0"));
        assert!(!w[2].contains("eth0"));
        assert!(warnings(&facts, Some("eth9"))[1].contains("is not up"));
    }
}
