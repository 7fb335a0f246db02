//! Deployment as etcd is deployed: the systemd unit (`deploy/systemd/etcd.service`) passes
//! `systemd-analyze verify` and its security review, and `etcd` tells a `Type=notify` unit's
//! systemd that it is ready (READY=1 on `$NOTIFY_SOCKET`) once it serves.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustcd_testkit::{Ctl, KillOnDrop, free_port, stdout, workspace_bin};

/// The repository's root (the test kit lives in `tests/`).
fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn unit_text() -> String {
    let path = repo().join("deploy/systemd/etcd.service");
    std::fs::read_to_string(path).expect("deploy/systemd/etcd.service")
}

/// The flags of a one-member cluster named `default` on loopback.
fn one_member(data: &std::path::Path, client: u16, peer: u16) -> Vec<String> {
    vec![
        format!("--data-dir={}", data.display()),
        format!("--listen-client-urls=http://127.0.0.1:{client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-cluster=default=http://127.0.0.1:{peer}"),
    ]
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().expect("dir");
    // Verified with this build's etcd as its ExecStart (the packaged path need not exist here).
    let unit =
        unit_text().replace("ExecStart=/usr/bin/etcd", &format!("ExecStart={}", workspace_bin("etcd").display()));
    assert!(unit.contains("Type=notify") && unit.contains("LimitNOFILE=65536"), "{unit}");
    let path = dir.path().join("etcd.service");
    std::fs::write(&path, unit).expect("write unit");
    let out =
        Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze (package systemd)");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && errors.trim().is_empty(), "systemd-analyze verify: {errors}");
    let out =
        Command::new("systemd-analyze").args(["security", "--offline=yes"]).arg(&path).output().expect("security");
    let text = stdout(&out);
    let exposure = text
        .lines()
        .find_map(|l| l.strip_prefix("→ Overall exposure level for etcd.service: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    assert!(exposure.is_some_and(|e| e <= 2.0), "exposure {exposure:?} (at most 2.0, 'OK'): {text}");
}

#[test]
fn etcd_notifies_systemd_once_it_serves() {
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("notify");
    let listener = UnixDatagram::bind(&socket).expect("bind the notify socket");
    listener.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let (client, peer) = (free_port(), free_port());
    let log = dir.path().join("log");
    let member = KillOnDrop(
        Command::new(workspace_bin("etcd"))
            .env("NOTIFY_SOCKET", &socket)
            .args(one_member(&dir.path().join("data"), client, peer))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start etcd"),
    );
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let got = listener.recv(&mut buf);
    let ready = got.map(|n| buf[..n].to_vec());
    // Ready means serving: a put goes through at once.
    let put = Ctl::Ours.run(&format!("127.0.0.1:{client}"), &["put", "k", "v"], None);
    drop(member);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ready.ok().as_deref(), Some(&b"READY=1"[..]), "no READY=1 within 20 s: {text}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(stdout(&put), "OK\n", "{text}");
    assert!(text.contains("successfully notified init daemon"), "etcd's log line: {text}");
}

/// Removes a podman image (and its test containers) when the test ends, passed or failed.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "-f", &self.0]).output();
    }
}

fn podman(args: &[&str]) -> std::process::Output {
    let out = Command::new("podman").args(args).output().expect("podman (the test command installs it)");
    assert!(out.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The image (`deploy/container/build.sh`, here from the debug build), built, checked for its
/// config, exported and unpacked into `dir/fs`; removed from podman when the guard drops.
fn unpacked_image(dir: &std::path::Path) -> (Image, std::path::PathBuf) {
    let tag = format!("localhost/rustcd-test:{}-{}", std::process::id(), free_port());
    let image = Image(tag.clone());
    let out = Command::new(repo().join("deploy/container/build.sh"))
        .arg(&image.0)
        .env("PROFILE", "debug")
        .output()
        .expect("build.sh");
    assert!(out.status.success(), "build.sh: {}", String::from_utf8_lossy(&out.stderr));
    let config = stdout(&podman(&[
        "image",
        "inspect",
        &tag,
        "--format",
        "{{.Config.User}}|{{json .Config.Env}}|{{json .Config.Cmd}}",
    ]));
    assert_eq!(
        config.trim(),
        r#"10001:10001|["PATH=/usr/local/bin","ETCD_DATA_DIR=/var/lib/etcd"]|["/usr/local/bin/etcd"]"#
    );
    let fs = dir.join("fs");
    std::fs::create_dir(&fs).expect("mkdir");
    let cid = stdout(&podman(&["create", &tag])).trim().to_string();
    let tar = dir.join("image.tar");
    podman(&["export", "-o", tar.to_str().expect("path"), &cid]);
    podman(&["rm", &cid]);
    let untar = Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&fs).status().expect("tar");
    assert!(untar.success());
    (image, fs)
}

/// A binary of the unpacked image, run by the image's own loader with the image's libraries.
fn from_image(fs: &std::path::Path, bin: &str) -> Command {
    let mut c = Command::new(fs.join("lib64/ld-linux-x86-64.so.2"));
    c.arg("--library-path").arg(fs.join("lib/x86_64-linux-gnu")).arg(fs.join("usr/local/bin").join(bin));
    c
}

/// The image holds the three binaries, the C libraries they link, a passwd and nothing else,
/// runs as a non-root user with its data in /var/lib/etcd, and its binaries, run from the
/// unpacked image, serve and answer. (Containers cannot run on these machines: crun may not
/// set rlimits here, so the image's file system is what is run.)
#[test]
fn the_container_image_holds_the_binaries_only_and_they_serve() {
    let dir = tempfile::tempdir().expect("dir");
    let (_image, fs) = unpacked_image(dir.path());
    let mut files = Vec::new();
    let mut stack = vec![fs.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p.strip_prefix(&fs).expect("inside").display().to_string());
            }
        }
    }
    files.sort();
    // podman adds hosts, hostname and resolv.conf to a created container; the image has none.
    let added = ["etc/hostname", "etc/hosts", "etc/resolv.conf"];
    let files: Vec<&str> =
        files.iter().map(String::as_str).filter(|f| !added.contains(f) && !f.starts_with("run/")).collect();
    let want = [
        "etc/group",
        "etc/nsswitch.conf",
        "etc/passwd",
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib/x86_64-linux-gnu/libgcc_s.so.1",
        "lib/x86_64-linux-gnu/libm.so.6",
        "lib64/ld-linux-x86-64.so.2",
        "usr/local/bin/etcd",
        "usr/local/bin/etcdctl",
        "usr/local/bin/etcdutl",
    ];
    assert_eq!(files, want);
    assert!(!fs.join("bin/sh").exists(), "no shell in the image");

    let version = from_image(&fs, "etcdutl").arg("version").output().expect("etcdutl version");
    assert!(stdout(&version).starts_with("etcdutl version: 3.5."), "{}", stdout(&version));
    let (client, peer) = (free_port(), free_port());
    let _member = KillOnDrop(
        from_image(&fs, "etcd")
            .args(one_member(&dir.path().join("data"), client, peer))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd from the image"),
    );
    let endpoint = format!("--endpoints=127.0.0.1:{client}");
    let ctl = |args: &[&str]| stdout(&from_image(&fs, "etcdctl").arg(&endpoint).args(args).output().expect("etcdctl"));
    rustcd_testkit::wait_for("the image's member to take a put", Duration::from_secs(20), || {
        (ctl(&["put", "image", "works"]) == "OK\n").then_some(())
    });
    assert_eq!(ctl(&["get", "image"]), "image\nworks\n");
}

/// The walkthrough's three-member cluster from the image's binaries (compose.yaml's settings,
/// on loopback ports): put, get and delete through different members, `endpoint status -w
/// table` shows one leader, and when the leader is killed another member takes over.
#[test]
fn cluster_from_the_image_runs_the_walkthrough() {
    let dir = tempfile::tempdir().expect("dir");
    let (_image, fs) = unpacked_image(dir.path());
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let initial: Vec<String> = (0..3).map(|i| format!("node{}=http://127.0.0.1:{}", i + 1, peers[i])).collect();
    let mut members: Vec<Option<KillOnDrop>> = Vec::new();
    for i in 0..3 {
        let child = from_image(&fs, "etcd")
            .env("ETCD_DATA_DIR", dir.path().join(format!("node{}", i + 1)))
            .env("ETCD_INITIAL_CLUSTER", initial.join(","))
            .env("ETCD_INITIAL_CLUSTER_STATE", "new")
            .env("ETCD_INITIAL_CLUSTER_TOKEN", "etcd-cluster-1")
            .env("ETCD_LISTEN_CLIENT_URLS", format!("http://127.0.0.1:{}", clients[i]))
            .env("ETCD_LISTEN_PEER_URLS", format!("http://127.0.0.1:{}", peers[i]))
            .args(["--name", &format!("node{}", i + 1)])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{}", clients[i])])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{}", peers[i])])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd from the image");
        members.push(Some(KillOnDrop(child)));
    }
    let ctl = |i: usize, args: &[&str]| {
        let out = from_image(&fs, "etcdctl")
            .arg(format!("--endpoints=127.0.0.1:{}", clients[i]))
            .args(args)
            .output()
            .expect("etcdctl from the image");
        stdout(&out)
    };
    rustcd_testkit::wait_for("the cluster to take a put", Duration::from_secs(30), || {
        (ctl(0, &["put", "srn", "pes1ug21csxxx"]) == "OK\n").then_some(())
    });
    assert_eq!(ctl(1, &["get", "srn"]), "srn\npes1ug21csxxx\n");
    assert_eq!(ctl(2, &["put", "srn", "pes1ug21csxxx_your_name"]), "OK\n");
    assert_eq!(ctl(0, &["get", "srn", "--print-value-only"]), "pes1ug21csxxx_your_name\n");
    assert_eq!(ctl(1, &["del", "srn"]), "1\n");
    let all = clients.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let status = |alive: &[usize]| {
        let eps: Vec<String> = alive.iter().map(|&i| format!("127.0.0.1:{}", clients[i])).collect();
        let out = from_image(&fs, "etcdctl")
            .arg(format!("--endpoints={}", eps.join(",")))
            .args(["endpoint", "status", "-w", "table"])
            .output()
            .expect("endpoint status");
        eprintln!("{}", stdout(&out));
        rustcd_testkit::parse_status_table(&stdout(&out))
    };
    let rows = status(&[0, 1, 2]);
    assert_eq!(rows.len(), 3, "{all}");
    let leaders: Vec<usize> = (0..3).filter(|&i| rows[i].2).collect();
    assert_eq!(leaders.len(), 1, "one leader: {rows:?}");
    let (old, old_term) = (leaders[0], rows[leaders[0]].3);
    drop(members[old].take()); // SIGKILL
    let alive: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    rustcd_testkit::wait_for("a new leader", Duration::from_secs(30), || {
        let rows = status(&alive);
        (rows.len() == 2 && rows.iter().filter(|r| r.2).count() == 1 && rows[0].3 > old_term).then_some(())
    });
    assert_eq!(ctl(alive[0], &["put", "after", "failover"]), "OK\n");
}

/// deploy/container/compose.yaml: three members, every flag and `ETCD_*` variable one that
/// `etcd --help` knows.
#[test]
fn the_compose_file_names_only_flags_etcd_knows() {
    let root = repo();
    let text = std::fs::read_to_string(root.join("deploy/container/compose.yaml")).expect("compose.yaml");
    let doc: serde_json::Value = serde_norway::from_str(&text).expect("compose.yaml is YAML");
    let help = stdout(&Command::new(workspace_bin("etcd")).arg("--help").output().expect("etcd --help"));
    let known = |flag: &str| help.contains(&format!("--{flag} ")) || help.contains(&format!("--{flag}\n"));
    let services = doc["services"].as_object().expect("services");
    assert_eq!(services.keys().collect::<Vec<_>>(), ["node1", "node2", "node3"]);
    for (name, s) in services {
        // YAML's merge key, as compose reads it: the service's own keys over the merged ones.
        let mut merged = s["<<"].as_object().cloned().unwrap_or_default();
        merged.extend(s.as_object().expect("service").clone());
        let s = serde_json::Value::Object(merged);
        assert_eq!(s["image"], "localhost/rustcd:latest", "{name}");
        let command: Vec<&str> = s["command"].as_array().expect("command").iter().filter_map(|v| v.as_str()).collect();
        assert_eq!(command[0], "/usr/local/bin/etcd");
        for flag in command.iter().filter_map(|a| a.strip_prefix("--")) {
            assert!(known(flag), "{name}: --{flag} is not an etcd flag");
        }
        for var in s["environment"].as_object().expect("environment").keys() {
            let flag = var.strip_prefix("ETCD_").expect("ETCD_ variable").to_lowercase().replace('_', "-");
            assert!(known(&flag), "{name}: {var} names no etcd flag");
        }
    }
}

/// deploy/kubernetes/etcd.yaml, checked offline: the objects parse, the StatefulSet's service,
/// selector, volumes and probe ports fit together, and every flag and `ETCD_*` variable it
/// passes is one `etcd --help` knows.
#[test]
fn the_kubernetes_manifest_fits_together_and_names_only_etcd_flags() {
    use serde::Deserialize;
    let root = repo();
    let text = std::fs::read_to_string(root.join("deploy/kubernetes/etcd.yaml")).expect("etcd.yaml");
    let docs: Vec<serde_json::Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).expect("a Kubernetes object"))
        .collect();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["Service", "Service", "PodDisruptionBudget", "StatefulSet"]);
    for d in &docs {
        assert!(d["apiVersion"].is_string() && d["metadata"]["name"].is_string(), "{d}");
    }
    let headless = &docs[0];
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let sts = &docs[3]["spec"];
    assert_eq!(sts["serviceName"], headless["metadata"]["name"]);
    assert_eq!(sts["replicas"], 3);
    let labels = &sts["template"]["metadata"]["labels"];
    assert_eq!(&sts["selector"]["matchLabels"], labels);
    assert_eq!(&headless["spec"]["selector"], labels);
    assert_eq!(&docs[2]["spec"]["selector"]["matchLabels"], labels);
    let c = &sts["template"]["spec"]["containers"][0];
    let ports: Vec<&str> = c["ports"].as_array().expect("ports").iter().filter_map(|p| p["name"].as_str()).collect();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let port = c[probe]["httpGet"]["port"].as_str().expect("a named port");
        assert!(ports.contains(&port), "{probe} on {port}");
        assert!(["/livez", "/readyz"].contains(&c[probe]["httpGet"]["path"].as_str().unwrap_or("")));
    }
    let claim = &sts["volumeClaimTemplates"][0]["metadata"]["name"];
    assert_eq!(&c["volumeMounts"][0]["name"], claim);
    let help = stdout(&Command::new(workspace_bin("etcd")).arg("--help").output().expect("etcd --help"));
    let known = |flag: &str| help.contains(&format!("--{flag} ")) || help.contains(&format!("--{flag}\n"));
    let args: Vec<&str> = c["args"].as_array().expect("args").iter().filter_map(|a| a.as_str()).collect();
    assert!(args.iter().any(|a| a.starts_with("--listen-metrics-urls=http://0.0.0.0:2381")));
    for a in &args {
        let flag = a.strip_prefix("--").and_then(|f| f.split('=').next()).expect("--flag=value");
        assert!(known(flag), "--{flag} is not an etcd flag");
    }
    let vars: Vec<&str> = c["env"].as_array().expect("env").iter().filter_map(|e| e["name"].as_str()).collect();
    for v in vars.iter().filter_map(|v| v.strip_prefix("ETCD_")) {
        assert!(known(&v.to_lowercase().replace('_', "-")), "ETCD_{v} names no etcd flag");
    }
    // $(VAR) in args must name a variable of the container, or Kubernetes leaves it as is.
    for a in &args {
        for var in a.split("$(").skip(1).filter_map(|rest| rest.split(')').next()) {
            assert!(vars.contains(&var), "$({var}) is not a container variable");
        }
    }
}

/// The Debian package (`cargo deb -p rustcd-server`, here from the debug build): named
/// `rustcd`, in place of Debian's etcd-server and etcd-client, with the three binaries, the
/// systemd unit (enabled and started on install), `/etc/default/etcd` as a conffile and the
/// `etcd` system user made on configure; its binaries run. (Installing it here would remove
/// the etcd the compatibility tests run against, so its payload is unpacked instead.)
#[test]
fn the_debian_package_carries_the_binaries_unit_and_user() {
    let dir = tempfile::tempdir().expect("dir");
    let deb = build_deb(dir.path());
    let info = stdout(&Command::new("dpkg-deb").arg("--info").arg(&deb).output().expect("dpkg-deb"));
    for line in [" Package: rustcd\n", " Conflicts: etcd-server, etcd-client\n", " Section: database\n"] {
        assert!(info.contains(line), "{line:?} in {info}");
    }
    assert!(info.contains(" Depends: adduser"), "{info}");
    let contents = stdout(&Command::new("dpkg-deb").arg("--contents").arg(&deb).output().expect("contents"));
    let mut files: Vec<&str> =
        contents.lines().filter(|l| l.starts_with('-')).filter_map(|l| l.split_whitespace().last()).collect();
    files.sort();
    assert_eq!(
        files,
        [
            "./etc/default/etcd",
            "./usr/bin/etcd",
            "./usr/bin/etcdctl",
            "./usr/bin/etcdutl",
            "./usr/lib/systemd/system/etcd.service",
            "./usr/share/doc/rustcd/copyright",
        ]
    );
    let control = dir.path().join("control");
    let x = Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control).status().expect("dpkg-deb -e");
    assert!(x.success());
    let read = |name: &str| std::fs::read_to_string(control.join(name)).unwrap_or_default();
    assert_eq!(read("conffiles").trim(), "/etc/default/etcd");
    let postinst = read("postinst");
    assert!(postinst.contains("adduser --system --group --home /var/lib/etcd"), "{postinst}");
    assert!(postinst.contains("deb-systemd-helper enable etcd.service"), "{postinst}");
    let payload = dir.path().join("payload");
    let x = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&payload).status().expect("dpkg-deb -x");
    assert!(x.success());
    let unit = std::fs::read_to_string(payload.join("usr/lib/systemd/system/etcd.service")).expect("unit");
    assert_eq!(unit, unit_text(), "the packaged unit is deploy/systemd/etcd.service");
    let version = Command::new(payload.join("usr/bin/etcd")).arg("--version").output().expect("packaged etcd");
    assert!(stdout(&version).starts_with("etcd Version: 3.5."), "{}", stdout(&version));
}

/// `cargo deb -p rustcd-server` from the debug build, into `dir`.
fn build_deb(dir: &std::path::Path) -> std::path::PathBuf {
    let deb = dir.join("rustcd.deb");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo())
        .args(["deb", "-p", "rustcd-server", "--no-build", "--profile", "dev", "-o"])
        .arg(&deb)
        .output()
        .expect("cargo deb (the test command installs cargo-deb)");
    assert!(out.status.success(), "cargo deb: {}", String::from_utf8_lossy(&out.stderr));
    deb
}

/// A Debian system booted under its own systemd by systemd-nspawn (its own PID, mount and
/// network namespaces: its loopback is not the host's); shut down and reaped when dropped.
struct Booted {
    nspawn: std::process::Child,
    init: u32,
}

impl Booted {
    fn boot(root: &std::path::Path) -> Booted {
        let nspawn = Command::new("systemd-nspawn")
            .args(["--register=no", "--keep-unit", "--private-network", "--console=passive", "--quiet", "-b", "-D"])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-nspawn (the test command installs systemd-container)");
        let children = format!("/proc/{0}/task/{0}/children", nspawn.id());
        // nspawn's child becomes the container's systemd once it has set the namespaces up.
        let init = rustcd_testkit::wait_for("the container's systemd", Duration::from_secs(30), || {
            let pid: u32 = std::fs::read_to_string(&children).ok()?.split_whitespace().next()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "systemd").then_some(pid)
        });
        let booted = Booted { nspawn, init };
        // systemctl answers once systemd has its socket up; --wait then waits for the boot.
        rustcd_testkit::wait_for("the container to boot", Duration::from_secs(60), || {
            let state = booted.sh(&["systemctl", "is-system-running", "--wait"]);
            ["running\n", "degraded\n"].contains(&stdout(&state).as_str()).then_some(())
        });
        booted
    }

    /// Runs a command inside, in all of the container's namespaces.
    fn sh(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter").args(["-t", &self.init.to_string(), "-a", "--"]).args(args).output().expect("nsenter")
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        // SIGTERM asks nspawn for an orderly shutdown of the container; then make sure.
        let _ = Command::new("kill").args(["-TERM", &self.nspawn.id().to_string()]).status();
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", &self.init.to_string()]).status();
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// The package installed as a user installs it, on a Debian system running systemd: this
/// machine's Debian release, debootstrapped into a directory and booted by systemd-nspawn.
/// `dpkg -i` makes the `etcd` user and enables and starts `etcd.service`; systemd has the unit
/// active only once the member said READY=1 (`Type=notify`); the member runs as `etcd` with its
/// data in /var/lib/etcd/default and serves etcdctl's default endpoint, and what it stored
/// survives a restart. (`localhost` resolves to ::1 first in that system, as it may on any.)
#[test]
fn the_debian_package_installs_and_systemd_starts_a_member() {
    let dir = tempfile::tempdir().expect("dir");
    let deb = build_deb(dir.path());
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let suite = os.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=")).unwrap_or("bookworm").to_string();
    let root = dir.path().join("root");
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "--include=systemd,systemd-sysv,dbus,adduser", &suite])
        .arg(&root)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("debootstrap (the test command installs it; it runs as root)");
    assert!(out.status.success(), "debootstrap: {}", String::from_utf8_lossy(&out.stderr));
    // What an installed system has and debootstrap leaves to the installer.
    std::fs::write(root.join("etc/hosts"), "::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\tlocalhost\n")
        .expect("hosts");
    std::fs::copy(&deb, root.join("root/rustcd.deb")).expect("copy the package in");

    let system = Booted::boot(&root);
    let install = system.sh(&["dpkg", "-i", "/root/rustcd.deb"]);
    assert!(install.status.success(), "dpkg -i: {}{}", stdout(&install), String::from_utf8_lossy(&install.stderr));
    let show = |prop: &str| {
        let out = system.sh(&["systemctl", "show", "etcd", "--value", "-p", prop]);
        stdout(&out).trim().to_string()
    };
    assert_eq!(show("UnitFileState"), "enabled");
    assert_eq!(show("Type"), "notify");
    rustcd_testkit::wait_for("etcd.service active", Duration::from_secs(30), || {
        (show("ActiveState") == "active").then_some(())
    });
    let pid = show("MainPID");
    let owner = system.sh(&["stat", "-c", "%U", &format!("/proc/{pid}"), "/var/lib/etcd/default"]);
    assert_eq!(stdout(&owner), "etcd\netcd\n");
    let journal = system.sh(&["journalctl", "-u", "etcd", "-o", "cat", "--no-pager"]);
    assert!(stdout(&journal).contains("successfully notified init daemon"), "{}", stdout(&journal));

    assert_eq!(stdout(&system.sh(&["etcdctl", "put", "installed", "by-dpkg"])), "OK\n");
    let restart = system.sh(&["systemctl", "restart", "etcd"]);
    assert!(restart.status.success(), "{}", String::from_utf8_lossy(&restart.stderr));
    assert_eq!(show("ActiveState"), "active", "restart returns once the member is ready again");
    let get = system.sh(&["etcdctl", "get", "installed"]);
    assert_eq!(stdout(&get), "installed\nby-dpkg\n", "{}", String::from_utf8_lossy(&get.stderr));
}
